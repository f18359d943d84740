//! The init layer: a read-only bottom layer of empty mount points, added
//! under an overlay rootfs, as Docker's overlay2 adds its `-init` layer.
//!
//! Without it the init makes every mount point the image lacks (`/proc`,
//! `/dev`, `/sys`, `/run`; `/etc/hosts` and friends under Kubernetes) in the
//! container's upper dir: inode allocations on the host's filesystem at
//! every start, deletions when the snapshot goes, and entries in the
//! container's diff. Small images (a Wasm module alone) lack them all.
//! Being the lowest layer, it shows only where the image has nothing.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Directories of the layer.
const DIRS: &[&str] = &["proc", "dev", "sys", "run", "etc"];
/// Empty files of the layer (bind-mount targets).
const FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// The layer under `root` (the store root), made on first use. Safe
/// against other processes making it at the same time: it is built aside
/// and renamed into place.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let layer = root.join("init-layer");
    if layer.is_dir() {
        return Ok(layer);
    }
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let tmp = root.join(format!(".init-layer.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = (|| -> std::io::Result<()> {
        for d in DIRS {
            std::fs::create_dir_all(tmp.join(d))?;
        }
        for f in FILES {
            std::fs::File::create(tmp.join(f))?;
        }
        Ok(())
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, &layer) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process put its layer there first: as good as ours.
        if !layer.is_dir() {
            return Err(Error::io(&layer, e));
        }
    }
    Ok(layer)
}

/// The options of an overlay rootfs mount with `layer` as its lowest
/// layer; `None` when the mount is not an overlay with lower layers or the
/// path would need escaping in `lowerdir`.
pub fn add_to_overlay(typ: &str, options: &[String], layer: &Path) -> Option<Vec<String>> {
    let layer = layer.to_str()?;
    if typ != "overlay" || layer.contains([':', ',', '\\']) {
        return None;
    }
    let mut out = options.to_vec();
    let lower = out.iter_mut().find(|o| o.starts_with("lowerdir="))?;
    lower.push(':');
    lower.push_str(layer);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_under_the_lowest_layer_of_overlays_only() {
        let layer = Path::new("/var/lib/amphi/init-layer");
        let opts: Vec<String> = ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l2:/l1"]
            .map(String::from)
            .to_vec();
        let got = add_to_overlay("overlay", &opts, layer).unwrap();
        assert_eq!(got[3], "lowerdir=/l2:/l1:/var/lib/amphi/init-layer");
        assert_eq!(&got[..3], &opts[..3]);
        assert_eq!(add_to_overlay("bind", &["rbind".into()], layer), None);
        assert_eq!(
            add_to_overlay("overlay", &["upperdir=/u".into()], layer),
            None
        );
        assert_eq!(add_to_overlay("overlay", &opts, Path::new("/a:b")), None);
    }

    #[test]
    fn ensure_builds_once() {
        let root = tempfile::tempdir().unwrap();
        let layer = ensure(root.path()).unwrap();
        assert!(layer.join("proc").is_dir());
        assert!(layer.join("etc/hosts").is_file());
        assert_eq!(ensure(root.path()).unwrap(), layer);
        // Nothing else is left in the root.
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }
}
