//! The shim against Debian's `io.containerd.runc.v2`, side by side in one
//! run on one private containerd and the same native image:
//!
//! - `ctr run --rm` of `/bin/true`, interleaved in a rotating order,
//!   medians and ratio;
//! - Wasm hello through the amphi shim, warm (cached module) and cold;
//! - PSS of the shim processes with one idle container;
//! - 200 containers run 10 at a time (containers/s, and host CPU spent
//!   per container), native and Wasm.
//!
//! `cargo bench -p containerd-shim-amphi --bench shim` (as root, after
//! `scripts/install-deps`); `AMPHI_BENCH_RUNS=N` sets the rounds (40).

#[path = "../../e2e/support.rs"]
mod support;

use std::time::Instant;

use support::*;

const RUNC: &str = "io.containerd.runc.v2";

fn main() {
    let Some(runs) = support::bench_runs(40) else {
        return;
    };
    let cd = Containerd::start();
    let cache = cd.dir.path().join("store/wasm-cache");
    let mut n = 0;
    let mut next_id = |p: &str| {
        n += 1;
        format!("{p}-{n}")
    };
    let native: &[&str] = &[NATIVE, "/bin/true"];
    let wasm: &[&str] = &["--platform", "wasip1/wasm", WASM, "/hello.wasm"];
    // ctr run takes IMAGE ID [ARGS]: build the vector by hand.
    let ctr_run = |cd: &Containerd, runtime: &str, image: &[&str], id: &str| {
        let (img_flags, rest) = image.split_at(image.len() - 2);
        let mut v: Vec<&str> = vec!["run", "--rm", "--runtime", runtime];
        v.extend(img_flags);
        v.push(rest[0]);
        v.push(id);
        v.push(rest[1]);
        let out = cd.ctr(&v);
        assert!(out.status.success(), "ctr {v:?}: {}", text(&out.stderr));
    };
    // Warm up every path once.
    ctr_run(&cd, RUNC, native, &next_id("warm"));
    ctr_run(&cd, RUNTIME, native, &next_id("warm"));
    ctr_run(&cd, RUNTIME, wasm, &next_id("warm"));

    let names = [
        "runc.v2  ctr run --rm (native true)",
        "amphi    ctr run --rm (native true)",
        "amphi    ctr run --rm (wasm hello, warm)",
        "amphi    ctr run --rm (wasm hello, cold)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..runs {
        // Each round starts at another case, so no case always follows the
        // same one (containerd's garbage collection and ext4's journal
        // commits lag the run that caused them).
        for k in 0..names.len() {
            let case = (round + k) % names.len();
            let times = &mut samples[case];
            if case == 3 {
                let _ = std::fs::remove_dir_all(&cache);
            }
            let id = next_id("b");
            let t = Instant::now();
            match case {
                0 => ctr_run(&cd, RUNC, native, &id),
                1 => ctr_run(&cd, RUNTIME, native, &id),
                _ => ctr_run(&cd, RUNTIME, wasm, &id),
            }
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    println!("\n{runs} rounds, interleaved in rotating order; ms\n");
    println!("{:<44} {:>8} {:>8} {:>8}", "case", "median", "p10", "p90");
    for (name, v) in names.iter().zip(&samples) {
        println!(
            "{:<44} {:>8.2} {:>8.2} {:>8.2}",
            name,
            stat(v, 0.5),
            stat(v, 0.1),
            stat(v, 0.9)
        );
    }
    let m = |i: usize| stat(&samples[i], 0.5);
    println!(
        "\namphi / runc.v2 lifecycle (native):   {:.2}  (target <= 0.60)",
        m(1) / m(0)
    );
    println!("amphi wasm warm / runc.v2 native:     {:.2}", m(2) / m(0));
    println!(
        "amphi wasm warm / amphi native:       {:.2}  (target <= 1.00)",
        m(2) / m(1)
    );
    // The two run in the same rounds, a few seconds apart: their paired
    // difference is steadier than either median on a drifting host.
    let diffs: Vec<f64> = samples[2]
        .iter()
        .zip(&samples[1])
        .map(|(w, n)| w - n)
        .collect();
    let (lo, hi) = bootstrap_median_ci(&diffs);
    println!(
        "amphi wasm warm - amphi native, paired by round: median {:+.2} ms (95% CI {lo:+.2} .. {hi:+.2})",
        stat(&diffs, 0.5)
    );

    // Shim memory with one idle container.
    println!("\nshim PSS with one idle container (shim processes only; payload apart):");
    let mut pss = Vec::new();
    for (runtime, binary) in [
        (RUNC, "containerd-shim-runc-v2"),
        (RUNTIME, "containerd-shim-amphi-v1"),
    ] {
        let id = next_id("idle");
        let mut v: Vec<&str> = vec![
            "run",
            "-d",
            "--runtime",
            runtime,
            NATIVE,
            &id,
            "/bin/sleep",
            "1000",
        ];
        let out = cd.ctr(&v);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sock = cd.sock().to_string_lossy().into_owned();
        let shim_pids = pids_where(|cmd| cmd.contains(binary) && cmd.contains(&sock));
        let mut shim_kib = 0;
        let mut tree = Vec::new();
        for pid in &shim_pids {
            tree.extend(descendants(*pid));
        }
        let mut payload_kib = 0;
        for pid in shim_pids.iter().chain(tree.iter()) {
            let kib = pss_kib(*pid);
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe.to_string_lossy().contains(binary) {
                shim_kib += kib;
            } else {
                payload_kib += kib;
            }
        }
        println!(
            "  {runtime:<24} shim {:>6} KiB in {} process(es); payload {payload_kib} KiB",
            shim_kib,
            shim_pids.len()
        );
        pss.push(shim_kib as f64);
        v = vec!["task", "kill", "-s", "SIGKILL", &id];
        cd.ctr(&v);
        support::wait_until("idle task to stop", || {
            cd.task_status(&id).as_deref() == Some("STOPPED")
        });
        cd.ctr(&["task", "rm", &id]);
        cd.ctr(&["containers", "rm", &id]);
    }
    println!(
        "  amphi / runc.v2 shim PSS: {:.2}  (target <= 0.33)",
        pss[1] / pss[0]
    );

    // Throughput: 200 containers, 10 at a time; the three cases take turns
    // for THROUGHPUT_ROUNDS rounds (this host's rate drifts by ±20% from
    // minute to minute) and each reports its median rate.
    const THROUGHPUT_ROUNDS: usize = 5;
    println!("\n200 containers, 10 at a time ({THROUGHPUT_ROUNDS} rounds, median):");
    let cases = [
        ("runc.v2 native true", RUNC, native),
        ("amphi   native true", RUNTIME, native),
        ("amphi   wasm hello", RUNTIME, wasm),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..THROUGHPUT_ROUNDS {
        for (case, (_, runtime, image)) in cases.iter().enumerate() {
            let busy = busy_ms();
            let t = Instant::now();
            std::thread::scope(|s| {
                for w in 0..10 {
                    let cd = &cd;
                    s.spawn(move || {
                        for i in 0..20 {
                            ctr_run(cd, runtime, image, &format!("tp-{round}-{case}-{w}-{i}"));
                        }
                    });
                }
            });
            rates[case].push(200.0 / t.elapsed().as_secs_f64());
            cpu[case].push((busy_ms() - busy) / 200.0);
        }
    }
    for (((label, _, _), r), c) in cases.iter().zip(&rates).zip(&cpu) {
        let all: Vec<String> = r.iter().map(|x| format!("{x:.1}")).collect();
        println!(
            "  {label:<22} {:>7.1} containers/s  ({});  CPU {:>6.1} ms/container",
            stat(r, 0.5),
            all.join(", "),
            stat(c, 0.5)
        );
    }
    println!(
        "  amphi wasm / runc.v2 native: {:.2}  (target >= 2.00)",
        stat(&rates[2], 0.5) / stat(&rates[0], 0.5)
    );
    // The same comparison in CPU spent per container (all processes:
    // ctr, containerd, shims, containers), steadier than the rate on a
    // host whose speed drifts.
    println!(
        "  CPU per container, runc.v2 native / amphi wasm: {:.2}",
        stat(&cpu[0], 0.5) / stat(&cpu[2], 0.5)
    );
}

/// A 95% percentile-bootstrap interval for the median of `v`.
fn bootstrap_median_ci(v: &[f64]) -> (f64, f64) {
    // xorshift64: reproducible, and no dependency for one loop.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let resample: Vec<f64> = (0..v.len())
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v[(x % v.len() as u64) as usize]
                })
                .collect();
            stat(&resample, 0.5)
        })
        .collect();
    medians.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (stat(&medians, 0.025), stat(&medians, 0.975))
}

fn stat(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// CPU time the whole host has spent busy (user, nice, system, irq,
/// softirq), in ms, from /proc/stat.
fn busy_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let ticks = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6];
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks * 1000.0 / hz
}

fn pids_where(f: impl Fn(&str) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| f(&text(&c))))
        .collect()
}

/// Every process below `pid`. Children are listed per thread (an RPC
/// thread that clones a container init is its parent), so every task of
/// the process is asked.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    for t in tasks {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.push(c);
            out.extend(descendants(c));
        }
    }
    out
}

fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
