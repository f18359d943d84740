//! `update`: a container's resources and restart policy changed, as
//! Docker's `update` does: live on a running container's cgroup, and in
//! its record and final spec, so every later start has them too.

use amphi_runtime::oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::options::{Resources, RunOptions};
use crate::record::{self, Status};
use crate::restart::Policy;
use crate::Engine;

/// What to change (`amphi update`'s flags; with the `clap` feature, the
/// command line's); `None` keeps what it was.
#[derive(Debug, Default, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct UpdateOptions {
    /// The limits to change.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub resources: Resources,
    /// Restart policy: no, on-failure[:MAX], always or unless-stopped.
    #[cfg_attr(feature = "clap", arg(long))]
    pub restart: Option<String>,
}

impl Engine {
    /// Applies `u` to container `query`.
    pub fn update(&self, query: &str, u: &UpdateOptions) -> Result<()> {
        let rec = self.container(query)?;
        let mut o: RunOptions = rec.options.clone();
        o.resources = o.resources.overlaid(&u.resources);
        if let Some(r) = &u.restart {
            let policy = Policy::parse(r)?;
            if policy != Policy::No && o.rm {
                bail!("conflicting options: --restart and the container's --rm");
            }
            o.restart = Some(r.clone());
        }
        // The resources the flags now give, over the spec's.
        let dir = record::dir(self.root(), &rec.id);
        let config = dir.join("config.json");
        let mut spec: Value =
            serde_json::from_slice(&std::fs::read(&config).map_err(|e| Error::io(&config, e))?)
                .with_context(|| format!("reading {}", config.display()))?;
        if !spec["linux"].is_object() {
            spec["linux"] = json!({});
        }
        if !spec["linux"]["resources"].is_object() {
            spec["linux"]["resources"] = json!({});
        }
        crate::flags::apply_resources(&mut spec["linux"]["resources"], &o.resources)?;
        let resources: LinuxResources = serde_json::from_value(spec["linux"]["resources"].clone())
            .context("the updated resources")?;
        // Live first: a value the kernel refuses changes nothing.
        if rec.state.status == Status::Running {
            if let Ok(c) = self.runtime().load(&rec.id) {
                c.update(&resources)
                    .map_err(|e| Error::Invalid(format!("updating {}: {e}", rec.name)))?;
            }
        }
        // Whole or not at all: a start reads it.
        let tmp = dir.join(".config.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&spec).expect("json"))
            .and_then(|()| std::fs::rename(&tmp, &config))
            .map_err(|e| Error::io(&config, e))?;
        record::update(self.root(), &rec.id, |r| r.options = o)?;
        Ok(())
    }
}
