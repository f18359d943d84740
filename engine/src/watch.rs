//! The watcher: the process that is a running container's parent, waits
//! for it, records its exit and applies its restart policy. In the
//! foreground (`amphi run`, `start -a`) it is the command itself, which
//! also passes signals on; for `-d`, `start`, the boot command and the
//! restarts after a foreground run it is a detached process of its own
//! (this binary again, in its own session), writing the container's
//! output to its log.
//!
//! A container dies with its watcher (the runtime's parent-death signal),
//! so none runs unwatched; the next command that looks at it finds the
//! watcher gone and cleans up (`reconcile`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use amphi_runtime::{Container, ExitStatus};
use nix::sys::signal::{SigSet, Signal};

use crate::console::DetachedIo;
use crate::error::{Context, Error, Result};
use crate::record::{self, ProcessId, Status};
use crate::restart::next_delay;
use crate::{units, Engine, Finished};

/// The subcommand (after the global `--root R --state S`) that becomes a
/// detached watcher: `container-watch ID DELAY_MS`.
pub const WATCH_COMMAND: &str = "container-watch";

/// The signals a foreground watcher passes on to its container.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks the forwarded signals, SIGCHLD and SIGWINCH in the calling
/// thread, before the container exists, so none is lost; the container's
/// init unblocks its own mask. Returns the set for [`supervise`].
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block().context("blocking signals")?;
    Ok(set)
}

/// How [`supervise`] watches.
#[derive(Default)]
pub struct Supervision<'a> {
    /// SIGKILL the container when this time is up (`--timeout`).
    pub timeout: Option<Duration>,
    /// Pass the signals we get on to the container (foreground).
    pub forward: bool,
    /// Called on SIGWINCH (a `-t` container's terminal was resized).
    pub on_resize: Option<&'a mut dyn FnMut()>,
}

/// Waits for the container's init, passing signals on and enforcing the
/// timeout. `set` is what [`block_signals`] returned.
pub fn supervise(
    container: &mut Container,
    set: &SigSet,
    mut how: Supervision<'_>,
) -> Result<ExitStatus> {
    let deadline = how.timeout.map(|t| Instant::now() + t);
    let mut killed = false;
    loop {
        // The exit goes into the record (`finish_task`), and the runtime
        // container is deleted next: its state need not hear of it.
        if let Some(status) = container.try_wait_to_delete()? {
            return Ok(status);
        }
        let wait = match deadline {
            Some(d) if !killed => d.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(3600),
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; a null siginfo is allowed.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if sig < 0 {
            if deadline.is_some_and(|d| !killed && Instant::now() >= d) {
                container.kill(Signal::SIGKILL, true)?;
                killed = true;
            }
            continue;
        }
        match sig {
            libc::SIGCHLD => {}
            libc::SIGWINCH => {
                if let Some(f) = how.on_resize.as_mut() {
                    f();
                }
            }
            _ if how.forward => {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = container.kill(s, false);
                }
            }
            _ => {}
        }
    }
}

