//! `pull`: the manifest (an index or manifest list resolved for the
//! platform), the config, and every missing layer fetched by a small pool
//! of threads, each streamed once through the hasher, the decompressor and
//! the unpacker into its snapshot, exactly as `image load` reads an archive.
//!
//! What becomes visible, and when: a layer's blob and snapshot as soon as
//! that layer verified (so a pull killed later keeps it, and the next one
//! fetches only the rest); the manifest and the ref last, once every layer
//! is in. A download that broke off keeps its partial file (`tmp/partial-`)
//! for the next pull to resume from; content that fails verification is
//! removed with everything else this pull made, leaving the store as it
//! was.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::blob::RemoteLayer;
use super::client::{Client, RegistryOptions, MANIFEST_ACCEPT};
use super::reference::Reference;
use crate::digest::{hex, hex_part};
use crate::load::layer::{self, Job};
use crate::snapshot::{chain_ids, diff_ids, Snapshots};
use crate::unpack::Limits;
use crate::{media, Error, Result, Store};

/// The most manifest or config bytes a registry may send.
const MAX_METADATA: u64 = 8 << 20;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `os/arch[/variant]` to pick from an index (default: this host's,
    /// else a Wasm platform).
    pub platform: Option<String>,
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Layers fetched at once (4, one more than Docker's 3: measured here
    /// it keeps a fast local link busier; each transfer also hashes and
    /// unpacks, so one more hides their pauses).
    pub concurrency: usize,
    /// Unpack limits per layer.
    pub limits: Limits,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            registry: RegistryOptions::default(),
            concurrency: 4,
            limits: Limits::default(),
        }
    }
}

/// What happens to one layer, for a progress display.
pub trait PullProgress: Sync {
    /// The layers are known: digest, size, and whether the store has it.
    fn layers(&self, _layers: &[(String, u64, bool)]) {}
    /// `n` more bytes of `digest` were read.
    fn bytes(&self, _digest: &str, _n: u64) {}
    /// `digest` is in the store.
    fn done(&self, _digest: &str) {}
}

/// No progress display.
pub struct Quiet;
impl PullProgress for Quiet {}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The name the image is kept under.
    pub name: String,
    /// The digest of what the reference named (an index, or the manifest).
    pub digest: String,
    /// The image's manifest digest.
    pub manifest: String,
    /// The image ID (config digest).
    pub config: String,
    /// Whether every layer was there already.
    pub up_to_date: bool,
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

/// Fetches a manifest (or index) by tag or digest: its bytes, media type
/// and digest (checked against a digest reference).
fn get_manifest(c: &Client, locator: &str) -> Result<(Vec<u8>, String, String)> {
    let url = c.url(&format!("manifests/{locator}"));
    let what = format!("manifest {}/{}:{locator}", c.registry, c.repository);
    let r = c.send(&what, &|http| {
        http.get(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT)
    })?;
    match r.status() {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND => {
            return Err(Error::Invalid(format!(
                "{}/{}:{locator}: not found in the registry",
                c.registry, c.repository
            )))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(Error::Registry(format!(
                "{what}: access denied (amphi login {})",
                c.registry
            )))
        }
        s => return Err(Error::Registry(format!("{what}: {s}"))),
    }
    let ctype = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(r, MAX_METADATA + 1), &mut body)
        .map_err(|e| Error::Registry(format!("{what}: {e}")))?;
    if body.len() as u64 > MAX_METADATA {
        return Err(Error::Invalid(format!(
            "{what}: larger than {MAX_METADATA} bytes"
        )));
    }
    let digest = sha256(&body);
    if locator.starts_with("sha256:") && digest != locator {
        return Err(Error::DigestMismatch {
            expected: locator.to_string(),
            actual: digest,
        });
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("{what}: not JSON: {e}")))?;
    let mt = v["mediaType"].as_str().map(String::from).unwrap_or(ctype);
    if v["schemaVersion"] == 1 {
        return Err(Error::Invalid(format!(
            "{what}: schema 1 manifests are not supported (push it again with a current tool)"
        )));
    }
    Ok((body, mt, digest))
}

/// This host's platform, as OCI names it.
fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    ("linux", arch)
}

