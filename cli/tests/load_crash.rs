//! Crash consistency of `amphi image load`: a load killed with SIGKILL at
//! any point leaves no ref to anything incomplete and no visible blob that
//! does not hash to its name; the next load sweeps the leftovers and
//! succeeds.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Instant;

use amphi_images::layer::LayerBuilder;
use amphi_images::snapshot::{chain_ids, diff_ids, Snapshots};
use amphi_images::{digest, Store};
use amphi_testkit::TestDirs;
use common::{amphi, amphi_cmd, text};
use serde_json::json;

/// Every blob hashes to its name; every ref names a manifest whose config,
/// layer blobs and snapshots are all present.
fn assert_consistent(root: &std::path::Path) {
    let store = Store::open(root).unwrap();
    for e in std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(digest::of(&bytes), format!("sha256:{name}"), "corrupt blob");
    }
    let snapshots = Snapshots::open(root).unwrap();
    for (name, manifest) in store.refs().unwrap() {
        let m: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&manifest).unwrap()).unwrap();
        let config: serde_json::Value = serde_json::from_slice(
            &store
                .read_blob(m["config"]["digest"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        for l in m["layers"].as_array().unwrap() {
            assert!(
                store.has_blob(l["digest"].as_str().unwrap()),
                "{name}: layer blob missing"
            );
        }
        for chain in chain_ids(&diff_ids(&config, m["layers"].as_array().unwrap())) {
            assert!(snapshots.exists(&chain), "{name}: snapshot {chain} missing");
        }
    }
}

fn leftovers(root: &std::path::Path) -> Vec<String> {
    let tmp = std::fs::read_dir(root.join("tmp")).into_iter().flatten();
    let snaps = std::fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten();
    tmp.chain(snaps)
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.chars().all(|c| c.is_ascii_hexdigit()) && n != "l")
        .collect()
}

#[test]
fn a_load_killed_at_any_point_leaves_a_consistent_store() {
    let dirs = TestDirs::new();
    // Six layers of 4 MiB: long enough a load to be killed inside it.
    let mut seed = 0x2545f4914f6cdd1du64;
    let layers: Vec<Vec<u8>> = (0..6)
        .map(|l| {
            let data = amphi_testkit::noise(4 << 20, &mut seed);
            let mut b = LayerBuilder::new();
            b.file(&format!("data/{l}"), 0o644, &data).unwrap();
            b.build().unwrap()
        })
        .collect();
    let tar = dirs.tmp.path().join("crash.tar");
    amphi_examples::write_archive(
        &tar,
        &layers,
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]}}),
        "crash:1",
    )
    .unwrap();
    let tar = tar.to_str().unwrap();
    let root = dirs.store.join("images");

    // How long a whole load takes here, to spread the kill points over it
    // (time only chooses where to kill; nothing is asserted on it).
    let scratch = TestDirs::new();
    let start = Instant::now();
    let out = amphi(&scratch, &["image", "load", "-i", tar]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let whole = start.elapsed();

    let spawn = || {
        amphi_cmd(&dirs, &["image", "load", "-i", tar])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Killed after a fraction of the load's time ...
    for tenth in 0..10u32 {
        let mut child = spawn();
        std::thread::sleep(whole * tenth / 10);
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(&root);
    }
    // ... and after each layer line (the commits at the end).
    for k in 1..=layers.len() {
        let mut child = spawn();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..k {
            if lines.next().is_none() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(&root);
        // A later load may have finished the image; take it away again so
        // the next round starts from the half-made state.
        let _ = amphi(&dirs, &["image", "rm", "crash:1"]);
    }
    let out = amphi(&dirs, &["image", "load", "-i", tar]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Loaded image: crash:1"));
    assert_consistent(&root);
    assert_eq!(
        leftovers(&root),
        Vec::<String>::new(),
        "leftovers not swept"
    );
}
