//! Lifecycle benchmark, side by side in one run: Debian's `runc run` and
//! `amphi run --rm --bundle` on the same native bundle (`true`), and amphi
//! on the Wasm hello bundle with an empty module cache (cold) and a warm one.
//! Runs are interleaved round-robin so drift hits every case alike; the
//! report gives medians, p10/p90 and ratios.
//!
//! `cargo bench -p amphi-cli --bench lifecycle` (as root; runs 30 rounds,
//! `AMPHI_BENCH_RUNS=N` to change).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;

use common::stat;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` compiles us; nothing to run then.
    }
    let runs: usize = std::env::var("AMPHI_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let amphi = env!("CARGO_BIN_EXE_amphi");
    let tmp = tempfile::Builder::new()
        .prefix("amphi-bench-")
        .tempdir()
        .unwrap();
    let native = tmp.path().join("native");
    let wasm = tmp.path().join("wasm");
    amphi_examples::write_bundle(&native, amphi_examples::Kind::Native, &["/bin/true".into()])
        .unwrap();
    amphi_examples::write_bundle(&wasm, amphi_examples::Kind::Wasm, &["/hello.wasm".into()])
        .unwrap();
    let state = tmp.path().join("state");
    let warm_root = tmp.path().join("warm");
    let has_runc = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    let run = |cmd: &mut Command| {
        let st = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("spawn");
        assert!(st.success(), "{cmd:?} failed: {st}");
    };
    let amphi_run = |root: &Path, bundle: &Path| {
        run(Command::new(amphi)
            .env("AMPHI_ROOT", root)
            .env("AMPHI_STATE", &state)
            .args(["run", "--rm", "--bundle"])
            .arg(bundle));
    };
    // Warm the cache (and the page cache for every binary) once.
    amphi_run(&warm_root, &wasm);
    amphi_run(&warm_root, &native);

    let names = [
        "runc run (native true)",
        "amphi run (native true)",
        "amphi run (wasm hello, warm)",
        "amphi run (wasm hello, cold)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for i in 0..runs {
        for (case, times) in samples.iter_mut().enumerate() {
            let cold_root = tmp.path().join(format!("cold-{i}"));
            let t = Instant::now();
            match case {
                0 if has_runc => run(Command::new("runc")
                    .args(["run", "-b"])
                    .arg(&native)
                    .arg(format!("bench-{}-{i}", std::process::id()))),
                0 => continue,
                1 => amphi_run(&warm_root, &native),
                2 => amphi_run(&warm_root, &wasm),
                _ => amphi_run(&cold_root, &wasm),
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let median = |v: &[f64]| stat(v, 0.5);
    println!("\n{runs} rounds, interleaved; times in ms\n");
    println!("{:<32} {:>8} {:>8} {:>8}", "case", "median", "p10", "p90");
    for (name, v) in names.iter().zip(&samples) {
        if !v.is_empty() {
            println!(
                "{:<32} {:>8.2} {:>8.2} {:>8.2}",
                name,
                median(v),
                stat(v, 0.1),
                stat(v, 0.9)
            );
        }
    }
    println!();
    if has_runc {
        println!(
            "amphi native / runc:      {:.2}  (target <= 0.50)",
            median(&samples[1]) / median(&samples[0])
        );
    } else {
        println!("runc not installed: scripts/install-deps installs it");
    }
    println!(
        "amphi wasm warm / native: {:.2}  (target <= 1.50)",
        median(&samples[2]) / median(&samples[1])
    );
    println!(
        "amphi wasm cold / warm:   {:.2}",
        median(&samples[3]) / median(&samples[2])
    );
}
