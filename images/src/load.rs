//! Loading image archives (`amphi image load`): an OCI image layout (tar or
//! directory) or a `docker save` archive (manifest.json, in the legacy
//! per-layer-directory form or the current one that also carries an OCI
//! layout), with uncompressed, gzip or zstd layers.
//!
//! Nothing in the archive is trusted: every file is staged under the
//! store's tmp dir while it is hashed, every digest and size is checked
//! against its descriptor, every layer is unpacked (see [`crate::unpack`])
//! while its uncompressed digest is checked against the config's diff ID.
//! Only when all of that holds are blobs moved into the store, snapshots
//! published and refs written; on any error the store is left as it was.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::digest::{hex, hex_part};
use crate::snapshot::{chain_ids, diff_ids, Snapshots};
use crate::unpack::{self, Limits};
use crate::{media, Error, Result, Store};

/// Bounds on what one load may bring in.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Per-layer unpack limits (total bytes, entries).
    pub layer: Limits,
    /// Layers per image.
    pub max_layers: usize,
    /// Bytes of one archive file.
    pub max_file: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            layer: Limits::default(),
            max_layers: 256,
            max_file: 64 << 30,
        }
    }
}

/// What one layer of a loaded image did.
#[derive(Debug, Clone)]
pub struct LayerReport {
    /// The layer blob's digest.
    pub digest: String,
    /// Its size in the archive.
    pub size: u64,
    /// Present already: neither stored nor unpacked again.
    pub reused: bool,
}

/// One image a load brought in.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image ID (config digest).
    pub id: String,
    /// The manifest digest.
    pub manifest: String,
    /// The references now pointing at it.
    pub refs: Vec<String>,
    /// Its layers, bottom first.
    pub layers: Vec<LayerReport>,
}

/// A file of the archive, hashed.
struct Staged {
    path: PathBuf,
    digest: String,
    size: u64,
    /// Staged copy (ours to rename) rather than a file of an input directory.
    owned: bool,
}

/// The staging area of one load; removed on drop.
struct Staging {
    dir: PathBuf,
    files: HashMap<String, Staged>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Archive paths are names, never places: reject anything that could walk.
fn clean_path(raw: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(invalid(format!(
                    "archive entry {:?}: absolute or escaping path",
                    raw.to_string_lossy()
                )))
            }
        }
    }
    Ok(parts.join("/"))
}

fn hash_copy(
    mut from: impl Read,
    mut to: impl Write,
    max: u64,
    name: &str,
) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| invalid(format!("archive entry {name}: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > max {
            return Err(invalid(format!(
                "archive entry {name}: larger than {max} bytes"
            )));
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(|e| Error::io(name, e))?;
    }
    Ok((format!("sha256:{}", hex(&hasher.finalize())), size))
}

fn new_staging(store: &Store) -> Result<Staging> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = store.root().join("tmp").join(format!(
        "load-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(Staging {
        dir,
        files: HashMap::new(),
    })
}

