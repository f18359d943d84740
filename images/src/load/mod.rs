//! Loading image archives (`amphi image load`): an OCI image layout (tar or
//! directory) or a `docker save` archive (manifest.json, in the legacy
//! per-layer-directory form or the current one that also carries an OCI
//! layout), with uncompressed, gzip or zstd layers.
//!
//! Nothing in the archive is trusted, and nothing is copied before it is
//! needed: the archive is indexed by its headers (`source.rs`), metadata is
//! read and hashed on its own, and each layer is read once, in parallel
//! with the others, while it is hashed, kept as a blob and unpacked
//! (`layer.rs`). Digests, sizes and diff IDs are all checked before anything
//! becomes visible: blobs are renamed into the store, snapshots committed
//! and refs written only after every layer of an image held; on any error
//! the store is left as it was. Leftovers of a killed load are swept by
//! the next one.

pub(crate) mod layer;
mod source;

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::hex_part;
use crate::snapshot::{chain_ids, diff_ids, Snapshots};
use crate::unpack::Limits;
use crate::{media, Error, Result, Store};
use layer::{Job, TempBlob};
use source::{Source, Sources};

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

/// Callbacks of a load: bytes read (from any thread, for a progress bar)
/// and each layer as it is committed (in order).
pub struct Progress<'a> {
    /// Archive bytes read so far, as increments.
    pub bytes: &'a (dyn Fn(u64) + Sync),
    /// A layer is in the store.
    pub layer: &'a mut dyn FnMut(&LayerReport),
}

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Loads the image archive at `path`: a tar file (read in place) or an OCI
/// layout directory.
pub fn load_path(
    store: &Store,
    path: &Path,
    limits: &LoadLimits,
    progress: &mut Progress,
) -> Result<Vec<LoadedImage>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let sources = if meta.is_dir() {
        Sources::of_dir(path, limits.max_file)?
    } else {
        Sources::of_tar(path, limits.max_file)?
    };
    load_sources(store, &sources, limits, progress)
}

/// Loads an archive read from a stream (stdin): it is spooled into the
/// store's tmp dir first, then loaded as a file.
pub fn load_tar(
    store: &Store,
    mut input: impl Read,
    limits: &LoadLimits,
    progress: &mut Progress,
) -> Result<Vec<LoadedImage>> {
    store.sweep_tmp();
    let spool = store.temp_path("spool");
    let guard = TempBlob::new(spool.clone());
    let mut f = std::fs::File::create(&spool).map_err(|e| Error::io(&spool, e))?;
    std::io::copy(&mut input, &mut f).map_err(|e| invalid(format!("reading the archive: {e}")))?;
    drop(f);
    let r = load_path(store, &spool, limits, progress);
    drop(guard);
    r
}

/// An image found in the archive, its metadata verified.
struct Candidate {
    /// The manifest as found (OCI); a Docker archive's is made once its
    /// layers are hashed.
    manifest: Option<Vec<u8>>,
    config: Vec<u8>,
    config_digest: String,
    layers: Vec<LayerRef>,
    /// The manifest's layer descriptors (none for a Docker archive).
    layer_descs: Vec<Value>,
    names: Vec<String>,
}

/// A layer the manifest names, with what its descriptor claims.
struct LayerRef {
    src: Source,
    digest: Option<String>,
    size: Option<u64>,
    /// A Wasm OCI artifact's layer holds the module itself: the file name
    /// it gets in the snapshot.
    raw_module: Option<String>,
}

/// Whether a layer is a bare Wasm module (media type and magic agree).
fn raw_module(desc: &Value, src: &Source) -> Result<Option<String>> {
    let wasm_type = media::is_wasm_layer(desc["mediaType"].as_str().unwrap_or(""));
    Ok((wasm_type && src.magic()? == *b"\0asm").then(|| media::module_file_name(desc)))
}

/// Reads and verifies the blob a descriptor names.
fn read_blob(sources: &Sources, desc: &Value) -> Result<Vec<u8>> {
    let src = blob_source(sources, desc)?;
    let (bytes, digest) = src.read_hashed()?;
    let expected = desc["digest"].as_str().unwrap_or_default();
    if digest != expected {
        return Err(Error::DigestMismatch {
            expected: expected.to_string(),
            actual: digest,
        });
    }
    check_size(desc, &digest, bytes.len() as u64)?;
    Ok(bytes)
}

