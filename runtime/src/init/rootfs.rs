//! The container's filesystem view: mount propagation, the spec's mounts,
//! /dev, pivot_root, masked and read-only paths, read-only rootfs.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Mount};

use super::InitConfig;
use crate::mount::{do_mount, mount_parsed, parse_options};
use crate::paths::secure_join;
use crate::{Error, Result};

/// The spec's `rootfsPropagation`, if it names one.
pub(super) fn rootfs_propagation(cfg: &InitConfig) -> Result<Option<MsFlags>> {
    Ok(
        match cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().as_deref())
        {
            None | Some("") => None,
            Some("slave") | Some("rslave") => Some(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            Some("private") | Some("rprivate") => Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            Some("shared") | Some("rshared") => Some(MsFlags::MS_SHARED | MsFlags::MS_REC),
            Some("unbindable") | Some("runbindable") => {
                Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)
            }
            Some(other) => return Err(Error::Spec(format!("unknown rootfsPropagation {other:?}"))),
        },
    )
}

/// Mounts everything under the rootfs, before pivot_root.
///
/// The order is runc's: the whole tree gets the spec's propagation
/// (default rslave: host mounts reach us, ours never reach the host) —
/// `rshared` keeps bidirectional host paths peers of the host's; then the
/// mount holding the rootfs is made private, so the rootfs bind below
/// propagates nowhere and pivot_root accepts it (it refuses a shared new
/// root or parent); the spec's propagation is applied to the new `/`
/// after the pivot (see [`pivot`]).
pub(super) fn prepare(cfg: &InitConfig) -> Result<()> {
    let propagation = rootfs_propagation(cfg)?.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    do_mount(None, Path::new("/"), None, propagation, None)?;
    if let Some(parent) = mount_point_of(&cfg.rootfs) {
        do_mount(None, &parent, None, MsFlags::MS_PRIVATE, None)?;
    }
    // pivot_root needs the new root to be a mount point.
    do_mount(
        Some(&cfg.rootfs),
        &cfg.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut dev_mount = None;
    for m in cfg.spec.mounts().iter().flatten() {
        mount_one(cfg, m)?;
        if m.destination()
            .components()
            .eq(Path::new("/dev").components())
        {
            dev_mount = Some(m.typ().as_deref() == Some("tmpfs"));
        }
    }
    // The spec's default devices, as runc makes them: on a /dev tmpfs; on
    // the rootfs's own /dev when no mount covers it (a spec with no /dev
    // mount still gets /dev/null and /dev/urandom); not on a /dev bound
    // from elsewhere, which is the user's.
    match dev_mount {
        Some(true) => default_devices(&cfg.rootfs)?,
        Some(false) => {}
        None => rootfs_devices(&cfg.rootfs)?,
    }
    spec_devices(cfg)?;
    Ok(())
}

/// The mount point of the mount that holds `path` (the longest mount
/// point that is `path` or one of its ancestors).
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(crate::mount::unescape_mount_path(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
}

fn mount_one(cfg: &InitConfig, m: &Mount) -> Result<()> {
    if !m.destination().is_absolute() {
        return Err(Error::Spec(format!(
            "mount destination {} is not absolute",
            m.destination().display()
        )));
    }
    let dest = secure_join(&cfg.rootfs, m.destination());
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    if typ == "bind" || opts.bind {
        let src = m.source().as_ref().ok_or_else(|| {
            Error::Spec(format!(
                "bind mount on {} has no source",
                m.destination().display()
            ))
        })?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            cfg.bundle.join(src)
        };
        let meta = std::fs::metadata(&src).map_err(|e| Error::io(&src, e))?;
        make_mountpoint(&dest, meta.is_dir())?;
        mount_parsed(&src, &dest, "bind", &opts)?;
    } else if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroup(cfg, &dest, opts.flags)?;
        if !opts.propagation.is_empty() {
            do_mount(None, &dest, None, opts.propagation, None)?;
        }
    } else {
        make_mountpoint(&dest, true)?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        mount_parsed(&src, &dest, typ, &opts)?;
    }
    Ok(())
}

fn make_mountpoint(dest: &Path, dir: bool) -> Result<()> {
    if dir {
        return std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if !dest.exists() {
        std::fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    }
    Ok(())
}

/// Shows the container its own cgroup (no cgroup namespace needed): v2
/// binds its directory, v1 a tmpfs with one bind per hierarchy.
fn mount_cgroup(cfg: &InitConfig, dest: &Path, flags: MsFlags) -> Result<()> {
    make_mountpoint(dest, true)?;
    let ro = flags & MsFlags::MS_RDONLY;
    let bind_ro = |src: &Path, at: &Path| -> Result<()> {
        do_mount(Some(src), at, None, MsFlags::MS_BIND, None)?;
        do_mount(
            None,
            at,
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | ro,
            None,
        )
    };
    match cfg.cgroup_dirs.as_slice() {
        [(name, dir)] if name.is_empty() => bind_ro(dir, dest),
        dirs => {
            do_mount(
                Some(Path::new("tmpfs")),
                dest,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=755"),
            )?;
            for (name, dir) in dirs {
                let at = dest.join(name);
                make_mountpoint(&at, true)?;
                bind_ro(dir, &at)?;
            }
            if !ro.is_empty() {
                do_mount(
                    None,
                    dest,
                    None,
                    MsFlags::MS_REMOUNT
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC
                        | ro,
                    Some("mode=755"),
                )?;
            }
            Ok(())
        }
    }
}

fn node(
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let _ = std::fs::remove_file(path);
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    )
    .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))?;
    // mknod honours the umask; the spec's mode is exact.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))?;
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| Error::sys(format!("chown {}", path.display()), e))
}

