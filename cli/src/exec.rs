//! `amphi exec [-i] [-t] [-d] [-e K=V] [-w DIR] [-u USER] ID CMD...`, as
//! `docker exec` runs a command: in the container's namespaces and cgroup
//! with its process settings; with `-t` a terminal of its own relayed to
//! ours (raw with `-i`, resized on SIGWINCH); the signals we get passed on;
//! its exit status ours. `-d` leaves it running and returns.

use std::os::fd::AsFd;
use std::path::PathBuf;

use amphi_engine::exec::ExecOptions;
use amphi_engine::Engine;
use amphi_runtime::nix_signal::Signal;
use anyhow::{Context, Result};
use clap::Args;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// `amphi exec` flags.
#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open (without it the command reads /dev/null).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal, relayed to ours.
    #[arg(short = 't', long)]
    tty: bool,
    /// Run it in the background.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set an environment variable (K=V, or K for the caller's value).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    env_files: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// The user: UID[:GID] or NAME[:GROUP] (from the container's /etc/passwd).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// CONTAINER COMMAND [ARGS...]: as Docker parses, options come before
    /// the container, and everything after it, flags too, is the command's.
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, value_names = ["CONTAINER", "COMMAND"])]
    rest: Vec<String>,
}

/// Runs `amphi exec`.
pub fn exec(engine: &Engine, a: ExecArgs) -> Result<u8> {
    let (id, cmd) = a.rest.split_first().expect("clap: CONTAINER COMMAND");
    let opts = ExecOptions {
        cmd: cmd.to_vec(),
        env: a.env,
        env_files: a.env_files,
        workdir: a.workdir,
        user: a.user,
        tty: a.tty,
    };
    let (container, process) = engine.exec_process(id, &opts)?;
    let mut stdio = amphi_runtime::Stdio::default();
    if (!a.interactive && !a.tty) || a.detach {
        // As Docker: without -i the command reads nothing of ours (with
        // -t its stdin is its terminal, which we only write to with -i).
        let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
        stdio.stdin = Some(null.into());
    }
    if a.detach {
        for out in [&mut stdio.stdout, &mut stdio.stderr] {
            *out = Some(
                std::fs::File::options()
                    .write(true)
                    .open("/dev/null")?
                    .into(),
            );
        }
    }
    let set = amphi_engine::watch::block_signals()?;
    // The exec'd process is a grandchild: adopt it to reap it.
    nix::sys::prctl::set_child_subreaper(true)?;
    let started = container.exec(engine.runtime().config(), &process, stdio)?;
    if a.detach {
        return Ok(0);
    }
    let console = started.console;
    let mut raw = None;
    let mut relay = None;
    if let Some(master) = &console {
        crate::tty::copy_window_size(master.as_fd());
        if a.interactive {
            raw = crate::tty::RawMode::enter();
        }
        relay = Some(
            crate::tty::Relay::start(master, a.interactive)
                .context("relaying the command's terminal")?,
        );
    }
    let pid = Pid::from_raw(started.pid);
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) => {}
            Err(e) => {
                drop(raw);
                return Err(e).context("waiting for the exec'd process");
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(Signal::SIGWINCH) => {
                if let Some(master) = &console {
                    crate::tty::copy_window_size(master.as_fd());
                }
            }
            // Ours to pass on, as for the container's own process.
            Ok(sig) => {
                let _ = nix::sys::signal::kill(pid, sig);
            }
            Err(_) => {}
        }
    };
    if let Some(r) = relay {
        r.finish();
    }
    drop(raw);
    Ok(code.clamp(0, 255) as u8)
}
