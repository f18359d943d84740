//! A foreground `amphi run` killed after it created its container and
//! before it started it: the next command finds the container orphaned
//! and removes a `--rm` one (record, rootfs mount, directory), or shows a
//! kept one exited. The run is a helper process (this test binary again)
//! that creates the container as `amphi run` does and kills itself with
//! SIGKILL at once, so the window is hit every time.

use std::path::Path;
use std::process::Command;

use amphi_engine::{Engine, RunOptions, Status};
use amphi_testkit::TestDirs;

const HELPER: &str = "AMPHI_ORPHAN_HELPER";

/// Not a test: the body of the killed run (runs only when re-executed).
#[test]
#[ignore]
fn killed_run_helper() {
    let Ok(arg) = std::env::var(HELPER) else {
        return;
    };
    let [root, state, what, rm]: [&str; 4] = arg
        .split('\n')
        .collect::<Vec<_>>()
        .try_into()
        .expect("four lines");
    let engine = Engine::new(root, state);
    // An image archive (loaded, then an overlay mounted) or a bundle.
    let opts = if what.ends_with(".tar") {
        RunOptions {
            rm: rm == "rm",
            network: Some("none".into()),
            rest: vec![what.into()],
            ..RunOptions::default()
        }
    } else {
        RunOptions {
            rm: rm == "rm",
            bundle: Some(what.into()),
            ..RunOptions::default()
        }
    };
    let rec = engine.create_to_run(&opts).expect("create");
    println!("{}", rec.id);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: plain kill of ourselves.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// A bundle that never runs: a rootfs with a file and a default spec.
fn bundle(dir: &Path) {
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/hostname"), "x\n").unwrap();
    let spec = amphi_runtime::oci_spec::runtime::Spec::default();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
}

/// Runs the helper on `what` (a bundle dir or an image archive); returns
/// the id it created.
fn killed_run(d: &TestDirs, what: &Path, rm: bool) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_run_helper", "--ignored", "--nocapture"])
        .env(
            HELPER,
            format!(
                "{}\n{}\n{}\n{}",
                d.store.display(),
                d.state.display(),
                what.display(),
                if rm { "rm" } else { "keep" }
            ),
        )
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no id in {text}"))
        .to_string();
    // The window was hit: made, never started (an image container's
    // overlay mounted).
    let dir = d.store.join("containers").join(&id);
    let rec = amphi_engine::record::load(&d.store, &id).unwrap();
    assert_eq!(rec.state.status, Status::Created);
    if what.extension().is_some_and(|e| e == "tar") {
        assert!(amphi_engine::bundle::is_mounted(&dir.join("rootfs")));
    }
    id
}

#[test]
fn a_killed_rm_run_of_an_image_is_removed_by_the_next_command() {
    let d = TestDirs::new();
    let image = d.tmp.path().join("hello.tar");
    amphi_examples::write_image(&image, amphi_examples::Kind::Native, "hello-native").unwrap();
    let id = killed_run(&d, &image, true);
    assert_swept(&d, &id);
}

/// The next command (`ps -a`, here) removed the `--rm` container `id`.
fn assert_swept(d: &TestDirs, id: &str) {
    let engine = Engine::new(&d.store, &d.state);
    assert!(engine.containers().unwrap().is_empty());
    assert!(!d.store.join("containers").join(id).exists());
    amphi_testkit::assert_no_leaks(id, &d.state, &d.store);
}

#[test]
fn a_killed_rm_run_is_removed_by_the_next_command() {
    let d = TestDirs::new();
    bundle(&d.bundle);
    let id = killed_run(&d, &d.bundle, true);
    assert_swept(&d, &id);
}

#[test]
fn a_killed_run_is_shown_exited_by_the_next_command() {
    let d = TestDirs::new();
    bundle(&d.bundle);
    let id = killed_run(&d, &d.bundle, false);
    let engine = Engine::new(&d.store, &d.state);
    let rec = engine.container(&id).unwrap();
    assert_eq!(rec.state.status, Status::Exited);
    assert!(
        rec.state.error.contains("died before starting"),
        "{}",
        rec.state.error
    );
    assert!(rec.state.creator.is_none());
    // `amphi create` has no creator: its container stays created.
    let made = engine
        .create(&RunOptions {
            rm: true,
            bundle: Some(d.bundle.clone()),
            ..RunOptions::default()
        })
        .unwrap();
    assert_eq!(
        engine.container(&made.id).unwrap().state.status,
        Status::Created
    );
    engine.remove(&id, true, true).unwrap();
    engine.remove(&made.id, true, true).unwrap();
    amphi_testkit::assert_no_leaks(&id, &d.state, &d.store);
}
