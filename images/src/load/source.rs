//! The files of an input archive, found without copying them: each is a
//! byte range of a file on disk (an entry of a tar archive, or a file of an
//! OCI layout directory), read with `pread` so layers can be read by
//! several threads at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::invalid;
use crate::digest::hex;
use crate::{Error, Result};

/// Metadata files (index, manifests, configs) are read whole; no honest one
/// comes near this.
const MAX_METADATA: u64 = 16 << 20;

/// One file of the archive: `len` bytes at `offset` of `file`.
#[derive(Clone)]
pub(super) struct Source {
    file: Arc<File>,
    offset: u64,
    /// Its size in bytes.
    pub len: u64,
    /// Its name in the archive, for errors.
    pub name: Arc<str>,
}

impl Source {
    /// A reader over the range.
    pub fn reader(&self) -> RangeReader {
        RangeReader {
            src: self.clone(),
            pos: 0,
        }
    }

    /// The first bytes, to sniff the compression.
    pub fn magic(&self) -> Result<[u8; 4]> {
        let mut m = [0u8; 4];
        let n = (self.len as usize).min(4);
        self.file
            .read_exact_at(&mut m[..n], self.offset)
            .map_err(|e| invalid(format!("archive entry {}: {e}", self.name)))?;
        Ok(m)
    }

    /// The whole content, for metadata; bounded.
    pub fn read_small(&self) -> Result<Vec<u8>> {
        if self.len > MAX_METADATA {
            return Err(invalid(format!(
                "archive entry {}: {} bytes is too large for metadata",
                self.name, self.len
            )));
        }
        let mut v = Vec::with_capacity(self.len as usize);
        self.reader()
            .read_to_end(&mut v)
            .map_err(|e| invalid(format!("archive entry {}: {e}", self.name)))?;
        Ok(v)
    }

    /// The content and its digest, for metadata.
    pub fn read_hashed(&self) -> Result<(Vec<u8>, String)> {
        let bytes = self.read_small()?;
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        Ok((bytes, digest))
    }
}

/// Reads a [`Source`] front to back; a range cut short by the end of the
/// file (a truncated archive) is an error, not a short file.
pub(super) struct RangeReader {
    src: Source,
    pos: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.src.len - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(left) as usize;
        let n = self
            .src
            .file
            .read_at(&mut buf[..want], self.src.offset + self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The archive's files by name (`/`-separated, relative).
pub(super) struct Sources {
    pub files: HashMap<String, Source>,
}

impl Sources {
    /// The file called `name`.
    pub fn get(&self, name: &str) -> Result<&Source> {
        self.files
            .get(name)
            .ok_or_else(|| invalid(format!("archive has no {name}")))
    }

    /// Indexes a tar archive by reading its headers only (data is skipped
    /// with seeks and read later, where it is needed).
    pub fn of_tar(path: &Path, max_file: u64) -> Result<Sources> {
        let file = Arc::new(File::open(path).map_err(|e| Error::io(path, e))?);
        let mut archive = tar::Archive::new(&*file);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut files = HashMap::new();
        // Links to other entries (skopeo's docker archives link
        // `<id>/layer.tar` to `<digest>.tar`), resolved once all are known.
        let mut aliases: Vec<(String, String)> = Vec::new();
        for entry in entries {
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
                    aliases.push((name.clone(), link_target(&name, t, &target)?));
                    continue;
                }
                t => {
                    return Err(invalid(format!(
                        "archive entry {name:?}: unexpected type {t:?}"
                    )))
                }
            }
            let len = entry.size();
            let offset = entry.raw_file_position();
            if len > max_file {
                return Err(invalid(format!(
                    "archive entry {name}: larger than {max_file} bytes"
                )));
            }
            if offset.saturating_add(len) > file_len {
                return Err(invalid(format!(
                    "archive entry {name}: archive is truncated"
                )));
            }
            let src = Source {
                file: file.clone(),
                offset,
                len,
                name: name.as_str().into(),
            };
            files.insert(name, src);
        }
        for (name, target) in aliases {
            let s = files.get(&target).cloned().ok_or_else(|| {
                invalid(format!(
                    "archive entry {name:?}: links to missing {target:?}"
                ))
            })?;
            files.insert(name, s);
        }
        Ok(Sources { files })
    }

    /// Indexes an OCI layout directory. Symlinks and special files are
    /// refused: an archive's files are data, never pointers.
    pub fn of_dir(dir: &Path, max_file: u64) -> Result<Sources> {
        let mut files = HashMap::new();
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
                    if meta.len() > max_file {
                        return Err(invalid(format!(
                            "{}: larger than {max_file} bytes",
                            p.display()
                        )));
                    }
                    let file = File::open(&p).map_err(|e| Error::io(&p, e))?;
                    let src = Source {
                        file: Arc::new(file),
                        offset: 0,
                        len: meta.len(),
                        name: name.as_str().into(),
                    };
                    files.insert(name, src);
                } else {
                    return Err(invalid(format!("{}: not a regular file", p.display())));
                }
            }
        }
        Ok(Sources { files })
    }
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

/// The entry a link names. A symlink is relative to its directory, a
/// hardlink to the archive root; either way it must name another entry.
fn link_target(name: &str, kind: tar::EntryType, target: &Path) -> Result<String> {
    let joined = match (kind, Path::new(name).parent()) {
        (tar::EntryType::Symlink, Some(dir)) => dir.join(target),
        _ => target.to_path_buf(),
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
    Ok(parts.join("/"))
}
