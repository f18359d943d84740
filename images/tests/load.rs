//! Loading archives: round trips, formats, whiteouts, and hostile input,
//! each hostile case rejected with one line and the store byte-for-byte
//! unchanged. Runs as root (device nodes, xattrs, chown).

use std::io::Write;
use std::path::Path;

use amphi_images::layer::LayerBuilder;
use amphi_images::load::{load_tar, LoadLimits, Progress};
use amphi_images::snapshot::{chain_ids, Snapshots};
use amphi_images::{archive, digest, pack, Store};
use serde_json::{json, Value};

/// One raw tar entry, written without the tar crate's path checks, so
/// tests can craft what an attacker would.
fn raw(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8], mode: u32) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |v: u64, width: usize| format!("{v:0w$o}\0", w = width - 1);
    h[100..108].copy_from_slice(octal(mode as u64, 8).as_bytes());
    h[108..116].copy_from_slice(octal(0, 8).as_bytes());
    h[116..124].copy_from_slice(octal(0, 8).as_bytes());
    h[124..136].copy_from_slice(octal(data.len() as u64, 12).as_bytes());
    h[136..148].copy_from_slice(octal(0, 12).as_bytes());
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    t.extend_from_slice(&[0u8; 1024]);
    t
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An OCI archive of one image from raw layer blobs (blob, uncompressed).
fn oci_archive(
    layers: &[(Vec<u8>, Vec<u8>)],
    name: &str,
    tweak: impl FnOnce(&mut Value, &mut Value, &mut Vec<(String, Vec<u8>)>),
) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, u)| digest::of(u)).collect::<Vec<_>>()}});
    let mut manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": layers.iter().map(|(b, u)| json!({
            "mediaType": if b == u { "application/vnd.oci.image.layer.v1.tar" } else { "application/vnd.oci.image.layer.v1.tar+gzip" },
            "digest": digest::of(b), "size": b.len()})).collect::<Vec<_>>()});
    for (b, _) in layers {
        files.push((format!("blobs/sha256/{}", &digest::of(b)[7..]), b.clone()));
    }
    tweak(&mut config, &mut manifest, &mut files);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"] = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest::of(&config_bytes), "size": config_bytes.len()});
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    files.push((
        format!("blobs/sha256/{}", &digest::of(&config_bytes)[7..]),
        config_bytes,
    ));
    files.push((
        format!("blobs/sha256/{}", &digest::of(&manifest_bytes)[7..]),
        manifest_bytes.clone(),
    ));
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest::of(&manifest_bytes), "size": manifest_bytes.len(), "annotations": {"io.containerd.image.name": name}}]});
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    let mut t = Vec::new();
    for (p, b) in &files {
        raw(&mut t, p, b'0', "", b, 0o644);
    }
    finish(t)
}

