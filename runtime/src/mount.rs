//! Mount options and mounting: the spec's mounts in the init
//! (`init/rootfs.rs`) and, in the calling thread, the rootfs mounts
//! containerd hands a shim.

use std::path::Path;

use nix::mount::{mount, MsFlags};

use crate::{Error, Result};

/// Mounts `source` (of type `typ`, with `mount(8)`-style `options` such as
/// an overlay's `lowerdir=...`) on `target`. Options longer than a page
/// need the caller's care (containerd's shims shorten overlay lowerdirs by
/// changing directory in a child).
pub fn mount_rootfs(typ: &str, source: &str, options: &[String], target: &Path) -> Result<()> {
    mount_parsed(Path::new(source), target, typ, &parse_options(options))
}

/// Mounts `src` on `dest`: a bind mount (type `bind` or a `bind`/`rbind`
/// option) gets its other flags (`ro`, ...) by a remount; any other type
/// is mounted with its flags and data. A propagation option comes last.
pub(crate) fn mount_parsed(src: &Path, dest: &Path, typ: &str, opts: &Options) -> Result<()> {
    if typ == "bind" || opts.bind {
        let rec = opts.flags & MsFlags::MS_REC;
        do_mount(Some(src), dest, None, MsFlags::MS_BIND | rec, None)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            let flags = extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rec;
            do_mount(None, dest, None, flags, None)?;
        }
    } else {
        let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
        do_mount(Some(src), dest, Some(typ), opts.flags, data.as_deref())?;
    }
    if opts.recursive_ro {
        set_recursive_ro(dest)?;
    }
    if !opts.propagation.is_empty() {
        do_mount(None, dest, None, opts.propagation, None)?;
    }
    Ok(())
}

/// `rro`: makes `dest` and every mount below it read-only, which a
/// `MS_RDONLY` remount (the top mount only) cannot (`mount_setattr`,
/// Linux 5.12).
fn set_recursive_ro(dest: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dest.as_os_str()))
        .map_err(|_| Error::Spec(format!("mount destination {} has a NUL", dest.display())))?;
    // SAFETY: a valid NUL-terminated path and a mount_attr of the size given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(Error::sys(
            format!("mount_setattr rro on {}", dest.display()),
            nix::Error::last(),
        ));
    }
    Ok(())
}

pub(crate) fn do_mount(
    src: Option<&Path>,
    dest: &Path,
    typ: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, dest, typ, flags, data).map_err(|e| {
        Error::sys(
            format!(
                "mount {} on {} (type {}, data {:?})",
                src.map_or("none".into(), |s| s.display().to_string()),
                dest.display(),
                typ.unwrap_or("none"),
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// Mount options (`mount(8)` words) sorted into flags and filesystem data.
pub(crate) struct Options {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    /// `rro`: read-only all the way down (see [`set_recursive_ro`]).
    pub recursive_ro: bool,
}

pub(crate) fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive_ro: false,
    };
    for opt in opts {
        if let Some(p) = propagation(opt) {
            o.propagation = p;
            continue;
        }
        if let Some(&(word, _, flag)) = FLAG_WORDS
            .iter()
            .find(|(set, clear, _)| opt == set || *clear == Some(opt.as_str()))
        {
            if opt == word {
                o.flags |= flag;
            } else {
                o.flags &= !flag;
            }
            continue;
        }
        match opt.as_str() {
            "bind" => {
                o.bind = true;
                o.flags |= MsFlags::MS_BIND;
            }
            "rbind" => {
                o.bind = true;
                o.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            }
            "rro" => {
                o.recursive_ro = true;
                o.flags |= MsFlags::MS_RDONLY;
            }
            // Options other runtimes define that have no kernel meaning here.
            "tmpcopyup" | "idmap" | "ridmap" => {}
            other => o.data.push(other.to_string()),
        }
    }
    o
}

/// Flag words: the word that sets a flag, the one that clears it (if any).
const FLAG_WORDS: [(&str, Option<&str>, MsFlags); 11] = [
    ("ro", Some("rw"), MsFlags::MS_RDONLY),
    ("nosuid", Some("suid"), MsFlags::MS_NOSUID),
    ("nodev", Some("dev"), MsFlags::MS_NODEV),
    ("noexec", Some("exec"), MsFlags::MS_NOEXEC),
    ("sync", Some("async"), MsFlags::MS_SYNCHRONOUS),
    ("noatime", Some("atime"), MsFlags::MS_NOATIME),
    ("nodiratime", Some("diratime"), MsFlags::MS_NODIRATIME),
    ("relatime", Some("norelatime"), MsFlags::MS_RELATIME),
    ("dirsync", None, MsFlags::MS_DIRSYNC),
    ("mand", None, MsFlags::MS_MANDLOCK),
    ("strictatime", None, MsFlags::MS_STRICTATIME),
];

/// A propagation option (`private`, `rshared`, ...): the type, recursive
/// with an `r` in front.
fn propagation(opt: &str) -> Option<MsFlags> {
    let kind = |name: &str| match name {
        "private" => Some(MsFlags::MS_PRIVATE),
        "shared" => Some(MsFlags::MS_SHARED),
        "slave" => Some(MsFlags::MS_SLAVE),
        "unbindable" => Some(MsFlags::MS_UNBINDABLE),
        _ => None,
    };
    kind(opt).or_else(|| Some(kind(opt.strip_prefix('r')?)? | MsFlags::MS_REC))
}

/// A path as `/proc/self/mountinfo` writes it, unescaped (it escapes
/// space, tab, newline and backslash as `\NNN`, octal).
pub fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Options {
        parse_options(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn propagation_options_and_lookalikes() {
        assert_eq!(
            parse(&["rslave"]).propagation,
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        );
        assert_eq!(parse(&["private"]).propagation, MsFlags::MS_PRIVATE);
        assert_eq!(
            parse(&["runbindable"]).propagation,
            MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
        );
        // Words that start with an `r` but are not propagation types.
        let o = parse(&["rbind", "ro", "rw", "relatime"]);
        assert!(o.propagation.is_empty() && o.bind);
        assert!(o
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RELATIME));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.data.is_empty());
        let o = parse(&["rbind", "rro"]);
        assert!(o.propagation.is_empty() && o.recursive_ro);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
    }
}