fn stage_tar(store: &Store, input: impl Read, limits: &LoadLimits) -> Result<Staging> {
    let mut staging = new_staging(store)?;
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
    // Links to other entries (skopeo's docker archives link
    // `<id>/layer.tar` to `<digest>.tar`), resolved once all are staged.
    let mut aliases: Vec<(String, String)> = Vec::new();
    for (n, entry) in entries.enumerate() {
        let entry = entry.map_err(|e| invalid(format!("malformed archive: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| invalid(format!("archive entry name: {e}")))?
            .into_owned();
        let name = clean_path(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            t @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        invalid(format!("archive entry {name:?}: link without a target"))
                    })?
                    .into_owned();
                // A symlink is relative to its directory, a hardlink to the
                // archive root; either way it must name another entry.
                let joined = match (t, Path::new(&name).parent()) {
                    (tar::EntryType::Symlink, Some(dir)) => dir.join(&target),
                    _ => target.clone(),
                };
                let mut parts: Vec<String> = Vec::new();
                for c in joined.components() {
                    match c {
                        Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                        Component::CurDir => {}
                        Component::ParentDir if parts.pop().is_some() => {}
                        _ => {
                            return Err(invalid(format!(
                                "archive entry {name:?}: link points outside the archive"
                            )))
                        }
                    }
                }
                aliases.push((name, parts.join("/")));
                continue;
            }
            t => {
                return Err(invalid(format!(
                    "archive entry {name:?}: unexpected type {t:?}"
                )))
            }
        }
        let path = staging.dir.join(n.to_string());
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let (digest, size) =
            hash_copy(entry, std::io::BufWriter::new(file), limits.max_file, &name)?;
        staging.files.insert(
            name,
            Staged {
                path,
                digest,
                size,
                owned: true,
            },
        );
    }
    for (name, target) in aliases {
        let s = staging.files.get(&target).ok_or_else(|| {
            invalid(format!(
                "archive entry {name:?}: links to missing {target:?}"
            ))
        })?;
        let alias = Staged {
            path: s.path.clone(),
            digest: s.digest.clone(),
            size: s.size,
            owned: s.owned,
        };
        staging.files.insert(name, alias);
    }
    Ok(staging)
}

fn stage_dir(store: &Store, dir: &Path, limits: &LoadLimits) -> Result<Staging> {
    let mut staging = new_staging(store)?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .flatten()
        {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let name = clean_path(p.strip_prefix(dir).unwrap())?;
                let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
                let (digest, size) = hash_copy(f, std::io::sink(), limits.max_file, &name)?;
                staging.files.insert(
                    name,
                    Staged {
                        path: p,
                        digest,
                        size,
                        owned: false,
                    },
                );
            } else {
                return Err(invalid(format!("{}: not a regular file", p.display())));
            }
        }
    }
    Ok(staging)
}

/// A manifest found in the archive, with the names it should get.
struct Candidate {
    manifest: Vec<u8>,
    names: Vec<String>,
}

impl Staging {
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let s = self
            .files
            .get(name)
            .ok_or_else(|| invalid(format!("archive has no {name}")))?;
        std::fs::read(&s.path).map_err(|e| Error::io(&s.path, e))
    }

    /// The staged blob for a descriptor, its digest and size verified.
    fn blob(&self, desc: &Value) -> Result<&Staged> {
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| invalid("descriptor without digest"))?;
        let hexd = hex_part(digest)?;
        let s = self
            .files
            .get(&format!("blobs/sha256/{hexd}"))
            .ok_or_else(|| invalid(format!("blob {digest} is missing from the archive")))?;
        if s.digest != digest {
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual: s.digest.clone(),
            });
        }
        if let Some(size) = desc["size"].as_u64() {
            if size != s.size {
                return Err(invalid(format!(
                    "blob {digest}: {} bytes, its descriptor says {size}",
                    s.size
                )));
            }
        }
        Ok(s)
    }

    fn blob_json(&self, desc: &Value, what: &str) -> Result<(Vec<u8>, Value)> {
        let s = self.blob(desc)?;
        let bytes = std::fs::read(&s.path).map_err(|e| Error::io(&s.path, e))?;
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{what} {}: malformed JSON: {e}", s.digest)))?;
        Ok((bytes, v))
    }
}

fn parse(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("{what}: malformed JSON: {e}")))
}

/// Platforms we run: native linux/amd64, and Wasm.
fn platform_rank(p: &Value) -> Option<u8> {
    let os = p["os"].as_str().unwrap_or("");
    let arch = p["architecture"].as_str().unwrap_or("");
    match (os, arch) {
        ("", "") => Some(2),
        ("linux", "amd64") => Some(0),
        ("wasi" | "wasip1" | "wasip2", "wasm") | (_, "wasm") => Some(1),
        _ => None,
    }
}

