//! `stop` and `kill`: the container's stop signal, then SIGKILL after the
//! grace period; either one by a user suppresses the restart policy
//! (until the next `start`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::record::{self, Status};
use crate::{units, Engine};

impl Engine {
    /// Stops `query`: its stop signal (the image's StopSignal, `--stop-signal`
    /// or SIGTERM) to its init, then after `timeout` (default: its
    /// `--stop-timeout`, else 10 s) SIGKILL to all its processes; returns
    /// once its watcher recorded the exit. A stopped container is no error.
    pub fn stop(&self, query: &str, timeout: Option<Duration>) -> Result<()> {
        let rec = self.container(query)?;
        let rec = self.mark_stopped_by_user(&rec.id)?;
        if rec.state.status != Status::Running {
            return Ok(());
        }
        let sig = units::parse_signal(&rec.stop_signal)?;
        let grace = timeout.unwrap_or(Duration::from_secs(rec.stop_timeout));
        self.thaw_if_paused(&rec.id);
        if let Ok(c) = self.runtime().load(&rec.id) {
            let _ = c.kill(sig, false);
        }
        if self.wait_not_running(&rec.id, Some(grace))? {
            return Ok(());
        }
        if let Ok(c) = self.runtime().load(&rec.id) {
            let _ = c.kill(Signal::SIGKILL, true);
        }
        self.wait_not_running(&rec.id, None)?;
        Ok(())
    }

    /// Sends `sig` to `query`'s init. A terminating signal counts as a
    /// stop by the user (no restart follows), as Docker's `kill` does.
    pub fn kill(&self, query: &str, sig: Signal) -> Result<()> {
        let rec = self.container(query)?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.name));
        }
        self.thaw_if_paused(&rec.id);
        let stop_sig = units::parse_signal(&rec.stop_signal).ok();
        if matches!(
            sig,
            Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT
        ) || Some(sig) == stop_sig
        {
            self.mark_stopped_by_user(&rec.id)?;
        }
        self.runtime().load(&rec.id)?.kill(sig, false)?;
        Ok(())
    }

    /// Restarts `query`: a stop (as [`Engine::stop`]), then a detached start.
    pub fn restart(&self, query: &str, timeout: Option<Duration>) -> Result<()> {
        self.stop(query, timeout)?;
        let id = self.resolve(query)?;
        self.start(&id)
    }

    /// Starts a stopped container detached (its watcher a process of its
    /// own); a running one is left alone.
    pub fn start(&self, query: &str) -> Result<()> {
        let rec = self.container(query)?;
        if rec.state.status == Status::Running {
            return Ok(());
        }
        self.spawn_watcher(&rec.id, None)
    }

    /// Sets the user's stop on `id`; a container waiting to restart is
    /// stopped there and then (its watcher sees it and ends).
    pub(crate) fn mark_stopped_by_user(&self, id: &str) -> Result<record::Record> {
        record::update(self.root(), id, |r| {
            r.state.stopped_by_user = true;
            if r.state.status == Status::Restarting {
                r.state.status = Status::Exited;
                r.state.watcher = None;
            }
        })
    }

    /// Waits until `id` is not running (its watcher recorded the exit, or
    /// died and was cleaned up); false if `limit` passed first.
    pub(crate) fn wait_not_running(&self, id: &str, limit: Option<Duration>) -> Result<bool> {
        let end = limit.map(|l| Instant::now() + l);
        loop {
            let rec = match record::load(self.root(), id) {
                Ok(r) => r,
                Err(Error::NoSuchContainer(_)) => return Ok(true),
                Err(e) => return Err(e),
            };
            match self.reconcile(rec)? {
                None => return Ok(true),
                Some(r) if r.state.status != Status::Running => return Ok(true),
                Some(_) => {}
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `query` exits (or is removed) and returns its exit code.
    pub fn wait(&self, query: &str) -> Result<i32> {
        let id = self.resolve(query)?;
        // As an attach: a `--rm` container is not removed before we have
        // read how it exited.
        let _hold = self.hold_for_attach(&id).ok();
        let mut code = 0;
        loop {
            let rec = match record::load(self.root(), &id) {
                Ok(r) => r,
                Err(Error::NoSuchContainer(_)) => return Ok(code),
                Err(e) => return Err(e),
            };
            code = rec.state.exit_code;
            match self.reconcile(rec)? {
                None => return Ok(code),
                Some(r) if r.state.status == Status::Exited => return Ok(r.state.exit_code),
                Some(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
