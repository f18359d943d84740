//! Starting the container init: `clone` straight into the new namespaces,
//! then `execve` this same binary in init mode.
//!
//! The caller may be multi-threaded (the shim is), so between `clone` and
//! `execve` the child does only async-signal-safe work: `fcntl`, `dup2`,
//! `execve`, `_exit`. Everything else is prepared before the clone. The
//! init is therefore a fresh single-threaded process, and the direct child
//! of the caller, which can `waitpid` it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::{Error, Result};

/// The variable that tells [`crate::init::run_if_init`] which fd carries
/// the init's configuration.
pub(crate) const INIT_ENV: &str = "_AMPHI_INIT_FD";
/// The fd number the sync socket gets in the init.
pub(crate) const INIT_FD: RawFd = 3;

/// The three fds the init gets as 0, 1 and 2.
pub(crate) struct ChildStdio<'a> {
    pub stdin: Option<&'a OwnedFd>,
    pub stdout: Option<&'a OwnedFd>,
    pub stderr: Option<&'a OwnedFd>,
}

/// How the init comes to run after the clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// `execve` of the init binary.
    Exec,
    /// This process's own init code, without an exec: only for a caller
    /// that is single-threaded now (see [`single_threaded`]) and whose
    /// binary runs the payload.
    Fork,
}

/// Whether this process has one thread (`num_threads` of /proc/self/stat).
pub(crate) fn single_threaded() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // Fields after the command's closing paren: state is field 3, and
    // num_threads field 20.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .is_some_and(|n| n == "1")
}

/// Clones a child into new namespaces (`clone_flags`) that execs `exe` as
/// the init of container `id` (or, with [`Start::Fork`], runs this
/// process's init code); with `pid_ns`, into that existing pid namespace
/// instead of a new one. Returns its pid and our end of the sync socket.
pub(crate) fn spawn_init(
    exe: &Path,
    id: &str,
    clone_flags: libc::c_int,
    pid_ns: Option<&Path>,
    stdio: &ChildStdio,
    start: Start,
) -> Result<(i32, UnixStream)> {
    // Said plainly here rather than as an init that died at exec.
    if let Err(e) = std::fs::metadata(exe) {
        return Err(Error::io(format!("init binary {}", exe.display()), e));
    }
    let (ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
    let exe_c = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| Error::Spec("init path has a NUL".into()))?;
    let arg0 = CString::new("amphi-init").unwrap();
    let arg1 = CString::new(id).map_err(|_| Error::InvalidId(id.into()))?;
    let env0 = CString::new(format!("{INIT_ENV}={INIT_FD}")).unwrap();
    let fds: [RawFd; 4] = [
        stdio.stdin.map_or(0, |f| f.as_raw_fd()),
        stdio.stdout.map_or(1, |f| f.as_raw_fd()),
        stdio.stderr.map_or(2, |f| f.as_raw_fd()),
        theirs.as_raw_fd(),
    ];
    // The namespaces a process may make for itself are made by the child
    // (`unshare`), not by the clone: a new network namespace alone costs
    // ~1 ms here, which then overlaps with our making its cgroup instead of
    // delaying it. A pid namespace (it holds only later children of an
    // unshare) and a cgroup namespace stay with the clone.
    let deferred = clone_flags & UNSHARED_BY_CHILD;
    let flags = ((clone_flags & !deferred) | libc::SIGCHLD) as libc::c_ulong;
    let clone = || {
        // Built here, on the thread that clones (raw pointers are not Send).
        let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
        let envp = [env0.as_ptr(), std::ptr::null()];
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child
        // gets a copy of our memory and runs only async-signal-safe calls.
        let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        if ret == 0 {
            // SAFETY: child side; only async-signal-safe calls until the
            // exec (or, forked, the init code: see below).
            unsafe {
                place_fds(&fds);
                unshare_or_report(deferred);
            }
            if start == Start::Fork {
                // SAFETY: the caller was single-threaded, so the copy of
                // its memory is consistent and any call is safe here.
                unsafe { libc::syscall(libc::SYS_close_range, INIT_FD + 1, u32::MAX, 0) };
                crate::init::forked_main();
            }
            // SAFETY: child side; see above.
            unsafe { exec(&exe_c, &argv, &envp) }
        }
        // errno is per thread: read it on the thread that cloned.
        if ret < 0 {
            Err(nix::Error::last())
        } else {
            Ok(ret as i32)
        }
    };
    let pid = match pid_ns {
        None => clone().map_err(|e| Error::sys("clone", e))?,
        Some(path) => clone_in_pid_ns(path, clone)?,
    };
    drop(theirs);
    Ok((pid, ours))
}

