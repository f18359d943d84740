//! Helpers shared by the CLI test files.

#![allow(dead_code)]

use std::process::{Command, Output};

use amphi_testkit::TestDirs;

/// `amphi ARGS` with the test's own store and state roots, not started.
pub fn amphi_cmd(dirs: &TestDirs, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amphi"));
    cmd.env("AMPHI_ROOT", &dirs.store)
        .env("AMPHI_STATE", &dirs.state)
        .args(args);
    cmd
}

/// Runs `amphi ARGS` with the test's own store and state roots.
pub fn amphi(dirs: &TestDirs, args: &[&str]) -> Output {
    amphi_cmd(dirs, args).output().unwrap()
}

/// Lossy UTF-8 of captured output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh path for `--cidfile` (amphi writes the container's id there).
pub fn cidfile(dirs: &TestDirs) -> std::path::PathBuf {
    dirs.tmp
        .path()
        .join(format!("{}.cid", amphi_testkit::unique_id("cid")))
}

/// The id amphi wrote to `cidfile`.
pub fn cid(cidfile: &std::path::Path) -> String {
    std::fs::read_to_string(cidfile).unwrap_or_else(|e| panic!("{}: {e}", cidfile.display()))
}

/// Nothing is left of the container whose id is in `cidfile` (if amphi
/// got as far as making one): no directory, state, cgroup, mount or process.
pub fn assert_removed(dirs: &TestDirs, cidfile: &std::path::Path) {
    let Ok(id) = std::fs::read_to_string(cidfile) else {
        return;
    };
    let cdir = dirs.store.join("containers").join(&id);
    assert!(!cdir.exists(), "container dir {} left", cdir.display());
    amphi_testkit::assert_no_leaks(&id, &dirs.state, &cdir);
}

/// The stdout of `amphi ARGS` (its `out`), after asserting it succeeded.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "amphi {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The container directories left under the test's store.
pub fn container_dirs(dirs: &TestDirs) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dirs.store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect()
}

/// A test's own store holding the busybox image `bb:1`, and the calls
/// the tests make of amphi on it. (Each test file adds its own.)
pub struct Bb {
    /// The store, state and temp dirs.
    pub dirs: TestDirs,
}

impl Bb {
    /// A fresh store with `bb:1` loaded.
    pub fn new() -> Bb {
        let dirs = TestDirs::new();
        let tar = dirs.tmp.path().join("bb.tar");
        amphi_examples::write_busybox_image(&tar, "bb:1").unwrap();
        let args = ["image", "load", "-i", tar.to_str().unwrap()];
        succeeded(&args, amphi(&dirs, &args));
        Bb { dirs }
    }

    /// `amphi ARGS` on this store.
    pub fn amphi(&self, args: &[&str]) -> Output {
        amphi(&self.dirs, args)
    }

    /// Runs amphi, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.amphi(args))
    }

    /// `inspect -f FORMAT NAME`, trimmed.
    pub fn get(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name]).trim().to_string()
    }

    /// The one line amphi printed to stderr for a command that must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.amphi(args);
        assert!(
            !out.status.success(),
            "amphi {args:?} succeeded: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        err
    }

    /// Pids of this store's detached watchers.
    pub fn watchers(&self) -> Vec<i32> {
        let root = self.dirs.store.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let c = String::from_utf8_lossy(&c);
                c.contains("container-watch") && c.contains(&root)
            })
            .collect()
    }
}