fn oci_candidates(st: &Staging) -> Result<Vec<Candidate>> {
    let index = parse(&st.read("index.json")?, "index.json")?;
    let mut out = Vec::new();
    for desc in index["manifests"]
        .as_array()
        .ok_or_else(|| invalid("index.json has no manifests"))?
    {
        let ann = &desc["annotations"];
        let mut names = Vec::new();
        if let Some(n) = ann[media::ANNOTATION_CONTAINERD_NAME].as_str() {
            names.push(n.to_string());
        } else if let Some(n) = ann[media::ANNOTATION_REF_NAME]
            .as_str()
            .filter(|n| n.contains('/') || n.contains(':'))
        {
            names.push(n.to_string());
        }
        let (bytes, v) = st.blob_json(desc, "manifest")?;
        let media_type = desc["mediaType"]
            .as_str()
            .or(v["mediaType"].as_str())
            .unwrap_or(media::MANIFEST);
        if media_type.contains("index") || media_type.contains("manifest.list") {
            // A multi-platform image: pick the best platform we can run.
            let mut best: Option<(u8, Vec<u8>)> = None;
            for m in v["manifests"].as_array().into_iter().flatten() {
                let Some(rank) = platform_rank(&m["platform"]) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                    best = Some((rank, st.blob_json(m, "manifest")?.0));
                }
            }
            let (_, manifest) = best.ok_or_else(|| {
                invalid(format!(
                    "index {}: no linux/amd64 or wasm platform",
                    desc["digest"]
                ))
            })?;
            out.push(Candidate { manifest, names });
        } else {
            out.push(Candidate {
                manifest: bytes,
                names,
            });
        }
    }
    Ok(out)
}

fn docker_candidates(st: &mut Staging) -> Result<Vec<Candidate>> {
    let manifest = parse(&st.read("manifest.json")?, "manifest.json")?;
    let mut out = Vec::new();
    for entry in manifest
        .as_array()
        .ok_or_else(|| invalid("manifest.json is not a list"))?
    {
        let config_path = entry["Config"]
            .as_str()
            .ok_or_else(|| invalid("manifest.json entry without Config"))?;
        let config = st
            .files
            .get(config_path)
            .ok_or_else(|| invalid(format!("archive has no {config_path}")))?;
        let config_desc =
            json!({"mediaType": media::CONFIG, "digest": config.digest, "size": config.size});
        let mut layers = Vec::new();
        for l in entry["Layers"].as_array().into_iter().flatten() {
            let p = l
                .as_str()
                .ok_or_else(|| invalid("manifest.json layer is not a path"))?;
            let s = st
                .files
                .get(p)
                .ok_or_else(|| invalid(format!("archive has no {p}")))?;
            let media_type = match compression(&s.path)? {
                Compression::None => media::LAYER_TAR,
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            layers.push(json!({"mediaType": media_type, "digest": s.digest, "size": s.size}));
        }
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::MANIFEST, "config": config_desc, "layers": layers})).expect("json");
        let names = entry["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        out.push(Candidate { manifest, names });
    }
    // Blobs of the legacy layout live under other names: file them under
    // their digests so the rest of the load sees one shape.
    let renamed: Vec<(String, Staged)> = st
        .files
        .values()
        .map(|s| {
            (
                format!("blobs/sha256/{}", &s.digest[7..]),
                Staged {
                    path: s.path.clone(),
                    digest: s.digest.clone(),
                    size: s.size,
                    owned: s.owned,
                },
            )
        })
        .collect();
    for (k, v) in renamed {
        st.files.entry(k).or_insert(v);
    }
    Ok(out)
}

enum Compression {
    None,
    Gzip,
    Zstd,
}

