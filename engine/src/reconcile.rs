//! Containers whose watcher died (a foreground `amphi run` killed with
//! SIGKILL, a watcher killed, a reboot): the container died with it (the
//! parent-death signal) or, should it run on, is killed now, so none runs
//! unwatched; its runtime state and cgroup go, its record says exited,
//! and a `--rm` container is removed. Every command that reads records
//! does this first.

use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::error::Result;
use crate::record::{self, Record, Status};
use crate::Engine;

/// The exit code of a run whose watcher died before recording it.
const LOST: i32 = 137;

impl Engine {
    /// Brings `rec` up to date; `None` when the container was removed.
    pub(crate) fn reconcile(&self, rec: Record) -> Result<Option<Record>> {
        if !orphaned(&rec) {
            return Ok(Some(rec));
        }
        let root = self.root();
        let rec = {
            let _lock = record::lock(root, &rec.id)?;
            let mut rec = record::load(root, &rec.id)?;
            if !orphaned(&rec) {
                return Ok(Some(rec));
            }
            let mut code = LOST;
            let mut had_run = rec.state.watcher.is_some();
            if let Ok(c) = self.runtime().load(&rec.id) {
                had_run = true;
                let st = c.state();
                if st.init_alive() {
                    let _ = c.kill(Signal::SIGKILL, true);
                    for _ in 0..250 {
                        if !st.init_alive() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                code = st.exit_code.unwrap_or(LOST);
            }
            // Not our child: the exit is init's to reap; the state and
            // cgroup are ours to remove.
            let _ = self.clear_runtime(&rec.id);
            // A run was underway (running, or being started: the record
            // may not say running yet); one waiting to restart keeps the
            // exit it had.
            if rec.state.status != Status::Restarting {
                rec.state.exit_code = code;
                rec.state.error = if had_run {
                    "its watcher died (the container was killed with it)".into()
                } else {
                    "the amphi run that created it died before starting it".into()
                };
                rec.state.finished_at = Some(SystemTime::now());
            }
            rec.state.status = Status::Exited;
            rec.state.pid = 0;
            rec.state.watcher = None;
            rec.state.creator = None;
            record::save(root, &rec)?;
            rec
        };
        if rec.options.rm && rec.state.status == Status::Exited {
            self.remove_files(&rec.id)?;
            self.remove_anonymous_volumes(&rec);
            return Ok(None);
        }
        Ok(Some(rec))
    }

    /// The boot command (`amphi start --all-restartable`): every container
    /// whose restart policy brings it back after a reboot, and that no
    /// user stopped, is started by a watcher of its own. Returns their ids.
    pub fn start_all_restartable(&self) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for rec in record::list(self.root())? {
            let was_running = rec.is_active();
            let Some(rec) = self.reconcile(rec)? else {
                continue;
            };
            if rec.is_active() || rec.state.stopped_by_user {
                continue;
            }
            if rec.policy().restart_at_boot(was_running) {
                self.spawn_watcher(&rec.id, None)?;
                started.push(rec.id);
            }
        }
        Ok(started)
    }
}

/// Whether the record says a watcher has it but that watcher is gone, or
/// the `amphi run` that made it died before starting it.
fn orphaned(rec: &Record) -> bool {
    match rec.state.watcher {
        Some(w) => !w.alive(),
        None => rec.is_active() || rec.state.creator.is_some_and(|c| !c.alive()),
    }
}
