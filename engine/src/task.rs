//! One run of a container: the runtime container made from its bundle
//! with the caller as its watcher, started, and finished (its exit
//! recorded, its runtime state and cgroup removed, and the restart policy
//! asked what comes next).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime};

use amphi_runtime::{Container, CreateOptions, ExitStatus, Stdio};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::record::{self, ProcessId, Status};
use crate::{bundle, Engine};

/// A run of a container, made by [`Engine::prepare_task`].
pub struct Task {
    /// The container's id.
    pub id: String,
    /// The runtime's container.
    pub container: Container,
    /// The console of a `-t` container (the caller relays it).
    pub console: Option<OwnedFd>,
    started: Option<Instant>,
    /// This process, its watcher.
    watcher: ProcessId,
    /// Its health checks while it runs.
    health: Option<crate::health::Monitor>,
}

/// What follows a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It stays exited.
    Done(ExitStatus),
    /// It exited and was removed (`--rm`).
    Removed(ExitStatus),
    /// Its restart policy starts it again; it ran this long.
    Restart(ExitStatus, Duration),
}

impl Finished {
    /// How the run ended.
    pub fn status(&self) -> ExitStatus {
        match *self {
            Finished::Done(s) | Finished::Removed(s) | Finished::Restart(s, _) => s,
        }
    }
}

impl Engine {
    /// Makes the runtime container for a run of `id` with `stdio`, the
    /// calling process as its watcher (a container dies with its
    /// watcher's thread: make tasks from the thread that supervises
    /// them). `by_user`: a start a user asked for (clears a stop and the
    /// restart count); otherwise a restart, refused (`Ok(None)`) if the
    /// user stopped the container or another watcher took it meanwhile.
    pub fn prepare_task(&self, id: &str, stdio: Stdio, by_user: bool) -> Result<Option<Task>> {
        let root = self.root();
        let me = ProcessId::current();
        let _lock = record::lock(root, id)?;
        let mut rec = record::load(root, id)?;
        let fresh = rec.state.status == Status::Created
            && rec.state.started_at.is_none()
            && rec.state.finished_at.is_none();
        // Our own `amphi run` about to start what it has just made: the
        // record names us as its creator already, which covers our death
        // as a watcher would, and `start_task` records the rest.
        let claimed = by_user
            && fresh
            && rec.state.creator == Some(me)
            && rec.state.watcher.is_none()
            && !rec.state.stopped_by_user
            && rec.state.restart_count == 0;
        if by_user {
            // Any live watcher but us has it (running, restarting, or
            // being started by another command this very moment), or the
            // `amphi run` that made it is about to start it (unless that
            // run is our parent, handing it to us as `run -d` does).
            let parent = std::os::unix::process::parent_id() as i32;
            let other = |p: Option<ProcessId>| p.is_some_and(|w| w.alive() && w != me);
            if other(rec.state.watcher)
                || (other(rec.state.creator) && rec.state.creator.map(|c| c.pid) != Some(parent))
            {
                return Err(Error::Invalid(format!(
                    "container {} is running already",
                    rec.name
                )));
            }
            rec.state.stopped_by_user = false;
            rec.state.restart_count = 0;
        } else if rec.state.stopped_by_user || rec.state.watcher != Some(me) {
            return Ok(None);
        }
        if !claimed {
            rec.state.watcher = Some(me);
            rec.state.creator = None;
            record::save(root, &rec)?;
        }
        let made = (|| -> Result<Task> {
            // What an earlier run left (its watcher killed) goes first; a
            // container never run has nothing left.
            if !fresh {
                self.clear_runtime(id)?;
            }
            bundle::ensure_mounted(root, id, rec.image_digest.as_deref(), &rec.image)?;
            let b = bundle::runtime_bundle(root, id, rec.image_digest.as_deref(), &rec.image)?;
            self.connect(&rec)?;
            if let Err(e) = self.share_namespaces(&rec) {
                let _ = self.disconnect(id);
                return Err(e);
            }
            let created = self.runtime().create_from(
                id,
                b,
                CreateOptions {
                    stdio,
                    cgroup_path: None,
                    parent_death_signal: Some(Signal::SIGKILL),
                    reaper: rec.options.init,
                },
            );
            let mut container = match created {
                Ok(c) => c,
                Err(e) => {
                    let _ = self.disconnect(id);
                    let _ = self.release_namespaces(id);
                    return Err(e.into());
                }
            };
            let console = container.take_console();
            tracing::debug!(id, "runtime container created");
            Ok(Task {
                id: id.to_string(),
                container,
                console,
                started: None,
                watcher: me,
                health: None,
            })
        })();
        if let Err(e) = &made {
            rec.state.failed(e.to_string());
            record::save(root, &rec)?;
        }
        made.map(Some)
    }

