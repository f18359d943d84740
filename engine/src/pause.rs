//! `pause` and `unpause`: every process of a running container frozen
//! (the cgroup freezer) and thawed, as Docker's. A paused container stays
//! `running` in its record (its watcher still waits on it); `ps` and
//! `inspect` say paused from the runtime's state. Stopping, killing or
//! removing it thaws it first, so its processes can take the signal.

use crate::error::{Error, Result};
use crate::record::Status;
use crate::Engine;

impl Engine {
    /// Freezes every process of `query`.
    pub fn pause(&self, query: &str) -> Result<()> {
        let rec = self.container(query)?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.name));
        }
        let mut c = self.runtime().load(&rec.id)?;
        if c.state().status == amphi_runtime::Status::Paused {
            return Err(Error::Invalid(format!(
                "container {} is already paused",
                rec.name
            )));
        }
        Ok(c.pause()?)
    }

    /// Thaws `query`.
    pub fn unpause(&self, query: &str) -> Result<()> {
        let rec = self.container(query)?;
        let paused = self
            .runtime()
            .load(&rec.id)
            .ok()
            .filter(|c| c.state().status == amphi_runtime::Status::Paused);
        match paused {
            Some(mut c) => Ok(c.resume()?),
            None => Err(Error::Invalid(format!(
                "container {} is not paused",
                rec.name
            ))),
        }
    }

    /// Whether `id`'s current run is paused.
    pub fn is_paused(&self, id: &str) -> bool {
        self.runtime()
            .load(id)
            .is_ok_and(|c| c.state().status == amphi_runtime::Status::Paused)
    }

    /// Thaws `id` if it is paused (before a signal it must take).
    pub(crate) fn thaw_if_paused(&self, id: &str) {
        if let Ok(mut c) = self.runtime().load(id) {
            if c.state().status == amphi_runtime::Status::Paused {
                let _ = c.resume();
            }
        }
    }
}