fn compression(path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// Hashes what passes through.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The layer's uncompressed stream, hashed as it is read and bounded: the
/// bomb guard never lets more bytes through than the unpack limit (plus
/// tar framing), whatever the entries claim.
fn layer_stream(
    staged: &Staged,
    limits: Limits,
) -> Result<HashingReader<std::io::Take<Box<dyn Read>>>> {
    let f = std::io::BufReader::with_capacity(
        1 << 20,
        File::open(&staged.path).map_err(|e| Error::io(&staged.path, e))?,
    );
    let reader: Box<dyn Read> = match compression(&staged.path)? {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(f)
                .map_err(|e| invalid(format!("layer {}: {e}", staged.digest)))?,
        ),
    };
    let bound = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(1024));
    Ok(HashingReader {
        inner: reader.take(bound),
        hasher: Sha256::new(),
    })
}

/// Reads the stream to its end and checks its digest against `diff_id`.
fn finish_diff_id(
    staged: &Staged,
    mut hashing: HashingReader<std::io::Take<Box<dyn Read>>>,
    diff_id: &str,
) -> Result<()> {
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| invalid(format!("layer {}: corrupt: {e}", staged.digest)))?;
    let actual = format!("sha256:{}", hex(&hashing.hasher.finalize()));
    if actual != diff_id {
        return Err(invalid(format!(
            "layer {}: uncompressed digest {actual} does not match diff ID {diff_id}",
            staged.digest
        )));
    }
    Ok(())
}

/// Unpacks one layer into a prepared snapshot, checking its diff ID.
fn unpack_layer(staged: &Staged, diff_id: &str, dest: &Path, limits: Limits) -> Result<()> {
    let mut hashing = layer_stream(staged, limits)?;
    unpack::apply(&staged.digest, &mut hashing, &dest.join("fs"), limits)?;
    finish_diff_id(staged, hashing, diff_id)
}

/// Checks that a layer blob decompresses to `diff_id`, unpacking nothing.
fn verify_layer(staged: &Staged, diff_id: &str, limits: Limits) -> Result<()> {
    finish_diff_id(staged, layer_stream(staged, limits)?, diff_id)
}

/// Loads the archive read from `input` (a tar stream).
pub fn load_tar(
    store: &Store,
    input: impl Read,
    limits: &LoadLimits,
    progress: &mut dyn FnMut(&LayerReport),
) -> Result<Vec<LoadedImage>> {
    let staging = stage_tar(store, input, limits)?;
    load_staged(store, staging, limits, progress)
}

/// Loads an OCI image layout directory.
pub fn load_dir(
    store: &Store,
    dir: &Path,
    limits: &LoadLimits,
    progress: &mut dyn FnMut(&LayerReport),
) -> Result<Vec<LoadedImage>> {
    let staging = stage_dir(store, dir, limits)?;
    load_staged(store, staging, limits, progress)
}

