//! WASI 0.2 components through `amphi run`, as a user runs them: a
//! component image (`amphi image pack --wasm` and a wasip2 image archive),
//! its output, a preopened file, exit codes and the memory limit; a
//! wasi:http component published with `-p` and reached by name from a
//! native container on the same user network; `--wasm-preopen`.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use amphi_testkit::net::network_leaks;
use common::{text, Bb};

/// The example component `name`, written to the test's temp dir.
fn component_file(bb: &Bb, name: &str) -> String {
    let (_, bytes) = amphi_examples::COMPONENT
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    let path = bb.dirs.tmp.path().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// Loads the wasip2 image of every example component as `comp:1`.
fn load_components(bb: &Bb) {
    let tar = bb.dirs.tmp.path().join("comp.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Component, "comp:1").unwrap();
    bb.ok(&["image", "load", "-i", tar.to_str().unwrap()]);
}

/// GET `path` from 127.0.0.1:`port`, retried while the server comes up.
fn http_get(port: u16, path: &str) -> String {
    for _ in 0..250 {
        if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = write!(s, "GET {path} HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.") {
                return out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    panic!("no HTTP answer on port {port}");
}

#[test]
fn command_components_print_read_exit_and_keep_to_their_limits() {
    let bb = Bb::new();
    load_components(&bb);
    assert_eq!(bb.get("comp:1", "{{.Os}}"), "wasip2");
    assert_eq!(bb.ok(&["run", "--rm", "comp:1"]), "Hello from Wasm!\n");
    let out = bb.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/cat.wasm",
        "comp:1",
        "/etc/message",
    ]);
    assert_eq!(out, amphi_examples::MESSAGE);
    let code = |args: &[&str]| bb.amphi(args).status.code();
    assert_eq!(
        code(&["run", "--rm", "--entrypoint", "/cli-exit42.wasm", "comp:1"]),
        Some(42)
    );
    let out = bb.ok(&[
        "run",
        "--rm",
        "-m",
        "32m",
        "--entrypoint",
        "/grow.wasm",
        "comp:1",
    ]);
    assert!(out.starts_with("memory.grow refused at "), "{out}");
    // A packed component is a wasip2 image too.
    let hello = component_file(&bb, "hello");
    bb.ok(&["image", "pack", "--wasm", &hello, "-t", "hello-comp"]);
    assert_eq!(bb.get("hello-comp", "{{.Os}}"), "wasip2");
    assert_eq!(bb.ok(&["run", "--rm", "hello-comp"]), "Hello from Wasm!\n");
    assert!(common::container_dirs(&bb.dirs).is_empty());
}

#[test]
fn wasm_preopen_narrows_what_the_guest_sees() {
    let bb = Bb::new();
    load_components(&bb);
    // args: the module (the image's entrypoint is /app.wasm), then its own.
    let run = |extra: &[&str], args: &[&str]| {
        let mut v = vec!["run", "--rm", "--entrypoint", args[0]];
        v.extend_from_slice(extra);
        v.push("comp:1");
        v.extend_from_slice(&args[1..]);
        bb.amphi(&v)
    };
    let out = run(&[], &["/preopens.wasm"]);
    assert_eq!(common::text(&out.stdout), "/\n", "the default: the rootfs");
    let out = run(&["--wasm-preopen", "/etc:ro"], &["/preopens.wasm"]);
    assert_eq!(common::text(&out.stdout), "/etc\n");
    let out = run(&["--wasm-preopen", "/etc:ro"], &["/cat.wasm", "message"]);
    assert_eq!(common::text(&out.stdout), amphi_examples::MESSAGE);
    let out = run(
        &["--wasm-preopen", "/etc:ro"],
        &["/cat.wasm", "../hello.wasm"],
    );
    assert_eq!(out.status.code(), Some(1), "a read out of the preopen");
    let out = run(&["--wasm-preopen", "/etc:ro"], &["/write.wasm", "x", "hi"]);
    assert_ne!(out.status.code(), Some(0), "a write to a read-only preopen");
    let out = run(&["--wasm-preopen", "none"], &["/preopens.wasm"]);
    assert_eq!(common::text(&out.stdout), "");
    // Renamed, as `wasmtime run --dir HOST::GUEST` names one: the WASI
    // test suite's layout (a directory as the guest's `/`, or under a
    // relative name).
    let out = run(&["--wasm-preopen", "/etc::/:ro"], &["/preopens.wasm"]);
    assert_eq!(common::text(&out.stdout), "/\n");
    let out = run(&["--wasm-preopen", "/etc::/:ro"], &["/cat.wasm", "message"]);
    assert_eq!(common::text(&out.stdout), amphi_examples::MESSAGE);
    let out = run(
        &["-v", "data:/data", "--wasm-preopen", "/data::fs-tests.dir"],
        &["/preopens.wasm"],
    );
    assert_eq!(common::text(&out.stdout), "fs-tests.dir\n");
    // A volume is a preopen at its path, also when the rootfs is left out.
    let out = run(
        &["--wasm-preopen", "/etc:ro", "-v", "data:/data"],
        &["/preopens.wasm"],
    );
    assert_eq!(common::text(&out.stdout), "/etc\n/data\n");
    let err = bb.fails(&["run", "--rm", "--wasm-preopen", "etc", "comp:1"]);
    assert!(err.contains("io.amphi.wasm.preopens"), "{err}");
    let err = bb.fails(&["run", "--rm", "--wasm-preopen", "/nope", "comp:1"]);
    assert!(err.contains("/nope: no such directory"), "{err}");
    for (annotation, value) in [
        ("io.amphi.wasm.http-outgoing", "not a host:x"),
        ("io.amphi.wasm.http-listen", "8080"),
    ] {
        let kv = format!("{annotation}={value}");
        let err = bb.fails(&["run", "--rm", "--annotation", &kv, "comp:1"]);
        assert!(err.contains(annotation), "{err}");
    }
    assert!(common::container_dirs(&bb.dirs).is_empty());
}

#[test]
fn http_component_is_published_and_reached_by_name() {
    let bb = Bb::new();
    let http = component_file(&bb, "http-hello");
    bb.ok(&["image", "pack", "--wasm", &http, "-t", "hello-http"]);
    let net = amphi_testkit::unique_id("wnet");
    bb.ok(&["network", "create", &net]);
    let port = amphi_testkit::free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    bb.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        &net,
        "-p",
        &publish,
        "hello-http",
    ]);
    let ip = bb.get("web", "{{.NetworkSettings.IPAddress}}");
    let want = "Hello from a wasi:http component! You asked for /published\n";
    assert_eq!(http_get(port, "/published"), want);
    // A native client on the same network finds the component by name.
    let out = bb.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "bb:1",
        "timeout",
        "20",
        "wget",
        "-qO-",
        "http://web:8080/by-name",
    ]);
    assert_eq!(
        out,
        "Hello from a wasi:http component! You asked for /by-name\n"
    );
    // Said on its stderr, which `logs` gives back on its own stderr.
    let logs = bb.amphi(&["logs", "web"]);
    assert!(text(&logs.stderr).contains("Serving HTTP on http://0.0.0.0:8080/"));
    assert!(!text(&logs.stdout).contains("Serving HTTP"));
    // Another port, by annotation.
    let port2 = amphi_testkit::free_port();
    let publish2 = format!("127.0.0.1:{port2}:9090");
    bb.ok(&[
        "run",
        "-d",
        "--name",
        "web9090",
        "--network",
        &net,
        "-p",
        &publish2,
        "--annotation",
        "io.amphi.wasm.http-listen=0.0.0.0:9090",
        "hello-http",
    ]);
    let ip2 = bb.get("web9090", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        http_get(port2, "/9090"),
        "Hello from a wasi:http component! You asked for /9090\n"
    );
    bb.ok(&["rm", "-f", "web9090"]);
    // stop: SIGTERM ends the server (128+15), the port is released.
    bb.ok(&["stop", "web"]);
    assert_eq!(bb.get("web", "{{.State.ExitCode}}"), "143");
    bb.ok(&["rm", "web"]);
    bb.ok(&["network", "rm", &net]);
    let found = network_leaks(&bb.dirs.store, &bb.dirs.state, &[ip, ip2]);
    assert!(found.is_empty(), "left behind:\n{}", found.join("\n"));
    assert!(common::container_dirs(&bb.dirs).is_empty());
}

