//! Read-only layer snapshots, named by chain ID, and the overlay mount a
//! container gets on top of them.
//!
//! `<store>/snapshots/<chain hex>/fs` holds one layer's files (overlay
//! form); `<store>/snapshots/l/<12 hex>` links to it. Mounts name lower
//! dirs through those short links, relative to the snapshots dir, as
//! Docker's overlay2 does, so even 128 layers fit in one page of options.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::hex_part;
use crate::{Error, Result};

/// The snapshot directory of a store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

/// An image's diff IDs, bottom first: what its config lists
/// (`rootfs.diff_ids`), given its manifest's `layers`. A Wasm OCI artifact
/// lists none (its config has no rootfs): its layers are bare modules, each
/// its own uncompressed content, so their digests are their diff IDs.
pub fn diff_ids(config: &serde_json::Value, layers: &[serde_json::Value]) -> Vec<String> {
    let listed: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    let artifact = !layers.is_empty()
        && layers
            .iter()
            .all(|l| crate::media::is_wasm_layer(l["mediaType"].as_str().unwrap_or("")));
    if listed.is_empty() && artifact {
        return layers
            .iter()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();
    }
    listed
}

/// The chain IDs of a layer stack: chain(0) = diff(0),
/// chain(n) = sha256(chain(n-1) + " " + diff(n)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => crate::digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Snapshots {
    /// The snapshots under `store_root`.
    pub fn open(store_root: &Path) -> Result<Snapshots> {
        let root = store_root.join("snapshots");
        let l = root.join("l");
        std::fs::create_dir_all(&l).map_err(|e| Error::io(&l, e))?;
        Ok(Snapshots { root })
    }

    fn dir(&self, chain: &str) -> Result<PathBuf> {
        Ok(self.root.join(hex_part(chain)?))
    }

    fn link_name(chain: &str) -> Result<String> {
        Ok(hex_part(chain)?[..12].to_string())
    }

    /// Whether the snapshot for `chain` exists (complete).
    pub fn exists(&self, chain: &str) -> bool {
        self.dir(chain).is_ok_and(|d| d.join("fs").is_dir())
    }

    /// A fresh directory to unpack into; commit it with [`Snapshots::commit`].
    pub fn prepare(&self) -> Result<PathBuf> {
        static N: AtomicU64 = AtomicU64::new(0);
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(|e| Error::io(&fs, e))?;
        Ok(tmp)
    }

    /// Removes prepared snapshots that killed processes left behind.
    pub fn sweep_prepared(&self) {
        for e in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") && crate::store::owner_is_dead(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Publishes a prepared snapshot as `chain`, atomically. Returns
    /// whether this call published it: if another load committed the same
    /// chain meanwhile, the prepared copy is dropped and `false` returned
    /// (that snapshot is not ours to undo).
    pub fn commit(&self, prepared: &Path, chain: &str) -> Result<bool> {
        let dest = self.dir(chain)?;
        let ours = match std::fs::rename(prepared, &dest) {
            Ok(()) => true,
            Err(_) if dest.join("fs").is_dir() => {
                let _ = std::fs::remove_dir_all(prepared);
                false
            }
            Err(e) => return Err(Error::io(&dest, e)),
        };
        let link = self.root.join("l").join(Self::link_name(chain)?);
        let target = format!("../{}/fs", hex_part(chain)?);
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => Ok(ours),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(ours),
            Err(e) => Err(Error::io(&link, e)),
        }
    }

    /// Removes a snapshot and its link.
    pub fn remove(&self, chain: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.root.join("l").join(Self::link_name(chain)?));
        let d = self.dir(chain)?;
        match std::fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&d, e)),
        }
    }

    /// Host path of a snapshot's files.
    pub fn fs_path(&self, chain: &str) -> Result<PathBuf> {
        Ok(self.dir(chain)?.join("fs"))
    }

    /// The overlay `lowerdir=` value for `chains` (bottom layer first),
    /// relative to the snapshots directory (see [`Snapshots::root`]).
    pub fn lowerdir(&self, chains: &[String]) -> Result<String> {
        let mut parts = Vec::with_capacity(chains.len());
        for c in chains.iter().rev() {
            parts.push(format!("l/{}", Self::link_name(c)?));
        }
        Ok(parts.join(":"))
    }

    /// The directory mount options are relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Mounts the overlay a container runs on: `chains` (bottom first) as
/// read-only lower layers, with a fresh `upper` and `work` under `dir`, on
/// `dir/rootfs`. Changes the process's working directory for the duration
/// of the mount call (lower dirs are named relative to the snapshots), so
/// call it from a single-threaded process.
pub fn mount_container(snapshots: &Snapshots, chains: &[String], dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for d in ["upper", "work", "rootfs"] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    for c in chains {
        if !snapshots.exists(c) {
            return Err(Error::Invalid(format!(
                "snapshot {c} is missing: load the image again"
            )));
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        snapshots.lowerdir(chains)?,
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    std::env::set_current_dir(snapshots.root()).map_err(|e| Error::io(snapshots.root(), e))?;
    let r = nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    );
    let _ = std::env::set_current_dir(cwd);
    r.map_err(|e| Error::io(&rootfs, e.into()))?;
    Ok(rootfs)
}

/// Unmounts a container's rootfs (if mounted) and removes its directory.
pub fn remove_container(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::io(&rootfs, e.into())),
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let d1 = crate::digest::of(b"1");
        let d2 = crate::digest::of(b"2");
        let c = chain_ids(&[d1.clone(), d2.clone()]);
        assert_eq!(c[0], d1);
        assert_eq!(c[1], crate::digest::of(format!("{d1} {d2}").as_bytes()));
    }

    #[test]
    fn lowerdir_of_128_layers_fits_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshots::open(dir.path()).unwrap();
        let chains: Vec<String> = (0..128).map(|i| crate::digest::of(&[i as u8])).collect();
        let opts = format!("lowerdir={},upperdir=/var/lib/amphi/containers/0123456789abcdef/upper,workdir=/var/lib/amphi/containers/0123456789abcdef/work", s.lowerdir(&chains).unwrap());
        assert!(opts.len() < 4096, "{}", opts.len());
    }
}
