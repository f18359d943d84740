//! Removing images: refs go, then whatever no ref and no container still
//! uses (blobs, snapshots) is garbage-collected.

use std::collections::HashSet;

use serde_json::Value;

use crate::digest::hex_part;
use crate::snapshot::{chain_ids, diff_ids, Snapshots};
use crate::{Error, Result, Store};

fn manifest_parts(store: &Store, manifest: &str) -> Result<(Vec<String>, Vec<String>)> {
    let m: Value = serde_json::from_slice(&store.read_blob(manifest)?)
        .map_err(|e| Error::Invalid(format!("manifest {manifest}: {e}")))?;
    let config = m["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut blobs = vec![manifest.to_string(), config.clone()];
    blobs.extend(
        m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string)),
    );
    let c: Value = serde_json::from_slice(&store.read_blob(&config)?)
        .map_err(|e| Error::Invalid(format!("config {config}: {e}")))?;
    let ids = diff_ids(&c, m["layers"].as_array().map_or(&[], Vec::as_slice));
    Ok((blobs, chain_ids(&ids)))
}

/// Untags `reference`. Refused while `users` (manifest digests of existing
/// containers) include its image, unless `force`. Returns the manifest digest.
pub fn untag(store: &Store, reference: &str, users: &[String], force: bool) -> Result<String> {
    let digest = store.resolve(reference)?;
    if !force && users.contains(&digest) {
        return Err(Error::Invalid(format!(
            "image {reference} is used by a container: remove the container first or force"
        )));
    }
    store.untag(reference)?;
    Ok(digest)
}

/// Removes every blob and snapshot that no ref and no image in `keep`
/// (manifest digests of existing containers) uses. Returns how many
/// blobs and snapshots went.
pub fn collect(store: &Store, keep: &[String]) -> Result<(usize, usize)> {
    let mut live_blobs = HashSet::new();
    let mut live_chains = HashSet::new();
    let manifests: Vec<String> = store
        .refs()?
        .into_iter()
        .map(|(_, d)| d)
        .chain(keep.iter().cloned())
        .collect();
    for m in manifests {
        if let Ok((blobs, chains)) = manifest_parts(store, &m) {
            live_blobs.extend(blobs);
            live_chains.extend(chains);
        }
    }
    let mut blobs = 0;
    let dir = store.root().join("blobs/sha256");
    for e in std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
    {
        let digest = format!("sha256:{}", e.file_name().to_string_lossy());
        if hex_part(&digest).is_ok() && !live_blobs.contains(&digest) {
            std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            blobs += 1;
        }
    }
    let snapshots = Snapshots::open(store.root())?;
    let mut snaps = 0;
    for e in std::fs::read_dir(snapshots.root())
        .map_err(|e| Error::io(snapshots.root(), e))?
        .flatten()
    {
        let chain = format!("sha256:{}", e.file_name().to_string_lossy());
        if hex_part(&chain).is_ok() && !live_chains.contains(&chain) {
            snapshots.remove(&chain)?;
            snaps += 1;
        }
    }
    Ok((blobs, snaps))
}
