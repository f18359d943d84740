//! `amphi run` options that shape the container's process and devices,
//! checked from inside with the native examples.

mod common;

use amphi_testkit::{unique_id, TestDirs};
use common::{amphi, assert_removed, cidfile, text};

fn load_native(dirs: &TestDirs) {
    let tar = dirs.tmp.path().join("native.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Native, "amphi-native:latest").unwrap();
    let out = amphi(dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `amphi run --rm FLAGS amphi-native CMD...`: its stdout, after checking
/// it exited 0 and left nothing.
fn run(dirs: &TestDirs, flags: &[&str], cmd: &[&str]) -> String {
    let id = unique_id("opt");
    let cidf = cidfile(dirs);
    let cidf_s = cidf.to_string_lossy().into_owned();
    let mut v = vec!["run", "--rm", "--name", &id, "--cidfile", &cidf_s];
    v.extend(flags);
    v.push("amphi-native");
    v.extend(cmd);
    let out = amphi(dirs, &v);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{flags:?}: {}",
        text(&out.stderr)
    );
    assert_removed(dirs, &cidf);
    text(&out.stdout)
}

#[test]
fn user_groups_ulimits_and_entrypoint() {
    let dirs = TestDirs::new();
    load_native(&dirs);
    let out = run(
        &dirs,
        &["-u", "1234:5678", "--group-add", "4000"],
        &["/bin/id"],
    );
    assert!(out.starts_with("uid=1234 gid=5678 groups="), "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .split('=')
            .nth(3)
            .unwrap()
            .split(',')
            .any(|g| g == "4000"),
        "{out}"
    );
    let out = run(
        &dirs,
        &["--ulimit", "nofile=100:200"],
        &["/bin/cat", "/proc/self/limits"],
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["100", "200"],
        "{line}"
    );
    // --entrypoint replaces the image's command; what follows the image
    // is its arguments.
    let out = run(&dirs, &["--entrypoint", "/bin/args_env"], &["x", "y"]);
    assert_eq!(
        out.lines().take(3).collect::<Vec<_>>(),
        ["/bin/args_env", "x", "y"]
    );
    // Bad values are one-line errors naming them.
    for (flags, names) in [
        (&["--ulimit", "bogus=1"][..], "bogus"),
        (&["-u", "nosuchuser"][..], "nosuchuser"),
        (&["--device", "/etc/passwd"][..], "/etc/passwd"),
    ] {
        let mut v = vec!["run", "--rm"];
        v.extend(flags);
        v.extend(["amphi-native", "/bin/true"]);
        let out = amphi(&dirs, &v);
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        let err = text(&out.stderr);
        assert!(err.contains(names) && err.lines().count() == 1, "{err}");
    }
}

#[test]
fn devices_and_privileged() {
    let dirs = TestDirs::new();
    load_native(&dirs);
    // A host device under another name.
    let out = run(
        &dirs,
        &["--device", "/dev/zero:/dev/myzero:rw"],
        &["/bin/devices", "/dev/myzero", "c", "1", "5"],
    );
    assert_eq!(out, "mknod: exists\nopen: ok\nnull: ok\n");
    // Privileged: the host's devices, usable; every capability; no filter.
    let (major, minor) = amphi_testkit::host_block_device();
    let disk = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            std::fs::metadata(p).is_ok_and(|m| {
                m.file_type().is_block_device()
                    && libc::major(m.rdev()).to_string() == major
                    && libc::minor(m.rdev()).to_string() == minor
            })
        })
        .expect("the host's block device in /dev");
    let disk = disk.to_string_lossy().into_owned();
    let out = run(
        &dirs,
        &["--privileged"],
        &["/bin/devices", &disk, "b", &major, &minor],
    );
    assert_eq!(out, "mknod: exists\nopen: ok\nnull: ok\n");
    // Without it the same node cannot be opened.
    let out = run(&dirs, &[], &["/bin/devices", "/disk", "b", &major, &minor]);
    assert_eq!(out, "mknod: ok\nopen: Operation not permitted\nnull: ok\n");
    let mount = libc::SYS_mount.to_string();
    assert_eq!(
        run(&dirs, &["--privileged"], &["/bin/syscall", &mount]),
        "errno 14 (Bad address)\n"
    );
    let status = run(&dirs, &["--privileged"], &["/bin/cat", "/proc/self/status"]);
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |s: &str, k: &str| s.lines().find(|l| l.starts_with(k)).unwrap().to_string();
    assert_eq!(
        field(&status, "CapEff:"),
        field(&host, "CapBnd:").replace("CapBnd", "CapEff")
    );
    assert!(status.contains("Seccomp:\t0"), "{status}");
}
