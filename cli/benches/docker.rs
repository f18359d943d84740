//! amphi against Docker and podman, side by side in one run: `run --rm
//! IMAGE true` with `--network none`, with each tool's default network and
//! with `-p H:80`; the time from `run -d -p H:80 ... httpd` to the first
//! answered request; and `image load` of a 1 GiB archive against `docker load` and `podman
//! load`. The bench starts its own dockerd (Debian's docker.io, own data
//! root, exec root and socket) and gives podman its own storage; rounds
//! are interleaved so drift hits every case alike; medians and ratios.
//! What dockerd and podman add to the host's firewall and links (their
//! default bridges) is removed again at the end: the iptables rules as
//! saved before, and the bridges they made.
//!
//! `scripts/install-bench-deps && cargo bench -p amphi-cli --bench docker`
//! (as root; `AMPHI_BENCH_RUNS=N` run rounds, default 20;
//! `AMPHI_BENCH_LOADS=N` load rounds, default 3; `AMPHI_BENCH_MIB=N` the
//! archive's size, default 1024).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_archive, run, stat};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The host's firewall and links before the peers touched them, put back
/// on drop (even when the bench panics).
struct HostNet {
    saved: Vec<(String, String)>,
    links: Vec<String>,
}

fn links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

impl HostNet {
    fn save() -> HostNet {
        let saved = ["iptables-save", "ip6tables-save"]
            .iter()
            .filter_map(|t| {
                let out = Command::new(t).output().ok()?;
                Some((
                    t.to_string(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                ))
            })
            .collect();
        HostNet {
            saved,
            links: links(),
        }
    }
}

impl Drop for HostNet {
    fn drop(&mut self) {
        for (save, rules) in &self.saved {
            let (restore, tool) = if save.starts_with("ip6") {
                ("ip6tables-restore", "ip6tables")
            } else {
                ("iptables-restore", "iptables")
            };
            // Tables the peers made that were empty before are flushed.
            for table in ["nat", "filter", "mangle"] {
                if !rules.contains(&format!("*{table}")) {
                    let _ = Command::new(tool).args(["-t", table, "-F"]).status();
                    let _ = Command::new(tool).args(["-t", table, "-X"]).status();
                }
            }
            if let Ok(mut child) = Command::new(restore).stdin(Stdio::piped()).spawn() {
                use std::io::Write;
                let _ = child.stdin.take().unwrap().write_all(rules.as_bytes());
                let _ = child.wait();
            }
        }
        for l in links() {
            if !self.links.contains(&l) {
                let _ = Command::new("ip").args(["link", "del", &l]).status();
            }
        }
    }
}

/// A private dockerd, stopped (with its containerd) on drop.
struct Dockerd {
    child: Child,
    sock: PathBuf,
    dir: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd (scripts/install-bench-deps installs docker.io)");
        let d = Dockerd {
            child,
            sock,
            dir: dir.to_path_buf(),
        };
        for _ in 0..600 {
            if d.cmd()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dockerd did not come up: {}",
            std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!("unix://{}", self.sock.display()));
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..300 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its managed containerd and what dockerd mounted under its roots.
        let root = self.dir.to_string_lossy().into_owned();
        let _ = Command::new("pkill").args(["-f", &root]).status();
        unmount_under(&self.dir);
    }
}

fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix.as_ref()))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// podman with storage of its own, runc and cgroupfs (crun refuses this
/// hybrid host), and rlimits it may set without CAP_SYS_RESOURCE.
fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .arg("--network-config-dir")
        .arg(dir.join("net"))
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--storage-driver",
            "overlay",
        ]);
    c
}

const PODMAN_LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1000:1000",
];

/// Median, p10 and p90 of each case that ran.
fn table(names: &[&str], samples: &[Vec<f64>]) {
    println!("{:<36} {:>8} {:>8} {:>8}", "case", "median", "p10", "p90");
    for (n, v) in names.iter().zip(samples) {
        if !v.is_empty() {
            println!(
                "{n:<36} {:>8.1} {:>8.1} {:>8.1}",
                stat(v, 0.5),
                stat(v, 0.1),
                stat(v, 0.9)
            );
        }
    }
}