/// Every file and symlink under `dir` with its content: "byte-for-byte".
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.push((p.to_string_lossy().into_owned() + "/", Vec::new()));
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.push((
                    p.to_string_lossy().into_owned(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec(),
                ));
            } else {
                out.push((
                    p.to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn load(store: &Store, bytes: &[u8]) -> amphi_images::Result<Vec<amphi_images::load::LoadedImage>> {
    load_tar(store, bytes, &LoadLimits::default(), &mut quiet())
}

fn simple_layer() -> Vec<u8> {
    let mut t = Vec::new();
    raw(&mut t, "etc/", b'5', "", b"", 0o755);
    raw(&mut t, "etc/hello", b'0', "", b"hi\n", 0o644);
    finish(t)
}

#[test]
fn save_then_load_keeps_the_image_id() {
    let a = tempfile::tempdir().unwrap();
    let src = Store::open(a.path()).unwrap();
    let mut l = LayerBuilder::new();
    l.file("bin/app", 0o755, b"#!/bin/true\n").unwrap();
    let ids = pack::write_image(
        &src,
        &[l.build().unwrap()],
        json!({"architecture": "amd64", "os": "linux"}),
        None,
    )
    .unwrap();
    src.tag("app:v1", &ids.manifest).unwrap();
    let mut tar = Vec::new();
    archive::save(&src, &["app:v1".into()], &mut tar).unwrap();
    let b = tempfile::tempdir().unwrap();
    let dst = Store::open(b.path()).unwrap();
    let loaded = load(&dst, &tar).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, ids.config);
    assert_eq!(loaded[0].manifest, ids.manifest);
    assert_eq!(dst.resolve("app:v1").unwrap(), ids.manifest);
    // Loading again reuses every layer.
    let again = load(&dst, &tar).unwrap();
    assert!(again[0].layers.iter().all(|l| l.reused));
    let snaps = Snapshots::open(b.path()).unwrap();
    let diff = digest::of(
        &LayerBuilder::new()
            .file("bin/app", 0o755, b"#!/bin/true\n")
            .unwrap()
            .build()
            .unwrap(),
    );
    let chain = &chain_ids(&[diff])[0];
    assert!(snaps.fs_path(chain).unwrap().join("bin/app").is_file());
    assert_eq!(
        std::fs::read_dir(b.path().join("tmp")).unwrap().count(),
        0,
        "staging left behind"
    );
    // A blob damaged on disk is caught on its way out, not passed on.
    let layer_blob = dst.blob_path(&again[0].layers[0].digest).unwrap();
    let mut bytes = std::fs::read(&layer_blob).unwrap();
    bytes[700] ^= 1;
    std::fs::write(&layer_blob, bytes).unwrap();
    let err = archive::save(&dst, &["app:v1".into()], std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

#[test]
fn docker_legacy_archive_gives_the_same_image_id() {
    let layer = simple_layer();
    let oci = oci_archive(&[(layer.clone(), layer.clone())], "img:1", |_, _, _| {});
    let d1 = tempfile::tempdir().unwrap();
    let s1 = Store::open(d1.path()).unwrap();
    let id = load(&s1, &oci).unwrap()[0].id.clone();
    // The same image as `docker save` (legacy form) writes it.
    let config = s1.read_blob(&id).unwrap();
    let mut t = Vec::new();
    let cfg_name = format!("{}.json", &id[7..]);
    raw(&mut t, &cfg_name, b'0', "", &config, 0o644);
    raw(&mut t, "abc123/", b'5', "", b"", 0o755);
    raw(&mut t, "abc123/layer.tar", b'0', "", &layer, 0o644);
    let manifest =
        json!([{"Config": cfg_name, "RepoTags": ["img:1"], "Layers": ["abc123/layer.tar"]}]);
    raw(
        &mut t,
        "manifest.json",
        b'0',
        "",
        &serde_json::to_vec(&manifest).unwrap(),
        0o644,
    );
    raw(
        &mut t,
        "repositories",
        b'0',
        "",
        br#"{"img":{"1":"abc123"}}"#,
        0o644,
    );
    let d2 = tempfile::tempdir().unwrap();
    let s2 = Store::open(d2.path()).unwrap();
    let loaded = load(&s2, &finish(t)).unwrap();
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].refs, vec!["docker.io/library/img:1".to_string()]);
}

#[test]
fn gzip_layers_and_whiteouts() {
    let mut t = Vec::new();
    raw(&mut t, "dir/", b'5', "", b"", 0o755);
    raw(&mut t, "dir/.wh..wh..opq", b'0', "", b"", 0o644);
    raw(&mut t, ".wh.gone", b'0', "", b"", 0o644);
    raw(&mut t, "kept", b'0', "", b"x", 0o644);
    let layer = finish(t);
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let arch = oci_archive(&[(gzip(&layer), layer.clone())], "wh:1", |_, _, _| {});
    load(&s, &arch).unwrap();
    let fs = Snapshots::open(d.path())
        .unwrap()
        .fs_path(&digest::of(&layer))
        .unwrap();
    use std::os::unix::fs::FileTypeExt;
    let gone = std::fs::symlink_metadata(fs.join("gone")).unwrap();
    assert!(
        gone.file_type().is_char_device(),
        "whiteout is not a char device"
    );
    let mut v = [0u8; 4];
    let c = std::ffi::CString::new(fs.join("dir").to_str().unwrap()).unwrap();
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            4,
        )
    };
    assert_eq!(n, 1);
    assert_eq!(v[0], b'y');
}

/// A hostile archive: rejected with one line naming `expect`, the store
/// byte-for-byte unchanged and nothing written outside it.
fn rejects(archive: Vec<u8>, expect: &str) {
    rejects_with(archive, expect, LoadLimits::default());
}

