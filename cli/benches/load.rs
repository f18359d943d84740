//! Image load benchmark, side by side in one run: a 1 GiB image in four
//! uncompressed layers, loaded by `amphi image load` (fresh store each
//! round), hashed once by `openssl dgst -sha256` (the CPU's SHA extensions),
//! and imported by Debian's `ctr images import` into a private containerd.
//! Medians of interleaved rounds, in GB/s of archive.
//!
//! `cargo bench -p amphi-cli --bench load` (as root; `AMPHI_BENCH_RUNS=N`
//! rounds, default 3; `AMPHI_BENCH_MIB=N` image size, default 1024;
//! `AMPHI_BENCH_ARCHIVE=FILE` keeps the archive there and reuses it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::build_archive;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let runs: usize = std::env::var("AMPHI_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mib: usize = std::env::var("AMPHI_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let amphi = env!("CARGO_BIN_EXE_amphi");
    let tmp = tempfile::Builder::new()
        .prefix("amphi-loadbench-")
        .tempdir()
        .unwrap();
    let t = tmp.path();

    let tar = std::env::var_os("AMPHI_BENCH_ARCHIVE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| t.join("image.tar"));
    if !tar.exists() {
        build_archive(&tar, mib);
    }
    let bytes = std::fs::metadata(&tar).unwrap().len() as f64;

    let cd = t.join("containerd");
    let (containerd, sock) = common::start_containerd(&cd);
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };

    let names = [
        "openssl dgst -sha256",
        "amphi image load",
        "ctr images import",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..runs {
        for (case, v) in samples.iter_mut().enumerate() {
            drop_caches_hint();
            let store = t.join(format!("store-{round}"));
            let start = Instant::now();
            let ok = match case {
                0 => Command::new("openssl")
                    .args(["dgst", "-sha256"])
                    .arg(&tar)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                1 => Command::new(amphi)
                    .env("AMPHI_ROOT", &store)
                    .args(["image", "load", "-i"])
                    .arg(&tar)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                _ => ctr(&["images", "import", tar.to_str().unwrap()]),
            };
            let secs = start.elapsed().as_secs_f64();
            assert!(ok, "{} failed", names[case]);
            v.push(bytes / secs / 1e9);
            // Fresh state for the next round.
            match case {
                1 => {
                    let _ = std::fs::remove_dir_all(&store);
                }
                2 => {
                    ctr(&["images", "rm", "docker.io/library/bench:1"]);
                    let _ = Command::new("sh")
                        .arg("-c")
                        .arg(format!(
                            "ctr --address {} content ls -q | xargs -r ctr --address {} content rm",
                            sock.display(),
                            sock.display()
                        ))
                        .stdout(Stdio::null())
                        .status();
                }
                _ => {}
            }
        }
    }
    drop(containerd);
    let _ = Command::new("umount")
        .arg("-R")
        .arg(cd.join("root"))
        .stderr(Stdio::null())
        .status();
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s[s.len() / 2]
    };
    println!(
        "\n{:.0} MiB archive, 4 uncompressed layers, {runs} interleaved rounds; GB/s of archive\n",
        bytes / (1 << 20) as f64
    );
    for (n, v) in names.iter().zip(&samples) {
        println!("{n:<24} {:>6.2} GB/s (median)", median(v));
    }
    println!(
        "\namphi / openssl one pass: {:.2}  (target >= 1.0; and >= 1 GB/s)",
        median(&samples[1]) / median(&samples[0])
    );
    println!(
        "amphi / ctr import:       {:.2}  (target > 1.0)",
        median(&samples[1]) / median(&samples[2])
    );
}

/// Every case starts alike: the archive warm in the page cache, and no
/// dirty pages of an earlier case still being written back (which would
/// throttle whichever case runs next).
fn drop_caches_hint() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(200));
}
