//! Applying a layer tar to a snapshot directory, overlay style.
//!
//! Layer tars are untrusted. Nothing may land outside the snapshot being
//! unpacked: absolute paths and `..` are rejected, no entry may be written
//! through a symlink (every parent is checked to be a real directory, and
//! files are created with O_NOFOLLOW after removing what was there),
//! hardlinks must point at an earlier entry inside the snapshot, and the
//! total size is bounded (decompression bombs). Device nodes and FIFOs are
//! made as containerd and Docker make them as root: whether a container
//! may use a node is its devices cgroup's decision, not the layer's.
//! OCI whiteouts become overlay whiteouts: `.wh.NAME` a 0:0 character
//! device, `.wh..wh..opq` the `trusted.overlay.opaque` xattr. Extended
//! attributes in PAX records are set (file capabilities survive), except
//! overlayfs's own, which only whiteouts may express (`crate::xattr`).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Bounds on what one layer may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Number of entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 10_000_000,
        }
    }
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn bad(layer: &str, path: &str, why: &str) -> Error {
    Error::Invalid(format!("layer {layer}: entry {path:?}: {why}"))
}

/// Splits an entry path into its normal components, rejecting absolute
/// paths and `..`; `./` prefixes are dropped.
fn components(layer: &str, raw: &Path) -> Result<Vec<std::ffi::OsString>> {
    let shown = raw.to_string_lossy();
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(layer, &shown, "absolute path"))
            }
            Component::ParentDir => {
                return Err(bad(layer, &shown, "path escapes the layer with .."))
            }
        }
    }
    Ok(out)
}

/// Makes sure every directory from `dest` down to `parts` exists as a real
/// directory (never a symlink), creating missing ones.
fn real_parent(
    layer: &str,
    shown: &str,
    dest: &Path,
    parts: &[std::ffi::OsString],
) -> Result<PathBuf> {
    let mut dir = dest.to_path_buf();
    for p in parts {
        dir.push(p);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(layer, shown, "a parent directory is a symlink"))
            }
            Ok(_) => return Err(bad(layer, shown, "a parent is not a directory")),
            Err(_) => std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?,
        }
    }
    Ok(dir)
}

/// Removes whatever is at `path` (a directory only when `keep_dir` is false).
fn clear(path: &Path, keep_dir: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if !keep_dir {
                std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
            }
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(_) => {}
    }
    Ok(())
}

