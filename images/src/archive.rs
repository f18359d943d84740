//! Image archives out (`image save`): one tar that is both an OCI image
//! layout (oci-layout, index.json, blobs/) and a Docker archive
//! (manifest.json naming the same blobs), so OCI tools and Docker-style
//! loaders both accept it.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{json, Value};

use crate::digest::HashingReader;
use crate::store::{familiar, normalize};
use crate::{media, Error, Result, Store};

fn parse(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("malformed {what}: {e}")))
}

/// Writes the images `references` name to `out`.
pub fn save(store: &Store, references: &[String], out: impl Write) -> Result<()> {
    let mut blobs = BTreeSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    for r in references {
        let name = normalize(r)?;
        let digest = store.resolve(r)?;
        let manifest_bytes = store.read_blob(&digest)?;
        let manifest = parse(&manifest_bytes, &format!("manifest {digest}"))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| Error::Invalid(format!("manifest {digest} has no config")))?
            .to_string();
        let config = parse(
            &store.read_blob(&config_digest)?,
            &format!("config {config_digest}"),
        )?;
        let layers: Vec<String> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();
        blobs.insert(digest.clone());
        blobs.insert(config_digest.clone());
        blobs.extend(layers.iter().cloned());
        let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
        index.push(json!({
            "mediaType": media::MANIFEST,
            "digest": digest,
            "size": manifest_bytes.len(),
            "platform": {"os": config["os"], "architecture": config["architecture"]},
            "annotations": {media::ANNOTATION_CONTAINERD_NAME: name, media::ANNOTATION_REF_NAME: tag},
        }));
        let path = |d: &str| format!("blobs/sha256/{}", &d[7..]);
        docker.push(json!({
            "Config": path(&config_digest),
            "RepoTags": [familiar(&name)],
            "Layers": layers.iter().map(|d| path(d)).collect::<Vec<_>>(),
        }));
    }
    let mut t = tar::Builder::new(out);
    let io = |e: std::io::Error| Error::io("<archive>", e);
    let add = |t: &mut tar::Builder<_>, path: &str, bytes: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        t.append_data(&mut h, path, bytes).map_err(io)
    };
    add(&mut t, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for d in &blobs {
        let p = store.blob_path(d)?;
        let f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(f.metadata().map_err(|e| Error::io(&p, e))?.len());
        h.set_mtime(0);
        // Blobs are verified on their way out too: a store damaged on disk
        // (a crash of the machine, a disk error) never passes on bad data.
        let mut reader = HashingReader::new(f);
        t.append_data(&mut h, format!("blobs/sha256/{}", &d[7..]), &mut reader)
            .map_err(io)?;
        let actual = reader.digest();
        if &actual != d {
            return Err(Error::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": index});
    add(
        &mut t,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    add(
        &mut t,
        "manifest.json",
        &serde_json::to_vec(&docker).expect("json"),
    )?;
    t.into_inner().map_err(io)?.flush().map_err(io)
}
