//! Process attributes of the init: namespaces by path, sysctls, rlimits,
//! user and groups, capabilities, no_new_privs, cwd, and the final execve.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::paths::DEFAULT_PATH;
use crate::{Error, Result};

pub(super) fn join_namespace(typ: LinuxNamespaceType, path: &Path) -> Result<()> {
    let flag = match typ {
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        other => {
            return Err(Error::Spec(format!(
                "joining an existing {other} namespace ({}) is not supported",
                path.display()
            )))
        }
    };
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    nix::sched::setns(f, flag).map_err(|e| Error::sys(format!("setns {}", path.display()), e))
}

pub(super) fn apply_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        if key.contains('/') || key.split('.').any(|p| p == ".." || p.is_empty()) {
            return Err(Error::Spec(format!("bad sysctl name {key:?}")));
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

pub(super) fn set_oom_score_adj(spec: &Spec) -> Result<()> {
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Error::io("/proc/self/oom_score_adj", e))?;
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// The spec's name of an enum value (its serde form, e.g. `RLIMIT_NOFILE`).
fn spec_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn apply_rlimits(process: &Process) -> Result<()> {
    let Some(limits) = process.rlimits().as_ref() else {
        return Ok(());
    };
    for l in limits {
        let name = spec_name(&l.typ());
        let res =
            rlimit_resource(&name).ok_or_else(|| Error::Spec(format!("unknown rlimit {name}")))?;
        let lim = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: valid pointer to a filled struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(Error::sys(format!("setrlimit {name}"), nix::Error::last()));
        }
    }
    Ok(())
}

fn cap_set(names: &Option<oci_spec::runtime::Capabilities>) -> Result<caps::CapsHashSet> {
    let mut set = HashSet::new();
    for c in names.iter().flatten() {
        let name = spec_name(c);
        match caps::Capability::from_str(&name) {
            Ok(cap) => {
                set.insert(cap);
            }
            // A capability newer than our table: the kernel may know it, we
            // can't name it; skip rather than fail the container.
            Err(_) => tracing::warn!("unknown capability {name}, ignored"),
        }
    }
    Ok(set)
}

pub(super) fn switch_user_and_caps(process: &Process) -> Result<()> {
    let user = process.user();
    let caps_spec = process.capabilities().as_ref();
    let bounding = caps_spec.map(|c| cap_set(c.bounding())).transpose()?;
    if let Some(bounding) = &bounding {
        for cap in caps::all() {
            if !bounding.contains(&cap)
                && caps::has_cap(None, caps::CapSet::Bounding, cap).unwrap_or(false)
            {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| {
                    Error::Spec(format!("cannot drop bounding capability {cap}: {e}"))
                })?;
            }
        }
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    // Keep permitted capabilities across the uid change; set them below.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).map_err(|e| Error::sys("setgroups", e))?;
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| Error::sys(format!("setgid {gid}"), e))?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| Error::sys(format!("setuid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    if let Some(c) = caps_spec {
        let set = |which: caps::CapSet, names| -> Result<()> {
            caps::set(None, which, &cap_set(names)?)
                .map_err(|e| Error::Spec(format!("cannot set {which:?} capabilities: {e}")))
        };
        // The kernel wants effective within permitted at every step, and
        // raising inheritable needs CAP_SETPCAP: inheritable first, then
        // shrink effective, then permitted.
        set(caps::CapSet::Inheritable, c.inheritable())?;
        set(caps::CapSet::Effective, c.effective())?;
        set(caps::CapSet::Permitted, c.permitted())?;
        // Ambient capabilities must be permitted and inheritable; a spec
        // asking for others gets the ones it can have.
        let _ = caps::set(None, caps::CapSet::Ambient, &cap_set(c.ambient())?);
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Error::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
    }
    Ok(())
}

/// With `process.terminal`: opens a terminal inside the container (its own
/// devpts, so `ttyname` works), makes the slave fds 0-2 and sends the
/// master to the creator, which relays it.
pub(super) fn setup_console(process: &Process, sync: &std::fs::File) -> Result<()> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd;
    if process.terminal() != Some(true) {
        return Ok(());
    }
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("open /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| Error::sys("ptsname", e))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {name}"), e))?;
    let user = process.user();
    let _ = nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(user.uid())),
        Some(nix::unistd::Gid::from_raw(user.gid())),
    );
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::sys("dup2 console", nix::Error::last()));
        }
    }
    crate::sync::send_fd(sync, "console", master.as_raw_fd())
        .map_err(|e| Error::io("sync socket", e))
}

/// A new session, and the terminal on stdin as its controlling terminal
/// when the process asks for one.
pub(super) fn new_session(process: &Process) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    if process.terminal() == Some(true) {
        // SAFETY: plain ioctl on fd 0.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(Error::sys("ioctl(TIOCSCTTY) on stdin", nix::Error::last()));
        }
    }
    Ok(())
}

pub(super) fn chdir_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| Error::sys(format!("chdir {}", cwd.display()), e))
}

/// The spec's env as pairs, exactly (a Wasm guest's environment: WASI
/// programs that list or count it must see what the spec says).
pub(super) fn spec_env(process: &Process) -> Vec<(String, String)> {
    process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

/// A native process's env: the spec's, with the default PATH when it
/// sets none (as runc and Docker give one).
fn native_env(process: &Process) -> Vec<(String, String)> {
    let mut env = spec_env(process);
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// Replaces the init with the native entrypoint. Returns only on failure,
/// with the exit code a shell would give (126 not executable, 127 missing).
pub(super) fn exec(process: &Process, entrypoint: &str) -> i32 {
    let args: Vec<CString> = process
        .args()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let env: Vec<CString> = native_env(process)
        .into_iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    let Ok(path) = CString::new(entrypoint) else {
        return 127;
    };
    reset_signal_dispositions();
    // Fds we still hold (the FIFO is gone, but be sure) must not leak in.
    // SAFETY: close_range with CLOEXEC only flags descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
    let _ = writeln!(std::io::stderr(), "amphi: exec {entrypoint}: {err}");
    if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    }
}

/// Rust ignores SIGPIPE, and ignored signals survive execve: give the
/// payload the defaults it expects.
fn reset_signal_dispositions() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// `--init`: stays pid 1, forks the payload, and until it exits forwards
/// every signal sent to us to it and reaps every child (orphans included,
/// which a payload never written to be pid 1 would leave as zombies).
/// Exits with the payload's status (128+signal when killed).
pub(super) fn exec_under_reaper(process: &Process, entrypoint: &str) -> i32 {
    // SAFETY: plain signal-mask calls on valid sets.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the init is single-threaded (native payloads load no engine).
    let child = unsafe { libc::fork() };
    if child < 0 {
        let _ = writeln!(
            std::io::stderr(),
            "amphi: --init: fork: {}",
            nix::Error::last()
        );
        return 126;
    }
    if child == 0 {
        // SAFETY: restoring the mask we had.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        std::process::exit(exec(process, entrypoint));
    }
    // What `ps` shows as pid 1 (the binary's own name is the runtime's).
    // SAFETY: a NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"amphi-init".as_ptr()) };
    loop {
        // SAFETY: a zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: waitpid with a valid status pointer.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    return if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        libc::WEXITSTATUS(status)
                    };
                }
            }
            continue;
        }
        // A terminal's own signals (Ctrl-C) reached the payload's process
        // group already: passing them on would deliver them twice.
        if info.si_code == libc::SI_KERNEL {
            continue;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child, sig) };
    }
}
