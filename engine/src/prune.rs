//! `system df` and `system prune`: what images and containers take on
//! disk, and removing what nothing needs (stopped containers; with `all`,
//! images no container uses; then every blob and snapshot left unused).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::Result;
use crate::record::{self, Status};
use crate::{bundle, Engine};
use amphi_images::Store;

/// One row of `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// How many there are.
    pub total: usize,
    /// How many are in use (images: by a container; containers: running).
    pub active: usize,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes a prune could free.
    pub reclaimable: u64,
}

/// `system df`.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Images (tagged manifests).
    pub images: Usage,
    /// Containers (their writable layers).
    pub containers: Usage,
    /// Volumes (in use: a container's mounts name them).
    pub volumes: Usage,
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Ids of the containers removed.
    pub containers: Vec<String>,
    /// References untagged (with `all`).
    pub images: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
}

/// Bytes of the files under `p` (each inode once).
fn du(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = 0;
    if m.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            n += du(&e.path(), seen);
        }
    } else if seen.insert((m.dev(), m.ino())) {
        n += m.len();
    }
    n
}

impl Engine {
    fn store(&self) -> Result<Store> {
        Ok(Store::open(self.root().join("images"))?)
    }

    /// The blobs each tagged image uses, by manifest digest.
    fn image_blobs(&self, store: &Store) -> Result<HashMap<String, Vec<(String, u64)>>> {
        let mut out = HashMap::new();
        for (_, digest) in store.refs()? {
            if out.contains_key(&digest) {
                continue;
            }
            let Ok((manifest, config_digest, _, _)) = bundle::image_layers(store, &digest) else {
                continue;
            };
            let mut blobs = vec![(digest.clone(), 0), (config_digest, 0)];
            for l in manifest["layers"].as_array().into_iter().flatten() {
                if let Some(d) = l["digest"].as_str() {
                    blobs.push((d.to_string(), 0));
                }
            }
            for b in &mut blobs {
                b.1 = store
                    .blob_path(&b.0)
                    .ok()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
            }
            out.insert(digest, blobs);
        }
        Ok(out)
    }

    /// `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let store = self.store()?;
        let images = self.image_blobs(&store)?;
        let recs = self.containers()?;
        let used: HashSet<String> = recs.iter().filter_map(|r| r.image_digest.clone()).collect();
        let sizes = |pick: &dyn Fn(&String) -> bool| -> u64 {
            let mut seen = HashSet::new();
            images
                .iter()
                .filter(|(d, _)| pick(d))
                .flat_map(|(_, b)| b.iter())
                .filter(|(d, _)| seen.insert(d.clone()))
                .map(|(_, s)| s)
                .sum()
        };
        let all = sizes(&|_| true);
        let in_use = sizes(&|d| used.contains(d));
        let mut du_seen = HashSet::new();
        let mut c = Usage::default();
        for r in &recs {
            let size = du(&record::dir(self.root(), &r.id).join("upper"), &mut du_seen);
            c.total += 1;
            c.size += size;
            if r.is_active() {
                c.active += 1;
            } else {
                c.reclaimable += size;
            }
        }
        let mut v = Usage::default();
        for vol in self.volumes()? {
            let size = du(&crate::volume::data(self.root(), &vol.name), &mut du_seen);
            v.total += 1;
            v.size += size;
            if recs.iter().any(|r| r.volume_names().contains(&vol.name)) {
                v.active += 1;
            } else {
                v.reclaimable += size;
            }
        }
        Ok(DiskUsage {
            images: Usage {
                total: images.len(),
                active: images.keys().filter(|d| used.contains(*d)).count(),
                size: all,
                reclaimable: all - in_use,
            },
            containers: c,
            volumes: v,
        })
    }

    /// `system prune`: stopped containers go; with `all`, so do the tags
    /// of images no remaining container uses; then unused blobs and
    /// snapshots.
    pub fn prune(&self, all: bool) -> Result<Pruned> {
        self.prune_parts(true, all)
    }

    /// `container prune` (`containers`: the stopped ones go) and `image
    /// prune -a` (`images`: the tags of images no container uses go);
    /// either way, then, blobs and snapshots nothing uses.
    pub fn prune_parts(&self, containers: bool, images: bool) -> Result<Pruned> {
        let before = self.disk_usage()?;
        let mut out = Pruned::default();
        for r in self.containers()?.into_iter().filter(|_| containers) {
            if matches!(r.state.status, Status::Exited | Status::Created) {
                self.remove(&r.id, false, false)?;
                out.containers.push(r.id);
            }
        }
        let store = self.store()?;
        let users = bundle::images_in_use(self.root());
        if images {
            for (reference, digest) in store.refs()? {
                if !users.contains(&digest) {
                    store.untag(&reference)?;
                    out.images.push(amphi_images::store::familiar(&reference));
                }
            }
        }
        amphi_images::gc::collect(&store, &users)?;
        let partials = amphi_images::registry::sweep_partials(&store);
        let after = self.disk_usage()?;
        out.bytes = (before.images.size + before.containers.size)
            .saturating_sub(after.images.size + after.containers.size)
            + partials;
        Ok(out)
    }
}
