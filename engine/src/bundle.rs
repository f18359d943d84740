//! A container's bundle: the directory `<root>/containers/<id>` holding
//! its record, the overlay (upper, work, rootfs) of an image container, the
//! final config.json and the container's /etc files; it is the bundle the
//! runtime runs, again on every start.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use amphi_images::load::{load_path, LoadLimits, Progress};
use amphi_images::snapshot::{chain_ids, diff_ids, mount_container, remove_container, Snapshots};
use amphi_images::Store;
use serde_json::Value;

use crate::spec;

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    crate::record::dir(root, id)
}

/// Removes what `prepare` made for `id` (no-op when there is nothing).
pub fn remove(root: &Path, id: &str) -> Result<()> {
    unmount(&dir(root, id))?;
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

/// What `prepare` made.
pub struct Prepared {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The image's manifest digest.
    pub manifest: String,
    /// The image's config digest (its ID).
    pub config_digest: String,
    /// The image config.
    pub config: Value,
    /// The bundle with the image's spec, not yet written: `create` writes
    /// the final spec once (on this ext4, each rewrite of a file forces
    /// its blocks out, and freeing them at removal is synchronous).
    pub bundle: amphi_runtime::bundle::Bundle,
}

/// Makes the bundle of container `id` for `image` in its (existing, empty
/// but for the record's lock) directory: overlay mounted, the image's
/// spec made. On error what it made is removed again.
pub fn prepare(root: &Path, id: &str, image: &str, cmd: &[String]) -> Result<Prepared> {
    amphi_runtime::state::validate_id(id)?;
    let store = Store::open(root.join("images"))?;
    let manifest_digest = resolve_image(&store, image)?;
    let (manifest, config_digest, config, chains) = image_layers(&store, &manifest_digest)?;
    let dir = dir(root, id);
    let result = (|| -> Result<amphi_runtime::bundle::Bundle> {
        let snapshots = Snapshots::open(store.root())?;
        mount_container(&snapshots, &chains, &dir)?;
        let hostname = &id[..id.len().min(12)];
        // Which image the container runs on: `image rm` and GC honour it.
        write(&dir.join("image"), &manifest_digest)?;
        // /etc/hostname, hosts and resolv.conf follow the container's
        // options: `create` writes them.
        let spec = spec::image_spec(&config, &manifest, cmd, hostname, &dir)?;
        let spec = serde_json::from_value(spec).context("the image's spec")?;
        Ok(amphi_runtime::bundle::Bundle::from_spec(dir.clone(), spec)?)
    })();
    let bundle = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = unmount(&dir);
            return Err(e);
        }
    };
    Ok(Prepared {
        dir,
        manifest: manifest_digest,
        config_digest,
        config,
        bundle,
    })
}

/// Unmounts a container's rootfs, every mount stacked on it included.
pub fn unmount(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    for _ in 0..16 {
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io(&rootfs, e.into())),
        }
    }
    Ok(())
}

/// Whether `path` is a mount point (in /proc/self/mountinfo; a bind mount
/// of a directory of the same filesystem has its parent's device).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| amphi_runtime::mount::unescape_mount_path(m) == want)
}

/// The runtime bundle of container `id`: its directory, or for a bundle
/// container (`image` is then the user's bundle directory, and
/// `manifest_digest` `None`) the user's bundle with the container's final
/// spec, whose rootfs it uses in place: no host mount to make or undo.
/// Containers made before that have a bind mount at `rootfs` instead.
pub fn runtime_bundle(
    root: &Path,
    id: &str,
    manifest_digest: Option<&str>,
    image: &str,
) -> Result<amphi_runtime::bundle::Bundle> {
    let dir = dir(root, id);
    if manifest_digest.is_some() || dir.join("rootfs").exists() {
        return Ok(amphi_runtime::bundle::Bundle::load(&dir)?);
    }
    let config = dir.join("config.json");
    let bytes = std::fs::read(&config).map_err(|e| Error::io(&config, e))?;
    let spec = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: {e}", config.display())))?;
    Ok(amphi_runtime::bundle::Bundle::from_spec(
        PathBuf::from(image),
        spec,
    )?)
}

/// Where container `id`'s rootfs is on the host: `rootfs` in its
/// directory, or a bundle container's bundle rootfs.
pub fn rootfs_path(root: &Path, id: &str, manifest_digest: Option<&str>, image: &str) -> PathBuf {
    let inside = dir(root, id).join("rootfs");
    if manifest_digest.is_some() || inside.exists() {
        return inside;
    }
    runtime_bundle(root, id, manifest_digest, image)
        .map(|b| b.rootfs)
        .unwrap_or(inside)
}

/// Binds the rootfs of the OCI bundle at `src` on `dir/rootfs` (bundle
/// containers made by earlier versions, after a reboot).
pub fn bind_rootfs(src: &Path, dir: &Path) -> Result<()> {
    let user = amphi_runtime::bundle::Bundle::load(src)?;
    let target = dir.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    nix::mount::mount(
        Some(&user.rootfs),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io(&target, e.into()))
}

/// Mounts a container's rootfs again if it is not (after a reboot): an
/// image container's overlay on the same upper dir, so it keeps its
/// changes, or a bundle container's bind mount of `image` (the bundle).
pub fn ensure_mounted(
    root: &Path,
    id: &str,
    manifest_digest: Option<&str>,
    image: &str,
) -> Result<()> {
    let dir = dir(root, id);
    let Some(manifest_digest) = manifest_digest else {
        // A bundle container uses the bundle's rootfs in place; one made
        // before that binds it.
        if dir.join("rootfs").exists() && !is_mounted(&dir.join("rootfs")) {
            return bind_rootfs(Path::new(image), &dir);
        }
        return Ok(());
    };
    if is_mounted(&dir.join("rootfs")) {
        return Ok(());
    }
    let store = Store::open(root.join("images"))?;
    let (_, _, _, chains) = image_layers(&store, manifest_digest)?;
    let snapshots = Snapshots::open(store.root())?;
    // A stale work dir from before the reboot is overlay's to clear.
    mount_container(&snapshots, &chains, &dir)?;
    Ok(())
}

/// An image's manifest, config digest, config and layer chain ids.
pub fn image_layers(
    store: &Store,
    manifest_digest: &str,
) -> Result<(Value, String, Value, Vec<String>)> {
    let manifest: Value = serde_json::from_slice(&store.read_blob(manifest_digest)?)
        .with_context(|| format!("reading the manifest {manifest_digest}"))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .with_context(|| format!("manifest {manifest_digest} has no config"))?
        .to_string();
    let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
        .with_context(|| format!("reading the image config {config_digest}"))?;
    let diff_ids = diff_ids(
        &config,
        manifest["layers"].as_array().map_or(&[], Vec::as_slice),
    );
    let chains = chain_ids(&diff_ids);
    Ok((manifest, config_digest, config, chains))
}

/// Writes a file, naming it on error.
pub(crate) fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
