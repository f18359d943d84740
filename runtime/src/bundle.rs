//! Loading and validating an OCI runtime bundle (config.json + rootfs).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::{Error, Result};

/// A validated OCI runtime bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, canonical.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// The rootfs directory, canonical; always inside `dir`.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `dir/config.json` and checks what the runtime relies on: a
    /// process with arguments and a rootfs directory inside the bundle.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let bad = |path: &Path, msg: String| Error::Bundle {
            path: path.to_path_buf(),
            msg,
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| bad(dir, format!("cannot open bundle directory: {e}")))?;
        let config = dir.join("config.json");
        let bytes = std::fs::read(&config).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad(&config, "config.json is missing".into()),
            _ => bad(&config, format!("cannot read: {e}")),
        })?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| bad(&config, format!("malformed config.json: {e}")))?;
        Self::from_spec(dir, spec)
    }

    /// Validates an already parsed spec for the bundle directory `dir`.
    pub fn from_spec(dir: PathBuf, spec: Spec) -> Result<Bundle> {
        let config = dir.join("config.json");
        let bad = |msg: String| Error::Bundle {
            path: config.clone(),
            msg,
        };
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| bad("no root in config.json".into()))?;
        let root_path = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        let rootfs = root_path
            .canonicalize()
            .map_err(|e| bad(format!("rootfs {}: {e}", root_path.display())))?;
        if !rootfs.starts_with(&dir) || rootfs == dir {
            return Err(bad(format!(
                "rootfs {} is outside the bundle {}",
                rootfs.display(),
                dir.display()
            )));
        }
        if !rootfs.is_dir() {
            return Err(bad(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| bad("no process in config.json".into()))?;
        match process.args() {
            Some(args) if !args.is_empty() && !args[0].is_empty() => {}
            _ => return Err(bad("process.args is empty".into())),
        }
        if !process.cwd().is_absolute() {
            return Err(bad(format!(
                "process.cwd {} is not absolute",
                process.cwd().display()
            )));
        }
        Ok(Bundle { dir, spec, rootfs })
    }
}
