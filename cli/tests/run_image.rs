//! `amphi image load` + `amphi run IMAGE`: overlay semantics, Docker's
//! command rules, Wasm images, deep images, and no leaks.

use std::path::Path;
use std::process::{Command, Output};

use amphi_images::layer::LayerBuilder;
mod common;

use amphi_testkit::{assert_no_leaks, unique_id, TestDirs};
use common::{amphi, assert_removed, cidfile, text};
use serde_json::json;

fn ok(dirs: &TestDirs, args: &[&str]) -> String {
    common::succeeded(args, amphi(dirs, args))
}

/// `amphi run --rm --name ID IMAGE ARGS...`, checked for leaks after.
fn run(dirs: &TestDirs, image: &str, args: &[&str]) -> Output {
    let id = unique_id("img");
    let cidf = cidfile(dirs);
    let cidf_s = cidf.to_string_lossy().into_owned();
    let mut v = vec!["run", "--rm", "--name", &id, "--cidfile", &cidf_s, image];
    v.extend(args);
    let out = amphi(dirs, &v);
    assert_removed(dirs, &cidf);
    out
}

fn load_examples(dirs: &TestDirs) {
    for (kind, name) in [
        (amphi_examples::Kind::Native, "amphi-native:latest"),
        (amphi_examples::Kind::Wasm, "amphi-wasm:latest"),
    ] {
        let tar = dirs.tmp.path().join(format!("{name}.tar"));
        amphi_examples::write_image(&tar, kind, name).unwrap();
        let out = ok(dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
        assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
        assert!(out.contains("Loaded image ID: sha256:"), "{out}");
    }
}

#[test]
fn native_and_wasm_images_run() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    assert_eq!(
        text(&run(&dirs, "amphi-native", &[]).stdout),
        "Hello from native!\n"
    );
    // CMD replaces the image's Cmd.
    let out = run(&dirs, "amphi-native", &["/bin/exit42"]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(
        text(&run(&dirs, "amphi-wasm", &[]).stdout),
        "Hello from Wasm!\n"
    );
    // The container's own /etc files.
    let hosts = text(&run(&dirs, "amphi-native", &["/bin/cat", "/etc/hosts"]).stdout);
    assert!(hosts.contains("localhost"), "{hosts}");
    let resolv = text(&run(&dirs, "amphi-native", &["/bin/cat", "/etc/resolv.conf"]).stdout);
    assert!(
        resolv.contains("nameserver") && !resolv.contains("nameserver 127."),
        "{resolv}"
    );
    // A Wasm module packed into an image.
    let module = dirs.tmp.path().join("exit42.wasm");
    std::fs::write(
        &module,
        amphi_examples::WASM
            .iter()
            .find(|(n, _)| *n == "exit42")
            .unwrap()
            .1,
    )
    .unwrap();
    ok(
        &dirs,
        &[
            "image",
            "pack",
            "--wasm",
            module.to_str().unwrap(),
            "-t",
            "exit42",
        ],
    );
    assert_eq!(run(&dirs, "exit42", &[]).status.code(), Some(42));
}

#[test]
fn archive_path_and_save_load_round_trip() {
    let dirs = TestDirs::new();
    let tar = dirs.tmp.path().join("native.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Native, "amphi-native:latest").unwrap();
    // IMAGE may be an archive path: loaded first.
    assert_eq!(
        text(&run(&dirs, tar.to_str().unwrap(), &[]).stdout),
        "Hello from native!\n"
    );
    let id1 = ok(&dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    let saved = dirs.tmp.path().join("saved.tar");
    ok(
        &dirs,
        &[
            "image",
            "save",
            "-o",
            saved.to_str().unwrap(),
            "amphi-native",
        ],
    );
    let other = TestDirs::new();
    let id2 = ok(&other, &["image", "load", "-i", saved.to_str().unwrap()]);
    let id = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Loaded image ID"))
            .unwrap()
            .to_string()
    };
    assert_eq!(id(&id1), id(&id2));
}

#[test]
fn writes_are_private_to_each_container() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    assert_eq!(
        run(&dirs, "amphi-native", &["/bin/write", "/etc/message"])
            .status
            .code(),
        Some(0)
    );
    let out = run(&dirs, "amphi-native", &["/bin/cat", "/etc/message"]);
    assert_eq!(
        text(&out.stdout),
        amphi_examples::MESSAGE,
        "a write leaked into the image"
    );
}

/// An image of the native examples plus `extra` layers on top.
fn layered_image(dirs: &TestDirs, name: &str, extra: Vec<Vec<u8>>) {
    let mut base = LayerBuilder::new();
    for (n, b) in amphi_examples::NATIVE {
        base.file(&format!("bin/{n}"), 0o755, b).unwrap();
    }
    let mut layers = vec![base.build().unwrap()];
    layers.extend(extra);
    let tar = dirs.tmp.path().join(format!("{name}.tar"));
    amphi_examples::write_archive(
        &tar,
        &layers,
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/hello"]}}),
        name,
    )
    .unwrap();
    ok(dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
}

fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut l = LayerBuilder::new();
    for (p, c) in files {
        l.file(p, 0o644, c.as_bytes()).unwrap();
    }
    l.build().unwrap()
}

#[test]
fn overlay_semantics() {
    let dirs = TestDirs::new();
    layered_image(
        &dirs,
        "layers",
        vec![
            layer(&[
                ("data/gone", "lower"),
                ("data/kept", "lower"),
                ("opaque/a", "lower"),
                ("opaque/b", "lower"),
                ("both", "lower"),
            ]),
            layer(&[
                ("data/.wh.gone", ""),
                ("opaque/.wh..wh..opq", ""),
                ("opaque/c", "upper"),
                ("both", "upper"),
            ]),
        ],
    );
    let cat = |p: &str| run(&dirs, "layers", &["/bin/cat", p]);
    assert_eq!(
        cat("/data/gone").status.code(),
        Some(1),
        "a whited-out file is visible"
    );
    assert_eq!(text(&cat("/data/kept").stdout), "lower");
    assert_eq!(
        cat("/opaque/a").status.code(),
        Some(1),
        "an opaque dir shows lower children"
    );
    assert_eq!(text(&cat("/opaque/c").stdout), "upper");
    assert_eq!(
        text(&cat("/both").stdout),
        "upper",
        "the upper layer must win"
    );
}

#[test]
fn an_image_of_128_layers_runs() {
    let dirs = TestDirs::new();
    let extra: Vec<Vec<u8>> = (1..128)
        .map(|i| layer(&[(&format!("layers/{i}"), &i.to_string())]))
        .collect();
    layered_image(&dirs, "deep", extra);
    assert_eq!(
        text(&run(&dirs, "deep", &["/bin/cat", "/layers/127"]).stdout),
        "127"
    );
    assert_eq!(
        text(&run(&dirs, "deep", &["/bin/cat", "/layers/1"]).stdout),
        "1"
    );
}

#[test]
fn unknown_images_and_bad_archives_are_clear_errors() {
    let dirs = TestDirs::new();
    // Not in the store: `run` tries to pull it (from a loopback port
    // nobody listens on: tests reach no network) and says why it failed.
    let out = run(&dirs, "127.0.0.1:9/nope:1", &[]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("Unable to find image '127.0.0.1:9/nope:1' locally"),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("amphi: pulling 127.0.0.1:9/nope:1: "),
        "{err}"
    );
    let out = amphi(&dirs, &["image", "inspect", "nope:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no image nope:1"),
        "{}",
        text(&out.stderr)
    );
    let junk = dirs.tmp.path().join("junk.tar");
    std::fs::write(&junk, b"garbage".repeat(100)).unwrap();
    let out = amphi(&dirs, &["image", "load", "-i", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let _ = Path::new("");
}

#[test]
fn export_then_import_keeps_every_file() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    let id = unique_id("exp");
    let out = amphi(
        &dirs,
        &[
            "run",
            "--name",
            &id,
            "amphi-native",
            "/bin/write",
            "/made-here",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tar = dirs.tmp.path().join("export.tar");
    ok(&dirs, &["export", "-o", tar.to_str().unwrap(), &id]);
    ok(&dirs, &["rm", &id]);
    // The same tree exports to the same bytes (deterministic).
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "export is not sorted");
    assert!(names.iter().any(|n| n == "made-here"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/hello"), "{names:?}");
    ok(&dirs, &["image", "import", tar.to_str().unwrap(), "flat:1"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&dirs, &["image", "inspect", "flat:1"])).unwrap();
    // Docker's shape: an array of one.
    let inspect = &inspect[0];
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(inspect["Config"]["Cmd"].is_null() && inspect["Config"]["Env"].is_null());
    // No Cmd: a command must be given, as with Docker.
    assert_eq!(run(&dirs, "flat:1", &[]).status.code(), Some(125));
    assert_eq!(
        text(&run(&dirs, "flat:1", &["/bin/cat", "/etc/message"]).stdout),
        amphi_examples::MESSAGE
    );
    assert_eq!(
        run(&dirs, "flat:1", &["/bin/cat", "/made-here"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn image_rm_refuses_images_in_use_and_collects_garbage() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    let id = unique_id("keep");
    assert_eq!(
        amphi(&dirs, &["run", "--name", &id, "amphi-native", "/bin/true"])
            .status
            .code(),
        Some(0)
    );
    let out = amphi(&dirs, &["image", "rm", "amphi-native"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("used by a container"),
        "{}",
        text(&out.stderr)
    );
    ok(&dirs, &["rm", &id]);
    ok(&dirs, &["image", "rm", "amphi-native", "amphi-wasm"]);
    let blobs = std::fs::read_dir(dirs.store.join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs left after removing every image");
    let snaps: Vec<_> = std::fs::read_dir(dirs.store.join("images/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "l")
        .collect();
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
    let ls = ok(&dirs, &["image", "ls"]);
    assert_eq!(ls.lines().count(), 1, "{ls}");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn detached_containers_ps_logs_exec_kill_rm() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    let id = unique_id("det");
    // -d prints the new container's id (64 hex digits, as Docker's).
    let real = ok(
        &dirs,
        &["run", "-d", "--name", &id, "amphi-native", "/bin/busy"],
    )
    .trim()
    .to_string();
    assert!(
        real.len() == 64 && real.chars().all(|c| c.is_ascii_hexdigit()),
        "{real}"
    );
    let ps = ok(&dirs, &["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(ps.lines().any(|l| l == format!("{id} running")), "{ps}");
    wait_for("output in the log", || {
        ok(&dirs, &["logs", &id]).contains("spinning")
    });
    let exec = amphi(&dirs, &["exec", &id, "/bin/id"]);
    assert_eq!(exec.status.code(), Some(0));
    assert!(
        text(&exec.stdout).contains(&format!("hostname={}", &real[..12])),
        "{}",
        text(&exec.stdout)
    );
    assert_eq!(
        amphi(&dirs, &["exec", &id, "/bin/exit42"]).status.code(),
        Some(42)
    );
    // As Docker's: exit 1, one line saying why.
    let rm = amphi(&dirs, &["rm", &id]);
    assert_eq!(
        rm.status.code(),
        Some(1),
        "a running container was removed without -f"
    );
    assert!(
        text(&rm.stderr).contains("is running"),
        "{}",
        text(&rm.stderr)
    );
    assert_eq!(text(&rm.stderr).lines().count(), 1);
    // A unique id prefix names it too.
    assert_eq!(
        ok(&dirs, &["inspect", "-f", "{{.Id}}", &real[..5]]).trim(),
        real
    );
    ok(&dirs, &["kill", &id]);
    wait_for("the container to stop", || {
        ok(&dirs, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .lines()
            .any(|l| l.starts_with(&format!("{id} Exited (137)")))
    });
    ok(&dirs, &["rm", &id]);
    let cdir = dirs.store.join("containers").join(&real);
    assert!(!cdir.exists());
    assert_no_leaks(&real, &dirs.state, &dirs.store);

    // -d --rm: gone by itself once it exits.
    let id = unique_id("detrm");
    let real = ok(
        &dirs,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            &id,
            "amphi-native",
            "/bin/hello",
        ],
    );
    let real = real.trim().to_string();
    let cdir = dirs.store.join("containers").join(&real);
    wait_for("the container to be removed", || {
        !cdir.exists() && !dirs.state.join(&real).exists()
    });
    assert_no_leaks(&real, &dirs.state, &dirs.store);
}

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/install-deps installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn images_from_and_for_skopeo_and_umoci() {
    let dirs = TestDirs::new();
    let t = dirs.tmp.path();
    let oci = t.join("native.tar");
    amphi_examples::write_image(&oci, amphi_examples::Kind::Native, "amphi-native:latest").unwrap();
    // skopeo turns our OCI archive into a docker-archive (with its symlinked
    // layer dirs); it loads, runs, and has the same image ID.
    let docker = t.join("docker.tar");
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci-archive:{}", oci.display()),
            &format!("docker-archive:{}:from-skopeo:1", docker.display()),
        ],
    );
    let id_of = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("Loaded image ID"))
            .unwrap()
            .to_string()
    };
    let via_docker = ok(&dirs, &["image", "load", "-i", docker.to_str().unwrap()]);
    assert!(
        via_docker.contains("Loaded image: from-skopeo:1"),
        "{via_docker}"
    );
    let via_oci = ok(&dirs, &["image", "load", "-i", oci.to_str().unwrap()]);
    assert_eq!(id_of(&via_docker), id_of(&via_oci));
    assert_eq!(
        text(&run(&dirs, "from-skopeo:1", &[]).stdout),
        "Hello from native!\n"
    );
    // What `image save` writes is read by skopeo (both formats) and umoci.
    let saved = t.join("saved.tar");
    ok(
        &dirs,
        &[
            "image",
            "save",
            "-o",
            saved.to_str().unwrap(),
            "from-skopeo:1",
        ],
    );
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci-archive:{}", saved.display()),
            &format!("oci:{}:x", t.join("oci-dir").display()),
        ],
    );
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("docker-archive:{}", saved.display()),
            &format!("dir:{}", t.join("plain-dir").display()),
        ],
    );
    let layout = t.join("layout");
    std::fs::create_dir(&layout).unwrap();
    tar::Archive::new(std::fs::File::open(&saved).unwrap())
        .unpack(&layout)
        .unwrap();
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:1", layout.display()),
            t.join("bundle").to_str().unwrap(),
        ],
    );
    assert!(t.join("bundle/rootfs/bin/hello").is_file());
    // A layout directory skopeo wrote (recompressed layers) loads too.
    let again = ok(
        &dirs,
        &["image", "load", "-i", t.join("oci-dir").to_str().unwrap()],
    );
    assert_eq!(id_of(&again), id_of(&via_oci));
}

#[test]
fn concurrent_loads_sharing_layers_are_safe() {
    let dirs = TestDirs::new();
    let tars: Vec<_> = (0..4)
        .map(|i| {
            let p = dirs.tmp.path().join(format!("n{i}.tar"));
            amphi_examples::write_image(
                &p,
                amphi_examples::Kind::Native,
                &format!("same-layers:{i}"),
            )
            .unwrap();
            p
        })
        .collect();
    std::thread::scope(|s| {
        for tar in &tars {
            let dirs = &dirs;
            s.spawn(move || ok(dirs, &["image", "load", "-i", tar.to_str().unwrap()]));
        }
    });
    for i in 0..4 {
        assert_eq!(
            text(&run(&dirs, &format!("same-layers:{i}"), &[]).stdout),
            "Hello from native!\n"
        );
    }
    assert_eq!(
        std::fs::read_dir(dirs.store.join("images/tmp"))
            .unwrap()
            .count(),
        0,
        "staging left behind"
    );
}

/// A Wasm OCI artifact, as wasm-to-oci and the CNCF Wasm artifact layout
/// write it: the layer is the bare module (`application/wasm`, named by its
/// title annotation), the config has no rootfs and no process.
#[test]
fn wasm_oci_artifact_with_a_bare_module_layer_runs() {
    let dirs = TestDirs::new();
    let module = amphi_examples::WASM
        .iter()
        .find(|(n, _)| *n == "hello")
        .unwrap()
        .1;
    let module_digest = amphi_images::digest::of(module);
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [module_digest],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.wasm.config.v0+json",
            "digest": amphi_images::digest::of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/wasm",
            "digest": module_digest,
            "size": module.len(),
            "annotations": {"org.opencontainers.image.title": "hello.wasm"},
        }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": amphi_images::digest::of(&manifest),
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/artifact:1"},
        }],
    }))
    .unwrap();
    let tar = dirs.tmp.path().join("artifact.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    let mut add = |path: String, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        t.append_data(&mut h, path, bytes).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    for blob in [module, &config[..], &manifest[..]] {
        let d = amphi_images::digest::of(blob);
        add(format!("blobs/sha256/{}", &d[7..]), blob);
    }
    add("index.json".into(), &index);
    t.finish().unwrap();
    drop(t);
    let out = ok(&dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: artifact:1"), "{out}");
    let out = run(&dirs, "artifact:1", &[]);
    assert_eq!(
        text(&out.stdout),
        "Hello from Wasm!\n",
        "{}",
        text(&out.stderr)
    );
    // save -> load keeps it, bare module layer and all.
    let saved = dirs.tmp.path().join("saved.tar");
    ok(
        &dirs,
        &["image", "save", "-o", saved.to_str().unwrap(), "artifact:1"],
    );
    let other = TestDirs::new();
    ok(&other, &["image", "load", "-i", saved.to_str().unwrap()]);
    assert_eq!(
        text(&run(&other, "artifact:1", &[]).stdout),
        "Hello from Wasm!\n"
    );
}

