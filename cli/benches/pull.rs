//! Pull benchmark, side by side in one run against one local registry
//! (Debian's docker-registry on 127.0.0.1): a 1 GiB image in four layers,
//! uncompressed and gzip, fetched by `amphi pull` (hash + unpack into
//! snapshots), `skopeo copy` to an OCI directory, `ctr images pull` into a
//! private containerd (with unpack, containerd's own path), and, as the
//! ceiling, `curl` fetching the same blobs to files, four at once.
//! Interleaved rounds, medians and ratios.
//!
//! `scripts/install-deps && cargo bench -p amphi-cli --bench pull` (as root;
//! `AMPHI_BENCH_RUNS=N` rounds, default 3; `AMPHI_BENCH_MIB=N` image size,
//! default 1024).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_archive, run as ok, stat, Reaped};

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let env = |n: &str, d: usize| {
        std::env::var(n)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let runs = env("AMPHI_BENCH_RUNS", 3);
    let mib = env("AMPHI_BENCH_MIB", 1024);
    let amphi = env!("CARGO_BIN_EXE_amphi");
    let tmp = tempfile::Builder::new()
        .prefix("amphi-pullbench-")
        .tempdir()
        .unwrap();
    let t = tmp.path();

    // The registry.
    let port = amphi_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(
        t.join("registry.yml"),
        format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/registry\nhttp:\n  addr: {addr}\n", t.display()),
    )
    .unwrap();
    let _registry = Reaped(
        Command::new("docker-registry")
            .arg("serve")
            .arg(t.join("registry.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/install-deps)"),
    );
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The image, pushed as it is (uncompressed) by amphi, and gzipped by skopeo.
    let archive = t.join("image.tar");
    build_archive(&archive, mib);
    let seed = t.join("seed");
    let amphi_at = |root: &Path| {
        let mut c = Command::new(amphi);
        c.env("AMPHI_ROOT", root)
            .env("AMPHI_STATE", t.join("state"));
        c
    };
    ok(amphi_at(&seed).args(["image", "load", "-i"]).arg(&archive));
    let plain = format!("{addr}/bench/plain:1");
    let gz = format!("{addr}/bench/gzip:1");
    ok(amphi_at(&seed).args(["tag", "bench:1", &plain]));
    ok(amphi_at(&seed).args(["push", &plain]));
    ok(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{gz}")));
    let _ = std::fs::remove_dir_all(&seed);

    // A private containerd for ctr.
    let (_containerd, sock) = common::start_containerd(&t.join("containerd"));
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&sock).args(args);
        c
    };

    let blobs_of = |r: &str| -> Vec<String> {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{r}"))
            .output()
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let names = [
        "amphi pull",
        "skopeo copy (oci dir)",
        "ctr images pull",
        "curl x4 (ceiling)",
    ];
    for (label, r) in [("uncompressed", &plain), ("gzip", &gz)] {
        let repo = r.split_once('/').unwrap().1.split(':').next().unwrap();
        let blobs = blobs_of(r);
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for round in 0..runs {
            for k in 0..names.len() {
                let i = (k + round) % names.len();
                let _ = Command::new("sync").status();
                let out = t.join(format!("out-{round}-{i}"));
                let start = Instant::now();
                match i {
                    0 => ok(amphi_at(&out).args(["pull", r])),
                    1 => ok(Command::new("skopeo")
                        .args(["copy", "--src-tls-verify=false"])
                        .arg(format!("docker://{r}"))
                        .arg(format!("oci:{}:x", out.display()))),
                    2 => ok(&mut ctr(&["images", "pull", "--plain-http", r])),
                    _ => {
                        std::fs::create_dir_all(&out).unwrap();
                        let kids: Vec<Child> = blobs
                            .iter()
                            .map(|b| {
                                Command::new("curl")
                                    .args(["-sf", "-o"])
                                    .arg(out.join(&b[7..]))
                                    .arg(format!("http://{addr}/v2/{repo}/blobs/{b}"))
                                    .spawn()
                                    .expect("curl")
                            })
                            .collect();
                        for mut c in kids {
                            assert!(c.wait().unwrap().success(), "curl failed");
                        }
                    }
                }
                samples[i].push(start.elapsed().as_secs_f64());
                // Fresh for the next round.
                if i == 2 {
                    // Its content and snapshots go with it (garbage
                    // collected before --sync returns).
                    ok(&mut ctr(&["images", "rm", "--sync", r]));
                }
                let _ = std::fs::remove_dir_all(&out);
            }
        }
        println!("\npull of {mib} MiB ({label}), {runs} rounds interleaved; s (median)\n");
        for (n, v) in names.iter().zip(&samples) {
            println!("{n:<28} {:>8.2}", stat(v, 0.5));
        }
        let m = |i: usize| stat(&samples[i], 0.5);
        println!();
        println!("skopeo / amphi: {:.2}x   ctr / amphi: {:.2}x   amphi / curl: {:.2} (target <= 1.5 uncompressed)", m(1) / m(0), m(2) / m(0), m(0) / m(3));
    }
}
