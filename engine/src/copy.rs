//! `cp` between a container's filesystem and the host, both ways, with
//! Docker's rules for where things land. Paths inside the container are
//! resolved as the container sees them: symlinks in them are followed
//! within its rootfs, never out of it (the last component is copied as
//! it is, a symlink as a symlink, as `docker cp` does).

use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::{Error, Result};
use crate::{bundle, Engine};

/// The host path of `inside` (absolute or relative to `/`) in the tree at
/// `root`, every symlink on the way resolved as if `root` were `/` (the
/// runtime's resolver, which mounts use too); the last component is
/// followed only with `follow_last`.
pub fn resolve_in_root(root: &Path, inside: &str, follow_last: bool) -> PathBuf {
    amphi_runtime::paths::resolve_in_root(root, Path::new(inside), follow_last)
}

/// Where a copy of `src` lands given the destination `dst` (Docker's
/// rules): into `dst` when it is an existing directory, else as `dst`
/// (whose parent must exist); a `dst` ending in `/` must be a directory.
fn landing(src: &Path, dst: &Path, dst_text: &str, src_contents: bool) -> Result<PathBuf> {
    let src_is_dir = std::fs::symlink_metadata(src).is_ok_and(|m| m.is_dir());
    if dst.is_dir() {
        if src_is_dir && src_contents {
            return Ok(dst.to_path_buf());
        }
        let name = src
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("cannot copy {}", src.display())))?;
        return Ok(dst.join(name));
    }
    if dst_text.ends_with('/') && !src_is_dir {
        bail!("{dst_text}: no such directory");
    }
    match dst.parent() {
        Some(p) if p.is_dir() => Ok(dst.to_path_buf()),
        _ => bail!("{dst_text}: its parent directory does not exist"),
    }
}

/// Copies `src` (file, symlink or tree) to `dst`, keeping modes and
/// owners. Nothing is written through a symlink met at the destination
/// (it is replaced): a container's links cannot point a copy elsewhere.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    let m = std::fs::symlink_metadata(src).map_err(|e| Error::io(src, e))?;
    let ft = m.file_type();
    let mut n = 0;
    if ft.is_dir() {
        match std::fs::symlink_metadata(dst) {
            Ok(d) if d.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(dst).map_err(|e| Error::io(dst, e))?;
                std::fs::create_dir(dst).map_err(|e| Error::io(dst, e))?;
            }
            Err(_) => std::fs::create_dir(dst).map_err(|e| Error::io(dst, e))?,
        }
        let entries = std::fs::read_dir(src).map_err(|e| Error::io(src, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(src, e))?;
            n += copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| Error::io(dst, e))?;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| Error::io(src, e))?;
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(&target, dst).map_err(|e| Error::io(dst, e))?;
    } else if ft.is_file() {
        // A symlink at the destination is replaced, never written through.
        if std::fs::symlink_metadata(dst).is_ok_and(|d| d.file_type().is_symlink()) {
            std::fs::remove_file(dst).map_err(|e| Error::io(dst, e))?;
        }
        n += std::fs::copy(src, dst).map_err(|e| Error::io(dst, e))?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| Error::io(dst, e))?;
    } else {
        bail!(
            "{}: only files, directories and symlinks are copied",
            src.display()
        );
    }
    let _ = lchown(dst, Some(m.uid()), Some(m.gid()));
    Ok(n)
}

impl Engine {
    /// The container's rootfs on the host, mounted (again, after a reboot).
    fn rootfs_of(&self, query: &str) -> Result<PathBuf> {
        let rec = self.container(query)?;
        bundle::ensure_mounted(
            self.root(),
            &rec.id,
            rec.image_digest.as_deref(),
            &rec.image,
        )?;
        Ok(bundle::rootfs_path(
            self.root(),
            &rec.id,
            rec.image_digest.as_deref(),
            &rec.image,
        ))
    }

    /// `cp CONTAINER:SRC DST`: returns the bytes copied.
    pub fn copy_out(&self, query: &str, src: &str, dst: &Path) -> Result<u64> {
        let rootfs = self.rootfs_of(query)?;
        let from = resolve_in_root(&rootfs, src, false);
        if std::fs::symlink_metadata(&from).is_err() {
            bail!("{query}:{src}: no such file or directory in the container");
        }
        let to = landing(&from, dst, &dst.to_string_lossy(), src.ends_with("/."))?;
        copy_tree(&from, &to)
    }

