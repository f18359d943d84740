//! `amphi run --rm --bundle DIR` end to end: output, exit status, limits,
//! signals, bad input, and no leaks.

mod common;

use common::text;

use std::process::{Command, Output, Stdio};

use amphi_examples::Kind;
use amphi_testkit::{assert_no_leaks, unique_id, TestDirs};
use serde_json::json;

struct Fx {
    dirs: TestDirs,
    id: String,
}

impl Fx {
    fn new(example: &str) -> Fx {
        let (kind, args) = amphi_examples::example(example).unwrap();
        Fx::with_args(kind, &args)
    }

    fn with_args(kind: Kind, args: &[String]) -> Fx {
        let dirs = TestDirs::new();
        amphi_examples::write_bundle(&dirs.bundle, kind, args).unwrap();
        Fx {
            dirs,
            id: unique_id("cli"),
        }
    }

    fn amphi(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_amphi"));
        cmd.env("AMPHI_ROOT", &self.dirs.store)
            .env("AMPHI_STATE", &self.dirs.state);
        cmd
    }

    /// Where `run` has amphi write the container's id.
    fn cidfile(&self) -> std::path::PathBuf {
        self.dirs.tmp.path().join("cid")
    }

    /// The id of the container last run (its name is `self.id`).
    fn real_id(&self) -> Option<String> {
        std::fs::read_to_string(self.cidfile()).ok()
    }

