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

/// A test's own store holding the busybox image `bb:1`.
pub fn busybox_store() -> TestDirs {
    let dirs = TestDirs::new();
    let tar = dirs.tmp.path().join("bb.tar");
    amphi_examples::write_busybox_image(&tar, "bb:1").unwrap();
    let args = ["image", "load", "-i", tar.to_str().unwrap()];
    succeeded(&args, amphi(&dirs, &args));
    dirs
}
