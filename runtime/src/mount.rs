//! Mounting a container's rootfs from the mount list containerd hands a
//! shim, in the calling thread.

use std::path::Path;

use nix::mount::MsFlags;

use crate::init::rootfs::{do_mount, parse_options};
use crate::Result;

/// Mounts `source` (of type `typ`, with `mount(8)`-style `options` such as
/// an overlay's `lowerdir=...`) on `target`. Bind mounts get their extra
/// flags (`ro`, ...) by a remount, and a propagation option is applied
/// last. Options longer than a page need the caller's care (containerd's
/// shims shorten overlay lowerdirs by changing directory in a child).
pub fn mount_rootfs(typ: &str, source: &str, options: &[String], target: &Path) -> Result<()> {
    let opts = parse_options(options);
    let source = Path::new(source);
    if typ == "bind" || opts.bind {
        let rec = opts.flags & MsFlags::MS_REC;
        do_mount(Some(source), target, None, MsFlags::MS_BIND | rec, None)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            let flags = extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rec;
            do_mount(None, target, None, flags, None)?;
        }
    } else {
        let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
        do_mount(Some(source), target, Some(typ), opts.flags, data.as_deref())?;
    }
    if !opts.propagation.is_empty() {
        do_mount(None, target, None, opts.propagation, None)?;
    }
    Ok(())
}
