//! Media types and annotations of the OCI image spec and Docker.

/// OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The full name containerd gives an imported image.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI ref name (the tag part).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether a layer media type marks a Wasm OCI artifact (DESIGN.md rule
/// 3): the CNCF artifact's `application/wasm` (module or component),
/// `application/vnd.wasm.*`, and runwasi's component layer
/// (`application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`).
pub fn is_wasm_layer(media_type: &str) -> bool {
    media_type == "application/wasm"
        || media_type.starts_with("application/vnd.wasm.")
        || media_type.starts_with("application/vnd.bytecodealliance.wasm.")
}

/// Whether a Wasm binary is a component (the component model's layer
/// 1 in its header) rather than a core module.
pub fn is_wasm_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// The layer annotation naming a file (OCI's `org.opencontainers.image.title`).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// Where the module of a raw Wasm layer (a Wasm OCI artifact's layer is
/// the module itself, not a tar) lands in the container's root: the
/// layer's title annotation when that is a plain file name, else
/// `app.wasm`.
pub fn module_file_name(layer: &serde_json::Value) -> String {
    match layer["annotations"][ANNOTATION_TITLE].as_str() {
        Some(t)
            if !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0') =>
        {
            t.to_string()
        }
        _ => "app.wasm".to_string(),
    }
}

/// The bytes of a manifest's layers (what `image ls` and `inspect` show).
pub fn layers_size(manifest: &serde_json::Value) -> u64 {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["size"].as_u64())
        .sum()
}