/// Picks the manifest for the platform from an index.
fn pick(index: &Value, platform: Option<&str>, what: &str) -> Result<String> {
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let fits = |m: &Value, os: &str, arch: &str, variant: Option<&str>| {
        m["platform"]["os"] == os
            && m["platform"]["architecture"] == arch
            && variant.is_none_or(|v| m["platform"]["variant"] == v)
    };
    let found = match platform {
        Some(p) => {
            let parts: Vec<&str> = p.split('/').collect();
            let (os, arch, variant) = match parts.as_slice() {
                [os, arch] => (*os, *arch, None),
                [os, arch, v] => (*os, *arch, Some(*v)),
                _ => {
                    return Err(Error::Invalid(format!(
                        "bad --platform {p:?}: use OS/ARCH[/VARIANT]"
                    )))
                }
            };
            entries.iter().find(|m| fits(m, os, arch, variant))
        }
        None => {
            let (os, arch) = host_platform();
            entries
                .iter()
                .find(|m| fits(m, os, arch, None))
                .or_else(|| {
                    // amphi runs Wasm wherever it runs.
                    entries.iter().find(|m| {
                        m["platform"]["architecture"] == "wasm"
                            && matches!(
                                m["platform"]["os"].as_str(),
                                Some("wasip1" | "wasi" | "wasip2")
                            )
                    })
                })
        }
    };
    let Some(m) = found else {
        let have: Vec<String> = entries
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap_or("?"),
                    m["platform"]["architecture"].as_str().unwrap_or("?")
                )
            })
            .collect();
        return Err(Error::Invalid(format!(
            "{what}: no image for {} (it has {})",
            platform.map_or_else(
                || {
                    let (o, a) = host_platform();
                    format!("{o}/{a}")
                },
                String::from
            ),
            have.join(", ")
        )));
    };
    let d = m["digest"].as_str().unwrap_or_default().to_string();
    hex_part(&d)?;
    Ok(d)
}

fn is_index(media_type: &str, v: &Value) -> bool {
    media_type == media::INDEX
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
        || (v["manifests"].is_array() && !v["layers"].is_array())
}