impl Engine {
    /// Starts a detached watcher for `id` that runs it after `delay` (a
    /// restart) or at once as a user's start, and returns once the
    /// container runs (or failed to start, with that error).
    pub fn spawn_watcher(&self, id: &str, delay: Option<Duration>) -> Result<()> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
        let root: PathBuf = self.root().to_path_buf();
        let wfd = w.as_raw_fd();
        let mut cmd = std::process::Command::new(&self.config.watcher_exe);
        cmd.arg0("amphi")
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&self.config.state)
            .arg(WATCH_COMMAND)
            .arg(id)
            .arg(delay.map_or(-1, |d| d.as_millis() as i64).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                // The report pipe becomes fd 3, open across exec.
                if wfd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(wfd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting the watcher of {id}"))?;
        drop(w);
        if delay.is_some() {
            // A restart we hand over: the record names the new watcher
            // before we go, so it is never without a live one.
            let me = ProcessId::current();
            let pid = child.id() as i32;
            let next = ProcessId {
                pid,
                start_time: amphi_runtime::state::process_start_time(pid).unwrap_or(0),
            };
            record::update(self.root(), id, |r| {
                if r.state.watcher == Some(me) {
                    r.state.watcher = Some(next);
                }
            })?;
        }
        // One line: "ok" once running (or once waiting to restart), or
        // the error. The watcher keeps the pipe while it lives; read no more.
        let mut reply = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(File::from(r)), &mut reply).ok();
        // It outlives us (init reaps it): not ours to wait for.
        drop(child);
        let first = reply.trim_end();
        if first == "ok" {
            return Ok(());
        }
        Err(Error::Invalid(
            first
                .strip_prefix("error: ")
                .unwrap_or("the container's watcher exited while starting it")
                .to_string(),
        ))
    }

    /// The detached watcher's life (`container-watch ID DELAY_MS`): runs
    /// `id` with its output appended to its log, again and again as its
    /// restart policy says, and reports the first start on fd 3. A
    /// negative delay is a user's start; any other, a restart after it.
    pub fn watch(&self, id: &str, delay_ms: i64) -> i32 {
        // SAFETY: fd 3 is the report pipe our spawner gave us.
        let mut report = Some(unsafe { File::from_raw_fd_checked(3) });
        let reply = |report: &mut Option<File>, line: &str| {
            if let Some(mut f) = report.take() {
                let _ = writeln!(f, "{line}");
            }
        };
        let mut by_user = delay_ms < 0;
        let mut delay = (!by_user).then(|| Duration::from_millis(delay_ms as u64));
        if !by_user {
            match self.claim(id) {
                Ok(true) => reply(&mut report, "ok"),
                Ok(false) => return 0,
                Err(e) => {
                    reply(&mut report, &format!("error: {}", one_line(&e)));
                    return 125;
                }
            }
        }
        let mut io = match record::load(self.root(), id)
            .and_then(|r| DetachedIo::open(&record::dir(self.root(), id), &r.options))
        {
            Ok(io) => io,
            Err(e) => {
                reply(&mut report, &format!("error: {}", one_line(&e)));
                return 125;
            }
        };
        loop {
            if let Some(d) = delay {
                if !self.sleep_while_restarting(id, d) {
                    return 0;
                }
            }
            let set = match block_signals() {
                Ok(s) => s,
                Err(e) => {
                    reply(&mut report, &format!("error: {}", one_line(&e)));
                    return 125;
                }
            };
            let run = (|| -> Result<Option<(Finished, Option<Duration>)>> {
                let Some(mut task) = self.prepare_task(id, io.stdio()?, by_user)? else {
                    return Ok(None);
                };
                if let Some(master) = task.console.take() {
                    if let Err(e) = io.relay(master) {
                        let _ = self.abandon_task(task, &e.to_string());
                        return Err(e);
                    }
                }
                self.start_task(&mut task)?;
                reply(&mut report, "ok");
                let timeout = record::load(self.root(), id)?
                    .options
                    .timeout
                    .as_deref()
                    .map(units::parse_duration)
                    .transpose()?;
                let mut resize = || io.resize();
                let status = supervise(
                    &mut task.container,
                    &set,
                    Supervision {
                        timeout,
                        forward: false,
                        on_resize: Some(&mut resize),
                    },
                );
                io.run_ended();
                Ok(Some((self.finish_task(task, status?)?, delay)))
            })();
            by_user = false;
            match run {
                Ok(Some((Finished::Restart(_, ran_for), last))) => {
                    delay = Some(next_delay(last, ran_for));
                }
                Ok(Some((f, _))) => return f.status().code,
                Ok(None) => return 0,
                Err(e) => {
                    reply(&mut report, &format!("error: {}", one_line(&e)));
                    return 125;
                }
            }
        }
    }

    /// Waits until the foreground watcher that handed `id` over to us
    /// names us in its record; false when the user stopped it meanwhile or
    /// it was given to another.
    fn claim(&self, id: &str) -> Result<bool> {
        let me = ProcessId::current();
        for _ in 0..400 {
            let r = record::load(self.root(), id)?;
            if r.state.status != Status::Restarting || r.state.stopped_by_user {
                return Ok(false);
            }
            if r.state.watcher == Some(me) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(false)
    }

    /// Sleeps `d`, waking early (false) when the container is no longer
    /// ours to restart (stopped, removed, or taken over).
    fn sleep_while_restarting(&self, id: &str, d: Duration) -> bool {
        let me = ProcessId::current();
        let end = Instant::now() + d;
        loop {
            match record::load(self.root(), id) {
                Ok(r) if r.state.watcher == Some(me) && !r.state.stopped_by_user => {}
                _ => return false,
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// The log of a container's detached runs.
    pub fn log_path(&self, id: &str) -> PathBuf {
        record::dir(self.root(), id).join("log")
    }
}

/// An error as one line.
fn one_line(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s.replace('\n', " ")
}

trait FromRawFdChecked {
    unsafe fn from_raw_fd_checked(fd: i32) -> Self;
}

impl FromRawFdChecked for File {
    /// Takes `fd`, or /dev/null's when it is not open (a watcher started
    /// by hand has no report pipe).
    unsafe fn from_raw_fd_checked(fd: i32) -> File {
        use std::os::fd::FromRawFd;
        if nix::fcntl::fcntl(BorrowedFd::borrow_raw(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
            File::from_raw_fd(fd)
        } else {
            File::open("/dev/null").expect("/dev/null")
        }
    }
}
