//! Extended attributes in layer tars, carried as PAX `SCHILY.xattr.NAME`
//! records (as GNU tar, Go's archive/tar, Docker and containerd write
//! them), so that file capabilities (`security.capability`: ping's
//! cap_net_raw, newuidmap's cap_setuid) survive unpack, commit and export.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The PAX record prefix of an extended attribute.
pub const PAX_PREFIX: &str = "SCHILY.xattr.";

/// Whether a layer may set the attribute `name`. overlayfs's own
/// (`trusted.overlay.*`, `user.overlay.*` on userxattr mounts) would be
/// read by the overlay mount as its metadata (redirects, metacopy, opaque
/// directories), which a layer says only through whiteouts.
pub fn settable(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
}

/// Whether a layer written from a directory keeps the attribute `name`:
/// file capabilities and user attributes, as Docker keeps capabilities.
/// Everything else on the host's files (SELinux labels, overlay's own
/// bookkeeping in an upper dir) belongs to the host.
fn kept(name: &str) -> bool {
    name == "security.capability" || (name.starts_with("user.") && settable(name))
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// The attributes of `path` (a symlink itself, not its target) that a
/// layer keeps, sorted by name. A filesystem without xattrs has none.
pub fn read(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let c = c_path(path)?;
    let unsupported = |e: &std::io::Error| e.raw_os_error() == Some(libc::EOPNOTSUPP);
    // SAFETY: valid C string; a null buffer asks for the size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let e = std::io::Error::last_os_error();
        return if unsupported(&e) {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: the buffer holds `names.len()` bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for raw in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if !kept(name) {
            continue;
        }
        let cname = CString::new(raw).expect("split at NULs");
        // SAFETY: valid C strings; a null buffer asks for the size.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue; // removed meanwhile
        }
        let mut value = vec![0u8; len as usize];
        // SAFETY: the buffer holds `value.len()` bytes.
        let got = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if got < 0 {
            continue;
        }
        value.truncate(got as usize);
        out.push((name.to_string(), value));
    }
    out.sort();
    Ok(out)
}

/// Writes `attrs` as one PAX header, which applies to the entry appended
/// next; nothing when there are none.
pub fn append<W: Write>(
    b: &mut tar::Builder<W>,
    attrs: &[(String, Vec<u8>)],
) -> std::io::Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = attrs
        .iter()
        .map(|(k, _)| format!("{PAX_PREFIX}{k}"))
        .collect();
    b.append_pax_extensions(
        keys.iter()
            .map(String::as_str)
            .zip(attrs.iter().map(|(_, v)| v.as_slice())),
    )
}

/// Sets the attribute `name` on `path` (not following a symlink). A
/// filesystem that cannot hold it (EOPNOTSUPP), and a `user.*` one on
/// what is neither a file nor a directory (EPERM), are skipped, as
/// containerd skips them; any other refusal (a malformed capability) is
/// the caller's error.
pub fn set(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = c_path(path)?;
    let cname = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: valid C strings and value buffer.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(()),
        Some(libc::EPERM) if name.starts_with("user.") => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_metadata_is_never_set_or_kept() {
        assert!(!settable("trusted.overlay.redirect"));
        assert!(!settable("user.overlay.metacopy"));
        assert!(settable("security.capability"));
        assert!(settable("user.mime_type"));
        assert!(kept("security.capability"));
        assert!(kept("user.mime_type"));
        assert!(!kept("trusted.overlay.origin"));
        assert!(!kept("security.selinux"));
    }

    #[test]
    fn user_attributes_round_trip_through_a_tar() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        if set(&f, "user.amphi.test", b"v1").is_err() || read(&f).unwrap().is_empty() {
            return; // this filesystem keeps no user attributes
        }
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, &read(&f).unwrap()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap())
            .map(|x| (x.key().unwrap().to_string(), x.value_bytes().to_vec()))
            .collect();
        assert_eq!(
            pax,
            vec![("SCHILY.xattr.user.amphi.test".to_string(), b"v1".to_vec())]
        );
    }
}
