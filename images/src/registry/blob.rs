//! A blob download that survives a dropped connection: a read that fails
//! or ends early re-opens the blob with `Range: bytes=N-` from the last
//! byte received, so whoever reads it (the hasher, the decompressor, the
//! unpacker) sees one unbroken stream and keeps its state. What arrives is
//! also appended to a partial file, so a later pull (after a kill or a
//! give-up) re-reads that prefix locally and fetches only the rest.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::StatusCode;

use super::client::Client;
use crate::load::layer::{Compression, LayerInput};
use crate::{Error, Result};

/// The network side: the blob from `offset` on, re-opened as needed.
pub struct BlobStream<'a> {
    client: &'a Client,
    digest: String,
    offset: u64,
    size: u64,
    resp: Option<Response>,
}

impl<'a> BlobStream<'a> {
    /// The blob `digest` of `size` bytes, from byte `offset`.
    pub fn new(client: &'a Client, digest: &str, size: u64, offset: u64) -> BlobStream<'a> {
        BlobStream {
            client,
            digest: digest.to_string(),
            offset,
            size,
            resp: None,
        }
    }

    fn open(&mut self) -> Result<Response> {
        let url = self.client.url(&format!("blobs/{}", self.digest));
        let offset = self.offset;
        if offset > 0 {
            tracing::info!("blob {}: resuming at byte {offset}", self.digest);
        }
        let what = format!("blob {}", self.digest);
        let mut r = self.client.send(&what, &|http| {
            let rb = http.get(&url);
            if offset > 0 {
                rb.header(reqwest::header::RANGE, format!("bytes={offset}-"))
            } else {
                rb
            }
        })?;
        match r.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => Ok(r),
            StatusCode::OK => {
                // A registry that ignores Range: skip what we have.
                if offset > 0 {
                    std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
                        .map_err(|e| Error::Registry(format!("{what}: {e}")))?;
                }
                Ok(r)
            }
            StatusCode::NOT_FOUND => Err(Error::Invalid(format!(
                "{what}: not in {}/{}",
                self.client.registry, self.client.repository
            ))),
            s => Err(Error::Registry(format!("{what}: {s}"))),
        }
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (retries, backoff) = self.client.retry_policy();
        let mut failures = 0;
        let mut delay = backoff;
        loop {
            if self.offset >= self.size {
                // Past the descriptor's size the registry has nothing to
                // say: any more bytes would fail the size check anyway.
                return Ok(0);
            }
            if self.resp.is_none() {
                match self.open() {
                    Ok(r) => self.resp = Some(r),
                    Err(e @ Error::Invalid(_)) => return Err(std::io::Error::other(e)),
                    Err(e) => {
                        failures += 1;
                        if failures > retries {
                            return Err(std::io::Error::other(e));
                        }
                        std::thread::sleep(delay);
                        delay *= 2;
                        continue;
                    }
                }
            }
            let want = buf.len().min((self.size - self.offset) as usize);
            let got = self.resp.as_mut().expect("opened").read(&mut buf[..want]);
            match got {
                Ok(n) if n > 0 => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                // Ended early, or broke: again from where we are.
                Ok(_) | Err(_) => {
                    self.resp = None;
                    failures += 1;
                    if failures > retries {
                        return Err(std::io::Error::other(format!(
                            "blob {}: the transfer broke off at byte {} of {} and did not resume",
                            self.digest, self.offset, self.size
                        )));
                    }
                    tracing::info!(
                        "blob {}: transfer broke off at byte {}; resuming",
                        self.digest,
                        self.offset
                    );
                    std::thread::sleep(delay.min(Duration::from_secs(2)));
                    delay *= 2;
                }
            }
        }
    }
}

/// A layer pulled from a registry, as the layer importer reads it: the
/// partial file's bytes first (a resumed pull), then the network's, which
/// are appended to the partial file as they pass.
pub struct RemoteLayer<'a> {
    client: &'a Client,
    digest: String,
    size: u64,
    partial: PathBuf,
    /// Set when the network gave up (not the content): the caller keeps
    /// the partial file and calls the failure a transfer error.
    pub net_failed: std::sync::atomic::AtomicBool,
}

impl<'a> RemoteLayer<'a> {
    /// Layer `digest` (`size` bytes), its partial file at `partial`.
    pub fn new(client: &'a Client, digest: &str, size: u64, partial: &Path) -> RemoteLayer<'a> {
        RemoteLayer {
            client,
            digest: digest.to_string(),
            size,
            partial: partial.to_path_buf(),
            net_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The partial file's bytes, then the network's (copied into it).
struct Resumed<'a> {
    prefix: Option<File>,
    net: BlobStream<'a>,
    /// Buffered: fewer, larger writes. Always a prefix of the blob on
    /// disk (what a kill loses of the buffer is fetched again), flushed
    /// at the end of the blob, before anyone may publish the file.
    sink: std::io::BufWriter<File>,
    net_failed: &'a std::sync::atomic::AtomicBool,
}

impl Read for Resumed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(p) = &mut self.prefix {
            let n = p.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.prefix = None;
        }
        let n = match self.net.read(buf) {
            Ok(0) => {
                self.sink.flush()?;
                return Ok(0);
            }
            Ok(n) => n,
            Err(e) => {
                self.net_failed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl LayerInput for RemoteLayer<'_> {
    fn name(&self) -> String {
        self.digest.clone()
    }

    fn open(&self) -> Result<(Compression, Box<dyn Read + Send + '_>)> {
        let io = |e| Error::io(&self.partial, e);
        let mut sink = File::options()
            .create(true)
            .append(true)
            .open(&self.partial)
            .map_err(io)?;
        let mut have = sink.metadata().map_err(io)?.len();
        if have > self.size {
            // Not a prefix of this blob: start over.
            sink.set_len(0).map_err(io)?;
            have = 0;
        }
        let prefix = File::open(&self.partial).map_err(io)?;
        let _ = sink.flush();
        let reader = Resumed {
            prefix: Some(prefix),
            net: BlobStream::new(self.client, &self.digest, self.size, have),
            sink: std::io::BufWriter::with_capacity(128 << 10, sink),
            net_failed: &self.net_failed,
        };
        let mut r = BufReader::with_capacity(256 << 10, reader);
        let head = r
            .fill_buf()
            .map_err(|e| Error::Registry(format!("blob {}: {e}", self.digest)))?;
        let mut magic = [0u8; 4];
        let n = head.len().min(4);
        magic[..n].copy_from_slice(&head[..n]);
        // By content, as `image load` does: a media type may be wrong.
        Ok((Compression::sniff(magic), Box::new(r)))
    }

    fn blob_file(&self) -> Option<PathBuf> {
        Some(self.partial.clone())
    }
}
