//! A container's network namespace, pinned by a bind mount at a path of
//! the state root so that it outlives the container's processes: the CNI
//! plugins add its interface before the container starts, and remove it
//! (with the NAT rules the bridge plugin keys on that interface's address)
//! after the container has exited. Made as containerd's CRI makes a pod's.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};

/// Makes a new network namespace, `lo` up, pinned at `path`.
pub fn pin(path: &Path) -> Result<()> {
    make_pin_file(path)?;
    let target = path.to_path_buf();
    // Namespaces are per thread: a thread of its own enters the new one
    // and ends, leaving the mount to hold it.
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("unshare(CLONE_NEWNET)", e.into()))?;
        amphi_runtime::netdev::loopback_up().map_err(|e| Error::io("bringing lo up", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::io(&target, e.into()))
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Invalid("the netns thread panicked".into())));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Pins the existing namespace `ns` (a `/proc/PID/ns/net`) at `path`: a
/// container joining another's network (`--network container:NAME`).
pub fn pin_existing(path: &Path, ns: &Path) -> Result<()> {
    make_pin_file(path)?;
    let bound = mount(Some(ns), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Error::io(ns, e.into()));
    if bound.is_err() {
        let _ = std::fs::remove_file(path);
    }
    bound
}

/// Creates the (empty) file a namespace is bind-mounted on, and its
/// directory. An unpin of the last other pin may remove that directory
/// between the two: then it is made again.
fn make_pin_file(path: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        match std::fs::File::create(path) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 10 => tries += 1,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

/// Whether `path` holds a pinned namespace.
pub fn is_pinned(path: &Path) -> bool {
    crate::bundle::is_mounted(path)
}

/// Unpins (the namespace goes with its last user) and removes the file,
/// and the pins' directory with the last of them (nothing of amphi stays
/// in the state root once no container runs); nothing there is no error.
pub fn unpin(path: &Path) -> Result<()> {
    // Every run's clean-up asks, networked or not: a stat, not a read of
    // the mount table, when there is nothing.
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    while is_pinned(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(Error::io(path, e.into())),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
        _ => {}
    }
    // Fails while other pins are there, as it should.
    if let Some(d) = path.parent() {
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}
