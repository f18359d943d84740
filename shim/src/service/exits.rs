//! Exits: a reaped pid becomes its process's exit, state and event.

use std::time::{Duration, SystemTime};

use amphi_runtime::nix_signal::Signal;
use containerd_shim::api::*;
use containerd_shim::protos::events::task::*;
use containerd_shim::protos::topics::*;

use super::*;

impl Inner {
    pub(super) fn on_exit(&self, pid: i32, code: i32) {
        let now = SystemTime::now();
        let mut tasks = self.lock();
        let mut found = false;
        for (id, task) in tasks.iter_mut() {
            if task.init.pid == pid && task.init.exit.is_none() {
                found = true;
                self.init_exited(id, task, code, now);
                break;
            }
            if let Some((exec_id, e)) = task
                .execs
                .iter_mut()
                .find(|(_, e)| e.proc_.pid == pid && e.proc_.exit.is_none())
            {
                found = true;
                if let Some(c) = &e.proc_.console {
                    c.wait_drained(Duration::from_secs(2));
                }
                e.proc_.exit = Some((code, now));
                e.proc_.status = Status::STOPPED;
                self.events.send(
                    TASK_EXIT_EVENT_TOPIC,
                    exit_event(id, exec_id, pid, code, now),
                );
                let running = task
                    .execs
                    .values()
                    .any(|e| e.proc_.pid != 0 && e.proc_.exit.is_none());
                if task.init_exit_pending && !running {
                    task.init_exit_pending = false;
                    let (c, t) = task.init.exit.unwrap();
                    self.events.send(
                        TASK_EXIT_EVENT_TOPIC,
                        exit_event(id, id, task.init.pid, c, t),
                    );
                }
                break;
            }
        }
        if !found {
            let mut early = self.early_exits.lock().unwrap();
            if early.len() < 4096 {
                early.insert(pid, (code, now));
            }
        }
        drop(tasks);
        self.changed.notify_all();
    }

    pub(super) fn init_exited(&self, id: &str, task: &mut TaskEntry, code: i32, at: SystemTime) {
        let status = task.container.record_exit_code(code).ok();
        let code = status.map_or(code, |s| s.code);
        if let Some(c) = &task.init.console {
            c.wait_drained(Duration::from_secs(2));
        }
        task.init.exit = Some((code, at));
        task.init.status = Status::STOPPED;
        // Before the exit event; the OOM thread may have been first.
        if status.is_some_and(|s| s.oom_killed) {
            let _ = self.oom.report(id, task.container.cgroup(), &self.events);
        }
        // The pid namespace dies with its init: execs follow at once.
        let _ = task.container.kill(Signal::SIGKILL, true);
        if task
            .execs
            .values()
            .any(|e| e.proc_.pid != 0 && e.proc_.exit.is_none())
        {
            task.init_exit_pending = true;
        } else {
            self.events.send(
                TASK_EXIT_EVENT_TOPIC,
                exit_event(id, id, task.init.pid, code, at),
            );
        }
    }

    pub(super) fn take_early_exit(&self, pid: i32) -> Option<(i32, SystemTime)> {
        self.early_exits.lock().unwrap().remove(&pid)
    }
}

pub(super) fn exit_event(
    container: &str,
    id: &str,
    pid: i32,
    code: i32,
    at: SystemTime,
) -> TaskExit {
    let mut ev = TaskExit::new();
    ev.container_id = container.to_string();
    ev.id = id.to_string();
    ev.pid = pid as u32;
    ev.exit_status = code as u32;
    ev.exited_at = ts(at);
    ev
}
