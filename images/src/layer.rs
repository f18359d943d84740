//! Deterministic layer tars: entries sorted by name, owned by 0:0, mtime 0,
//! parent directories made explicit, so the same tree gives the same digest.

use std::collections::BTreeMap;

use crate::{Error, Result};

enum Entry {
    Dir,
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: String },
}

/// Builds a layer from in-memory files.
#[derive(Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file at `path` (relative; a leading `/` is dropped),
    /// creating its parent directories.
    pub fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> Result<&mut Self> {
        let path = self.parents(path)?;
        self.entries.insert(
            path,
            Entry::File {
                mode,
                bytes: bytes.to_vec(),
            },
        );
        Ok(self)
    }

    /// Adds a symbolic link at `path` pointing to `target`, creating its
    /// parent directories.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let path = self.parents(path)?;
        self.entries.insert(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        Ok(self)
    }

    /// Checks `path` and adds its parent directories; the path without a
    /// leading `/`.
    fn parents(&mut self, path: &str) -> Result<String> {
        let path = path.trim_start_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Invalid(format!("bad layer path {path:?}")));
        }
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            self.entries
                .entry(format!("{}/", parts[..i].join("/")))
                .or_insert(Entry::Dir);
        }
        Ok(path.to_string())
    }

    /// The tar bytes.
    pub fn build(&self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let io = |e: std::io::Error| Error::io("<layer>", e);
        for (path, entry) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match entry {
                Entry::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).map_err(io)?;
                }
                Entry::File { mode, bytes } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(bytes.len() as u64);
                    b.append_data(&mut h, path, bytes.as_slice()).map_err(io)?;
                }
                Entry::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).map_err(io)?;
                }
            }
        }
        b.into_inner().map_err(io)
    }
}

/// The names in directory `dir`, sorted (a deterministic walk).
pub fn sorted_names(dir: &std::path::Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    Ok(names)
}

/// Writes the tree at `dir` as a flat, deterministic tar (`export`):
/// entries sorted by name, mtime 0, owners, modes and file capabilities
/// kept, hardlinked files written as separate files.
pub fn tar_tree(dir: &std::path::Path, out: impl std::io::Write) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut paths = Vec::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for n in sorted_names(&dir.join(&rel))? {
            let r = rel.join(&n);
            let m =
                std::fs::symlink_metadata(dir.join(&r)).map_err(|e| Error::io(dir.join(&r), e))?;
            if m.is_dir() {
                stack.push(r.clone());
            }
            paths.push(r);
        }
    }
    paths.sort();
    let mut b = tar::Builder::new(out);
    let io = |e: std::io::Error| Error::io("<export>", e);
    for rel in paths {
        let abs = dir.join(&rel);
        let m = std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(m.uid() as u64);
        h.set_gid(m.gid() as u64);
        h.set_mode(m.mode() & 0o7777);
        let ft = m.file_type();
        if ft.is_dir() || ft.is_symlink() || ft.is_file() {
            let attrs = crate::xattr::read(&abs).map_err(|e| Error::io(&abs, e))?;
            crate::xattr::append(&mut b, &attrs).map_err(io)?;
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{}/", rel.display()), std::io::empty())
                .map_err(io)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&abs).map_err(|e| Error::io(&abs, e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &rel, &target).map_err(io)?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = std::fs::File::open(&abs).map_err(|e| Error::io(&abs, e))?;
            b.append_data(&mut h, &rel, f).map_err(io)?;
        }
        // Sockets, fifos and devices are not part of an image's files.
    }
    b.into_inner().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_safe() {
        let mut a = LayerBuilder::new();
        a.file("b/x", 0o644, b"1")
            .unwrap()
            .file("/a", 0o755, b"2")
            .unwrap();
        let mut b = LayerBuilder::new();
        b.file("a", 0o755, b"2")
            .unwrap()
            .file("b/x", 0o644, b"1")
            .unwrap();
        assert_eq!(a.build().unwrap(), b.build().unwrap());
        assert!(LayerBuilder::new().file("../x", 0o644, b"").is_err());
    }
}