    /// `cp SRC CONTAINER:DST`: returns the bytes copied.
    pub fn copy_in(&self, src: &Path, query: &str, dst: &str) -> Result<u64> {
        let rootfs = self.rootfs_of(query)?;
        if std::fs::symlink_metadata(src).is_err() {
            bail!("{}: no such file or directory", src.display());
        }
        // The destination as the container sees it, symlinks kept inside.
        let to = resolve_in_root(&rootfs, dst, true);
        let to = landing(src, &to, dst, src.to_string_lossy().ends_with("/."))?;
        if !to.starts_with(&rootfs) {
            bail!("{query}:{dst}: outside the container");
        }
        copy_tree(src, &to)
    }
}

impl Engine {
    /// `cp CONTAINER:SRC -`: SRC as a tar stream on `out`, named by its
    /// last component (`SRC/.`: its contents at the top), symlinks kept as
    /// symlinks, as `docker cp` streams it.
    pub fn copy_out_tar(&self, query: &str, src: &str, out: &mut dyn std::io::Write) -> Result<()> {
        let rootfs = self.rootfs_of(query)?;
        let from = resolve_in_root(&rootfs, src, false);
        let Ok(m) = std::fs::symlink_metadata(&from) else {
            bail!("{query}:{src}: no such file or directory in the container");
        };
        let name = if src.ends_with("/.") {
            PathBuf::from(".")
        } else {
            from.file_name()
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
        };
        let tar_err =
            |e: std::io::Error| Error::Invalid(format!("{query}:{src}: writing the tar: {e}"));
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        if m.is_dir() {
            b.append_dir_all(&name, &from).map_err(tar_err)?;
        } else {
            b.append_path_with_name(&from, &name).map_err(tar_err)?;
        }
        b.finish().map_err(tar_err)
    }

    /// `cp - CONTAINER:DST`: the tar stream `input` extracted into the
    /// directory DST, as `docker cp` takes one: unpacked first into a
    /// directory of the container's own (the tar crate keeps every entry
    /// inside it), then copied in by [`Engine::copy_in`]'s rules, so no
    /// link in the container's tree leads a file out of it.
    pub fn copy_in_tar(
        &self,
        input: &mut dyn std::io::Read,
        query: &str,
        dst: &str,
    ) -> Result<u64> {
        let rec = self.container(query)?;
        let rootfs = self.rootfs_of(&rec.id)?;
        let to = resolve_in_root(&rootfs, dst, true);
        if !to.is_dir() {
            bail!("{query}:{dst}: the destination of a tar stream must be a directory");
        }
        let stage =
            crate::record::dir(self.root(), &rec.id).join(format!("cp-in.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir(&stage).map_err(|e| Error::io(&stage, e))?;
        let copied = (|| -> Result<u64> {
            let mut a = tar::Archive::new(input);
            a.set_preserve_permissions(true);
            a.set_preserve_ownerships(true);
            a.set_overwrite(true);
            a.unpack(&stage).map_err(|e| {
                // The tar crate's message names the entry; its cause says why.
                let why = std::error::Error::source(&e)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                let entry = e.to_string().replace(&format!("{}/", stage.display()), "");
                Error::Invalid(format!("{query}:{dst}: the tar on stdin: {entry}{why}"))
            })?;
            let mut n = 0;
            for e in std::fs::read_dir(&stage).map_err(|e| Error::io(&stage, e))? {
                let e = e.map_err(|e| Error::io(&stage, e))?;
                n += copy_tree(&e.path(), &to.join(e.file_name()))?;
            }
            Ok(n)
        })();
        let _ = std::fs::remove_dir_all(&stage);
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/etc")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("a/b/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/a/etc/passwd", false),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "a/b/up/x", false), root.join("x"));
        assert_eq!(resolve_in_root(root, "/a/etc", false), root.join("a/etc"));
        assert_eq!(resolve_in_root(root, "/../..", true), root);
    }
}