fn rejects_with(archive: Vec<u8>, expect: &str, limits: LoadLimits) {
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("store")).unwrap();
    // A first, good image, so "unchanged" covers a populated store.
    let good = simple_layer();
    load(
        &store,
        &oci_archive(&[(good.clone(), good)], "good:1", |_, _, _| {}),
    )
    .unwrap();
    let before = snapshot(d.path());
    let err = load_tar(&store, archive.as_slice(), &limits, &mut quiet())
        .expect_err("hostile archive loaded")
        .to_string();
    assert!(
        err.contains(expect),
        "error {err:?} does not say {expect:?}"
    );
    assert!(!err.contains('\n'), "{err:?}");
    assert_eq!(snapshot(d.path()), before, "the store changed");
}

fn one_layer(layer: Vec<u8>) -> Vec<u8> {
    oci_archive(&[(layer.clone(), layer)], "evil:1", |_, _, _| {})
}

#[test]
fn hostile_digests_and_sizes() {
    let layer = simple_layer();
    rejects(
        oci_archive(
            &[(layer.clone(), layer.clone())],
            "evil:1",
            |_, _, files| files[0].1[600] ^= 1,
        ),
        "digest mismatch",
    );
    rejects(
        oci_archive(&[(layer.clone(), layer.clone())], "evil:1", |c, _, _| {
            c["rootfs"]["diff_ids"][0] = json!(digest::of(b"other"))
        }),
        "does not match diff ID",
    );
    rejects(
        oci_archive(&[(layer.clone(), layer.clone())], "evil:1", |_, m, _| {
            m["layers"][0]["size"] = json!(layer.len() - 512)
        }),
        "its descriptor says",
    );
    // Truncated gzip: of a layer the store knows (verified without
    // unpacking) and of a new one (caught while unpacking).
    let gz = gzip(&layer);
    rejects(
        oci_archive(
            &[(gz[..gz.len() / 2].to_vec(), layer.clone())],
            "evil:1",
            |_, _, _| {},
        ),
        "corrupt",
    );
    let mut t = Vec::new();
    raw(&mut t, "new-file", b'0', "", &[7u8; 5000], 0o644);
    let fresh = finish(t);
    let gz = gzip(&fresh);
    rejects(
        oci_archive(
            &[(gz[..gz.len() / 2].to_vec(), fresh.clone())],
            "evil:1",
            |_, _, _| {},
        ),
        "layer",
    );
    rejects(
        b"this is not an archive at all, just garbage bytes".repeat(20),
        "archive",
    );
    rejects(
        oci_archive(&[(layer.clone(), layer.clone())], "evil:1", |c, m, _| {
            let l = m["layers"][0].clone();
            m["layers"] = json!(vec![l; 1000]);
            c["rootfs"]["diff_ids"] = json!(vec![digest::of(&layer); 1000]);
        }),
        "more than the limit",
    );
}

#[test]
fn hostile_paths() {
    let mut t = Vec::new();
    raw(&mut t, "../escaped", b'0', "", b"x", 0o644);
    rejects(one_layer(finish(t)), "escapes the layer");
    let mut t = Vec::new();
    raw(&mut t, "/abs", b'0', "", b"x", 0o644);
    rejects(one_layer(finish(t)), "absolute path");
    // SymlinkAbsolute / a file written through a symlink pointing out.
    let outside = tempfile::tempdir().unwrap();
    let mut t = Vec::new();
    raw(
        &mut t,
        "link",
        b'2',
        outside.path().to_str().unwrap(),
        b"",
        0o777,
    );
    raw(&mut t, "link/pwned", b'0', "", b"x", 0o644);
    rejects(one_layer(finish(t)), "symlink");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the snapshot"
    );
    // HardlinkRelativeLong.
    let mut t = Vec::new();
    raw(
        &mut t,
        "hl",
        b'1',
        "../../../../../../etc/passwd",
        b"",
        0o644,
    );
    rejects(one_layer(finish(t)), "hardlink");
    let mut t = Vec::new();
    raw(&mut t, "hl", b'1', "/etc/passwd", b"", 0o644);
    rejects(one_layer(finish(t)), "hardlink");
    // WhiteoutRootParent and friends.
    for name in [".wh..", ".wh...", "dir/.wh.."] {
        let mut t = Vec::new();
        raw(&mut t, name, b'0', "", b"", 0o644);
        rejects(one_layer(finish(t)), "whiteout of an invalid name");
    }
    // A symlink named "." (replacing the root).
    let mut t = Vec::new();
    raw(&mut t, ".", b'2', "/etc", b"", 0o777);
    rejects(one_layer(finish(t)), "replaces the layer root");
}