    /// Starts a prepared run and records it running. On error the run is
    /// undone and the error recorded.
    pub fn start_task(&self, task: &mut Task) -> Result<()> {
        let root = self.root();
        let started = task.container.start();
        let _lock = record::lock(root, &task.id)?;
        let mut rec = record::load(root, &task.id)?;
        match started {
            Ok(()) => {
                task.started = Some(Instant::now());
                rec.state.status = Status::Running;
                rec.state.watcher = Some(task.watcher);
                rec.state.creator = None;
                rec.state.pid = task.container.pid();
                rec.state.started_at = Some(SystemTime::now());
                rec.state.error.clear();
                rec.state.oom_killed = false;
                rec.payload = task.container.state().payload.to_string();
                tracing::debug!(id = task.id, "started");
                record::save(root, &rec)?;
                if let Some(cfg) = rec.health.clone() {
                    task.health = Some(self.start_health(&task.id, cfg));
                }
                Ok(())
            }
            Err(e) => {
                rec.state.failed(e.to_string());
                record::save(root, &rec)?;
                Err(e.into())
            }
        }
    }

    /// Records how a run ended, removes its runtime container, and says
    /// what follows: a restart, the removal of a `--rm` container, or
    /// nothing. The caller undoes a task that never started with
    /// [`Engine::abandon_task`] instead.
    pub fn finish_task(&self, mut task: Task, status: ExitStatus) -> Result<Finished> {
        // No check runs in what is being taken down.
        drop(task.health.take());
        let root = self.root();
        let ran_for = task.started.map(|s| s.elapsed()).unwrap_or_default();
        let id = task.id.clone();
        tracing::debug!(id, code = status.code, "exited");
        if let Err(e) = task.container.delete(true) {
            tracing::warn!("removing the runtime container of {id}: {e}");
        }
        if let Err(e) = self.disconnect(&id) {
            tracing::warn!("detaching {id} from its network: {e}");
        }
        if let Err(e) = self.release_namespaces(&id) {
            tracing::warn!("releasing the namespaces {id} shared: {e}");
        }
        let me = task.watcher;
        // Held while a `--rm` container is removed: no attach or wait is
        // left to read its exit.
        let mut unobserved = None;
        let rec = {
            let _lock = record::lock(root, &id)?;
            let mut rec = record::load(root, &id)?;
            if rec.state.watcher != Some(me) {
                return Ok(Finished::Done(status));
            }
            rec.state.status = Status::Exited;
            rec.state.exit_code = status.code;
            rec.state.oom_killed = status.oom_killed;
            rec.state.finished_at = Some(SystemTime::now());
            rec.state.pid = 0;
            let restart = !rec.state.stopped_by_user
                && rec
                    .policy()
                    .should_restart(status.code, rec.state.restart_count);
            if restart {
                rec.state.status = Status::Restarting;
                rec.state.restart_count += 1;
            } else {
                rec.state.watcher = None;
            }
            if !restart && rec.options.rm {
                unobserved = self.unobserved(&id);
            }
            // A `--rm` container nobody observes is removed at once: its
            // exit is nobody's to read (and should we die first, the
            // record left saying running is swept as orphaned).
            if unobserved.is_none() {
                record::save(root, &rec)?;
            }
            rec
        };
        if rec.state.status == Status::Restarting {
            return Ok(Finished::Restart(status, ran_for));
        }
        if rec.options.rm {
            // An attach or a wait reads the exit first.
            let held = unobserved.or_else(|| self.wait_for_attaches(&id));
            self.remove_files(&id)?;
            self.remove_anonymous_volumes(&rec);
            drop(held);
            tracing::debug!(id, "removed");
            return Ok(Finished::Removed(status));
        }
        Ok(Finished::Done(status))
    }

    /// Undoes a prepared run that could not start (the caller failed
    /// before [`Engine::start_task`]): the runtime container goes, the
    /// record says exited with `error`.
    pub fn abandon_task(&self, mut task: Task, error: &str) -> Result<()> {
        drop(task.health.take());
        let id = task.id.clone();
        let _ = task.container.delete(true);
        let _ = self.disconnect(&id);
        let _ = self.release_namespaces(&id);
        record::update(self.root(), &id, |r| r.state.failed(error.to_string()))?;
        Ok(())
    }
}
