//! OCI image archives of the examples, for tools that import images
//! (`ctr images import`): an OCI layout in a tar, one uncompressed layer.
//!
//! The native image holds every native example under /bin (Entrypoint
//! /bin/hello); the Wasm image is shaped as the Wasm ecosystem ships them:
//! platform wasip1/wasm, the module at /app.wasm (hello) as Entrypoint, and
//! the other example modules beside it.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Kind, MESSAGE, NATIVE, WASM};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A deterministic layer tar of `(path, mode, bytes)` files.
fn layer(files: &[(String, u32, &[u8])]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, _, _) in files {
        let mut acc = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()).collect::<Vec<_>>().iter().rev().skip(1).rev() {
            acc = format!("{acc}{part}/");
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    dirs.sort();
    for d in dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, &d, std::io::empty())?;
    }
    let mut sorted: Vec<&(String, u32, &[u8])> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, mode, bytes) in sorted {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path.trim_start_matches('/'), *bytes)?;
    }
    Ok(b.into_inner()?)
}

/// Writes an OCI image archive of the `kind` examples to `out`, named `name`
/// (e.g. `docker.io/library/amphi-wasm:latest`).
pub fn write_image(out: &Path, kind: Kind, name: &str) -> Result<()> {
    let mut files: Vec<(String, u32, &[u8])> = vec![("etc/message".into(), 0o644, MESSAGE.as_bytes())];
    let (os, arch, entrypoint) = match kind {
        Kind::Native => {
            files.extend(NATIVE.iter().map(|(n, b)| (format!("bin/{n}"), 0o755, *b)));
            ("linux", "amd64", "/bin/hello")
        }
        Kind::Wasm => {
            files.extend(WASM.iter().map(|(n, b)| (format!("{n}.wasm"), 0o644, *b)));
            let hello = WASM.iter().find(|(n, _)| *n == "hello").unwrap().1;
            files.push(("app.wasm".into(), 0o644, hello));
            ("wasip1", "wasm", "/app.wasm")
        }
    };
    let layer = layer(&files)?;
    let layer_digest = digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "config": {"Entrypoint": [entrypoint], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "amphi-examples"}]
    }))?;
    let layer_media = "application/vnd.oci.image.layer.v1.tar";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": layer_media, "digest": layer_digest, "size": layer.len()}]
    }))?;
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": os},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
        }]
    }))?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut t = tar::Builder::new(file);
    let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        t.append_data(&mut h, path, bytes)?;
        Ok(())
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for blob in [&config[..], &manifest[..], &layer[..]] {
        add(&format!("blobs/sha256/{}", &digest(blob)[7..]), blob)?;
    }
    t.into_inner()?;
    Ok(())
}