/// Sets a raw entry's device numbers (ustar devmajor/devminor), fixing
/// its checksum.
fn set_device(t: &mut [u8], major: u32, minor: u32) {
    let start = t.len() - 512;
    let octal = |v: u32| format!("{v:07o}\0");
    t[start + 329..start + 337].copy_from_slice(octal(major).as_bytes());
    t[start + 337..start + 345].copy_from_slice(octal(minor).as_bytes());
    set_device_checksum(t);
}

#[test]
fn device_nodes_and_fifos_are_made_as_containerd_makes_them() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let mut t = Vec::new();
    raw(&mut t, "dev/", b'5', "", b"", 0o755);
    for (name, kind, major, minor, mode) in [
        ("dev/null", b'3', 1, 3, 0o666),
        ("dev/zero", b'3', 1, 5, 0o666),
        ("dev/full", b'3', 1, 7, 0o666),
        ("dev/tty", b'3', 5, 0, 0o666),
        ("dev/sda", b'4', 8, 0, 0o660),
    ] {
        raw(&mut t, name, kind, "", b"", mode);
        set_device(&mut t, major, minor);
    }
    raw(&mut t, "run/fifo", b'6', "", b"", 0o640);
    let layer = finish(t);
    let d = tempfile::tempdir().unwrap();
    let fs = unpacked(d.path(), layer);
    let node = |p: &str| std::fs::symlink_metadata(fs.join(p)).unwrap();
    for (name, major, minor) in [
        ("dev/null", 1, 3),
        ("dev/zero", 1, 5),
        ("dev/full", 1, 7),
        ("dev/tty", 5, 0),
    ] {
        let m = node(name);
        assert!(m.file_type().is_char_device(), "{name}");
        assert_eq!(
            (libc::major(m.rdev()), libc::minor(m.rdev())),
            (major, minor),
            "{name}"
        );
        assert_eq!(m.permissions().mode() & 0o777, 0o666, "{name}");
    }
    let sda = node("dev/sda");
    assert!(sda.file_type().is_block_device());
    assert_eq!(sda.permissions().mode() & 0o777, 0o660);
    assert!(node("run/fifo").file_type().is_fifo());
    // A device entry without valid numbers is still refused.
    let mut t = Vec::new();
    raw(&mut t, "dev/bad", b'3', "", b"", 0o600);
    let h = t.len() - 512;
    t[h + 329..h + 337].copy_from_slice(b"zzzzzzz\0");
    set_device_checksum(&mut t);
    rejects(one_layer(finish(t)), "device node without a valid number");
}

/// Recomputes the checksum of the last raw entry's header.
fn set_device_checksum(t: &mut [u8]) {
    let start = t.len() - 512;
    let h = &mut t[start..];
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn decompression_bomb_is_bounded() {
    let mut t = Vec::new();
    raw(&mut t, "zeros", b'0', "", &vec![0u8; 64 << 20], 0o644);
    let layer = finish(t);
    let bomb = gzip(&layer);
    assert!(bomb.len() < 1 << 20);
    let mut limits = LoadLimits::default();
    limits.layer.max_bytes = 8 << 20;
    rejects_with(
        oci_archive(&[(bomb, layer)], "bomb:1", |_, _, _| {}),
        "unpacks to more than",
        limits,
    );
}

fn quiet() -> Progress<'static> {
    Progress {
        bytes: &|_| {},
        layer: Box::leak(Box::new(|_: &amphi_images::load::LayerReport| {})),
    }
}

/// A PAX extended header's data: `LEN KEY=VALUE\n` records.
fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let got =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (got >= 0).then(|| buf[..got as usize].to_vec())
}

/// cap_net_raw+ep as the kernel stores it (vfs_cap_data, revision 2).
fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&[0u8; 8]);
    v
}

