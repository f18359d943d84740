//! Running another process in a running container.

use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::init::{ExecConfig, InitMessage, Payload};
use crate::spawn::{spawn_init, ChildStdio, Start};
use crate::state::{PayloadKind, State, Status, SECCOMP_FILE};
use crate::{Error, Result};

use super::entrypoint::resolve_in;
use super::{Container, RuntimeConfig, Stdio};

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its host pid.
    pub pid: i32,
    /// The master side of its terminal, when its spec asked for one.
    pub console: Option<OwnedFd>,
}

impl Container {
    /// Runs another process in the running container: its namespaces, its
    /// cgroup, the given user, env, cwd and capabilities. A Wasm entrypoint
    /// runs as another module instance. Returns the process's host pid; it
    /// becomes a child of the nearest child subreaper (the caller must be
    /// one, as containerd shims are) to reap. `config` names the init
    /// binaries and the Wasm cache (the runtime's own, normally).
    pub fn exec(
        &self,
        config: &RuntimeConfig,
        process: &Process,
        stdio: Stdio,
    ) -> Result<ExecProcess> {
        if !self.state.init_alive() || self.state.status == Status::Paused {
            return Err(self.bad_status("exec needs a running container"));
        }
        let ep = resolve_in(&self.state.rootfs, process, &self.state.annotations)?;
        let payload = match ep.kind {
            PayloadKind::Native => Payload::Native,
            PayloadKind::Wasm => Payload::Wasm {
                module: ep.host.clone(),
                cache: config.wasm_cache.clone(),
            },
        };
        let file = State::dir(&self.root, &self.state.id).join(SECCOMP_FILE);
        let seccomp = match std::fs::read(&file) {
            Ok(bytes) => Some(crate::seccomp::Program::from_bytes(&bytes).ok_or_else(|| {
                Error::Spec(format!("{}: not a compiled seccomp filter", file.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&file, e)),
        };
        let cfg = ExecConfig {
            target_pid: self.state.pid,
            process: process.clone(),
            entrypoint: ep.inside,
            payload,
            seccomp,
            wasm: self.state.wasm.clone(),
            self_join: self.cgroup.self_join(),
        };
        let self_joins = cfg.self_join.is_some();
        let child_stdio = ChildStdio {
            stdin: stdio.stdin.as_ref(),
            stdout: stdio.stdout.as_ref(),
            stderr: stdio.stderr.as_ref(),
        };
        let (pid, sock) = spawn_init(
            config.init_exe_for(ep.kind),
            &self.state.id,
            0,
            None,
            &child_stdio,
            Start::Exec,
        )?;
        let fail = |msg: String| {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            Error::Init {
                id: self.state.id.clone(),
                msg,
            }
        };
        if let Err(e) = (!self_joins).then(|| self.cgroup.add_pid(pid)).transpose() {
            return Err(fail(e.to_string()));
        }
        if let Err(e) = crate::sync::send_config(
            &sock,
            &serde_json::to_vec(&InitMessage::Exec(Box::new(cfg))).expect("config serialises"),
        ) {
            return Err(fail(format!("sending exec config: {e}")));
        }
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let first = crate::sync::read_line(&sock)
            .map(|(l, _)| l)
            .unwrap_or_default();
        // The first process exits once it forked; reap it if it is ours.
        let _ = waitpid(Pid::from_raw(pid), None);
        let exec_pid: i32 = match first.strip_prefix("pid ") {
            Some(p) => p.parse().map_err(|_| Error::Init {
                id: self.state.id.clone(),
                msg: format!("bad reply {first:?}"),
            })?,
            None => {
                let msg = first
                    .strip_prefix("error: ")
                    .unwrap_or("exec init exited during setup")
                    .to_string();
                return Err(Error::Init {
                    id: self.state.id.clone(),
                    msg,
                });
            }
        };
        let mut console = None;
        loop {
            let (line, fd) = crate::sync::read_line(&sock).unwrap_or_default();
            match line.as_str() {
                "console" => console = fd,
                "ok" => {
                    return Ok(ExecProcess {
                        pid: exec_pid,
                        console,
                    })
                }
                other => {
                    let _ = nix::sys::signal::kill(Pid::from_raw(exec_pid), Signal::SIGKILL);
                    let msg = other
                        .strip_prefix("error: ")
                        .unwrap_or("exec process exited during setup")
                        .to_string();
                    return Err(Error::Init {
                        id: self.state.id.clone(),
                        msg,
                    });
                }
            }
        }
    }
}
