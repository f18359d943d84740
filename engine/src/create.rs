//! `create`: a new container from an image (or a bundle) and the user's
//! options: its id and unique name, its directory with the overlay and the
//! final spec (options applied, so every later start runs the same thing),
//! and its record. A failed create leaves nothing behind.

use std::path::Path;
use std::time::SystemTime;

use amphi_runtime::bundle::Bundle;
use serde_json::Value;

use crate::bail;
use crate::bundle::{self, write};
use crate::error::{Error, Result};
use crate::options::RunOptions;
use crate::record::{self, Record, RunState};
use crate::restart::Policy;
use crate::{flags, names, units, Engine};

/// Docker's default grace period of `stop`.
const DEFAULT_STOP_TIMEOUT: u64 = 10;

impl Engine {
    /// Creates a container (status `created`) from `opts`: `rest[0]` is the
    /// image (unless `bundle` is set) and the rest its command.
    pub fn create(&self, opts: &RunOptions) -> Result<Record> {
        tracing::debug!("creating");
        check(opts)?;
        if let Some(f) = &opts.cidfile {
            if f.exists() {
                bail!(
                    "the container id file {} exists: is another container using it? remove it first",
                    f.display()
                );
            }
        }
        let root = self.root();
        let _names = names::lock_names(root)?;
        let name = match &opts.name {
            Some(n) => {
                names::validate_name(n)?;
                if let Some(other) = record::list(root)?.iter().find(|r| &r.name == n) {
                    return Err(Error::NameInUse(n.clone(), other.id.clone()));
                }
                n.clone()
            }
            None => names::random_name()?,
        };
        let id = names::new_id()?;
        let dir = record::dir(root, &id);
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        match self.make(&id, &name, opts, &dir) {
            Ok(rec) => Ok(rec),
            Err(e) => {
                let _ = bundle::remove(root, &id);
                Err(e)
            }
        }
    }

    fn make(&self, id: &str, name: &str, opts: &RunOptions, dir: &Path) -> Result<Record> {
        let root = self.root();
        let mut rest = opts.rest.clone();
        let (image, digest, image_id, image_config, args) = match &opts.bundle {
            Some(src) => {
                bundle::bind_rootfs(src, dir)?;
                // The user's spec, with its rootfs now the bind mount.
                let user = Bundle::load(src)?;
                let mut spec = user.spec.clone();
                if let Some(r) = spec.root().clone() {
                    let mut r = r;
                    r.set_path("rootfs".into());
                    spec.set_root(Some(r));
                }
                write(
                    &dir.join("config.json"),
                    serde_json::to_vec_pretty(&spec).expect("json"),
                )?;
                (
                    user.dir.display().to_string(),
                    None,
                    None,
                    Value::Null,
                    Some(rest),
                )
            }
            None => {
                if rest.is_empty() {
                    bail!("give an IMAGE or --bundle DIR");
                }
                let image = rest.remove(0);
                // --entrypoint replaces the image's Entrypoint and drops its Cmd.
                let (cmd, args) = match &opts.entrypoint {
                    Some(e) => {
                        let all: Vec<String> = std::iter::once(e.clone()).chain(rest).collect();
                        (all.clone(), Some(all))
                    }
                    None => (rest, None),
                };
                let p = bundle::prepare(root, id, &image, &cmd)?;
                (
                    image,
                    Some(p.manifest),
                    Some(p.config_digest),
                    p.config,
                    args,
                )
            }
        };
        let loaded = Bundle::load(dir)?;
        let final_bundle = flags::apply(loaded, opts, args.as_deref())?;
        let spec = &final_bundle.spec;
        write(
            &dir.join("config.json"),
            serde_json::to_vec_pretty(spec).expect("json"),
        )?;
        let stop_signal = opts
            .stop_signal
            .clone()
            .or_else(|| {
                image_config["config"]["StopSignal"]
                    .as_str()
                    .map(String::from)
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "SIGTERM".into());
        units::parse_signal(&stop_signal)?;
        let wasm = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get("run.oci.handler"))
            .is_some_and(|h| h == "wasm");
        let rec = Record {
            id: id.to_string(),
            name: name.to_string(),
            created: SystemTime::now(),
            image,
            image_digest: digest,
            image_id,
            args: spec
                .process()
                .as_ref()
                .and_then(|p| p.args().clone())
                .unwrap_or_default(),
            payload: if wasm { "wasm" } else { "native" }.into(),
            stop_signal,
            stop_timeout: opts
                .stop_timeout
                .map(|t| t.max(0) as u64)
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
            options: opts.clone(),
            state: RunState::default(),
        };
        record::save(root, &rec)?;
        tracing::debug!(id, name, "created");
        if let Some(f) = &opts.cidfile {
            write(f, &rec.id)?;
        }
        Ok(rec)
    }
}

/// Options that are wrong whatever the image: one line naming the fault.
fn check(opts: &RunOptions) -> Result<()> {
    if let Some(t) = &opts.timeout {
        units::parse_duration(t)?;
    }
    let policy = Policy::parse(opts.restart.as_deref().unwrap_or("no"))?;
    if policy != Policy::No && opts.rm {
        bail!("conflicting options: --restart and --rm");
    }
    if let Some(s) = &opts.stop_signal {
        units::parse_signal(s)?;
    }
    if let Some(t) = opts.stop_timeout {
        if t < 0 {
            bail!("bad --stop-timeout {t}: must be 0 or more seconds");
        }
    }
    for l in &opts.labels {
        if l.is_empty() || l.starts_with('=') {
            bail!("bad --label {l:?}: use KEY=VALUE");
        }
    }
    Ok(())
}

impl Record {
    /// The restart policy (checked at create).
    pub fn policy(&self) -> Policy {
        Policy::parse(self.options.restart.as_deref().unwrap_or("no")).unwrap_or_default()
    }
}