fn lchown(path: &Path, uid: u64, gid: u64) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid("NUL in path".into()))?;
    // SAFETY: valid C string.
    if unsafe { libc::lchown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: u64) {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid C string and array of two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

fn mknod_whiteout(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid("NUL in path".into()))?;
    // SAFETY: valid C string; a 0:0 character device is overlay's whiteout.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn set_opaque(dir: &Path) -> Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid("NUL in path".into()))?;
    // SAFETY: valid C strings and value buffer.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        return Err(Error::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Applies the uncompressed layer tar `input` into `dest` (an empty or
/// partly filled snapshot directory). `layer` names the layer in errors.
pub fn apply(layer: &str, input: impl Read, dest: &Path, limits: Limits) -> Result<()> {
    let mut archive = tar::Archive::new(input);
    // One large buffer for all file data: far fewer syscalls than 8 KiB.
    let mut buf = vec![0u8; 256 << 10];
    let mut bytes = 0u64;
    let mut count = 0u64;
    // Directories get their times once everything is in them: each entry
    // made inside one changes its mtime (containerd does the same).
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| Error::Invalid(format!("layer {layer}: not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| Error::Invalid(format!("layer {layer}: malformed tar: {e}")))?;
        count += 1;
        if count > limits.max_entries {
            return Err(Error::Invalid(format!(
                "layer {layer}: more than {} entries",
                limits.max_entries
            )));
        }
        // A PAX global header (`git archive` writes one) describes the
        // archive, not a file: containerd and Docker ignore it too.
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| Error::Invalid(format!("layer {layer}: bad entry name: {e}")))?
            .into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let parts = components(layer, &raw)?;
        let Some((name, parents)) = parts.split_last() else {
            // The layer root itself: only a directory may stand there.
            if entry.header().entry_type() == tar::EntryType::Directory {
                continue;
            }
            return Err(bad(layer, &shown, "replaces the layer root"));
        };
        let name_str = name.to_string_lossy();
        let parent = real_parent(layer, &shown, dest, parents)?;
        if name_str == OPAQUE {
            set_opaque(&parent)?;
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(bad(layer, &shown, "whiteout of an invalid name"));
            }
            let target = parent.join(hidden);
            clear(&target, false)?;
            mknod_whiteout(&target)?;
            continue;
        }
        let path = parent.join(name);
        let xattrs = pax_xattrs(layer, &shown, &mut entry)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => {
                clear(&path, true)?;
                if !path.is_dir() {
                    std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
                }
                lchown(&path, uid, gid)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io(&path, e))?;
            }
            // A GNU sparse file is read with its holes as zeros.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // The entry's size, not the header field: a PAX `size`
                // record (files past 8 GiB) or a sparse file's real size
                // overrides it.
                let size = entry.size();
                bytes = bytes.saturating_add(size);
                if bytes > limits.max_bytes {
                    return Err(Error::Invalid(format!(
                        "layer {layer}: unpacks to more than {} bytes",
                        limits.max_bytes
                    )));
                }
                clear(&path, false)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                let copied = copy_data(&mut entry, size, &mut f, &mut buf).map_err(|e| {
                    Error::Invalid(format!("layer {layer}: entry {shown:?}: truncated: {e}"))
                })?;
                if copied != size {
                    return Err(bad(layer, &shown, "truncated"));
                }
                drop(f);
                lchown(&path, uid, gid)?;
                // After chown, which clears setuid bits.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io(&path, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(layer, &shown, &format!("bad link name: {e}")))?
                    .ok_or_else(|| bad(layer, &shown, "symlink without a target"))?
                    .into_owned();
                clear(&path, false)?;
                // The target is never followed here; at run time it resolves
                // inside the container's root.
                symlink(&target, &path).map_err(|e| Error::io(&path, e))?;
                lchown(&path, uid, gid)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(layer, &shown, &format!("bad link name: {e}")))?
                    .ok_or_else(|| bad(layer, &shown, "hardlink without a target"))?
                    .into_owned();
                let tparts = components(layer, &target)
                    .map_err(|_| bad(layer, &shown, "hardlink points outside the layer"))?;
                let Some((tname, tparents)) = tparts.split_last() else {
                    return Err(bad(layer, &shown, "hardlink to the layer root"));
                };
                let mut tpath = dest.to_path_buf();
                for p in tparents {
                    tpath.push(p);
                    if std::fs::symlink_metadata(&tpath)
                        .map(|m| !m.is_dir())
                        .unwrap_or(true)
                    {
                        return Err(bad(
                            layer,
                            &shown,
                            "hardlink target is not inside the layer",
                        ));
                    }
                }
                tpath.push(tname);
                if std::fs::symlink_metadata(&tpath).is_err() {
                    return Err(bad(
                        layer,
                        &shown,
                        "hardlink target is not inside the layer",
                    ));
                }
                clear(&path, false)?;
                std::fs::hard_link(&tpath, &path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            tar::EntryType::Fifo => {
                clear(&path, false)?;
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(mode))
                    .map_err(|e| Error::io(&path, e.into()))?;
                lchown(&path, uid, gid)?;
            }
            // As containerd and Docker unpack as root: the node is made;
            // what a container may open is the devices cgroup's to say
            // (every device denied but the usual /dev nodes and the
            // spec's), so a node for the host's disk stays unusable.
            tar::EntryType::Char | tar::EntryType::Block => {
                let number = |n: std::io::Result<Option<u32>>| {
                    n.ok()
                        .flatten()
                        .ok_or_else(|| bad(layer, &shown, "device node without a valid number"))
                };
                let major = number(entry.header().device_major())?;
                let minor = number(entry.header().device_minor())?;
                let kind = if entry.header().entry_type() == tar::EntryType::Char {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                clear(&path, false)?;
                nix::sys::stat::mknod(
                    &path,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(|e| Error::io(&path, e.into()))?;
                lchown(&path, uid, gid)?;
                // mknod honours the umask; the layer's mode is exact.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| Error::io(&path, e))?;
            }
            other => {
                return Err(bad(
                    layer,
                    &shown,
                    &format!("unsupported entry type {other:?}"),
                ))
            }
        }
        // Last: chown clears a file's capabilities.
        for (name, value) in &xattrs {
            crate::xattr::set(&path, name, value)
                .map_err(|e| bad(layer, &shown, &format!("extended attribute {name}: {e}")))?;
        }
        if kind == tar::EntryType::Directory {
            dir_times.push((path, mtime));
        } else {
            set_mtime(&path, mtime);
        }
    }
    for (dir, mtime) in dir_times {
        set_mtime(&dir, mtime);
    }
    Ok(())
}

/// The extended attributes an entry's PAX records carry, minus those a
/// layer may not set (`crate::xattr::settable`).
fn pax_xattrs<R: Read>(
    layer: &str,
    shown: &str,
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(records) = entry
        .pax_extensions()
        .map_err(|e| bad(layer, shown, &format!("malformed PAX header: {e}")))?
    else {
        return Ok(out);
    };
    for r in records {
        let r = r.map_err(|e| bad(layer, shown, &format!("malformed PAX header: {e}")))?;
        let Some(name) = r
            .key()
            .ok()
            .and_then(|k| k.strip_prefix(crate::xattr::PAX_PREFIX))
        else {
            continue;
        };
        if name.is_empty() || name.contains('\0') {
            return Err(bad(layer, shown, "extended attribute without a valid name"));
        }
        if crate::xattr::settable(name) {
            out.push((name.to_string(), r.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// Copies `size` bytes of an entry into `out`; returns how many there were.
fn copy_data(
    entry: &mut impl Read,
    size: u64,
    out: &mut impl Write,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    let mut left = size;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = entry.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(size - left)
}
