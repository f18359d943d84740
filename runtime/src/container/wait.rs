//! Waiting for the init's exit, and recording it.

use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::state::Status;
use crate::{Error, Result};

use super::{Container, ExitStatus};

impl Container {
    /// Blocks until the init exits and records its status. Only the
    /// process that created the container (its parent) or a child
    /// subreaper above it can wait.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(code) = self.state.exit_code {
            return Ok(self.recorded_exit(code));
        }
        loop {
            match waitpid(Pid::from_raw(self.state.pid), None) {
                Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return self.record_exit(ws)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("waitpid {}", self.state.pid), e)),
            }
        }
    }

    /// Like [`Container::wait`] without blocking: `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.try_wait_then(true)
    }

    /// [`Container::try_wait`] for a caller that deletes the container
    /// next (the engine's watcher, which records the exit itself): the
    /// exit is kept in memory, not written to the state first.
    pub fn try_wait_to_delete(&mut self) -> Result<Option<ExitStatus>> {
        self.try_wait_then(false)
    }

    fn try_wait_then(&mut self, save: bool) -> Result<Option<ExitStatus>> {
        if let Some(code) = self.state.exit_code {
            return Ok(Some(self.recorded_exit(code)));
        }
        match waitpid(Pid::from_raw(self.state.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => self.note_exit(c, save).map(Some),
            Ok(WaitStatus::Signaled(_, sig, _)) => self.note_exit(128 + sig as i32, save).map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(Error::sys(format!("waitpid {}", self.state.pid), e)),
        }
    }

    fn recorded_exit(&self, code: i32) -> ExitStatus {
        ExitStatus {
            code,
            signal: (code > 128 && code < 160).then_some(code - 128),
            oom_killed: self.state.oom_killed,
        }
    }

    /// Records an exit reaped by the caller's own `waitpid` loop (a shim
    /// reaping on SIGCHLD), and returns it as an [`ExitStatus`].
    pub fn record_exit(&mut self, ws: WaitStatus) -> Result<ExitStatus> {
        match ws {
            WaitStatus::Exited(_, c) => self.record_exit_code(c),
            WaitStatus::Signaled(_, s, _) => self.record_exit_code(128 + s as i32),
            _ => Err(self.bad_status("not an exit status")),
        }
    }

    /// Records an exit code reaped elsewhere (128+signal for a signal).
    pub fn record_exit_code(&mut self, code: i32) -> Result<ExitStatus> {
        self.note_exit(code, true)
    }

    /// Takes note of the exit, in the state file too when `save`.
    fn note_exit(&mut self, code: i32, save: bool) -> Result<ExitStatus> {
        let signal = (code > 128 && code < 160).then_some(code - 128);
        let oom_killed = signal == Some(libc::SIGKILL) && self.cgroup.oom_kills() > 0;
        self.state.exit_code = Some(code);
        self.state.exited_at = Some(SystemTime::now());
        self.state.oom_killed = oom_killed;
        self.state.status = Status::Stopped;
        if save {
            self.state.save(&self.root)?;
        }
        Ok(ExitStatus {
            code,
            signal,
            oom_killed,
        })
    }
}