#[test]
fn file_capabilities_and_xattrs_survive_but_not_overlay_metadata() {
    let cap = cap_net_raw();
    let mut t = Vec::new();
    raw(&mut t, "bin/", b'5', "", b"", 0o755);
    let pax = pax_records(&[
        ("SCHILY.xattr.security.capability", &cap),
        ("SCHILY.xattr.user.origin", b"layer"),
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.trusted.overlay.metacopy", b""),
    ]);
    raw(&mut t, "PaxHeaders/ping", b'x', "", &pax, 0o644);
    raw(&mut t, "bin/ping", b'0', "", b"#!/bin/sh\n", 0o755);
    // user.* cannot be set on a symlink: skipped, as containerd does.
    let pax = pax_records(&[("SCHILY.xattr.user.origin", b"layer")]);
    raw(&mut t, "PaxHeaders/link", b'x', "", &pax, 0o644);
    raw(&mut t, "bin/link", b'2', "ping", b"", 0o777);
    let layer = finish(t);
    let d = tempfile::tempdir().unwrap();
    let fs = unpacked(d.path(), layer);
    let ping = fs.join("bin/ping");
    // Set after the chown and chmod, which would clear it.
    assert_eq!(xattr_of(&ping, "security.capability"), Some(cap.clone()));
    assert_eq!(std::fs::read(&ping).unwrap(), b"#!/bin/sh\n");
    assert_eq!(xattr_of(&ping, "trusted.overlay.redirect"), None);
    assert_eq!(xattr_of(&ping, "trusted.overlay.metacopy"), None);
    if xattr_of(&ping, "user.origin").is_some() {
        assert_eq!(xattr_of(&ping, "user.origin"), Some(b"layer".to_vec()));
    }
    assert_eq!(
        std::fs::read_link(fs.join("bin/link")).unwrap(),
        Path::new("ping")
    );
    // export / commit write them back out as PAX records.
    let mut out = Vec::new();
    amphi_images::layer::tar_tree(&fs, &mut out).unwrap();
    let mut a = tar::Archive::new(out.as_slice());
    let mut found = None;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("bin/ping") {
            found = e.pax_extensions().unwrap().and_then(|p| {
                p.map(|r| r.unwrap())
                    .find(|r| r.key() == Ok("SCHILY.xattr.security.capability"))
                    .map(|r| r.value_bytes().to_vec())
            });
        }
    }
    assert_eq!(found, Some(cap));

    // A capability the kernel cannot parse is refused, naming the entry.
    let mut t = Vec::new();
    let pax = pax_records(&[("SCHILY.xattr.security.capability", b"bad")]);
    raw(&mut t, "PaxHeaders/f", b'x', "", &pax, 0o644);
    raw(&mut t, "f", b'0', "", b"x", 0o755);
    rejects(
        one_layer(finish(t)),
        "extended attribute security.capability",
    );
}

#[test]
fn gnu_sparse_files_and_pax_global_headers_unpack() {
    use std::io::{Seek, SeekFrom};
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut f = std::fs::File::create(src.join("lastlog")).unwrap();
    f.write_all(b"head").unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"tail").unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    // GNU tar's own sparse format, as `tar --sparse` writes a rootfs.
    let tar_file = d.path().join("sparse.tar");
    let st = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&tar_file)
        .arg("-C")
        .arg(&src)
        .arg("lastlog")
        .status()
        .unwrap();
    assert!(st.success());
    let gnu = std::fs::read(&tar_file).unwrap();
    assert_eq!(gnu[156], b'S', "tar wrote no GNU sparse entry");
    // Led by a PAX global header, as `git archive` writes one.
    let mut layer = Vec::new();
    let global = pax_records(&[("comment", b"0123abcd")]);
    raw(&mut layer, "pax_global_header", b'g', "", &global, 0o666);
    layer.extend_from_slice(&gnu);
    let fs = unpacked(&d.path().join("store"), layer);
    let got = std::fs::read(fs.join("lastlog")).unwrap();
    assert_eq!(got.len(), 3 << 20);
    assert_eq!(&got[..4], b"head");
    assert_eq!(&got[1 << 20..(1 << 20) + 4], b"tail");
    assert!(got[4..1 << 20].iter().all(|b| *b == 0));
    assert!(!fs.join("pax_global_header").exists());
}

/// Loads an image of the one layer `layer` into a store at `dir`; the
/// layer's unpacked snapshot.
fn unpacked(dir: &Path, layer: Vec<u8>) -> std::path::PathBuf {
    let s = Store::open(dir).unwrap();
    load(&s, &one_layer(layer.clone())).unwrap();
    Snapshots::open(dir)
        .unwrap()
        .fs_path(&digest::of(&layer))
        .unwrap()
}

#[test]
fn directories_keep_their_times_though_entries_are_made_in_them() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    // simple_layer's entries all carry mtime 0; etc/ comes before its file.
    let fs = unpacked(d.path(), simple_layer());
    assert_eq!(std::fs::metadata(fs.join("etc")).unwrap().mtime(), 0);
    assert_eq!(std::fs::metadata(fs.join("etc/hello")).unwrap().mtime(), 0);
}