/// The WASI test suite's adapter (`contrib/wasi-testsuite/amphi.py`), called
/// as the suite's runner calls it: `compute_argv` for a test module, its
/// args, env and directories in both forms the runner passes (the current
/// suite's one root as `/`, older suites' (host, guest) pairs), then the
/// argv run with the runner's piped stdio.
#[test]
fn the_wasi_testsuite_adapter_runs_tests_as_wasmtime_would() {
    let bb = Bb::new();
    let t = bb.dirs.tmp.path();
    let module = |name: &str| {
        let (_, bytes) = amphi_examples::WASM
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap();
        let path = t.join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (cat, preopens, args_env) = (module("cat"), module("preopens"), module("args_env"));
    let root = t.join("root");
    std::fs::create_dir_all(root.join("fs-tests.dir")).unwrap();
    std::fs::write(root.join("fs-tests.dir/lseek.txt"), "01234567").unwrap();
    let adapter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/wasi-testsuite/amphi.py"
    );
    // The runner's call, with its stdio piped; prints the exit code last.
    let driver = r#"
import importlib.util, subprocess, sys, json
from pathlib import Path
spec = importlib.util.spec_from_file_location("amphi_adapter", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
assert m.get_name() == "amphi" and m.get_version()
test, args, env, third = sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
if isinstance(third, list): third = [(Path(h), g) for h, g in third]
argv = m.compute_argv(test, (args, env, third), [], "wasi:cli/command", "wasm32-wasip1")
p = subprocess.run(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
print(p.stdout + p.stderr + str(p.returncode), end="")
"#;
    let drive = |test: &std::path::Path, args: &str, env: &str, dirs: &str| {
        let out = std::process::Command::new("python3")
            .args(["-c", driver, adapter])
            .arg(test)
            .args([args, env, dirs])
            .env("AMPHI", env!("CARGO_BIN_EXE_amphi"))
            .env("AMPHI_ROOT", &bb.dirs.store)
            .env("AMPHI_STATE", &bb.dirs.state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    let root_s = serde_json::to_string(&root).unwrap();
    // The current suite: the test's root is the guest's `/`.
    assert_eq!(
        drive(&cat, r#"["fs-tests.dir/lseek.txt"]"#, "{}", &root_s),
        "012345670"
    );
    assert_eq!(drive(&preopens, "[]", "{}", &root_s), "/\n0");
    // Older suites: each directory under its own (relative) name.
    let pairs = serde_json::to_string(&[(root.join("fs-tests.dir"), "fs-tests.dir")]).unwrap();
    assert_eq!(drive(&preopens, "[]", "{}", &pairs), "fs-tests.dir\n0");
    // No directory: no preopen at all; the env is exactly the test's.
    assert_eq!(drive(&preopens, "[]", "{}", "null"), "0");
    let out = drive(&args_env, r#"["a b"]"#, r#"{"K": "v"}"#, "null");
    assert!(out.contains("a b") && out.contains("K=v"), "{out}");
    assert!(!out.contains("PATH="), "{out}");
    // Older runners run the adapter as a command.
    let legacy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/wasi-testsuite/amphi_legacy.py"
    );
    let run_legacy = |args: &[&str]| {
        let out = std::process::Command::new("python3")
            .arg(legacy)
            .args(args)
            .env("AMPHI", env!("CARGO_BIN_EXE_amphi"))
            .env("AMPHI_ROOT", &bb.dirs.store)
            .env("AMPHI_STATE", &bb.dirs.state)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), common::text(&out.stdout))
    };
    let (code, version) = run_legacy(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(version.starts_with("amphi "), "{version}");
    let dir = root.join("fs-tests.dir");
    let (dir_s, preopens_s) = (dir.to_str().unwrap(), preopens.to_str().unwrap());
    let (code, out) = run_legacy(&["--test-file", preopens_s, "--dir", dir_s]);
    assert_eq!((code, out), (Some(0), format!("{dir_s}\n")));
    // Run again and again, a test's image is packed once.
    let images = bb.ok(&["image", "ls"]);
    let packed = images.lines().filter(|l| l.contains("wasi-testsuite/"));
    assert_eq!(packed.count(), 3, "{images}");
    assert!(common::container_dirs(&bb.dirs).is_empty());
}
