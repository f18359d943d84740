//! `-info`: the runtime's name, version and OCI features, as a
//! `containerd.types.RuntimeInfo` protobuf on stdout. containerd 2.x runs
//! it before creating a task and its CRI plugin reads the features (the
//! runc shim answers with `runc features`).

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context as _, Result};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};

/// The type URL containerd registers the OCI features document under.
const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Builds the answer.
pub fn runtime_info() -> RuntimeInfo {
    let mut info = RuntimeInfo::new();
    info.name = crate::RUNTIME_ID.to_string();
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_string();
    version.revision = option_env!("AMPHI_REVISION")
        .unwrap_or_default()
        .to_string();
    info.version = MessageField::some(version);
    let mut features = Any::new();
    features.type_url = FEATURES_TYPE_URL.to_string();
    features.value =
        serde_json::to_vec(&amphi_runtime::features::features()).expect("features serialise");
    info.features = MessageField::some(features);
    info
}

/// Answers `-info`. The request's options (an `Any` on stdin, runc's
/// binary path and the like) mean nothing to amphi: read and let go.
pub fn print() -> Result<()> {
    let mut stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let _ = stdin.read_to_end(&mut Vec::new());
    }
    let bytes = runtime_info()
        .write_to_bytes()
        .context("encoding the runtime info")?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .context("writing the runtime info")
}