fn check_size(desc: &Value, digest: &str, actual: u64) -> Result<()> {
    match desc["size"].as_u64() {
        Some(size) if size != actual => Err(invalid(format!(
            "blob {digest}: {actual} bytes, its descriptor says {size}"
        ))),
        _ => Ok(()),
    }
}

fn blob_source<'a>(sources: &'a Sources, desc: &Value) -> Result<&'a Source> {
    let digest = desc["digest"]
        .as_str()
        .ok_or_else(|| invalid("descriptor without digest"))?;
    let hexd = hex_part(digest)?;
    sources
        .files
        .get(&format!("blobs/sha256/{hexd}"))
        .ok_or_else(|| invalid(format!("blob {digest} is missing from the archive")))
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

fn oci_candidates(sources: &Sources) -> Result<Vec<Candidate>> {
    let index = parse(&sources.get("index.json")?.read_small()?, "index.json")?;
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
        let bytes = read_blob(sources, desc)?;
        let v = parse(&bytes, "manifest")?;
        let media_type = desc["mediaType"]
            .as_str()
            .or(v["mediaType"].as_str())
            .unwrap_or(media::MANIFEST);
        let manifest = if media_type.contains("index") || media_type.contains("manifest.list") {
            // A multi-platform image: pick the best platform we can run.
            let mut best: Option<(u8, &Value)> = None;
            for m in v["manifests"].as_array().into_iter().flatten() {
                let Some(rank) = platform_rank(&m["platform"]) else {
                    continue;
                };
                if best.is_none_or(|(r, _)| rank < r) {
                    best = Some((rank, m));
                }
            }
            let (_, m) = best.ok_or_else(|| {
                invalid(format!(
                    "index {}: no linux/amd64 or wasm platform",
                    desc["digest"]
                ))
            })?;
            read_blob(sources, m)?
        } else {
            bytes
        };
        let m = parse(&manifest, "manifest")?;
        let config = read_blob(sources, &m["config"])?;
        let config_digest = m["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut layers = Vec::new();
        for l in m["layers"].as_array().into_iter().flatten() {
            let src = blob_source(sources, l)?.clone();
            layers.push(LayerRef {
                raw_module: raw_module(l, &src)?,
                src,
                digest: l["digest"].as_str().map(str::to_string),
                size: l["size"].as_u64(),
            });
        }
        out.push(Candidate {
            manifest: Some(manifest),
            config,
            config_digest,
            layers,
            layer_descs: m["layers"].as_array().cloned().unwrap_or_default(),
            names,
        });
    }
    Ok(out)
}

fn docker_candidates(sources: &Sources) -> Result<Vec<Candidate>> {
    let manifest = parse(
        &sources.get("manifest.json")?.read_small()?,
        "manifest.json",
    )?;
    let mut out = Vec::new();
    for entry in manifest
        .as_array()
        .ok_or_else(|| invalid("manifest.json is not a list"))?
    {
        let config_path = entry["Config"]
            .as_str()
            .ok_or_else(|| invalid("manifest.json entry without Config"))?;
        let (config, config_digest) = sources.get(config_path)?.read_hashed()?;
        let mut layers = Vec::new();
        for l in entry["Layers"].as_array().into_iter().flatten() {
            let p = l
                .as_str()
                .ok_or_else(|| invalid("manifest.json layer is not a path"))?;
            layers.push(LayerRef {
                src: sources.get(p)?.clone(),
                digest: None,
                size: None,
                raw_module: None,
            });
        }
        let names = entry["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        out.push(Candidate {
            manifest: None,
            config,
            config_digest,
            layers,
            layer_descs: Vec::new(),
            names,
        });
    }
    Ok(out)
}

/// An image whose layers are all in place, waiting for its blobs and refs.
struct Plan<'a> {
    candidate: &'a Candidate,
    manifest: Vec<u8>,
    reports: Vec<LayerReport>,
}