#[test]
fn flags_before_the_image_are_amphis_and_after_it_the_commands() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    // An unknown flag is a one-line error naming it, never an image name.
    for (bad, names) in [
        (&["run", "--bogus", "amphi-native"][..], "'--bogus'"),
        (&["run", "-ix", "amphi-native", "sh"][..], "'-x'"),
    ] {
        let out = amphi(&dirs, bad);
        assert_eq!(out.status.code(), Some(125), "{bad:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(names), "{err}");
        assert!(!err.contains("no image"), "{err}");
    }
    // After the image, flags (amphi's own among them) are the command's.
    let out = run(
        &dirs,
        "amphi-native",
        &["/bin/args_env", "-la", "--rm", "-e", "X=1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let args: Vec<&str> = stdout.lines().take(5).collect();
    assert_eq!(
        args,
        ["/bin/args_env", "-la", "--rm", "-e", "X=1"],
        "{stdout}"
    );
    // `-e X=1` after the image set no variable.
    assert!(!stdout.lines().skip(5).any(|l| l == "X=1"), "{stdout}");
}

/// A rootfs tar as a Debian bootstrap tool writes one, device nodes in
/// /dev: it imports and runs, and a node for the host's disk in it still
/// cannot be opened (the devices cgroup decides, not the tar).
#[test]
fn rootfs_tar_with_device_nodes_imports_and_runs() {
    let dirs = TestDirs::new();
    let (major, minor) = amphi_testkit::host_block_device();
    let tar_path = dirs.tmp.path().join("rootfs.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    for d in ["bin/", "dev/", "etc/"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (name, kind, ma, mi) in [
        ("dev/null", tar::EntryType::Char, 1, 3),
        ("dev/zero", tar::EntryType::Char, 1, 5),
        ("dev/full", tar::EntryType::Char, 1, 7),
        ("dev/tty", tar::EntryType::Char, 5, 0),
        (
            "disk",
            tar::EntryType::Block,
            major.parse().unwrap(),
            minor.parse().unwrap(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_device_major(ma).unwrap();
        h.set_device_minor(mi).unwrap();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    for (n, bytes) in amphi_examples::NATIVE {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        b.append_data(&mut h, format!("bin/{n}"), *bytes).unwrap();
    }
    b.into_inner().unwrap();
    ok(
        &dirs,
        &["image", "import", tar_path.to_str().unwrap(), "debianish:1"],
    );
    let out = run(
        &dirs,
        "debianish:1",
        &["/bin/devices", "/disk", "b", &major, &minor],
    );
    assert_eq!(
        text(&out.stdout),
        "mknod: exists\nopen: Operation not permitted\nnull: ok\n",
        "{}",
        text(&out.stderr)
    );
}

/// Docker's default seccomp profile, as `amphi run` applies it to images.
#[test]
fn secure_by_default_seccomp_and_capabilities() {
    let dirs = TestDirs::new();
    load_examples(&dirs);
    let syscall = |flags: &[&str], nr: i64, args: &[&str]| {
        let id = unique_id("sec");
        let nr = nr.to_string();
        let mut v = vec!["run", "--rm", "--name", &id];
        v.extend(flags);
        v.extend(["amphi-native", "/bin/syscall", &nr]);
        v.extend(args);
        let out = amphi(&dirs, &v);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let eperm = "errno 1 (Operation not permitted)\n";
    let newuser = (libc::CLONE_NEWUSER as i64).to_string();
    // Refused by the profile ...
    assert_eq!(syscall(&[], libc::SYS_add_key, &[]), eperm);
    assert_eq!(syscall(&[], libc::SYS_keyctl, &[]), eperm);
    assert_eq!(syscall(&[], libc::SYS_unshare, &[&newuser]), eperm);
    assert_eq!(syscall(&[], libc::SYS_mount, &[]), eperm);
    assert_eq!(syscall(&[], libc::SYS_kexec_load, &[]), eperm);
    // ... which is what refused them: unconfined, they reach the kernel.
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    assert_eq!(
        syscall(&unconfined, libc::SYS_add_key, &[]),
        "errno 14 (Bad address)\n"
    );
    assert_eq!(syscall(&unconfined, libc::SYS_unshare, &[&newuser]), "ok\n");
    // A capability added lifts its calls too (mount reaches the kernel).
    assert_eq!(
        syscall(&["--cap-add", "SYS_ADMIN"], libc::SYS_mount, &[]),
        "errno 14 (Bad address)\n"
    );
    // A profile file of the user's (Docker's format).
    let file = dirs.tmp.path().join("profile.json");
    std::fs::write(
        &file,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", file.display());
    assert_eq!(
        syscall(&["--security-opt", &opt], libc::SYS_getppid, &[]),
        eperm
    );
    assert_eq!(
        syscall(&["--security-opt", &opt], libc::SYS_add_key, &[]),
        "errno 14 (Bad address)\n"
    );
    // Wasm runs under the default profile.
    let out = run(&dirs, "amphi-wasm", &[]);
    assert_eq!(
        text(&out.stdout),
        "Hello from Wasm!\n",
        "{}",
        text(&out.stderr)
    );
    // --cap-drop ALL leaves nothing; no-new-privileges is set.
    let out = run(&dirs, "amphi-native", &["/bin/cat", "/proc/self/status"]);
    assert!(
        !text(&out.stdout).contains("CapEff:\t0000000000000000"),
        "{}",
        text(&out.stdout)
    );
    let id = unique_id("caps");
    let out = amphi(
        &dirs,
        &[
            "run",
            "--rm",
            "--name",
            &id,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "amphi-native",
            "/bin/cat",
            "/proc/self/status",
        ],
    );
    let status = text(&out.stdout);
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
}
