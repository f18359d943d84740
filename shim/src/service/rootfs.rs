//! The bundle's rootfs: mounted from the request's mounts, unmounted at delete.

use std::path::Path;

use crate::shim::state_root;

use super::*;

/// Mounts one of the request's rootfs mounts. In this thread when its
/// options fit a page; otherwise through `containerd_shim`, which shortens
/// overlay lowerdirs by changing directory in a forked child (a fork of
/// this multi-threaded process that every mount would otherwise pay).
pub(super) fn mount_rootfs(
    m: &containerd_shim::protos::types::mount::Mount,
    init_layer: Option<&Path>,
    target: &Path,
) -> Result<(), String> {
    let fits = |options: &[String]| {
        let size: usize = options.iter().map(|o| o.len() + 1).sum();
        size + 512 < page_size()
    };
    // The init layer lives apart from containerd's snapshots, so the
    // shortening below could not cover it: long lists go without it.
    let with_layer = init_layer
        .and_then(|l| amphi_runtime::init_layer::add_to_overlay(&m.type_, &m.options, l))
        .filter(|o| fits(o));
    let options = with_layer.as_deref().unwrap_or(&m.options);
    if fits(options) {
        amphi_runtime::mount::mount_rootfs(&m.type_, &m.source, options, target)
            .map_err(|e| e.to_string())
    } else {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()),
            Some(m.source.as_str()),
            &m.options,
            target,
        )
        .map_err(|e| e.to_string())
    }
}

pub(super) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

pub(super) fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    let _ = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH);
}

/// Whether `path` is the root of a mount. Mounts of ours nest only under
/// a mounted rootfs, so when it is not one there is nothing to unmount and
/// no need to read the mount table (containerd runs `delete` after every
/// shim exit, most often with everything already unmounted).
pub(super) fn is_mount_root(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statx is a valid buffer for the kernel to fill.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statx.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            0,
            &mut st,
        )
    };
    if rc != 0 {
        // Gone: nothing to unmount. Anything else: look.
        let e = std::io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::ENOENT) | Some(libc::ENOTDIR));
    }
    let known = st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    // A kernel too old to say (before 5.8): assume a mount and look.
    !known || st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}

/// After a shim died: kill what is left of container `id`, unmount its
/// rootfs and remove its state. Returns the init's pid when it was known.
pub fn cleanup_bundle(id: &str, bundle: &Path) -> Option<i32> {
    let rt = runtime_for(bundle);
    let pid = match rt.load(id) {
        Ok(c) => {
            let pid = c.pid();
            let _ = c.delete(true);
            Some(pid)
        }
        Err(_) => None,
    };
    if is_mount_root(&bundle.join("rootfs")) {
        unmount_rootfs(bundle);
    }
    let _ = std::fs::remove_dir_all(state_root(bundle));
    pid
}
