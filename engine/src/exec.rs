//! `exec`: the process spec of a command run in a running container, as
//! Docker's `exec` shapes it: the container's own process (its env,
//! capabilities, rlimits, user and cwd) with the command's arguments and
//! the exec's `-e`/`--env-file`, `-w`, `-u` and `-t` over it.

use std::path::PathBuf;

use amphi_runtime::oci_spec::runtime::Process;
use amphi_runtime::Container;
use serde_json::{json, Value};

use crate::bail;
use crate::error::{Context, Result};
use crate::Engine;

/// How to run the command (`amphi exec`'s flags).
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE` (or a bare `KEY`: the caller's value).
    pub env: Vec<String>,
    /// `--env-file`s, read before `-e`.
    pub env_files: Vec<PathBuf>,
    /// `-w`: the working directory inside the container.
    pub workdir: Option<String>,
    /// `-u UID[:GID]|NAME[:GROUP]`, from the container's /etc/passwd.
    pub user: Option<String>,
    /// `-t`: a terminal of its own (the runtime hands back its master).
    pub tty: bool,
}

impl Engine {
    /// The running container `query` and the process to exec in it.
    pub fn exec_process(&self, query: &str, o: &ExecOptions) -> Result<(Container, Process)> {
        if o.cmd.is_empty() {
            bail!("exec needs a command");
        }
        let rec = self.container(query)?;
        let container = self
            .runtime()
            .load(&rec.id)
            .map_err(|_| crate::Error::Invalid(format!("container {} is not running", rec.name)))?;
        let state = container.state();
        let config = state.bundle.join("config.json");
        let spec: Value = serde_json::from_slice(
            &std::fs::read(&config).map_err(|e| crate::Error::io(&config, e))?,
        )
        .with_context(|| format!("reading {}", config.display()))?;
        let mut v = json!({ "process": spec["process"].clone() });
        v["process"]["args"] = json!(o.cmd);
        v["process"]["terminal"] = json!(o.tty);
        if let Some(p) = v["process"].as_object_mut() {
            // The container's console size is not this terminal's.
            p.remove("consoleSize");
        }
        crate::env::apply(&mut v["process"], &o.env_files, &o.env)?;
        if let Some(w) = &o.workdir {
            if !w.starts_with('/') {
                bail!("bad -w {w:?}: must be an absolute path");
            }
            v["process"]["cwd"] = json!(w);
        }
        if o.user.is_some() {
            // A user given here has the groups its entry names, not the
            // container's supplementary ones.
            if let Some(u) = v["process"]["user"].as_object_mut() {
                u.remove("additionalGids");
            }
            crate::process_opts::apply(&mut v, &state.rootfs, o.user.as_deref(), &[], &[])?;
        }
        let process =
            serde_json::from_value(v["process"].take()).context("the container's process spec")?;
        Ok((container, process))
    }
}
