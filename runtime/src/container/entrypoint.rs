//! Where a container's entrypoint is: inside the rootfs, on the host, and
//! whether it is a native binary or a Wasm module.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::bundle::Bundle;
use crate::paths::{find_in_rootfs, DEFAULT_PATH};
use crate::state::PayloadKind;
use crate::{detect, Error, Result};

pub(super) struct Entrypoint {
    pub(super) inside: String,
    pub(super) host: PathBuf,
    pub(super) kind: PayloadKind,
}

pub(super) fn resolve_entrypoint(bundle: &Bundle) -> Result<Entrypoint> {
    let process = bundle
        .spec
        .process()
        .as_ref()
        .expect("bundle checks process");
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    resolve_in(&bundle.rootfs, process, &annotations)
}

pub(super) fn resolve_in(
    rootfs: &Path,
    process: &Process,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Entrypoint> {
    let program = match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => &args[0],
        _ => return Err(Error::Spec("process.args is empty".into())),
    };
    let path_var = process
        .env()
        .iter()
        .flatten()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let cwd = process.cwd().to_string_lossy();
    let (inside, host) =
        find_in_rootfs(rootfs, program, &cwd, path_var).ok_or_else(|| Error::Entrypoint {
            path: program.clone(),
            msg: format!("not found in rootfs {}", rootfs.display()),
        })?;
    let magic = detect::has_wasm_magic(&host).map_err(|e| Error::io(&host, e))?;
    let kind = detect::payload_kind(annotations, &host);
    let bad = |msg: &str| Error::Entrypoint {
        path: inside.clone(),
        msg: msg.into(),
    };
    match kind {
        PayloadKind::Wasm if !magic => {
            return Err(bad(
                "the spec asks for Wasm but the file is not a WebAssembly module (no \\0asm magic)",
            ))
        }
        PayloadKind::Native if inside.ends_with(".wasm") => {
            return Err(bad("is not a WebAssembly module (no \\0asm magic)"))
        }
        PayloadKind::Native => {
            let mode = host
                .metadata()
                .map_err(|e| Error::io(&host, e))?
                .permissions()
                .mode();
            if mode & 0o111 == 0 {
                return Err(bad("is not executable"));
            }
        }
        PayloadKind::Wasm => {}
    }
    Ok(Entrypoint { inside, host, kind })
}