/// The ratio of case `a`'s median to case `b`'s ("n/a" if one did not run).
fn median_ratio(samples: &[Vec<f64>], a: usize, b: usize) -> String {
    if samples[a].is_empty() || samples[b].is_empty() {
        return "n/a".into();
    }
    format!("{:.3}", stat(&samples[a], 0.5) / stat(&samples[b], 0.5))
}

/// Waits for an HTTP answer on 127.0.0.1:`port` (polled every ms).
fn first_answer(port: u16) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no answer on port {port}");
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` compiles us; nothing to run then.
    }
    let runs = env_num("AMPHI_BENCH_RUNS", 20);
    let loads = env_num("AMPHI_BENCH_LOADS", 3);
    let mib = env_num("AMPHI_BENCH_MIB", 1024);
    let amphi = env!("CARGO_BIN_EXE_amphi");
    let tmp = tempfile::Builder::new()
        .prefix("amphi-dockerbench-")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let has_docker = have("dockerd") && have("docker");
    let has_podman = have("podman");
    if !has_docker || !has_podman {
        eprintln!("docker.io or podman missing: scripts/install-bench-deps installs them");
    }
    let _net = HostNet::save();
    let image = t.join("bb.tar");
    amphi_examples::write_busybox_image(&image, "docker.io/library/amphi-bb:1").unwrap();
    let store = t.join("amphi");
    let amphi_cmd = |root: &Path| {
        let mut c = Command::new(amphi);
        c.env("AMPHI_ROOT", root)
            .env("AMPHI_STATE", t.join("amphi-state"));
        c
    };
    run(amphi_cmd(&store).args(["image", "load", "-i"]).arg(&image));
    let docker = has_docker.then(|| Dockerd::start(&t.join("docker")));
    let pod = t.join("podman");
    if let Some(d) = &docker {
        run(d.cmd().args(["load", "-i"]).arg(&image));
    }
    if has_podman {
        run(podman(&pod).args(["load", "-i"]).arg(&image));
    }

    // run --rm IMAGE true: none and each tool's default network.
    let img = "amphi-bb:1";
    let names = [
        "amphi run --rm --network none",
        "docker run --rm --network none",
        "podman run --rm --network none",
        "amphi run --rm (default: bridge)",
        "docker run --rm (default: bridge)",
        "podman run --rm (default: bridge)",
        "amphi run --rm -p H:80",
        "docker run --rm -p H:80",
        "podman run --rm -p H:80",
    ];
    // A host port each tool publishes (free again once its run is done).
    let ports: Vec<u16> = (0..3).map(|_| amphi_testkit::free_port()).collect();
    let case = |i: usize| -> Option<Command> {
        let none = i < 3;
        let publish = i >= 6;
        let mut c = match i % 3 {
            0 => {
                let mut c = amphi_cmd(&store);
                c.args(["run", "--rm"]);
                c
            }
            1 => {
                let mut c = docker.as_ref()?.cmd();
                c.args(["run", "--rm"]);
                c
            }
            _ => {
                if !has_podman {
                    return None;
                }
                let mut c = podman(&pod);
                c.args(["run", "--rm"]).args(PODMAN_LIMITS);
                c
            }
        };
        if none {
            c.args(["--network", "none"]);
        }
        if publish {
            c.args(["-p", &format!("{}:80", ports[i % 3])]);
        }
        c.args([img, "true"]);
        Some(c)
    };
    // Once each first: caches, and the default networks made.
    for i in 0..names.len() {
        if let Some(mut c) = case(i) {
            run(&mut c);
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..runs {
        for k in 0..names.len() {
            // Each round starts at another case.
            let i = (k + round) % names.len();
            let Some(mut c) = case(i) else { continue };
            // Each case starts on a quiet host: what the last one left to
            // do in the background (a daemon's clean-up) is not charged
            // to the next.
            std::thread::sleep(Duration::from_millis(150));
            let start = Instant::now();
            run(&mut c);
            samples[i].push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    println!("\nrun --rm IMAGE true: {runs} rounds, interleaved; ms\n");
    table(&names, &samples);
    let ratio = |a: usize, b: usize| median_ratio(&samples, a, b);
    println!();
    println!(
        "amphi / docker, --network none: {}  (target <= 0.1)",
        ratio(0, 1)
    );
    println!(
        "amphi / podman, --network none: {}  (target <= 0.1)",
        ratio(0, 2)
    );
    println!(
        "amphi / docker, default network: {}  (target <= 0.1)",
        ratio(3, 4)
    );
    println!(
        "amphi / podman, default network: {}  (target <= 0.1)",
        ratio(3, 5)
    );
    println!("amphi / docker, -p H:80: {}  (target <= 0.5)", ratio(6, 7));
    println!("amphi / podman, -p H:80: {}  (target <= 0.5)", ratio(6, 8));

    // The time from `run -d -p H:80 ... httpd` to its first answer.
    let serve = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www";
    let web_names = ["amphi", "docker", "podman"];
    let mut web: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..runs.min(10) {
        for k in 0..3 {
            let i = (k + round) % 3;
            let name = format!("bench-web-{round}-{i}");
            let port = ports[i];
            let mut tool = match i {
                0 => amphi_cmd(&store),
                1 => match &docker {
                    Some(d) => d.cmd(),
                    None => continue,
                },
                _ if has_podman => podman(&pod),
                _ => continue,
            };
            let mut start_cmd = match i {
                0 => amphi_cmd(&store),
                1 => docker.as_ref().unwrap().cmd(),
                _ => podman(&pod),
            };
            start_cmd.args(["run", "-d", "--name", &name, "-p", &format!("{port}:80")]);
            if i == 2 {
                start_cmd.args(PODMAN_LIMITS);
            }
            start_cmd.args([img, "sh", "-c", serve]);
            std::thread::sleep(Duration::from_millis(150));
            let start = Instant::now();
            run(&mut start_cmd);
            first_answer(port);
            web[i].push(start.elapsed().as_secs_f64() * 1000.0);
            run(tool.args(["rm", "-f", &name]));
        }
    }
    println!("\nrun -d -p H:80 httpd to its first answered request: ms\n");
    table(&web_names, &web);
    let wratio = |a: usize, b: usize| median_ratio(&web, a, b);
    println!(
        "amphi / docker, first answer: {}  (target <= 0.5)",
        wratio(0, 1)
    );
    println!(
        "amphi / podman, first answer: {}  (target <= 0.5)",
        wratio(0, 2)
    );

    if loads == 0 {
        return;
    }
    // image load of a 1 GiB archive.
    let big = t.join("big.tar");
    build_archive(&big, mib);
    let load_names = ["amphi image load", "docker load", "podman load"];
    let mut load_samples: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..loads {
        for k in 0..3 {
            let i = (k + round) % 3;
            let _ = Command::new("sync").status();
            let secs = match i {
                0 => {
                    let root = t.join(format!("amphi-load-{round}"));
                    let start = Instant::now();
                    run(amphi_cmd(&root).args(["image", "load", "-i"]).arg(&big));
                    let s = start.elapsed().as_secs_f64();
                    let _ = std::fs::remove_dir_all(&root);
                    s
                }
                1 => {
                    let Some(d) = &docker else { continue };
                    let start = Instant::now();
                    run(d.cmd().args(["load", "-i"]).arg(&big));
                    let s = start.elapsed().as_secs_f64();
                    run(d.cmd().args(["rmi", "bench:1"]));
                    s
                }
                _ => {
                    if !has_podman {
                        continue;
                    }
                    let start = Instant::now();
                    run(podman(&pod).args(["load", "-i"]).arg(&big));
                    let s = start.elapsed().as_secs_f64();
                    run(podman(&pod).args(["rmi", "bench:1"]));
                    s
                }
            };
            load_samples[i].push(secs);
        }
    }
    println!("\nimage load of {mib} MiB: {loads} rounds, interleaved; s\n");
    for (n, v) in load_names.iter().zip(&load_samples) {
        if !v.is_empty() {
            println!("{n:<36} {:>8.2}", stat(v, 0.5));
        }
    }
    let speedup = |i: usize| -> String {
        if load_samples[i].is_empty() {
            return "n/a".into();
        }
        format!(
            "{:.1}x",
            stat(&load_samples[i], 0.5) / stat(&load_samples[0], 0.5)
        )
    };
    println!();
    println!("amphi vs docker load: {}  (target >= 5x)", speedup(1));
    println!("amphi vs podman load: {}  (target >= 5x)", speedup(2));
    drop(docker);
    unmount_under(t);
}
