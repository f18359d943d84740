//! Runs every example through the `runtime` API, native and Wasm, as root,
//! and checks each container leaves nothing behind.
//!
//! The harness is libtest-mimic rather than libtest: the container init is
//! this test binary re-executed, so `main` must hand over to
//! `init::run_if_init` before anything else.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use amphi_examples::Kind;
use amphi_runtime::nix_signal::Signal;
use amphi_runtime::{
    Container, CreateOptions, Error, ExitStatus, Runtime, RuntimeConfig, Status, Stdio,
};
use amphi_testkit::{assert_no_leaks, host_block_device, unique_id, TestDirs};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;

/// One test's container: its own dirs, id and runtime.
struct Fx {
    dirs: TestDirs,
    id: String,
    rt: Runtime,
}

impl Fx {
    fn new(example: &str) -> Fx {
        let (kind, args) = amphi_examples::example(example).unwrap();
        Fx::with_args(kind, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn with_args(kind: Kind, args: &[&str]) -> Fx {
        let dirs = TestDirs::new();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        amphi_examples::write_bundle(&dirs.bundle, kind, &args).unwrap();
        let rt = Runtime::new(RuntimeConfig {
            state_root: dirs.state.clone(),
            wasm_cache: dirs.store.join("wasm-cache"),
            init_exe: std::env::current_exe().unwrap(),
            wasm_init_exe: None,
            fork_wasm_init: false,
        });
        Fx {
            id: unique_id("rt"),
            dirs,
            rt,
        }
    }

    fn edit(&self, f: impl FnOnce(&mut serde_json::Value)) {
        amphi_examples::edit_config(&self.dirs.bundle, f).unwrap();
    }

    fn out_path(&self, name: &str) -> PathBuf {
        self.dirs.tmp.path().join(name)
    }

    fn create(&self) -> amphi_runtime::Result<Container> {
        let file = |name: &str| -> Option<OwnedFd> {
            Some(std::fs::File::create(self.out_path(name)).unwrap().into())
        };
        let opts = CreateOptions {
            stdio: Stdio {
                stdin: None,
                stdout: file("stdout"),
                stderr: file("stderr"),
            },
            ..CreateOptions::default()
        };
        self.rt.create(&self.id, &self.dirs.bundle, opts)
    }

    fn output(&self) -> (String, String) {
        let read = |n: &str| std::fs::read_to_string(self.out_path(n)).unwrap_or_default();
        (read("stdout"), read("stderr"))
    }

    /// create, start, wait, delete: the exit status and stdout, stderr.
    fn run(&self) -> (ExitStatus, String, String) {
        let mut c = self.create().unwrap_or_else(|e| panic!("create: {e}"));
        c.start().unwrap();
        let status = c.wait().unwrap();
        assert_eq!(c.state().status, Status::Stopped);
        c.delete(false).unwrap();
        let (out, err) = self.output();
        (status, out, err)
    }

    fn assert_clean(&self) {
        assert_no_leaks(&self.id, &self.dirs.state, &self.dirs.bundle.join("rootfs"));
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        // A failed test must not leak either.
        if let Ok(c) = self.rt.load(&self.id) {
            let _ = c.delete(true);
        }
    }
}

type TestResult = Result<(), Failed>;

fn runs(example: &str, code: i32, stdout: &str) -> TestResult {
    let fx = Fx::new(example);
    let (status, out, err) = fx.run();
    assert_eq!(status.code, code, "stdout: {out} stderr: {err}");
    assert!(
        out.contains(stdout),
        "stdout {out:?} lacks {stdout:?}; stderr {err:?}"
    );
    fx.assert_clean();
    Ok(())
}

/// A spec with no mounts at all (no /dev tmpfs) still gets the default
/// devices, on the rootfs's own /dev, as runc makes them: a native program
/// reads /dev/null, and a Wasm guest runs (wasmtime's WASI context seeds
/// its random from the system's).
fn no_mounts_still_default_devices(kind: Kind, args: &[&str], out: &str) -> TestResult {
    let fx = Fx::with_args(kind, args);
    fx.edit(|v| {
        v["mounts"] = json!([]);
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"]["readonlyPaths"] = json!([]);
    });
    let (status, stdout, err) = fx.run();
    assert_eq!((status.code, stdout.as_str()), (0, out), "{err}");
    use std::os::unix::fs::FileTypeExt;
    let null = std::fs::symlink_metadata(fx.dirs.bundle.join("rootfs/dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    fx.assert_clean();
    // A /dev that is a symlink out of the rootfs is not followed.
    let fx = Fx::with_args(kind, args);
    fx.edit(|v| v["mounts"] = json!([]));
    let outside = fx.dirs.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let dev = fx.dirs.bundle.join("rootfs/dev");
    let _ = std::fs::remove_dir_all(&dev);
    std::os::unix::fs::symlink(&outside, &dev).unwrap();
    let _ = fx.run();
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    fx.assert_clean();
    Ok(())
}

fn args_and_env(kind: Kind, program: &str) -> TestResult {
    let fx = Fx::with_args(kind, &[program, "first", "second arg"]);
    fx.edit(|v| v["process"]["env"] = json!(["GREETING=hi there", "EMPTY="]));
    let (status, out, _) = fx.run();
    assert_eq!(status.code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], &[program, "first", "second arg"]);
    assert!(lines.contains(&"GREETING=hi there"), "{out}");
    assert!(lines.contains(&"EMPTY="), "{out}");
    match kind {
        // No PATH in the spec: a native process gets the default ...
        Kind::Native => assert!(
            lines.iter().any(|l| l.starts_with("PATH=/usr/local/sbin")),
            "{out}"
        ),
        // ... a Wasm guest exactly the spec's environment, as `wasmtime run`.
        Kind::Wasm | Kind::Component => {
            assert_eq!(&lines[3..], &["GREETING=hi there", "EMPTY="], "{out}")
        }
    }
    fx.assert_clean();
    Ok(())
}

fn wasm_trap() -> TestResult {
    let fx = Fx::new("wasm/trap");
    let (status, out, err) = fx.run();
    assert_ne!(status.code, 0);
    assert_eq!(out, "about to trap\n");
    assert!(err.contains("unreachable"), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    fx.assert_clean();
    Ok(())
}

/// Waits until the container printed "spinning", i.e. runs its payload.
fn wait_for_output(fx: &Fx, text: &str) {
    for _ in 0..2000 {
        if fx.output().0.contains(text) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("container never printed {text:?}");
}

fn kill_busy_loop(example: &str, signal: Signal, code: i32) -> TestResult {
    let fx = Fx::new(example);
    let mut c = fx.create().unwrap();
    c.start().unwrap();
    wait_for_output(&fx, "spinning");
    assert_eq!(c.state().status, Status::Running);
    c.kill(signal, false).unwrap();
    let status = c.wait().unwrap();
    assert_eq!(status.code, code);
    assert!(!status.oom_killed);
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

/// The trimmed content of file `name` in the container's cgroup (whichever
/// v1 hierarchy has it, or the v2 directory).
fn cgroup_file(c: &Container, name: &str) -> Option<String> {
    c.cgroup()
        .mount_dirs()
        .iter()
        .find_map(|(_, d)| std::fs::read_to_string(d.join(name)).ok())
        .map(|s| s.trim().to_string())
}

/// A cpu quota and weight land in the cgroup, and the quota throttles a
/// busy loop (the kernel counts the throttled periods).
fn cpu_quota_throttles_a_busy_loop() -> TestResult {
    let fx = Fx::new("native/busy");
    fx.edit(|v| {
        v["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000, "shares": 512})
    });
    let mut c = fx.create().unwrap();
    let file = |name: &str| cgroup_file(&c, name).unwrap_or_default();
    if amphi_runtime::cgroup::host_is_v2() {
        assert_eq!(file("cpu.max"), "10000 100000");
        // runc's shares -> weight conversion.
        assert_eq!(file("cpu.weight"), "20");
    } else {
        assert_eq!(file("cpu.cfs_quota_us"), "10000");
        assert_eq!(file("cpu.shares"), "512");
    }
    c.start().unwrap();
    wait_for_output(&fx, "spinning");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c.stats().unwrap().cpu.nr_throttled == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(c.stats().unwrap().cpu.nr_throttled > 0, "never throttled");
    c.kill(Signal::SIGKILL, false).unwrap();
    assert_eq!(c.wait().unwrap().code, 137);
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

/// A memory reservation and swap limit and a cpuset land in the cgroup's
/// files (v2: memory.low, memory.swap.max as swap alone, cpuset.cpus/mems;
/// v1: the soft limit, memsw as memory+swap, cpuset), and the container runs.
fn memory_low_swap_and_cpuset() -> TestResult {
    let fx = Fx::new("native/sleep");
    fx.edit(|v| {
        v["linux"]["resources"]["memory"] =
            json!({"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20});
        v["linux"]["resources"]["cpu"] = json!({"cpus": "0", "mems": "0"});
    });
    let mut c = fx.create().unwrap();
    let file = |name: &str| cgroup_file(&c, name);
    let mib = |n: u64| (n << 20).to_string();
    if amphi_runtime::cgroup::host_is_v2() {
        assert_eq!(file("memory.max").unwrap(), mib(64));
        assert_eq!(file("memory.low").unwrap(), mib(32));
        if let Some(swap) = file("memory.swap.max") {
            assert_eq!(swap, mib(32));
        }
    } else {
        assert_eq!(file("memory.limit_in_bytes").unwrap(), mib(64));
        assert_eq!(file("memory.soft_limit_in_bytes").unwrap(), mib(32));
        if let Some(memsw) = file("memory.memsw.limit_in_bytes") {
            assert_eq!(memsw, mib(96));
        }
    }
    assert_eq!(file("cpuset.cpus").unwrap(), "0");
    assert_eq!(file("cpuset.mems").unwrap(), "0");
    c.start().unwrap();
    assert_eq!(c.state().status, Status::Running);
    c.kill(Signal::SIGKILL, false).unwrap();
    assert_eq!(c.wait().unwrap().code, 137);
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

/// A `slice:prefix:name` cgroups path: with systemd, a transient scope unit
/// in that slice holds the container, limited, and goes with the delete;
/// without systemd, one clear error and nothing made.
fn systemd_cgroup_driver() -> TestResult {
    let fx = Fx::new("native/sleep");
    let slice = "amphitest.slice";
    let path = format!("{slice}:amphi:{}", fx.id);
    fx.edit(|v| {
        v["linux"]["cgroupsPath"] = json!(path);
        v["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        v["linux"]["resources"]["pids"] = json!({"limit": 20});
    });
    let unit = format!("amphi-{}.scope", fx.id);
    if !amphi_testkit::systemd_runs() {
        let Err(err) = fx.create() else {
            panic!("create succeeded without systemd")
        };
        assert!(
            err.to_string().contains("systemd is not reachable"),
            "{err}"
        );
        assert!(err.to_string().contains(&unit), "{err}");
        fx.assert_clean();
        return Ok(());
    }
    let mut c = fx.create().unwrap();
    let cg = format!("0::/{slice}/{unit}");
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
    assert_eq!(own.trim(), cg);
    assert_eq!(amphi_testkit::unit_property(&unit, "ActiveState"), "active");
    assert_eq!(amphi_testkit::unit_property(&unit, "Delegate"), "yes");
    assert_eq!(amphi_testkit::unit_property(&unit, "TasksMax"), "20");
    assert_eq!(
        amphi_testkit::unit_property(&unit, "MemoryMax"),
        (64u64 << 20).to_string()
    );
    let dir = std::path::PathBuf::from(format!("/sys/fs/cgroup/{slice}/{unit}"));
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("pids.max"), "20");
    c.start().unwrap();
    c.pause().unwrap();
    assert!(read("cgroup.events").contains("frozen 1"));
    c.resume().unwrap();
    let res: amphi_runtime::oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"pids": {"limit": 30}})).unwrap();
    c.update(&res).unwrap();
    assert_eq!(amphi_testkit::unit_property(&unit, "TasksMax"), "30");
    assert_eq!(read("pids.max"), "30");
    c.kill(Signal::SIGKILL, false).unwrap();
    assert_eq!(c.wait().unwrap().code, 137);
    c.delete(false).unwrap();
    assert_eq!(
        amphi_testkit::unit_property(&unit, "LoadState"),
        "not-found"
    );
    assert!(!dir.exists());
    let _ = std::process::Command::new("systemctl")
        .args(["stop", slice])
        .status();
    fx.assert_clean();
    Ok(())
}

fn limit_memory(fx: &Fx, bytes: i64) {
    fx.edit(|v| v["linux"]["resources"]["memory"] = json!({"limit": bytes, "swap": bytes}));
}

fn native_oom() -> TestResult {
    let fx = Fx::new("native/memhog");
    limit_memory(&fx, 32 << 20);
    let (status, out, _) = fx.run();
    assert_eq!(status.code, 137, "{out}");
    assert!(status.oom_killed, "OOM flag not set");
    fx.assert_clean();
    Ok(())
}

fn wasm_memory_bounded(example: &str) -> TestResult {
    let fx = Fx::new(example);
    limit_memory(&fx, 32 << 20);
    let (status, out, err) = fx.run();
    // Refused by the engine before the kernel had to kill anything.
    assert_eq!(status.code, 0, "{out} {err}");
    assert!(!status.oom_killed);
    let pages: u64 = out
        .trim()
        .strip_prefix("memory.grow refused at ")
        .and_then(|s| s.strip_suffix(" pages"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {out:?}"));
    assert!(pages * 65536 <= 32 << 20, "{pages} pages exceed the limit");
    assert!(pages > 16, "only {pages} pages: the budget is too small");
    fx.assert_clean();
    Ok(())
}

/// The adapter's proc_exit knows success and failure only (as under
/// `wasmtime run`); a component's own exit-with-code is its status.
fn component_exit_codes() -> TestResult {
    for (example, code) in [("component/cli-exit42", 42), ("component/exit42", 1)] {
        let fx = Fx::new(example);
        let (status, out, err) = fx.run();
        assert_eq!(status.code, code, "{example}: {out} {err}");
        fx.assert_clean();
    }
    Ok(())
}

fn component_trap() -> TestResult {
    let fx = Fx::new("component/trap");
    let (status, out, err) = fx.run();
    assert_eq!(status.code, 134, "{out} {err}");
    assert_eq!(out, "about to trap\n");
    assert!(err.contains("unreachable"), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    fx.assert_clean();
    Ok(())
}

/// A command component importing an interface no host provides: create
/// fails in one line naming it, and nothing is left.
fn component_missing_import() -> TestResult {
    let fx = Fx::new("component/hello");
    let component = wat::parse_str(
        r#"(component
            (import "example:missing/thing@1.0.0" (instance (export "f" (func))))
            (core module $m (func (export "run") (result i32) (i32.const 0)))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $run (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $run)))"#,
    )
    .unwrap();
    std::fs::write(fx.dirs.bundle.join("rootfs/missing.wasm"), component).unwrap();
    fx.edit(|v| v["process"]["args"] = json!(["/missing.wasm"]));
    let err = fx.create().expect_err("created").to_string();
    assert!(
        err.contains("imports example:missing/thing@1.0.0, which amphi does not provide"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    fx.assert_clean();
    Ok(())
}

/// The preopens annotation: a read-only directory is readable and refuses
/// writes; a path out of it is refused; a read-write one takes a file;
/// `none` leaves no preopen; a bad value fails create in one line.
fn preopens_narrowed(kind: Kind) -> TestResult {
    let run = |args: &[&str], preopens: &str| {
        let fx = Fx::with_args(kind, args);
        fx.edit(|v| v["annotations"] = json!({ "io.amphi.wasm.preopens": preopens }));
        let (status, out, err) = fx.run();
        fx.assert_clean();
        let written = std::fs::read_to_string(fx.dirs.bundle.join("rootfs/tmp/out.txt")).ok();
        (status.code, out, err, written)
    };
    let (code, out, err, _) = run(&["/cat.wasm", "message"], "/etc:ro");
    assert_eq!((code, out.as_str()), (0, amphi_examples::MESSAGE), "{err}");
    let (code, out, ..) = run(&["/cat.wasm", "../hello.wasm"], "/etc:ro");
    assert_eq!((code, out.as_str()), (1, ""), "read outside the preopen");
    let (code, ..) = run(&["/write.wasm", "new.txt", "hi"], "/etc:ro");
    assert_ne!(code, 0, "a write to a read-only preopen");
    let (code, _, err, written) = run(&["/write.wasm", "out.txt", "hi"], "/tmp");
    assert_eq!((code, written.as_deref()), (0, Some("hi\n")), "{err}");
    // The preopens a guest finds, by name.
    let (_, out, ..) = run(&["/preopens.wasm"], "/tmp,/etc:ro");
    assert_eq!(out, "/tmp\n/etc\n");
    let (code, out, ..) = run(&["/preopens.wasm"], "none");
    assert_eq!((code, out.as_str()), (0, ""));
    // Bad values: create fails naming the annotation.
    for bad in ["etc", "/etc:rx", "/no/such/dir"] {
        let fx = Fx::with_args(kind, &["/hello.wasm"]);
        fx.edit(|v| v["annotations"] = json!({ "io.amphi.wasm.preopens": bad }));
        let err = fx.create().expect_err(bad).to_string();
        assert!(
            err.contains("io.amphi.wasm.preopens") || err.contains("no such directory"),
            "{bad}: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
        fx.assert_clean();
    }
    Ok(())
}

/// Runs `args` as root in the running container `c`, to its end; its stdout.
fn exec_output(fx: &Fx, c: &Container, args: &[&str]) -> String {
    let out = fx.out_path("exec-out");
    let spec: amphi_runtime::oci_spec::runtime::Process =
        serde_json::from_value(json!({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}}))
            .unwrap();
    let stdio = Stdio {
        stdin: None,
        stdout: Some(std::fs::File::create(&out).unwrap().into()),
        stderr: None,
    };
    let pid = c.exec(fx.rt.config(), &spec, stdio).unwrap().pid;
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    std::fs::read_to_string(&out).unwrap()
}

/// An exec'd Wasm module (or component) gets the container's preopens,
/// narrowed too.
fn exec_gets_the_preopens(kind: &str) -> TestResult {
    let fx = Fx::new(&format!("{kind}/busy"));
    fx.edit(|v| v["annotations"] = json!({ "io.amphi.wasm.preopens": "/etc:ro,/tmp" }));
    let mut c = fx.create().unwrap();
    c.start().unwrap();
    assert_eq!(exec_output(&fx, &c, &["/preopens.wasm"]), "/etc\n/tmp\n");
    c.kill(Signal::SIGKILL, true).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

fn pids_limit_holds_fork_bomb() -> TestResult {
    let fx = Fx::with_args(Kind::Native, &["/bin/forkbomb", "100"]);
    fx.edit(|v| v["linux"]["resources"]["pids"] = json!({"limit": 16}));
    let (status, out, _) = fx.run();
    assert_eq!(status.code, 0);
    let nums: Vec<u32> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (forked, refused) = (nums[0], nums[1]);
    assert!(forked < 16, "{out}");
    assert!(refused >= 100 - 16, "{out}");
    fx.assert_clean();
    Ok(())
}

fn readonly_rootfs() -> TestResult {
    let fx = Fx::new("native/write");
    fx.edit(|v| v["root"]["readonly"] = json!(true));
    let (status, out, _) = fx.run();
    assert_eq!(status.code, 1);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!fx.dirs.bundle.join("rootfs/probe").exists());
    fx.assert_clean();
    Ok(())
}

fn hostname_and_user() -> TestResult {
    let fx = Fx::new("native/id");
    fx.edit(|v| {
        v["hostname"] = json!("box-7");
        v["process"]["user"] = json!({"uid": 1234, "gid": 2345, "additionalGids": [3456]});
    });
    let (status, out, err) = fx.run();
    assert_eq!(status.code, 0, "{err}");
    assert!(out.contains("uid=1234 gid=2345 groups=3456"), "{out}");
    assert!(out.contains("hostname=box-7"), "{out}");
    fx.assert_clean();
    Ok(())
}

/// With CAP_MKNOD, a container can make a node for the host's disk; the
/// devices cgroup must still refuse to open it, while /dev/null works and
/// a device the spec lists under `linux.devices` opens.
fn devices_cgroup(listed: bool) -> TestResult {
    let (major, minor) = host_block_device();
    let fx = Fx::with_args(
        Kind::Native,
        &["/bin/devices", "/dev/probe", "b", &major, &minor],
    );
    fx.edit(|v| {
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
        if listed {
            v["linux"]["devices"] = json!([{
                "path": "/dev/probe", "type": "b", "fileMode": 0o400,
                "major": major.parse::<i64>().unwrap(), "minor": minor.parse::<i64>().unwrap(),
            }]);
        }
    });
    let (status, out, err) = fx.run();
    assert_eq!(status.code, 0, "{out}{err}");
    if listed {
        assert!(out.contains("mknod: exists\nopen: ok\n"), "{out}");
    } else {
        assert!(
            out.contains("mknod: ok\nopen: Operation not permitted\n"),
            "{out}"
        );
    }
    assert!(out.contains("null: ok"), "{out}");
    fx.assert_clean();
    Ok(())
}

/// A profile that lets everything through but the calls `denied`, which
/// fail with EACCES.
fn seccomp_denying(denied: &[&str]) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]
    })
}

/// The spec's seccomp profile holds for a native init, installed last
/// (no_new_privs) or before the capabilities go (without it), and for a
/// process exec'd into the container.
fn seccomp_native(no_new_privs: bool) -> TestResult {
    let getppid = libc::SYS_getppid.to_string();
    let fx = Fx::with_args(Kind::Native, &["/bin/syscall", &getppid]);
    fx.edit(|v| {
        v["linux"]["seccomp"] = seccomp_denying(&["getppid"]);
        v["process"]["noNewPrivileges"] = json!(no_new_privs);
    });
    let (status, out, err) = fx.run();
    assert_eq!(status.code, 0, "{err}");
    assert_eq!(out, "errno 13 (Permission denied)\n");
    fx.assert_clean();

    let fx = Fx::with_args(Kind::Native, &["/bin/sleep", "1000"]);
    fx.edit(|v| v["linux"]["seccomp"] = seccomp_denying(&["getppid"]));
    let mut c = fx.create().unwrap();
    c.start().unwrap();
    assert_eq!(
        exec_output(&fx, &c, &["/bin/syscall", &getppid]),
        "errno 13 (Permission denied)\n"
    );
    c.kill(Signal::SIGKILL, true).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

/// A Wasm payload runs under the profile too: its host calls are the
/// init's. cat exits 1 when it cannot open its file.
fn seccomp_wasm() -> TestResult {
    let fx = Fx::new("wasm/cat");
    fx.edit(|v| v["linux"]["seccomp"] = seccomp_denying(&["open", "openat", "openat2"]));
    let (status, out, err) = fx.run();
    assert_eq!((status.code, out.as_str()), (1, ""), "{err}");
    fx.assert_clean();
    Ok(())
}

/// A profile the runtime cannot honour fails create, naming the fault.
fn seccomp_rejected() -> TestResult {
    rejects(
        |fx| {
            fx.edit(|v| {
                v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY"});
            })
        },
        "SCMP_ACT_NOTIFY",
    )
}

fn lifecycle_controls() -> TestResult {
    let fx = Fx::new("native/sleep");
    let mut c = fx.create().unwrap();
    let pid = c.pid();
    assert_eq!(c.state().status, Status::Created);
    // Another process finds it by id.
    let other = fx.rt.load(&fx.id).unwrap();
    assert_eq!(other.pid(), pid);
    assert!(c.pids().unwrap().contains(&pid));
    assert!(matches!(c.pause(), Err(Error::BadStatus { .. })));
    c.start().unwrap();
    assert!(matches!(c.start(), Err(Error::BadStatus { .. })));
    assert_eq!(fx.rt.load(&fx.id).unwrap().state().status, Status::Running);
    c.pause().unwrap();
    assert_eq!(fx.rt.load(&fx.id).unwrap().state().status, Status::Paused);
    c.resume().unwrap();
    let res: amphi_runtime::oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"memory": {"limit": 100 << 20}, "pids": {"limit": 50}}))
            .unwrap();
    c.update(&res).unwrap();
    let stats = c.stats().unwrap();
    assert_eq!(stats.memory.limit, 100 << 20);
    assert_eq!(stats.pids.limit, 50);
    assert!(stats.pids.current >= 1);
    // The init is moved in while it sets up, so its setup is charged to
    // its creator; the container's own pages come once it has exec'd.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.stats().unwrap().memory.usage == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(c.stats().unwrap().memory.usage > 0);
    // Deleting a running container needs force.
    let again = fx.rt.load(&fx.id).unwrap();
    assert!(matches!(again.delete(false), Err(Error::BadStatus { .. })));
    // pid 1 of a pid namespace ignores SIGTERM without a handler; SIGKILL ends it.
    c.kill(Signal::SIGKILL, false).unwrap();
    let status = c.wait().unwrap();
    assert_eq!(status.code, 137);
    let st = fx.rt.load(&fx.id).unwrap().state();
    assert_eq!(st.status, Status::Stopped);
    assert_eq!(st.exit_code, Some(137));
    assert!(st.exited_at.is_some());
    assert!(matches!(
        c.kill(Signal::SIGTERM, false),
        Err(Error::BadStatus { .. })
    ));
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

fn delete_before_start() -> TestResult {
    for example in ["native/hello", "wasm/hello"] {
        let fx = Fx::new(example);
        let c = fx.create().unwrap();
        c.delete(true).unwrap();
        fx.assert_clean();
        assert_eq!(fx.output().0, "", "{example} ran without start");
    }
    Ok(())
}

fn compiled_modules_are_cached() -> TestResult {
    let fx = Fx::new("wasm/hello");
    fx.run();
    let cache = fx.dirs.store.join("wasm-cache");
    let files = |p: &std::path::Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        v.sort();
        v
    };
    let first = files(&cache);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].0.to_string_lossy().ends_with(".cwasm"));
    let (status, out, _) = fx.run();
    assert_eq!(status.code, 0);
    assert_eq!(out, "Hello from Wasm!\n");
    assert_eq!(files(&cache), first, "the second start compiled again");
    // The module file is known by its identity (no rehash); changing it
    // must not run the old artifact.
    let links = std::fs::read_dir(cache.join("by-file")).unwrap().count();
    assert_eq!(links, 1);
    let exit42 = amphi_examples::WASM
        .iter()
        .find(|(n, _)| *n == "exit42")
        .unwrap()
        .1;
    std::fs::write(fx.dirs.bundle.join("rootfs/hello.wasm"), exit42).unwrap();
    let (status, out, _) = fx.run();
    assert_eq!((status.code, out.as_str()), (42, ""));
    fx.assert_clean();
    Ok(())
}

/// A damaged artifact in the module cache: the module is mapped after
/// the init reported ready, so the start fails, saying which file, and
/// nothing is left behind.
fn damaged_cached_artifact() -> TestResult {
    let fx = Fx::new("wasm/hello");
    fx.run();
    let cache = fx.dirs.store.join("wasm-cache");
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    std::fs::write(&artifact, b"not an artifact").unwrap();
    let (status, out, err) = fx.run();
    assert_eq!((status.code, out.as_str()), (126, ""), "{err}");
    assert!(err.contains(".cwasm"), "{err}");
    fx.assert_clean();
    Ok(())
}

/// A Wasm container whose init binary (a front end's Wasm helper) is
/// missing: a clear error naming it, nothing left behind.
fn wasm_init_binary_missing() -> TestResult {
    let mut fx = Fx::new("wasm/hello");
    let missing = fx.dirs.tmp.path().join("no-such-wasm-init");
    fx.rt = Runtime::new(RuntimeConfig {
        wasm_init_exe: Some(missing),
        ..fx.rt.config().clone()
    });
    let err = fx
        .create()
        .expect_err("created without an init")
        .to_string();
    assert!(
        err.contains("init binary") && err.contains("no-such-wasm-init"),
        "{err}"
    );
    fx.assert_clean();
    Ok(())
}

/// Bad input: a one-line error naming the fault, and nothing left behind.
fn rejects(setup: impl FnOnce(&Fx), expect: &str) -> TestResult {
    let fx = Fx::new("native/hello");
    setup(&fx);
    let err = fx.create().expect_err("bad input was accepted").to_string();
    assert!(
        err.contains(expect),
        "error {err:?} does not say {expect:?}"
    );
    assert!(!err.contains('\n'), "not one line: {err:?}");
    fx.assert_clean();
    Ok(())
}

fn duplicate_id() -> TestResult {
    let fx = Fx::new("native/sleep");
    let first = fx.create().unwrap();
    let err = fx.create().expect_err("duplicate id accepted").to_string();
    assert!(err.contains("already exists"), "{err}");
    // The first container is untouched.
    assert_eq!(fx.rt.load(&fx.id).unwrap().state().status, Status::Created);
    assert!(first.state().init_alive());
    first.delete(true).unwrap();
    fx.assert_clean();
    Ok(())
}

fn exec_joins_the_container(
    example: &str,
    long_args: &[&str],
    exec_args: &[&str],
    expect: &str,
) -> TestResult {
    let fx = Fx::new(example);
    let mut c = fx.create().unwrap();
    c.start().unwrap();
    let exec = |args: &[&str], stdout: Option<OwnedFd>| {
        let spec: amphi_runtime::oci_spec::runtime::Process = serde_json::from_value(json!({
            "args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["FROM=exec"]
        }))
        .unwrap();
        let stdio = Stdio {
            stdin: None,
            stdout,
            stderr: None,
        };
        c.exec(fx.rt.config(), &spec, stdio).unwrap().pid
    };
    let reap = |pid: i32| nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    // Membership is checked on a process that stays: a short one may
    // already have left the cgroup by exiting.
    let long = exec(long_args, None);
    // Every hierarchy: the init and an exec each move themselves into one
    // at a time (v1).
    for pid in [c.pid(), long] {
        for (_, dir) in c.cgroup().mount_dirs() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|l| l.trim() == pid.to_string()),
                "process {pid} is not in {}",
                dir.display()
            );
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(long), Signal::SIGKILL).unwrap();
    reap(long);
    let out = fx.out_path("exec-out");
    let pid = exec(exec_args, Some(std::fs::File::create(&out).unwrap().into()));
    let ws = reap(pid);
    assert!(
        matches!(ws, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{ws:?}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(expect), "exec printed {text:?}");
    // A bad exec is an error and leaves the container running.
    let bad: amphi_runtime::oci_spec::runtime::Process = serde_json::from_value(
        json!({"args": ["/nope"], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
    )
    .unwrap();
    let err = c.exec(fx.rt.config(), &bad, Stdio::default()).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    assert_eq!(c.state().status, Status::Running);
    c.kill(Signal::SIGKILL, true).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    fx.assert_clean();
    Ok(())
}

fn main() {
    amphi_runtime::init::run_if_init(Some(&amphi_runtime::wasm::WASMTIME));
    // Exec'd processes are grandchildren: adopt them, as a shim does.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let args = Arguments::from_args();
    let t = |name: &str, f: fn() -> TestResult| Trial::test(name, f);
    let tests = vec![
        t("wasm_hello", || runs("wasm/hello", 0, "Hello from Wasm!")),
        t("native_hello", || {
            runs("native/hello", 0, "Hello from native!")
        }),
        t("native_no_mounts_still_default_devices", || {
            no_mounts_still_default_devices(Kind::Native, &["/bin/cat", "/dev/null"], "")
        }),
        t("wasm_no_mounts_still_default_devices", || {
            no_mounts_still_default_devices(Kind::Wasm, &["/hello.wasm"], "Hello from Wasm!\n")
        }),
        t("wasm_args_env", || {
            args_and_env(Kind::Wasm, "/args_env.wasm")
        }),
        t("native_args_env", || {
            args_and_env(Kind::Native, "/bin/args_env")
        }),
        t("wasm_reads_rootfs_file", || {
            runs("wasm/cat", 0, amphi_examples::MESSAGE)
        }),
        t("native_reads_rootfs_file", || {
            runs("native/cat", 0, amphi_examples::MESSAGE)
        }),
        t("wasm_exit_42", || runs("wasm/exit42", 42, "")),
        // Preview 0 (`wasi_unstable`), which `wasmtime run` still links.
        t("wasm_preview0_module", || {
            runs("wasm/unstable", 7, "argc=1 from wasi_unstable\n")
        }),
        // Proposals wasmtime's CLI enables by default, one module each.
        t("wasm_exception_handling", || {
            runs("wasm/exceptions", 0, "caught 42\n")
        }),
        t("wasm_gc_types", || runs("wasm/gc", 0, "gc: 42\n")),
        t("wasm_tail_calls", || {
            runs("wasm/tailcall", 0, "tail calls: done\n")
        }),
        t("wasm_multi_memory_and_atomics", || {
            runs("wasm/multimem", 0, "two memories\n")
        }),
        t("native_exit_42", || runs("native/exit42", 42, "")),
        t("wasm_trap_exits_nonzero", wasm_trap),
        t("wasm_busy_loop_stops_on_sigterm", || {
            kill_busy_loop("wasm/busy", Signal::SIGTERM, 143)
        }),
        t("wasm_busy_loop_stops_on_sigkill", || {
            kill_busy_loop("wasm/busy", Signal::SIGKILL, 137)
        }),
        t("native_busy_loop_stops_on_sigkill", || {
            kill_busy_loop("native/busy", Signal::SIGKILL, 137)
        }),
        t("native_memory_hog_is_oom_killed", native_oom),
        t("wasm_memory_growth_stops_at_limit", || {
            wasm_memory_bounded("wasm/grow")
        }),
        // WASI 0.2 components: preview 1 commands through the adapter,
        // and one written against WASI 0.2 (cli-exit42).
        t("component_hello", || {
            runs("component/hello", 0, "Hello from Wasm!")
        }),
        t("component_args_env", || {
            args_and_env(Kind::Component, "/args_env.wasm")
        }),
        t("component_reads_preopened_file", || {
            runs("component/cat", 0, amphi_examples::MESSAGE)
        }),
        t("component_exit_codes", component_exit_codes),
        t("component_busy_loop_stops_on_sigterm", || {
            kill_busy_loop("component/busy", Signal::SIGTERM, 143)
        }),
        t("component_memory_growth_stops_at_limit", || {
            wasm_memory_bounded("component/grow")
        }),
        t("component_trap_exits_nonzero", component_trap),
        t("component_missing_import_named", component_missing_import),
        t("wasm_preopens_narrowed", || preopens_narrowed(Kind::Wasm)),
        t("component_preopens_narrowed", || {
            preopens_narrowed(Kind::Component)
        }),
        t("wasm_exec_gets_the_preopens", || {
            exec_gets_the_preopens("wasm")
        }),
        t("component_exec_gets_the_preopens", || {
            exec_gets_the_preopens("component")
        }),
        t("pids_limit_holds_fork_bomb", pids_limit_holds_fork_bomb),
        t(
            "cpu_quota_throttles_a_busy_loop",
            cpu_quota_throttles_a_busy_loop,
        ),
        t(
            "memory_low_swap_and_cpuset_applied",
            memory_low_swap_and_cpuset,
        ),
        t("systemd_cgroup_driver_scope_units", systemd_cgroup_driver),
        t("readonly_rootfs_rejects_writes", readonly_rootfs),
        t("hostname_and_user_from_spec", hostname_and_user),
        t("devices_cgroup_refuses_host_disk", || devices_cgroup(false)),
        t("devices_cgroup_allows_spec_devices", || {
            devices_cgroup(true)
        }),
        t("seccomp_native_no_new_privs", || seccomp_native(true)),
        t("seccomp_native_privileged_install", || {
            seccomp_native(false)
        }),
        t("seccomp_wasm", seccomp_wasm),
        t("seccomp_rejected_profile", seccomp_rejected),
        t("lifecycle_pause_update_stats_kill", lifecycle_controls),
        t("delete_before_start_runs_nothing", delete_before_start),
        t("compiled_modules_are_cached", compiled_modules_are_cached),
        t(
            "damaged_cached_artifact_fails_the_start",
            damaged_cached_artifact,
        ),
        t("rejects_missing_config", || {
            rejects(
                |fx| std::fs::remove_file(fx.dirs.bundle.join("config.json")).unwrap(),
                "config.json is missing",
            )
        }),
        t("rejects_malformed_config", || {
            rejects(
                |fx| {
                    std::fs::write(
                        fx.dirs.bundle.join("config.json"),
                        "{\"ociVersion\": \"1.0.2\", \"process\": [",
                    )
                    .unwrap()
                },
                "malformed config.json",
            )
        }),
        t("rejects_rootfs_outside_bundle", || {
            rejects(
                |fx| fx.edit(|v| v["root"]["path"] = json!("/tmp")),
                "outside the bundle",
            )
        }),
        t("rejects_missing_entrypoint", || {
            rejects(
                |fx| fx.edit(|v| v["process"]["args"] = json!(["/bin/nope"])),
                "/bin/nope: not found in rootfs",
            )
        }),
        t("rejects_non_wasm_dot_wasm", || {
            rejects(
                |fx| {
                    std::fs::write(
                        fx.dirs.bundle.join("rootfs/fake.wasm"),
                        b"#!/bin/sh\necho hi\n",
                    )
                    .unwrap();
                    fx.edit(|v| v["process"]["args"] = json!(["/fake.wasm"]));
                },
                "is not a WebAssembly module",
            )
        }),
        t("rejects_invalid_wasm_module", || {
            rejects(
                |fx| {
                    std::fs::write(
                        fx.dirs.bundle.join("rootfs/bad.wasm"),
                        b"\0asm\x01\0\0\0\x01\xff",
                    )
                    .unwrap();
                    fx.edit(|v| v["process"]["args"] = json!(["/bad.wasm"]));
                },
                "wasm module",
            )
        }),
        t("rejects_duplicate_id", duplicate_id),
        t("wasm_init_binary_missing", wasm_init_binary_missing),
        t("native_exec_joins_namespaces", || {
            exec_joins_the_container(
                "native/sleep",
                &["/bin/sleep"],
                &["/bin/id"],
                "hostname=amphi",
            )
        }),
        t("wasm_exec_runs_another_instance", || {
            exec_joins_the_container(
                "wasm/busy",
                &["/busy.wasm"],
                &["/args_env.wasm", "x"],
                "FROM=exec",
            )
        }),
    ];
    libtest_mimic::run(&args, tests).exit();
}