fn load_sources(
    store: &Store,
    sources: &Sources,
    limits: &LoadLimits,
    progress: &mut Progress,
) -> Result<Vec<LoadedImage>> {
    let candidates = if sources.files.contains_key("index.json") {
        oci_candidates(sources)?
    } else if sources.files.contains_key("manifest.json") {
        docker_candidates(sources)?
    } else {
        return Err(invalid(
            "not an image archive: no index.json or manifest.json",
        ));
    };
    if candidates.is_empty() {
        return Err(invalid("the archive holds no image"));
    }
    let snapshots = Snapshots::open(store.root())?;
    store.sweep_tmp();
    snapshots.sweep_prepared();
    // Everything this load created, undone if a later step fails; verified
    // blobs wait in tmp (removed on drop) until every image holds.
    let mut created: Vec<String> = Vec::new();
    let mut blobs: Vec<(TempBlob, String)> = Vec::new();
    let result = (|| {
        let mut plans = Vec::new();
        for c in &candidates {
            plans.push(load_layers(
                store,
                &snapshots,
                c,
                limits,
                progress,
                &mut created,
                &mut blobs,
            )?);
        }
        // Everything verified: publish blobs, then refs.
        for (blob, digest) in blobs.drain(..) {
            blob.publish(store, &digest)?;
        }
        let mut loaded = Vec::new();
        for plan in plans {
            let c = plan.candidate;
            store.put_blob(&c.config, Some(&c.config_digest))?;
            let manifest_digest = store.put_blob(&plan.manifest, None)?;
            let mut refs = Vec::new();
            for n in &c.names {
                store.tag(n, &manifest_digest)?;
                refs.push(crate::store::normalize(n)?);
            }
            loaded.push(LoadedImage {
                id: c.config_digest.clone(),
                manifest: manifest_digest,
                refs,
                layers: plan.reports,
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

/// Verifies and unpacks one image's layers (those not present already),
/// commits their snapshots in order, and returns its manifest.
fn load_layers<'c>(
    store: &Store,
    snapshots: &Snapshots,
    c: &'c Candidate,
    limits: &LoadLimits,
    progress: &mut Progress,
    created: &mut Vec<String>,
    blobs: &mut Vec<(TempBlob, String)>,
) -> Result<Plan<'c>> {
    let config = parse(&c.config, "config")?;
    if c.layers.len() > limits.max_layers {
        return Err(invalid(format!(
            "image has {} layers, more than the limit of {}",
            c.layers.len(),
            limits.max_layers
        )));
    }
    let diff_ids = diff_ids(&config, &c.layer_descs);
    if diff_ids.len() != c.layers.len() {
        return Err(invalid(format!(
            "config lists {} diff IDs for {} layers",
            diff_ids.len(),
            c.layers.len()
        )));
    }
    for d in &diff_ids {
        hex_part(d)?;
    }
    for l in &c.layers {
        if let Some(d) = &l.digest {
            hex_part(d)?;
        }
    }
    let chains = chain_ids(&diff_ids);
    // Every layer is read and verified, even one the store has: a corrupt
    // archive is refused whole. Present layers are neither stored nor
    // unpacked again.
    let jobs: Vec<Job> = c
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Job {
            src: &l.src,
            expected_digest: l.digest.as_deref(),
            expected_size: l.size,
            diff_id: &diff_ids[i],
            unpack: !snapshots.exists(&chains[i]),
            raw_module: l.raw_module.as_deref(),
        })
        .collect();
    let done = layer::run_all(&jobs, store, snapshots, limits.layer, progress.bytes)?;
    let mut reports = Vec::new();
    let mut descs = Vec::new();
    let mut done = done.into_iter().enumerate();
    while let Some((i, d)) = done.next() {
        let reused = d.prepared.is_none();
        if let Some(prepared) = &d.prepared {
            match snapshots.commit(prepared, &chains[i]) {
                Ok(true) => created.push(chains[i].clone()),
                Ok(false) => {}
                Err(e) => {
                    layer::discard(d);
                    done.for_each(|(_, d)| layer::discard(d));
                    return Err(e);
                }
            }
        }
        if let Some(b) = d.blob {
            blobs.push((b, d.digest.clone()));
        }
        descs.push(
            json!({"mediaType": d.compression.media_type(), "digest": d.digest, "size": d.size}),
        );
        let report = LayerReport {
            digest: d.digest,
            size: d.size,
            reused,
        };
        (progress.layer)(&report);
        reports.push(report);
    }
    let manifest = match &c.manifest {
        Some(m) => m.clone(),
        None => serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": c.config_digest, "size": c.config.len()},
            "layers": descs,
        }))
        .expect("json"),
    };
    Ok(Plan {
        candidate: c,
        manifest,
        reports,
    })
}