fn load_staged(
    store: &Store,
    mut st: Staging,
    limits: &LoadLimits,
    progress: &mut dyn FnMut(&LayerReport),
) -> Result<Vec<LoadedImage>> {
    let candidates = if st.files.contains_key("index.json") {
        oci_candidates(&st)?
    } else if st.files.contains_key("manifest.json") {
        docker_candidates(&mut st)?
    } else {
        return Err(invalid(
            "not an image archive: no index.json or manifest.json",
        ));
    };
    if candidates.is_empty() {
        return Err(invalid("the archive holds no image"));
    }
    let snapshots = Snapshots::open(store.root())?;
    // Everything this load creates, undone if a later step fails.
    let mut created: Vec<String> = Vec::new();
    let result = (|| {
        let mut plans = Vec::new();
        for c in &candidates {
            let manifest = parse(&c.manifest, "manifest")?;
            let (_, config) = st.blob_json(&manifest["config"], "config")?;
            let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
            if layers.len() > limits.max_layers {
                return Err(invalid(format!(
                    "image has {} layers, more than the limit of {}",
                    layers.len(),
                    limits.max_layers
                )));
            }
            let diff_ids = diff_ids(&config);
            if diff_ids.len() != layers.len() {
                return Err(invalid(format!(
                    "config lists {} diff IDs for {} layers",
                    diff_ids.len(),
                    layers.len()
                )));
            }
            for d in &diff_ids {
                hex_part(d)?;
            }
            let chains = chain_ids(&diff_ids);
            let mut jobs = Vec::with_capacity(layers.len());
            for (i, l) in layers.iter().enumerate() {
                jobs.push((i, st.blob(l)?, snapshots.exists(&chains[i])));
            }
            // Layers are independent snapshots: unpack (or verify) as many
            // at once as there are cores, then commit them in order.
            let width = std::thread::available_parallelism().map_or(2, |n| n.get());
            let mut reports = Vec::new();
            for chunk in jobs.chunks(width) {
                let results: Vec<Result<Option<PathBuf>>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = chunk
                        .iter()
                        .map(|&(i, staged, reused)| {
                            let (snapshots, diff_id) = (&snapshots, &diff_ids[i]);
                            scope.spawn(move || -> Result<Option<PathBuf>> {
                                if reused {
                                    // Known content in a new blob (another
                                    // compression): it must still hold exactly
                                    // that layer.
                                    if !store.has_blob(&staged.digest) {
                                        verify_layer(staged, diff_id, limits.layer)?;
                                    }
                                    return Ok(None);
                                }
                                let prepared = snapshots.prepare()?;
                                match unpack_layer(staged, diff_id, &prepared, limits.layer) {
                                    Ok(()) => Ok(Some(prepared)),
                                    Err(e) => {
                                        let _ = std::fs::remove_dir_all(&prepared);
                                        Err(e)
                                    }
                                }
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(invalid("layer unpack panicked")))
                        })
                        .collect()
                });
                if let Some(pos) = results.iter().position(Result::is_err) {
                    for r in results.iter().flatten().flatten() {
                        let _ = std::fs::remove_dir_all(r);
                    }
                    return Err(results.into_iter().nth(pos).unwrap().unwrap_err());
                }
                for (&(i, staged, reused), r) in chunk.iter().zip(results) {
                    if let Some(prepared) = r? {
                        snapshots.commit(&prepared, &chains[i])?;
                        created.push(chains[i].clone());
                    }
                    let report = LayerReport {
                        digest: staged.digest.clone(),
                        size: staged.size,
                        reused,
                    };
                    progress(&report);
                    reports.push(report);
                }
            }
            let config_digest = config_bytes_digest(&manifest);
            plans.push((c, manifest, config_digest, reports));
        }
        // Everything verified: publish blobs, then refs.
        let mut loaded = Vec::new();
        for (c, manifest, config_digest, reports) in plans {
            let mut descs = vec![manifest["config"].clone()];
            descs.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
            for d in &descs {
                let s = st.blob(d)?;
                publish(store, s)?;
            }
            let manifest_digest = store.put_blob(&c.manifest, None)?;
            let mut refs = Vec::new();
            for n in &c.names {
                store.tag(n, &manifest_digest)?;
                refs.push(crate::store::normalize(n)?);
            }
            loaded.push(LoadedImage {
                id: config_digest,
                manifest: manifest_digest,
                refs,
                layers: reports,
            });
        }
        Ok(loaded)
    })();
    if result.is_err() {
        for c in &created {
            let _ = snapshots.remove(c);
        }
    }
    result
}

fn config_bytes_digest(manifest: &Value) -> String {
    manifest["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Moves (or copies) a verified staged file into the blob store.
fn publish(store: &Store, s: &Staged) -> Result<()> {
    if store.has_blob(&s.digest) {
        return Ok(());
    }
    let dest = store.blob_path(&s.digest)?;
    if s.owned && std::fs::hard_link(&s.path, &dest).is_ok() {
        return Ok(());
    }
    let f = File::open(&s.path).map_err(|e| Error::io(&s.path, e))?;
    store.write_blob(f, Some(&s.digest)).map(|_| ())
}
