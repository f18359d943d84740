//! Deleting a container: its cgroup and state go, a live init is killed.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::state::{State, Status};
use crate::{Error, Result};

use super::Container;

impl Container {
    /// Removes the container: its cgroup and state directory. A container
    /// whose init still lives is refused unless `force`, which kills it.
    pub fn delete(mut self, force: bool) -> Result<()> {
        if self.state.init_alive() {
            if !force {
                return Err(self.bad_status("kill it first or delete with force"));
            }
            if self.state.current_status() == Status::Paused {
                let _ = self.cgroup.thaw();
            }
            let _ = self.cgroup.signal_all(Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(self.state.pid), Signal::SIGKILL);
            if let Some(ws) = reap_killed(self.state.pid) {
                let _ = self.record_exit(ws);
            }
        }
        self.cgroup.destroy()?;
        let dir = State::dir(&self.root, &self.state.id);
        // Another deleter (a watcher reaping it while `rm -f` runs) may
        // have removed it first.
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&dir, e)),
            _ => Ok(()),
        }
    }
}

/// Reaps a SIGKILLed init if it is our child, waiting a bounded time.
///
/// A pid-namespace init stays in its exit path until every process of the
/// namespace has been reaped, and an exec'd process orphaned to a child
/// subreaper (the caller) may be one of those zombies: blocking here could
/// then wait on ourselves. The cgroup is empty by then, so giving up is safe;
/// the init is reaped by whoever reaps the caller's children.
fn reap_killed(pid: i32) -> Option<WaitStatus> {
    for _ in 0..400 {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Some(ws),
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            // Not our child: its parent reaps it.
            Err(_) => return None,
        }
    }
    None
}
