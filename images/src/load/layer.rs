//! One layer's trip from the archive into the store, in a single read:
//! the bytes are hashed (the blob digest), copied into a temp blob when
//! the store lacks it, decompressed, hashed again when compressed (the
//! diff ID; for an uncompressed layer the two are one hash) and unpacked
//! into a prepared snapshot. Layers run on as many threads as there are
//! cores. Nothing becomes visible here: the caller commits.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::invalid;
use super::source::Source;
use crate::digest::{hex, HashingReader};
use crate::snapshot::Snapshots;
use crate::unpack::{self, Limits};
use crate::{Error, Result, Store};

/// How a layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn sniff(magic: [u8; 4]) -> Compression {
        match magic {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The OCI media type of a layer so compressed.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => crate::media::LAYER_TAR,
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Where a layer's bytes come from: a range of an archive, or a registry.
pub(crate) trait LayerInput: Sync {
    /// What to call it in errors (its digest, or its name in the archive).
    fn name(&self) -> String;
    /// Its compression and a reader of all of it, from the start.
    fn open(&self) -> Result<(Compression, Box<dyn Read + Send + '_>)>;
    /// A file the input itself fills with the blob's bytes as they are
    /// read (a registry download's resumable partial file), used as the
    /// blob instead of a copy; kept when the import fails.
    fn blob_file(&self) -> Option<PathBuf> {
        None
    }
}

impl LayerInput for Source {
    fn name(&self) -> String {
        self.name.to_string()
    }
    fn open(&self) -> Result<(Compression, Box<dyn Read + Send + '_>)> {
        Ok((Compression::sniff(self.magic()?), Box::new(self.reader())))
    }
}

/// What to do with one layer.
pub(crate) struct Job<'a> {
    pub src: &'a dyn LayerInput,
    /// The descriptor's digest and size, when there is a descriptor (a
    /// Docker archive's layers have none: their digest is what we compute).
    pub expected_digest: Option<&'a str>,
    pub expected_size: Option<u64>,
    pub diff_id: &'a str,
    /// Unpack into a new snapshot (else only verify).
    pub unpack: bool,
    /// The layer is a bare Wasm module, placed as this file (not a tar).
    pub raw_module: Option<&'a str>,
}

/// A verified layer, ready to commit.
pub(crate) struct Done {
    pub digest: String,
    pub size: u64,
    pub compression: Compression,
    /// The blob, written to the store's tmp, unless the store had it.
    pub blob: Option<TempBlob>,
    /// The prepared snapshot, when unpacked.
    pub prepared: Option<PathBuf>,
}

/// A blob in the store's tmp dir; removed unless published (or kept: a
/// resumable download's partial file, which its owner removes).
pub(crate) struct TempBlob {
    path: PathBuf,
    keep: bool,
}

impl TempBlob {
    /// Owns `path` from now on.
    pub fn new(path: PathBuf) -> TempBlob {
        TempBlob { path, keep: false }
    }

    /// Moves it into the store under `digest` (a no-op if already there).
    pub fn publish(self, store: &Store, digest: &str) -> Result<()> {
        let dest = store.blob_path(digest)?;
        if !dest.exists() {
            std::fs::rename(&self.path, &dest).map_err(|e| Error::io(&dest, e))?;
        }
        Ok(())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Passes bytes through, hashing them, counting them and copying them to
/// the temp blob.
struct Tee<'a, R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    copy: Option<(File, PathBuf)>,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Some((f, _)) = &mut self.copy {
            f.write_all(&buf[..n])?;
        }
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

fn digest_of(h: Sha256) -> String {
    format!("sha256:{}", hex(&h.finalize()))
}

fn drain(mut r: impl Read, what: &str) -> Result<()> {
    std::io::copy(&mut r, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| invalid(format!("layer {what}: corrupt: {e}")))
}

/// Writes a bare module layer as one executable file, within the limit.
fn place_module(
    layer: &str,
    r: &mut dyn Read,
    dest: &std::path::Path,
    limits: Limits,
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?;
    let n = std::io::copy(&mut r.take(limits.max_bytes + 1), &mut f)
        .map_err(|e| invalid(format!("layer {layer}: {e}")))?;
    if n > limits.max_bytes {
        return Err(invalid(format!(
            "layer {layer}: module larger than {} bytes",
            limits.max_bytes
        )));
    }
    Ok(())
}

/// Runs one job. On error whatever it made is removed.
pub(crate) fn run(
    job: &Job,
    store: &Store,
    snapshots: &Snapshots,
    limits: Limits,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Done> {
    let name = job
        .expected_digest
        .map_or_else(|| job.src.name(), str::to_string);
    let (compression, input) = job.src.open()?;
    let own_file = job.src.blob_file();
    // Copy while reading when the blob is (likely) new; a Docker layer
    // only verified here has no digest yet and is copied afterwards if
    // the store turns out to lack it. An input that writes its own blob
    // file needs no copy.
    let copy = match job.expected_digest {
        _ if own_file.is_some() => None,
        Some(d) if store.has_blob(d) => None,
        None if !job.unpack => None,
        _ => {
            let path = store.temp_path("layer");
            let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
            Some((f, path))
        }
    };
    let blob = match &own_file {
        Some(p) => Some(TempBlob {
            path: p.clone(),
            keep: true,
        }),
        None => copy.as_ref().map(|(_, p)| TempBlob::new(p.clone())),
    };
    let prepared = if job.unpack {
        Some(snapshots.prepare()?)
    } else {
        None
    };
    let undo_prepared = |e: Error| {
        if let Some(p) = &prepared {
            let _ = std::fs::remove_dir_all(p);
        }
        e
    };
    // The bomb guard: never more decompressed bytes than the unpack limit
    // (plus tar framing), whatever the entries claim.
    let bound = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(1024));
    let mut tee = Tee {
        inner: input,
        hasher: Sha256::new(),
        size: 0,
        copy,
        on_bytes,
    };
    let consume = |r: &mut dyn Read| -> Result<()> {
        match (&prepared, job.raw_module) {
            (Some(p), Some(file)) => place_module(&name, r, &p.join("fs").join(file), limits)?,
            (Some(p), None) => unpack::apply(&name, &mut *r, &p.join("fs"), limits)?,
            (None, _) => {}
        }
        drain(r, &name)
    };
    let diff = match compression {
        Compression::None => {
            // Small, so that the unpacker's large reads of file data go
            // straight through instead of being copied via the buffer.
            let mut r = BufReader::with_capacity(64 << 10, (&mut tee).take(bound));
            consume(&mut r).map_err(undo_prepared)?;
            None
        }
        Compression::Gzip => {
            let mut r = HashingReader::new(
                flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, &mut tee))
                    .take(bound),
            );
            consume(&mut r).map_err(undo_prepared)?;
            Some(r.digest())
        }
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::new(&mut tee)
                .map_err(|e| undo_prepared(invalid(format!("layer {name}: {e}"))))?;
            let mut r = HashingReader::new(dec.take(bound));
            consume(&mut r).map_err(undo_prepared)?;
            Some(r.digest())
        }
    };
    // Whatever the decoder left unread still belongs to the blob.
    drain(&mut tee, &name).map_err(undo_prepared)?;
    // No fsync per blob: a killed process loses nothing the page cache
    // holds, and blobs are verified again whenever they leave the store
    // (`image save`), so damage from a machine crash is caught, not spread.
    drop(tee.copy.take());
    let size = tee.size;
    let digest = digest_of(tee.hasher);
    let diff_id = diff.unwrap_or_else(|| digest.clone());
    let check = || -> Result<()> {
        if let Some(expected) = job.expected_digest {
            if digest != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.clone(),
                });
            }
        }
        if let Some(s) = job.expected_size {
            if s != size {
                return Err(invalid(format!(
                    "blob {digest}: {size} bytes, its descriptor says {s}"
                )));
            }
        }
        if diff_id != job.diff_id {
            return Err(invalid(format!(
                "layer {digest}: uncompressed digest {diff_id} does not match diff ID {}",
                job.diff_id
            )));
        }
        Ok(())
    };
    check().map_err(undo_prepared)?;
    if blob.is_none() && !store.has_blob(&digest) {
        let (_, again) = job.src.open().map_err(undo_prepared)?;
        store
            .write_blob(again, Some(&digest))
            .map_err(undo_prepared)?;
    }
    Ok(Done {
        digest,
        size,
        compression,
        blob,
        prepared,
    })
}

/// Runs the jobs on one thread per core; results come back in job order.
/// After the first failure no new job starts, and every made snapshot
/// and temp blob is removed before the error is returned.
pub(super) fn run_all(
    jobs: &[Job],
    store: &Store,
    snapshots: &Snapshots,
    limits: Limits,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Done>> {
    let width = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<Done>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..width {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { return };
                let r = run(job, store, snapshots, limits, on_bytes);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *results[i].lock().unwrap() = Some(r);
            });
        }
    });
    let results: Vec<Option<Result<Done>>> = results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or(None))
        .collect();
    if let Some(pos) = results.iter().position(|r| matches!(r, Some(Err(_)))) {
        let mut err = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Some(Ok(done)) => discard(done),
                Some(Err(e)) if i == pos => err = Some(e),
                _ => {}
            }
        }
        return Err(err.expect("found above"));
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect::<Result<Vec<_>>>()
        .expect("no failure"))
}

/// Removes what a finished job made (its temp blob goes on drop).
pub(crate) fn discard(done: Done) {
    if let Some(p) = &done.prepared {
        let _ = std::fs::remove_dir_all(p);
    }
}
