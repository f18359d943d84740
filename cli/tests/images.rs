//! `amphi image pack | save | ls` against a per-test store.

mod common;

use amphi_testkit::TestDirs;
use common::{amphi, amphi_cmd, text};

/// Every file under the store, with its bytes: "byte-for-byte unchanged".
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn pack_ls_save() {
    let dirs = TestDirs::new();
    let module = hello_module(&dirs);
    let out = amphi(
        &dirs,
        &[
            "image",
            "pack",
            "--wasm",
            module.to_str().unwrap(),
            "-t",
            "hello:v1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Packed image: hello:v1"), "{stdout}");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Image ID: sha256:"))
        .unwrap()
        .to_string();
    // Packing the same module again gives the same image.
    let again = amphi(
        &dirs,
        &[
            "image",
            "pack",
            "--wasm",
            module.to_str().unwrap(),
            "-t",
            "hello:v2",
        ],
    );
    assert!(text(&again.stdout).contains(&id));
    let ls = text(&amphi(&dirs, &["image", "ls"]).stdout);
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().take(3).eq(["hello", "v1", &id[..12]])),
        "{ls}"
    );
    let archive = dirs.tmp.path().join("out.tar");
    let save = amphi(
        &dirs,
        &[
            "image",
            "save",
            "-o",
            archive.to_str().unwrap(),
            "hello:v1",
            "hello:v2",
        ],
    );
    assert!(save.status.success(), "{}", text(&save.stderr));
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"index.json".to_string())
            && names.contains(&"manifest.json".to_string())
            && names.contains(&"oci-layout".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&format!("blobs/sha256/{id}")), "{names:?}");
}

#[test]
fn bad_input_leaves_the_store_unchanged() {
    let dirs = TestDirs::new();
    let module = dirs.tmp.path().join("hello.wasm");
    std::fs::write(&module, amphi_examples::WASM[0].1).unwrap();
    assert!(amphi(
        &dirs,
        &[
            "image",
            "pack",
            "--wasm",
            module.to_str().unwrap(),
            "-t",
            "ok"
        ]
    )
    .status
    .success());
    let before = snapshot(&dirs.store);
    let fake = dirs.tmp.path().join("fake.wasm");
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    let missing_out = dirs.tmp.path().join("x.tar");
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "image",
                "pack",
                "--wasm",
                fake.to_str().unwrap(),
                "-t",
                "fake",
            ],
            "not a WebAssembly module",
        ),
        (
            &[
                "image",
                "pack",
                "--wasm",
                module.to_str().unwrap(),
                "-t",
                "Bad Ref",
            ],
            "invalid reference",
        ),
        (
            &[
                "image",
                "save",
                "-o",
                missing_out.to_str().unwrap(),
                "missing:v9",
            ],
            "no image missing:v9",
        ),
        (
            &["image", "pack", "--wasm", "/nonexistent.wasm", "-t", "x"],
            "/nonexistent.wasm",
        ),
    ];
    for (args, expect) in cases {
        let out = amphi(&dirs, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert_eq!(snapshot(&dirs.store), before, "{args:?} changed the store");
    }
    assert!(!dirs.tmp.path().join("x.tar").exists());
    assert!(!dirs.tmp.path().join("x.amphi-partial").exists());
}

#[test]
fn load_reads_an_archive_from_stdin() {
    let dirs = TestDirs::new();
    let tar = dirs.tmp.path().join("native.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Native, "from-stdin:1").unwrap();
    let out = amphi_cmd(&dirs, &["image", "load", "-i", "-"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Loaded image: from-stdin:1"));
    // The spooled copy is gone.
    let tmp = dirs.store.join("images/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "spool left in {tmp:?}"
    );
    // Garbage on stdin: a clear error, nothing stored.
    let garbage = dirs.tmp.path().join("garbage");
    std::fs::write(&garbage, b"not an archive\n".repeat(100)).unwrap();
    let out = amphi_cmd(&dirs, &["image", "load", "-i", "-"])
        .stdin(std::fs::File::open(&garbage).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn docker_shorthands_of_image_commands() {
    let dirs = TestDirs::new();
    let module = hello_module(&dirs);
    let ok = |args: &[&str]| {
        let out = amphi(&dirs, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&[
        "image",
        "pack",
        "--wasm",
        module.to_str().unwrap(),
        "-t",
        "hello:v1",
    ]);
    let archive = dirs.tmp.path().join("saved.tar");
    // `docker save`, `rmi`, `load`, `images`; global options may come first.
    let root = dirs.store.to_str().unwrap();
    ok(&[
        "--root",
        root,
        "save",
        "-o",
        archive.to_str().unwrap(),
        "hello:v1",
    ]);
    ok(&["rmi", "hello:v1"]);
    assert!(!ok(&["images"]).lines().any(|l| l.starts_with("hello ")));
    ok(&[
        &format!("--root={root}"),
        "load",
        "-i",
        archive.to_str().unwrap(),
    ]);
    let ls = ok(&["images"]);
    assert!(
        ls.starts_with("REPOSITORY") && ls.lines().any(|l| l.starts_with("hello ")),
        "{ls}"
    );
    // Docker's scripting forms: unique ids, templates, a repository filter.
    ok(&["tag", "hello:v1", "hello:again"]);
    // `image tag` and `system info` are Docker's longer forms of the verbs.
    ok(&["image", "tag", "hello:v1", "hello:third"]);
    assert_eq!(
        ok(&["system", "info", "--format", "{{.Images}}"]).trim(),
        "1"
    );
    ok(&["rmi", "hello:third"]);
    let ids = ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "one image under two tags: {ids}");
    let names = ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["hello:again", "hello:v1"]);
    let only = ok(&["images", "hello:v1"]);
    assert_eq!(only.lines().count(), 2, "{only}");
    assert_eq!(ok(&["images", "nothing-here"]).lines().count(), 1);
    let full = ok(&["images", "-q", "--no-trunc"]);
    assert!(
        full.starts_with("sha256:") && full.trim().len() == 71,
        "{full}"
    );
    // What `image ls` refuses, `images` refuses in the same words.
    let out = amphi(&dirs, &["images", "--bogus"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--bogus"),
        "{}",
        text(&out.stderr)
    );
}

/// The hello example module, written into the test's temp dir.
fn hello_module(dirs: &TestDirs) -> std::path::PathBuf {
    let module = dirs.tmp.path().join("hello.wasm");
    let hello = amphi_examples::WASM
        .iter()
        .find(|(n, _)| *n == "hello")
        .unwrap()
        .1;
    std::fs::write(&module, hello).unwrap();
    module
}
