//! The container lifecycle: create → start → (kill | wait) → delete, plus
//! state, pids, pause/resume, update and stats. A file per verb, as
//! youki keeps them: `create` (the sandbox made, with its undo), `start`,
//! `wait` (exits reaped and recorded), `exec`, `delete`.

mod create;
mod delete;
mod entrypoint;
mod exec;
mod start;
mod wait;

pub use exec::ExecProcess;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::cgroup::Cgroup;
use crate::state::{validate_id, PayloadKind, State, Status};
use crate::stats::Stats;
use crate::{Error, Result};

/// Where the runtime keeps state and caches, and which binary is the init.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-container state directories (default `/run/amphi`).
    pub state_root: PathBuf,
    /// Compiled Wasm modules (default `/var/lib/amphi/wasm-cache`).
    pub wasm_cache: PathBuf,
    /// The binary re-executed as container init; it must call
    /// [`crate::init::run_if_init`] first thing in `main`. Default: this one.
    pub init_exe: PathBuf,
    /// The init of Wasm containers and Wasm execs, when `init_exe` carries
    /// no Wasm engine (it passed `None` to `run_if_init`). Default: none,
    /// `init_exe` runs both.
    pub wasm_init_exe: Option<PathBuf>,
    /// Fork Wasm inits from the creating process instead of exec'ing an
    /// init binary, whenever that process is single-threaded at the time
    /// and its own binary runs Wasm: saves an exec of a large binary per
    /// container (for a short-lived front end such as `amphi run`; a
    /// multi-threaded caller, such as the shim, always execs).
    pub fork_wasm_init: bool,
}

impl RuntimeConfig {
    /// The init binary for a payload kind.
    fn init_exe_for(&self, kind: PayloadKind) -> &Path {
        match (kind, &self.wasm_init_exe) {
            (PayloadKind::Wasm, Some(exe)) => exe,
            _ => &self.init_exe,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_root: PathBuf::from("/run/amphi"),
            wasm_cache: PathBuf::from("/var/lib/amphi/wasm-cache"),
            init_exe: PathBuf::from("/proc/self/exe"),
            wasm_init_exe: None,
            fork_wasm_init: false,
        }
    }
}

/// The container's stdio; `None` inherits the caller's.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Becomes fd 0.
    pub stdin: Option<OwnedFd>,
    /// Becomes fd 1.
    pub stdout: Option<OwnedFd>,
    /// Becomes fd 2.
    pub stderr: Option<OwnedFd>,
}

/// Options of [`Runtime::create`].
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The container's stdio.
    pub stdio: Stdio,
    /// Cgroup path; default: the spec's cgroupsPath, else `amphi/<id>`.
    pub cgroup_path: Option<String>,
    /// A signal the init gets when the thread that created it ends
    /// (`PR_SET_PDEATHSIG`, set last, after the user switch that would
    /// clear it): a container that must not outlive its supervisor.
    /// Create from a thread that lives as long as the supervisor, and not
    /// for a spec that joins a pid namespace by path (a helper thread
    /// makes that clone).
    pub parent_death_signal: Option<Signal>,
    /// A native init that stays pid 1 as a minimal reaper (Docker's
    /// `--init`): it forks the payload, forwards every signal it gets to
    /// it, reaps every child and exits with the payload's status.
    pub reaper: bool,
}

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128+signal when killed by a signal.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed it.
    pub oom_killed: bool,
}

/// Creates and finds containers.
#[derive(Debug, Clone)]
pub struct Runtime {
    config: RuntimeConfig,
}

impl Runtime {
    /// A runtime with the given paths.
    pub fn new(config: RuntimeConfig) -> Self {
        Runtime { config }
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    // `create` and `create_from` are in create.rs.

    /// Finds an existing container.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let state = State::load(&self.config.state_root, id)?;
        let cgroup = Cgroup::open(&state.cgroup)?;
        Ok(Container {
            root: self.config.state_root.clone(),
            state,
            cgroup,
            console: None,
        })
    }

    /// States of every container in the state root, by id.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.config.state_root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&self.config.state_root, e)),
        };
        for entry in entries.flatten() {
            if let Ok(s) = State::load(
                &self.config.state_root,
                &entry.file_name().to_string_lossy(),
            ) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// A container found in or created into the state root.
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
    state: State,
    cgroup: Cgroup,
    console: Option<OwnedFd>,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// The recorded state, with the status corrected for a dead init.
    pub fn state(&self) -> State {
        let mut s = self.state.clone();
        s.status = s.current_status();
        s
    }

    /// The master side of the container's terminal, when its spec asked
    /// for one (`process.terminal`); the caller relays it to its own stdio.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    fn bad_status(&self, msg: &str) -> Error {
        Error::BadStatus {
            id: self.state.id.clone(),
            status: self.state.current_status().to_string(),
            msg: msg.into(),
        }
    }

    /// Sends `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, signal: Signal, all: bool) -> Result<()> {
        if all {
            // The init first, by pid: it is part of "all" even if the cgroup
            // listing were to miss it.
            if self.state.init_alive() {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.state.pid), signal);
            }
            return self.cgroup.signal_all(signal);
        }
        if !self.state.init_alive() {
            return Err(self.bad_status("cannot signal a stopped container"));
        }
        nix::sys::signal::kill(Pid::from_raw(self.state.pid), signal)
            .map_err(|e| Error::sys(format!("kill {} {signal}", self.state.pid), e))
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.cgroup.procs()
    }

    /// Freezes every process of the container.
    pub fn pause(&mut self) -> Result<()> {
        if self.state.current_status() != Status::Running {
            return Err(self.bad_status("only a running container can be paused"));
        }
        self.cgroup.freeze()?;
        self.state.status = Status::Paused;
        self.state.save(&self.root)
    }

    /// Thaws a paused container.
    pub fn resume(&mut self) -> Result<()> {
        if self.state.current_status() != Status::Paused {
            return Err(self.bad_status("only a paused container can be resumed"));
        }
        self.cgroup.thaw()?;
        self.state.status = Status::Running;
        self.state.save(&self.root)
    }

    /// Applies new resource limits to the running container.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.cgroup.apply(resources)
    }

    /// Cgroup figures.
    pub fn stats(&self) -> Result<Stats> {
        self.cgroup.stats()
    }
}