/// The devices every container gets (the OCI spec's defaults), as
/// (name, major, minor) character devices.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks every container's /dev has.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn default_devices(rootfs: &Path) -> Result<()> {
    let dev = rootfs.join("dev");
    for (name, major, minor) in DEFAULT_DEVICES {
        node(&dev.join(name), SFlag::S_IFCHR, major, minor, 0o666, 0, 0)?;
    }
    dev_links(&dev)
}

fn dev_links(dev: &Path) -> Result<()> {
    for (link, target) in DEV_LINKS {
        let at = dev.join(link);
        if at.symlink_metadata().is_err() {
            symlink(target, &at).map_err(|e| Error::io(&at, e))?;
        }
    }
    Ok(())
}

/// The default devices on the rootfs's own /dev (no mount covers it):
/// what is missing or wrong is made, never through a symlinked /dev (it
/// could point out of the rootfs), and a read-only rootfs keeps what it
/// has, as it is.
fn rootfs_devices(rootfs: &Path) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dev = rootfs.join("dev");
    match dev.symlink_metadata() {
        Ok(m) if !m.is_dir() => return Ok(()),
        Ok(_) => {}
        Err(_) => {
            if std::fs::create_dir(&dev).is_err() {
                return Ok(());
            }
        }
    }
    let read_only = nix::sys::statvfs::statvfs(&dev)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    if read_only {
        return Ok(());
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        let right = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == makedev(major, minor));
        if !right {
            node(&path, SFlag::S_IFCHR, major, minor, 0o666, 0, 0)?;
        }
    }
    dev_links(&dev)
}

fn spec_devices(cfg: &InitConfig) -> Result<()> {
    for d in cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::Spec(format!(
                    "device {} has type 'a'",
                    d.path().display()
                )))
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(Error::Spec(format!(
                "device {} is not under /dev",
                d.path().display()
            )));
        }
        // /dev/ptmx is the devpts link made with the default devices
        // (privileged pods list the host's node): runc skips it too.
        if d.path() == Path::new("/dev/ptmx") {
            continue;
        }
        let at = secure_join(&cfg.rootfs, d.path());
        node(
            &at,
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    Ok(())
}

/// Makes the rootfs `/` and detaches the host's tree; then gives `/` the
/// spec's `rootfsPropagation` (pivot_root would refuse a shared new root).
pub(super) fn pivot(rootfs: &Path, propagation: Option<MsFlags>) -> Result<()> {
    let old_root = std::fs::File::open("/").map_err(|e| Error::io("/", e))?;
    nix::unistd::chdir(rootfs).map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e))?;
    // pivot_root(".", ".") stacks the old root on the new one; unmount it.
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| Error::sys(format!("pivot_root {}", rootfs.display()), e))?;
    // Into the old root by its fd, as runc does: a lookup of "." does not
    // cross the stacked mount, and the rslave below must reach only the
    // old tree (made slave, its unmount cannot reach the host), never the
    // container's own mounts (a bidirectional host path would lose its
    // tie to the host's peer group).
    nix::unistd::fchdir(&old_root).map_err(|e| Error::sys("fchdir to the old root", e))?;
    drop(old_root);
    do_mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("unmount old root", e))?;
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
    if let Some(flags) = propagation {
        do_mount(None, Path::new("/"), None, flags, None)?;
    }
    Ok(())
}

/// After pivot_root: masked paths, read-only paths, read-only root.
pub(super) fn finish(cfg: &InitConfig) -> Result<()> {
    let linux = cfg.spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => do_mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Ok(_) => do_mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            )?,
            Err(_) => {}
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        if path.exists() {
            do_mount(
                Some(path),
                path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            do_mount(
                None,
                path,
                None,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_REC
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
    }
    // A cwd the rootfs lacks is made (0755, root's), as runc makes it:
    // inside the new root, so `..` in it cannot leave; before a read-only
    // root is sealed.
    if let Some(cwd) = cfg.spec.process().as_ref().map(|p| p.cwd()) {
        if cwd != Path::new("/") && std::fs::symlink_metadata(cwd).is_err() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(cwd)
                .map_err(|e| Error::io(cwd, e))?;
        }
    }
    if cfg.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        do_mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}
