//! `rm`: a container's record, overlay and log go; a running one only
//! when forced (killed first, as Docker's `rm -f`).

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::record;
use crate::{bundle, Engine};

impl Engine {
    /// Removes `query`; a running one only with `force` (SIGKILL first);
    /// its anonymous volumes too with `volumes` (`rm -v`). Returns the
    /// removed container's id.
    pub fn remove(&self, query: &str, force: bool, volumes: bool) -> Result<String> {
        let rec = match self.container(query) {
            Ok(r) => r,
            Err(Error::NoSuchContainer(q)) => return self.remove_broken(&q, force),
            Err(e) => return Err(e),
        };
        if rec.is_active() {
            if !force {
                return Err(Error::Running(rec.name));
            }
            self.mark_stopped_by_user(&rec.id)?;
            if let Ok(c) = self.runtime().load(&rec.id) {
                let _ = c.kill(Signal::SIGKILL, true);
            }
            self.wait_not_running(&rec.id, None)?;
        }
        self.remove_files(&rec.id)?;
        if volumes {
            self.remove_anonymous_volumes(&rec);
        }
        Ok(rec.id)
    }

    /// `rm` of a container whose record cannot be read (by its id or a
    /// unique prefix): with `force`, what it has on disk and in the kernel
    /// goes, as for any container (its processes killed with its cgroup);
    /// without, a refusal that says so.
    fn remove_broken(&self, query: &str, force: bool) -> Result<String> {
        let (_, broken) = record::list_all(self.root())?;
        let mut hits = broken
            .iter()
            .filter(|(id, _)| !query.is_empty() && (id == query || id.starts_with(query)));
        let (id, why) = match (hits.next(), hits.next()) {
            (Some(hit), None) => hit,
            (Some(_), Some(_)) => return Err(Error::Ambiguous(query.to_string())),
            (None, _) => return Err(Error::NoSuchContainer(query.to_string())),
        };
        if !force {
            return Err(Error::Invalid(format!(
                "{why}; `rm -f {id}` removes the container"
            )));
        }
        self.remove_files(id)?;
        Ok(id.clone())
    }

    /// Removes what `id` has on disk (runtime state, rootfs, directory),
    /// under its lock; a container gone already is no error.
    pub(crate) fn remove_files(&self, id: &str) -> Result<()> {
        let lock = match record::lock(self.root(), id) {
            Ok(l) => l,
            Err(Error::NoSuchContainer(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.clear_runtime(id)?;
        bundle::remove(self.root(), id)?;
        drop(lock);
        Ok(())
    }
}

impl Engine {
    /// Removes the anonymous volumes of a removed container (one another
    /// container uses, by `--mount` of its name, stays).
    pub(crate) fn remove_anonymous_volumes(&self, rec: &crate::Record) {
        for v in rec.anonymous_volumes() {
            if let Err(e) = self.remove_volume(&v) {
                tracing::warn!("removing volume {v}: {e}");
            }
        }
    }

    /// Removes what the runtime holds of `id`: its state and cgroup (and
    /// any process left in it). Without state (lost with `/run` in a
    /// reboot, or never made), the cgroup of its path (`--cgroup-parent`'s
    /// or the default).
    pub(crate) fn clear_runtime(&self, id: &str) -> Result<()> {
        // Its network first: DEL finds the interface in the pinned netns.
        self.disconnect(id)?;
        self.release_namespaces(id)?;
        match self.runtime().load(id) {
            Ok(c) => c.delete(true)?,
            Err(_) => {
                let parent = crate::record::load(self.root(), id)
                    .ok()
                    .and_then(|r| r.options.cgroup_parent);
                let path = match parent {
                    Some(p) => crate::flags::cgroups_path(&p, id)?,
                    None => format!("amphi/{id}"),
                };
                let cg = amphi_runtime::cgroup::Cgroup::open(&path)?;
                if cg.exists() {
                    cg.destroy()?;
                }
            }
        }
        Ok(())
    }
}
