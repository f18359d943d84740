//! Building images in the store: from layers and a config, and from a Wasm
//! module (`amphi image pack --wasm`).

use serde_json::{json, Value};

use crate::layer::LayerBuilder;
use crate::snapshot::{chain_ids, Snapshots};
use crate::unpack::{self, Limits};
use crate::{digest, media, Error, Result, Store};

/// The ids of an image written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIds {
    /// Digest of the manifest (what refs point at).
    pub manifest: String,
    /// Digest of the config: the image ID, as Docker shows it.
    pub config: String,
}

/// Writes an image of uncompressed `layers` with `config` (an OCI image
/// config without `rootfs`, which is filled in) and manifest `annotations`.
pub fn write_image(
    store: &Store,
    layers: &[Vec<u8>],
    mut config: Value,
    annotations: Option<Value>,
) -> Result<ImageIds> {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let d = store.put_blob(layer, None)?;
        descriptors.push(json!({"mediaType": media::LAYER_TAR, "digest": d, "size": layer.len()}));
        diff_ids.push(d);
    }
    // Unpacked at once, so the image runs without a load.
    let snapshots = Snapshots::open(store.root())?;
    for (layer, chain) in layers.iter().zip(chain_ids(&diff_ids)) {
        if !snapshots.exists(&chain) {
            let prepared = snapshots.prepare()?;
            if let Err(e) = unpack::apply(
                &chain,
                layer.as_slice(),
                &prepared.join("fs"),
                Limits::default(),
            ) {
                let _ = std::fs::remove_dir_all(&prepared);
                return Err(e);
            }
            snapshots.commit(&prepared, &chain)?;
        }
    }
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = store.put_blob(&config_bytes, None)?;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": {"mediaType": media::CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": descriptors,
    });
    if let Some(a) = annotations {
        manifest["annotations"] = a;
    }
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = store.put_blob(&manifest_bytes, None)?;
    Ok(ImageIds {
        manifest: manifest_digest,
        config: config_digest,
    })
}

/// Packs a WASI module or component into a runnable image tagged
/// `reference`: one layer holding `/app.wasm`, platform wasi/wasm (wasip2/
/// wasm for a component), Entrypoint `/app.wasm`, the way Wasm images are
/// shipped for Kubernetes.
pub fn pack_wasm(store: &Store, module: &[u8], reference: &str) -> Result<ImageIds> {
    if module.len() < 8 || module[..4] != *b"\0asm" {
        return Err(Error::Invalid(
            "not a WebAssembly module (no \\0asm magic)".into(),
        ));
    }
    crate::store::normalize(reference)?;
    let layer = LayerBuilder::new()
        .file("app.wasm", 0o755, module)?
        .build()?;
    let config = json!({
        "architecture": "wasm",
        "os": if media::is_wasm_component(module) { "wasip2" } else { "wasi" },
        "config": {"Entrypoint": ["/app.wasm"]},
        "history": [{"created_by": "amphi image pack --wasm", "comment": digest::of(module)}],
    });
    let annotations = json!({"module.wasm.image/variant": "compat"});
    let ids = write_image(store, &[layer], config, Some(annotations))?;
    store.tag(reference, &ids.manifest)?;
    Ok(ids)
}

/// Writes the image `base` (a manifest in the store) with one more layer
/// on top, read from `layer` (an uncompressed tar, as `commit` makes), and
/// `config` (the base's config changed as the caller wants; its rootfs is
/// filled in). The new layer is unpacked at once, so the image runs
/// without a load.
pub fn extend_image(
    store: &Store,
    base: &str,
    layer: &std::path::Path,
    mut config: Value,
) -> Result<ImageIds> {
    let manifest: Value = serde_json::from_slice(&store.read_blob(base)?)
        .map_err(|e| Error::Invalid(format!("manifest {base}: {e}")))?;
    let base_config: Value = serde_json::from_slice(
        &store.read_blob(manifest["config"]["digest"].as_str().unwrap_or_default())?,
    )
    .map_err(|e| Error::Invalid(format!("config of {base}: {e}")))?;
    let mut diff_ids = crate::snapshot::diff_ids(
        &base_config,
        manifest["layers"].as_array().map_or(&[], Vec::as_slice),
    );
    let open = || std::fs::File::open(layer).map_err(|e| Error::io(layer, e));
    let (digest, size) = store.write_blob(open()?, None)?;
    diff_ids.push(digest.clone());
    let chains = chain_ids(&diff_ids);
    let top = chains.last().expect("one layer at least");
    let snapshots = Snapshots::open(store.root())?;
    if !snapshots.exists(top) {
        let prepared = snapshots.prepare()?;
        // A snapshot holds one layer's files; overlay stacks them.
        if let Err(e) = unpack::apply(top, open()?, &prepared.join("fs"), Limits::default()) {
            let _ = std::fs::remove_dir_all(&prepared);
            return Err(e);
        }
        snapshots.commit(&prepared, top)?;
    }
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = store.put_blob(&config_bytes, None)?;
    let mut layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    layers.push(json!({"mediaType": media::LAYER_TAR, "digest": digest, "size": size}));
    let out = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": {"mediaType": media::CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&out).expect("json");
    let manifest_digest = store.put_blob(&manifest_bytes, None)?;
    Ok(ImageIds {
        manifest: manifest_digest,
        config: config_digest,
    })
}
