//! What the benchmarks share.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use amphi_images::layer::LayerBuilder;
use serde_json::json;

/// Writes a `mib` MiB image archive (`bench:1`) of four uncompressed
/// layers of incompressible files.
pub fn build_archive(tar: &Path, mib: usize) {
    eprintln!("building a {mib} MiB image ...");
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut layers = Vec::new();
    for l in 0..4 {
        let mut b = LayerBuilder::new();
        for f in 0..(mib / 4 / 4) {
            let data = amphi_testkit::noise(4 << 20, &mut seed);
            b.file(&format!("layer{l}/file{f}"), 0o644, &data).unwrap();
        }
        layers.push(b.build().unwrap());
    }
    amphi_examples::write_archive(
        tar,
        &layers,
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]}}),
        "bench:1",
    )
    .unwrap();
}

/// The value at quantile `q` of `v` (nearest rank).
pub fn stat(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Runs `cmd`, panicking with its stderr when it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed and reaped on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private containerd (no CRI plugin) with its root, state and socket
/// under `dir`; returns it (stopped on drop) and its socket, once `ctr`
/// gets an answer.
pub fn start_containerd(dir: &Path) -> (Reaped, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{r}/c.sock\"\n[ttrpc]\n  address = \"{r}/c.sock.ttrpc\"\n", r = dir.display()),
    )
    .unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("containerd (scripts/install-deps)");
    let reaped = Reaped(child);
    let sock = dir.join("c.sock");
    for _ in 0..1000 {
        let up = Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if up {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (reaped, sock)
}
