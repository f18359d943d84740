//! The exec path of the init: join a running container's namespaces, fork
//! into its pid namespace, set the process up and run the payload.
//!
//! The first process (in the host pid namespace) reports the fork's host
//! pid and exits; the forked process, reparented to the caller (a child
//! subreaper), reports `ok` or `error: ...` and then runs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;

use super::{process, report, run_payload, ExecConfig, Loaded, Payload};
use crate::{Error, Result};

/// Namespaces to join, mount last: once in the container's mount namespace
/// the host's /proc is out of sight.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

pub(super) fn main(cfg: &ExecConfig, mut sync: File) -> i32 {
    let payload = match join(cfg) {
        Ok(p) => p,
        Err(e) => return report(&mut sync, &e),
    };
    let (mut release_rx, release_tx) = match nix::unistd::pipe() {
        Ok((r, w)) => (File::from(r), w),
        Err(e) => return report(&mut sync, &Error::sys("pipe", e)),
    };
    // SAFETY: this process is single-threaded (a fresh exec of the init).
    match unsafe { nix::unistd::fork() } {
        Err(e) => report(&mut sync, &Error::sys("fork into the container", e)),
        Ok(ForkResult::Parent { child }) => {
            let _ = writeln!(sync, "pid {child}");
            drop(release_tx);
            0
        }
        Ok(ForkResult::Child) => {
            drop(release_tx);
            // Wait until our parent has reported our pid, so the lines keep order.
            let mut buf = [0u8; 1];
            let _ = release_rx.read(&mut buf);
            drop(release_rx);
            let loaded = match setup(cfg, payload, &sync) {
                Ok(l) => l,
                Err(e) => return report(&mut sync, &e),
            };
            if writeln!(sync, "ok").is_err() {
                return 126;
            }
            drop(sync);
            run_payload(&cfg.process, &cfg.entrypoint, loaded, None)
        }
    }
}

/// Joins the target's namespaces; maps a Wasm module first, while the
/// host's cache is still visible.
fn join(cfg: &ExecConfig) -> Result<Loaded> {
    let payload = match &cfg.payload {
        Payload::Native => Loaded::Native,
        Payload::Wasm { module, cache } => Loaded::Wasm(super::prepare_wasm(module, cache)?),
    };
    // Before the cgroup namespace is joined, while the host's hierarchies
    // are in sight.
    if let Some(join) = &cfg.self_join {
        crate::cgroup::join_self(join)?;
    }
    let mut fds = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", cfg.target_pid);
        let ours = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let theirs = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
        if ours.as_ref() == Some(&theirs) {
            continue;
        }
        fds.push((
            path.clone(),
            File::open(&path).map_err(|e| Error::io(&path, e))?,
            flag,
        ));
    }
    for (path, fd, flag) in fds {
        nix::sched::setns(fd.as_fd(), flag).map_err(|e| Error::sys(format!("setns {path}"), e))?;
    }
    Ok(payload)
}

fn setup(cfg: &ExecConfig, mut payload: Loaded, sync: &File) -> Result<Loaded> {
    process::setup_console(&cfg.process, sync)?;
    process::new_session(&cfg.process)?;
    process::apply_rlimits(&cfg.process)?;
    let grants = super::Grants::present(&cfg.wasm)?;
    super::drop_privileges(
        &cfg.process,
        cfg.seccomp.as_ref(),
        &mut payload,
        false,
        &grants,
    )?;
    Ok(payload)
}