/// Runs `clone` so that its child lands in the pid namespace at `path`.
///
/// A pid namespace cannot be entered by a running process, only chosen for
/// its future children (`setns` sets the calling thread's
/// `pid_for_children`). That is done on a thread of its own, which then
/// clones and ends, so no other thread of the caller (the shim serves
/// requests on many) ever forks into the container's namespace. The child
/// is still ours to `waitpid`: children belong to the whole thread group.
fn clone_in_pid_ns(path: &Path, clone: impl FnOnce() -> nix::Result<i32> + Send) -> Result<i32> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let theirs = ns.metadata().map_err(|e| Error::io(path, e))?;
    let ours =
        std::fs::metadata("/proc/self/ns/pid").map_err(|e| Error::io("/proc/self/ns/pid", e))?;
    // Our own namespace (a hostPID pod names the host's): nothing to join.
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        return clone().map_err(|e| Error::sys("clone", e));
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::sys(format!("setns {}", path.display()), e))?;
            clone().map_err(|e| match e {
                // The namespace's init has exited: the kernel takes no new members.
                nix::Error::ENOMEM => Error::Spec(format!(
                    "pid namespace {} is gone (its init has exited)",
                    path.display()
                )),
                e => Error::sys(format!("clone into pid namespace {}", path.display()), e),
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Spec("clone thread panicked".into())))
    })
}

/// Namespaces the child makes itself rather than the clone.
const UNSHARED_BY_CHILD: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Child side: makes the deferred namespaces. On failure the error goes
/// to the creator as the init's one-line answer (after its config is read
/// to the end, so its write never fails), and the child exits.
unsafe fn unshare_or_report(flags: libc::c_int) {
    if flags == 0 || libc::unshare(flags) == 0 {
        return;
    }
    let errno = *libc::__errno_location();
    // "error: unshare: errno N\n", built without allocating.
    let mut line = *b"error: making the container's namespaces (unshare): errno 0000\n";
    let mut n = errno.clamp(0, 9999);
    let end = line.len() - 1;
    for i in (end - 4..end).rev() {
        line[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut buf = [0u8; 512];
    while libc::read(INIT_FD, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
    libc::write(INIT_FD, line.as_ptr().cast(), line.len());
    libc::_exit(126)
}

/// Child side of the clone, its fds placed: exec the init. Never returns.
unsafe fn exec(
    exe: &CString,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 2],
) -> ! {
    libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
    libc::_exit(127)
}

/// Makes `fds` the child's 0, 1, 2 and [`INIT_FD`] (`_exit`s on failure).
unsafe fn place_fds(fds: &[RawFd; 4]) {
    // First copy every source above the targets, so that placing one can't
    // clobber another; dup2 onto a fresh number also clears close-on-exec.
    let mut high = [0; 4];
    for (i, fd) in fds.iter().enumerate() {
        high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
        if high[i] < 0 {
            libc::_exit(126);
        }
    }
    for (target, fd) in high.iter().enumerate() {
        if libc::dup2(*fd, target as RawFd) < 0 {
            libc::_exit(126);
        }
    }
}
