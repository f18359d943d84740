//! Containers run from images: a directory under `<root>/containers/<id>`
//! holding the overlay (upper, work, rootfs), the generated config.json and
//! the container's /etc files; it is the bundle the runtime runs.

use std::path::{Path, PathBuf};

use amphi_images::load::{load_path, LoadLimits, Progress};
use amphi_images::snapshot::{chain_ids, diff_ids, mount_container, remove_container, Snapshots};
use amphi_images::Store;
use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::spec;

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id)
}

/// Removes what `prepare` made for `id` (no-op when there is nothing).
pub fn remove(root: &Path, id: &str) -> Result<()> {
    remove_container(&dir(root, id)).with_context(|| format!("removing the rootfs of {id}"))
}

/// Manifest digests of the images existing containers run on.
pub fn images_in_use(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("image")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Resolves IMAGE (a reference, or a path to an archive or OCI layout that
/// is loaded first) to its manifest digest.
pub fn resolve_image(store: &Store, image: &str) -> Result<String> {
    let path = Path::new(image);
    if image.contains('/') && path.exists() || image.ends_with(".tar") {
        let loaded = load_path(
            store,
            path,
            &LoadLimits::default(),
            &mut Progress {
                bytes: &|_| {},
                layer: &mut |_| {},
            },
        )
        .with_context(|| format!("loading {image}"))?;
        return Ok(loaded[0].manifest.clone());
    }
    Ok(store.resolve(image)?)
}

/// Makes the bundle of container `id` for `image`: overlay mounted, spec
/// written. On error nothing is left.
pub fn prepare(root: &Path, id: &str, image: &str, cmd: &[String]) -> Result<PathBuf> {
    amphi_runtime::state::validate_id(id)?;
    let store = Store::open(root.join("images"))?;
    let manifest_digest = resolve_image(&store, image)?;
    let manifest: Value = serde_json::from_slice(&store.read_blob(&manifest_digest)?)
        .context("reading the manifest")?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("manifest without config")?;
    let config: Value = serde_json::from_slice(&store.read_blob(config_digest)?)
        .context("reading the image config")?;
    let diff_ids = diff_ids(
        &config,
        manifest["layers"].as_array().map_or(&[], Vec::as_slice),
    );
    let dir = dir(root, id);
    std::fs::create_dir_all(dir.parent().unwrap())?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container {id} already exists")
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let result = (|| -> Result<()> {
        let snapshots = Snapshots::open(store.root())?;
        mount_container(&snapshots, &chain_ids(&diff_ids), &dir)?;
        let hostname = &id[..id.len().min(12)];
        // Which image the container runs on: `image rm` and GC honour it.
        std::fs::write(dir.join("image"), &manifest_digest)?;
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
        )?;
        std::fs::write(dir.join("resolv.conf"), spec::resolv_conf())?;
        let spec = spec::image_spec(&config, &manifest, cmd, hostname, &dir)?;
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = remove_container(&dir);
        return Err(e);
    }
    Ok(dir)
}
