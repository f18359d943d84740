//! The content store: `<root>/blobs/sha256/<hex>` and `<root>/refs/<name>`.
//!
//! Every blob is hashed while it is written to a temp file under
//! `<root>/tmp` and becomes visible only by an atomic rename after its
//! digest checked out, so a killed import leaves no visible blob; refs are
//! written the same way, last, so they only ever name complete images.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::{hex, hex_part};
use crate::{Error, Result};

/// An image store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["blobs/sha256", "refs", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
        Ok(Store { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(hex_part(digest)?))
    }

    /// Whether the store holds the blob.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.exists())
    }

    /// Stores `bytes`, verifying them against `expected` when given.
    pub fn put_blob(&self, bytes: &[u8], expected: Option<&str>) -> Result<String> {
        self.write_blob(bytes, expected).map(|(d, _)| d)
    }

    /// Streams a blob into the store, hashing as it writes; returns its
    /// digest and size. A mismatch with `expected` stores nothing.
    pub fn write_blob(
        &self,
        mut reader: impl Read,
        expected: Option<&str>,
    ) -> Result<(String, u64)> {
        if let Some(e) = expected {
            hex_part(e)?;
            if self.has_blob(e) {
                // Content-addressed: present already, nothing to write. The
                // reader is still drained and verified by callers that must.
                let mut hasher = Sha256::new();
                let n = std::io::copy(&mut reader, &mut HashWriter(&mut hasher))
                    .map_err(|e| Error::io("<input>", e))?;
                let actual = format!("sha256:{}", hex(&hasher.finalize()));
                if actual != e {
                    return Err(Error::DigestMismatch {
                        expected: e.to_string(),
                        actual,
                    });
                }
                return Ok((actual, n));
            }
        }
        let (tmp_path, mut tmp) = self.temp_file()?;
        let guard = TempGuard(tmp_path.clone());
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| Error::io("<input>", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| Error::io(&tmp_path, e))?;
            size += n as u64;
        }
        let actual = format!("sha256:{}", hex(&hasher.finalize()));
        if let Some(e) = expected {
            if actual != e {
                return Err(Error::DigestMismatch {
                    expected: e.to_string(),
                    actual,
                });
            }
        }
        tmp.sync_all().map_err(|e| Error::io(&tmp_path, e))?;
        drop(tmp);
        let dest = self.blob_path(&actual)?;
        std::fs::rename(&tmp_path, &dest).map_err(|e| Error::io(&dest, e))?;
        std::mem::forget(guard);
        Ok((actual, size))
    }

    /// Reads a whole blob.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingBlob(digest.to_string()),
            _ => Error::io(&p, e),
        })
    }

    /// Points `reference` at the manifest `digest`.
    pub fn tag(&self, reference: &str, digest: &str) -> Result<()> {
        let name = normalize(reference)?;
        hex_part(digest)?;
        let (tmp_path, mut tmp) = self.temp_file()?;
        let guard = TempGuard(tmp_path.clone());
        tmp.write_all(digest.as_bytes())
            .map_err(|e| Error::io(&tmp_path, e))?;
        drop(tmp);
        let dest = self.root.join("refs").join(escape(&name));
        std::fs::rename(&tmp_path, &dest).map_err(|e| Error::io(&dest, e))?;
        std::mem::forget(guard);
        Ok(())
    }

    /// The manifest digest `reference` names.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        let name = normalize(reference)?;
        let p = self.root.join("refs").join(escape(&name));
        match std::fs::read_to_string(&p) {
            Ok(d) => Ok(d.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::UnknownRef(reference.to_string()))
            }
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Removes the reference (not the blobs; see [`crate::gc`]).
    pub fn untag(&self, reference: &str) -> Result<()> {
        let name = normalize(reference)?;
        let p = self.root.join("refs").join(escape(&name));
        std::fs::remove_file(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::UnknownRef(reference.to_string()),
            _ => Error::io(&p, e),
        })
    }

    /// Every (reference, manifest digest), sorted by reference.
    pub fn refs(&self) -> Result<Vec<(String, String)>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .flatten()
        {
            let name = unescape(&e.file_name().to_string_lossy());
            if let Ok(d) = std::fs::read_to_string(e.path()) {
                out.push((name, d.trim().to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn temp_file(&self) -> Result<(PathBuf, File)> {
        let p = self.temp_path("blob");
        let f = File::create(&p).map_err(|e| Error::io(&p, e))?;
        Ok((p, f))
    }

    /// A fresh path in the store's tmp dir, named `<pid>-<what>-<n>` so
    /// that [`Store::sweep_tmp`] can tell a dead process's leftovers.
    pub(crate) fn temp_path(&self, what: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        self.root.join("tmp").join(format!(
            "{}-{what}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Removes what killed processes left in the tmp dir (half-written
    /// blobs, spooled input). Entries of live processes are kept, so
    /// concurrent loads are safe.
    pub fn sweep_tmp(&self) {
        let tmp = self.root.join("tmp");
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name();
            if owner_is_dead(&name.to_string_lossy()) {
                let p = e.path();
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            }
        }
    }
}

/// Whether a temp name `[.tmp-]<pid>-...` belongs to a process that is gone.
/// (A recycled pid only delays the sweep; it never removes live work.)
pub(crate) fn owner_is_dead(name: &str) -> bool {
    let rest = name.strip_prefix(".tmp-").unwrap_or(name);
    match rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) {
        Some(pid) if pid > 0 => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Removes a temp file unless forgotten (on every error path).
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The full name Docker users expect: `app` is `docker.io/library/app:latest`.
pub fn normalize(reference: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidRef(reference.to_string(), why.to_string());
    if reference.is_empty() || reference.len() > 255 {
        return Err(bad("must be 1-255 characters"));
    }
    if !reference
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b))
    {
        return Err(bad("use lowercase letters, digits and . _ - / : @"));
    }
    if reference
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("empty or dot path component"));
    }
    let (first, _) = reference.split_once('/').unwrap_or(("", reference));
    let has_domain = first.contains('.') || first.contains(':') || first == "localhost";
    let mut name = match (has_domain, reference.contains('/')) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/{reference}"),
        (false, false) => format!("docker.io/library/{reference}"),
    };
    let last = name.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        name.push_str(":latest");
    }
    Ok(name)
}

/// The short form users see: `docker.io/library/app:latest` is `app:latest`.
pub fn familiar(name: &str) -> String {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
        .to_string()
}

fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn unescape(file: &str) -> String {
    file.replace("%2F", "/").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"hello", None).unwrap();
        assert!(s.has_blob(&d));
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        let wrong = crate::digest::of(b"other");
        let err = s.put_blob(b"hello!", Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!s.has_blob(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temp file left"
        );
    }

    #[test]
    fn refs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"m", None).unwrap();
        s.tag("app", &d).unwrap();
        assert_eq!(s.resolve("docker.io/library/app:latest").unwrap(), d);
        assert_eq!(
            s.refs().unwrap(),
            vec![("docker.io/library/app:latest".to_string(), d.clone())]
        );
        assert!(matches!(s.resolve("nope"), Err(Error::UnknownRef(_))));
        for bad in ["", "App", "a/../b", "a b", "/abs"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize("ghcr.io/x/y:1").unwrap(), "ghcr.io/x/y:1");
        assert_eq!(normalize("user/app").unwrap(), "docker.io/user/app:latest");
        assert_eq!(familiar("docker.io/library/app:latest"), "app:latest");
    }
}