/// Fetches a small verified blob (the config).
fn get_blob(c: &Client, digest: &str) -> Result<Vec<u8>> {
    let url = c.url(&format!("blobs/{digest}"));
    let what = format!("blob {digest}");
    let r = c.send(&what, &|http| http.get(&url))?;
    if !r.status().is_success() {
        return Err(Error::Registry(format!("{what}: {}", r.status())));
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(r, MAX_METADATA + 1), &mut body)
        .map_err(|e| Error::Registry(format!("{what}: {e}")))?;
    let actual = sha256(&body);
    if actual != digest {
        return Err(Error::DigestMismatch {
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(body)
}

/// Pulls `reference` into `store`.
pub fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Pulled> {
    let r = Reference::parse(reference)?;
    let c = Client::connect(
        &opts.registry,
        &r.registry,
        r.api_host(),
        &r.repository,
        false,
    )?;
    let (mut body, mut mt, top) = get_manifest(&c, r.locator())?;
    let what = r.store_name();
    let mut v: Value = serde_json::from_slice(&body).expect("checked JSON");
    let mut manifest_digest = top.clone();
    if is_index(&mt, &v) {
        let d = pick(&v, opts.platform.as_deref(), &what)?;
        (body, mt, manifest_digest) = get_manifest(&c, &d)?;
        v = serde_json::from_slice(&body).expect("checked JSON");
        if is_index(&mt, &v) {
            return Err(Error::Invalid(format!("{what}: an index inside an index")));
        }
    }
    let _ = mt;
    let config_digest = v["config"]["digest"]
        .as_str()
        .ok_or_else(|| Error::Invalid(format!("{what}: manifest without a config")))?
        .to_string();
    hex_part(&config_digest)?;
    let layers: Vec<Value> = v["layers"].as_array().cloned().unwrap_or_default();
    for l in &layers {
        hex_part(l["digest"].as_str().unwrap_or_default())?;
    }
    let config_bytes = match store.read_blob(&config_digest) {
        Ok(b) => b,
        Err(_) => get_blob(&c, &config_digest)?,
    };
    let config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Invalid(format!("{what}: config is not JSON: {e}")))?;
    let diffs = diff_ids(&config, &layers);
    if diffs.len() != layers.len() {
        return Err(Error::Invalid(format!(
            "{what}: config lists {} diff IDs for {} layers",
            diffs.len(),
            layers.len()
        )));
    }
    for d in &diffs {
        hex_part(d)?;
    }
    let chains = chain_ids(&diffs);
    let snapshots = Snapshots::open(store.root())?;
    store.sweep_tmp();
    snapshots.sweep_prepared();
    let present = |i: usize| {
        snapshots.exists(&chains[i]) && store.has_blob(layers[i]["digest"].as_str().unwrap_or(""))
    };
    let states: Vec<(String, u64, bool)> = (0..layers.len())
        .map(|i| {
            (
                layers[i]["digest"].as_str().unwrap_or("").to_string(),
                layers[i]["size"].as_u64().unwrap_or(0),
                present(i),
            )
        })
        .collect();
    progress.layers(&states);
    let todo: Vec<usize> = (0..layers.len()).filter(|i| !states[*i].2).collect();
    let up_to_date = todo.is_empty() && store.has_blob(&manifest_digest);
    // What this pull made: removed again if content fails verification.
    let made: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let result = fetch_layers(
        store, &snapshots, &c, &layers, &diffs, &chains, &todo, opts, progress, &made,
    );
    if let Err(e) = &result {
        if !matches!(e, Error::Registry(_)) {
            for (chain, blob) in made.lock().unwrap().drain(..) {
                let _ = snapshots.remove(&chain);
                if let Ok(p) = store.blob_path(&blob) {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
    result?;
    // Every layer is in: the config, the manifest as served (its digest
    // kept), then the ref.
    store.put_blob(&config_bytes, Some(&config_digest))?;
    store.put_blob(&body, Some(&manifest_digest))?;
    let name = r.store_name();
    store.tag(&name, &manifest_digest)?;
    for b in std::iter::once(&config_digest).chain(states.iter().map(|s| &s.0)) {
        super::push::remember_origin(store, b, &r.registry, &r.repository);
    }
    Ok(Pulled {
        name,
        digest: top,
        manifest: manifest_digest,
        config: config_digest,
        up_to_date,
    })
}

/// Fetches the layers `todo` on a pool of threads, committing each as it
/// verifies; after the first failure no new layer starts.
#[allow(clippy::too_many_arguments)]
fn fetch_layers(
    store: &Store,
    snapshots: &Snapshots,
    c: &Client,
    layers: &[Value],
    diffs: &[String],
    chains: &[String],
    todo: &[usize],
    opts: &PullOptions,
    progress: &dyn PullProgress,
    made: &Mutex<Vec<(String, String)>>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let width = opts.concurrency.clamp(1, 16).min(todo.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..width {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { return };
                if let Err(e) = fetch_one(
                    store, snapshots, c, &layers[i], &diffs[i], &chains[i], opts, progress, made,
                ) {
                    failed.store(true, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e);
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The resumable partial file of blob `digest`, locked for us (another
/// pull of the same layer finishes it first).
fn partial_for(store: &Store, digest: &str) -> Result<(PathBuf, nix::fcntl::Flock<std::fs::File>)> {
    let path = store
        .root()
        .join("tmp")
        .join(format!("partial-{}", hex_part(digest)?));
    let lock_path = path.with_extension("lock");
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(&lock_path, e.into()))?;
    Ok((path, lock))
}

#[allow(clippy::too_many_arguments)]
fn fetch_one(
    store: &Store,
    snapshots: &Snapshots,
    c: &Client,
    desc: &Value,
    diff_id: &str,
    chain: &str,
    opts: &PullOptions,
    progress: &dyn PullProgress,
    made: &Mutex<Vec<(String, String)>>,
) -> Result<()> {
    let digest = desc["digest"].as_str().unwrap_or_default();
    let size = desc["size"]
        .as_u64()
        .ok_or_else(|| Error::Invalid(format!("layer {digest}: no size in its descriptor")))?;
    let (partial, lock) = partial_for(store, digest)?;
    // Another pull may have brought it in while we waited for the lock.
    if snapshots.exists(chain) && store.has_blob(digest) {
        progress.done(digest);
        return Ok(());
    }
    let mt = desc["mediaType"].as_str().unwrap_or("");
    let module = media::is_wasm_layer(mt).then(|| media::module_file_name(desc));
    let input = RemoteLayer::new(c, digest, size, &partial);
    let on_bytes = |n: u64| progress.bytes(digest, n);
    let job = Job {
        src: &input,
        expected_digest: Some(digest),
        expected_size: Some(size),
        diff_id,
        unpack: !snapshots.exists(chain),
        raw_module: module.as_deref(),
    };
    let done = match layer::run(&job, store, snapshots, opts.limits, &on_bytes) {
        Ok(d) => d,
        Err(e) => {
            if input.net_failed.load(Ordering::Relaxed) || matches!(e, Error::Registry(_)) {
                // Kept for the next pull to resume from.
                return Err(Error::Registry(format!("layer {digest}: {e}")));
            }
            // Bad content is no prefix worth resuming from.
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(partial.with_extension("lock"));
            return Err(e);
        }
    };
    if let Some(prepared) = &done.prepared {
        match snapshots.commit(prepared, chain) {
            Ok(true) => made
                .lock()
                .unwrap()
                .push((chain.to_string(), digest.to_string())),
            Ok(false) => {}
            Err(e) => {
                layer::discard(done);
                return Err(e);
            }
        }
    }
    let layer::Done {
        blob, digest: d, ..
    } = done;
    if let Some(b) = blob {
        b.publish(store, &d)?;
    }
    let _ = std::fs::remove_file(&partial);
    let _ = std::fs::remove_file(partial.with_extension("lock"));
    drop(lock);
    progress.done(digest);
    Ok(())
}
