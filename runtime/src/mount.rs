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
    if !opts.propagation.is_empty() {
        do_mount(None, dest, None, opts.propagation, None)?;
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
}

pub(crate) fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
    };
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" => {
                o.propagation = MsFlags::MS_PRIVATE;
                continue;
            }
            "rprivate" => {
                o.propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
                continue;
            }
            "shared" => {
                o.propagation = MsFlags::MS_SHARED;
                continue;
            }
            "rshared" => {
                o.propagation = MsFlags::MS_SHARED | MsFlags::MS_REC;
                continue;
            }
            "slave" => {
                o.propagation = MsFlags::MS_SLAVE;
                continue;
            }
            "rslave" => {
                o.propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC;
                continue;
            }
            "unbindable" => {
                o.propagation = MsFlags::MS_UNBINDABLE;
                continue;
            }
            "runbindable" => {
                o.propagation = MsFlags::MS_UNBINDABLE | MsFlags::MS_REC;
                continue;
            }
            // Options other runtimes define that have no kernel meaning here.
            "tmpcopyup" | "rro" | "idmap" | "ridmap" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
    }
    o
}