    /// `amphi run --rm --name ID --cidfile F FLAGS... --bundle DIR`
    fn run(&self, flags: &[&str]) -> Output {
        let _ = std::fs::remove_file(self.cidfile());
        self.amphi()
            .args(["run", "--rm", "--name", &self.id, "--cidfile"])
            .arg(self.cidfile())
            .args(flags)
            .arg("--bundle")
            .arg(&self.dirs.bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// No leak of the last container, and no container left at all.
    fn assert_clean(&self) {
        let id = self.real_id().unwrap_or_else(|| self.id.clone());
        assert_no_leaks(&id, &self.dirs.state, &self.dirs.store);
        assert_no_leaks(&id, &self.dirs.state, &self.dirs.bundle.join("rootfs"));
        let left = common::container_dirs(&self.dirs);
        assert!(left.is_empty(), "containers left: {left:?}");
    }
}

fn check(example: &str, flags: &[&str], code: i32, stdout: &str) -> Output {
    let fx = Fx::new(example);
    let out = fx.run(flags);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout {} stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(stdout),
        "stdout {:?}",
        text(&out.stdout)
    );
    fx.assert_clean();
    out
}

#[test]
fn hello_wasm_and_native() {
    check("wasm/hello", &[], 0, "Hello from Wasm!\n");
    check("native/hello", &[], 0, "Hello from native!\n");
}

#[test]
fn args_env_and_files() {
    for (kind, prog) in [
        (Kind::Wasm, "/args_env.wasm"),
        (Kind::Native, "/bin/args_env"),
    ] {
        let fx = Fx::with_args(kind, &[prog.to_string()]);
        let out = fx.run(&["-e", "ANSWER=42", "-w", "/tmp"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.lines().any(|l| l == "ANSWER=42"), "{stdout}");
        fx.assert_clean();
    }
    check("wasm/cat", &[], 0, amphi_examples::MESSAGE);
    check("native/cat", &[], 0, amphi_examples::MESSAGE);
}

#[test]
fn exit_codes_pass_through() {
    check("wasm/exit42", &[], 42, "");
    check("native/exit42", &[], 42, "");
    let out = check("wasm/trap", &[], 134, "about to trap");
    assert!(
        text(&out.stderr).contains("unreachable"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn timeout_kills_busy_loops() {
    check("wasm/busy", &["--timeout", "300ms"], 137, "spinning");
    check("native/busy", &["--timeout", "300ms"], 137, "spinning");
}

#[test]
fn memory_limit() {
    check("native/memhog", &["--memory", "32m"], 137, "");
    let out = check(
        "wasm/grow",
        &["--memory", "32m"],
        0,
        "memory.grow refused at",
    );
    let pages: u64 = text(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert!(pages * 65536 <= 32 << 20);
}

#[test]
fn pids_limit_and_cpus() {
    let fx = Fx::with_args(Kind::Native, &["/bin/forkbomb".into(), "60".into()]);
    let out = fx.run(&["--pids-limit", "10", "--cpus", "0.5"]);
    assert_eq!(out.status.code(), Some(0));
    let nums: Vec<u32> = text(&out.stdout)
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(nums[0] < 10 && nums[1] > 0, "{}", text(&out.stdout));
    fx.assert_clean();
}

#[test]
fn read_only_and_hostname() {
    let out = check("native/write", &["--read-only"], 1, "Read-only file system");
    assert!(out.stderr.is_empty());
    check("native/write", &[], 0, "wrote /probe");
    check("native/id", &["--hostname", "edge-1"], 0, "hostname=edge-1");
}

#[test]
fn sigterm_to_amphi_reaches_the_container() {
    let fx = Fx::new("wasm/busy");
    let mut child = fx
        .amphi()
        .args(["run", "--rm", "--name", &fx.id, "--cidfile"])
        .arg(fx.cidfile())
        .arg("--bundle")
        .arg(&fx.dirs.bundle)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 9];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"spinning\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    fx.assert_clean();
}

fn rejected(fx: &Fx, flags: &[&str], expect: &str) {
    let out = fx.run(flags);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr {err}");
    assert!(
        err.contains(expect),
        "stderr {err:?} does not say {expect:?}"
    );
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    fx.assert_clean();
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let fx = Fx::new("native/hello");
    std::fs::write(fx.dirs.bundle.join("config.json"), "not json").unwrap();
    rejected(&fx, &[], "malformed config.json");

    let fx = Fx::new("native/hello");
    std::fs::remove_file(fx.dirs.bundle.join("config.json")).unwrap();
    rejected(&fx, &[], "config.json is missing");

    let fx = Fx::new("native/hello");
    amphi_examples::edit_config(&fx.dirs.bundle, |v| v["root"]["path"] = json!("../../")).unwrap();
    rejected(&fx, &[], "outside the bundle");

    let fx = Fx::new("native/hello");
    amphi_examples::edit_config(&fx.dirs.bundle, |v| {
        v["process"]["args"] = json!(["missing"])
    })
    .unwrap();
    rejected(&fx, &[], "missing: not found in rootfs");

    let fx = Fx::new("native/hello");
    std::fs::write(fx.dirs.bundle.join("rootfs/app.wasm"), "plain text").unwrap();
    amphi_examples::edit_config(&fx.dirs.bundle, |v| {
        v["process"]["args"] = json!(["/app.wasm"])
    })
    .unwrap();
    rejected(&fx, &[], "is not a WebAssembly module");

    let fx = Fx::new("native/hello");
    rejected(&fx, &["--memory", "lots"], "bad size");
    rejected(&fx, &["--timeout", "-1s"], "bad duration");
}

#[test]
fn duplicate_name_is_rejected_and_first_survives() {
    let fx = Fx::new("native/sleep");
    let first_cid = fx.dirs.tmp.path().join("first-cid");
    let mut first = fx
        .amphi()
        .args(["run", "--rm", "--name", &fx.id, "--cidfile"])
        .arg(&first_cid)
        .arg("--bundle")
        .arg(&fx.dirs.bundle)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first container is running.
    let running = || {
        let st = fx
            .amphi()
            .args(["inspect", "-f", "{{.State.Status}}", &fx.id])
            .output()
            .unwrap();
        text(&st.stdout).trim() == "running"
    };
    for _ in 0..2000 {
        if running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = fx.run(&[]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("already in use"),
        "{}",
        text(&out.stderr)
    );
    assert!(running(), "the first container was harmed");
    let kill = fx.amphi().args(["kill", &fx.id]).output().unwrap();
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    assert_eq!(first.wait().unwrap().code(), Some(137));
    std::fs::rename(&first_cid, fx.cidfile()).unwrap();
    fx.assert_clean();
}

#[test]
fn ps_and_rm_without_rm_flag() {
    let fx = Fx::new("native/exit42");
    let out = fx
        .amphi()
        .args(["run", "--name", &fx.id, "--cidfile"])
        .arg(fx.cidfile())
        .arg("--bundle")
        .arg(&fx.dirs.bundle)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(42));
    // Not running: only with -a, in Docker's columns.
    let ps = text(&fx.amphi().arg("ps").output().unwrap().stdout);
    assert_eq!(ps.lines().count(), 1, "{ps}");
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    let ps = text(&fx.amphi().args(["ps", "-a"]).output().unwrap().stdout);
    let id = fx.real_id().unwrap();
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains("Exited (42)") && l.ends_with(&fx.id)),
        "{ps}"
    );
    let rm = fx.amphi().args(["rm", &fx.id]).output().unwrap();
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    fx.assert_clean();
}
