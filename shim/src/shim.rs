//! The shim's process lifecycle: `start` (bind the group's socket and fork
//! the shim that serves it, or reuse the group's live shim), `delete`
//! (clean up after a dead shim), and serving the task service.
//!
//! This replaces `containerd_shim::run`, whose shape costs every container:
//! it re-executes the binary for the serving shim (a second exec, dynamic
//! link and page-in), connects an event publisher we cannot use (see
//! `events.rs`; a connection and two threads), and relays exits from its
//! signal thread to a second thread. Flag parsing, socket naming and the
//! ttrpc server are still the library's.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::Server;
use containerd_shim::protos::{create_task, Task};
use containerd_shim::{ExitSignal, Flags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGPIPE, SIGTERM};
use signal_hook::iterator::Signals;

use crate::service::TaskService;

/// Annotations whose value names a shim group: containers with the same
/// value share one shim process (the CRI sandbox, or runc's explicit group).
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];

/// The environment variable in which containerd names its ttrpc address.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// Runs the action containerd asked for on our command line.
pub fn run() -> Result<()> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let flags = containerd_shim::parse(&args).context("parsing the command line")?;
    // containerd 2.x asks before every create, with no namespace.
    if flags.info {
        return crate::info::print();
    }
    if flags.namespace.is_empty() {
        bail!("-namespace is required");
    }
    match flags.action.as_str() {
        "start" => start(flags),
        "delete" => delete(flags),
        // The serving shim started as its own process (`-socket` given).
        "" => {
            if flags.socket.is_empty() {
                bail!("-socket is required to serve");
            }
            let listener = listen(&flags.socket)?
                .with_context(|| format!("{}: another shim already serves it", flags.socket))?;
            serve(flags, listener)
        }
        other => bail!("unknown action {other:?} (want start or delete)"),
    }
}

/// `start`: prints the address of the shim that will serve this container,
/// forking it first unless the container's group already has one.
fn start(flags: Flags) -> Result<()> {
    std::env::var(TTRPC_ADDRESS).with_context(|| format!("{TTRPC_ADDRESS} is not set"))?;
    let group = group_of(Path::new("config.json")).unwrap_or_else(|| flags.id.clone());
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &group);
    let Some(listener) = listen(&address)? else {
        // The group's shim is alive: it serves this container too.
        write_address(&address)?;
        return print_address(&address);
    };
    // Before the fork: a shim no container knows the address of would
    // serve nobody, for ever.
    if let Err(e) = write_address(&address) {
        drop(listener);
        remove_socket(&address);
        return Err(e);
    }
    // The socket is bound and listening before the fork, so containerd may
    // connect as soon as it reads the address: the connection waits in the
    // backlog until the child accepts it. This process is single-threaded,
    // so the child may go on without an exec.
    // SAFETY: no other thread exists in this process.
    match unsafe { nix::unistd::fork() }.context("forking the shim")? {
        nix::unistd::ForkResult::Child => {
            // containerd reads our stdout to its end: let go of it.
            let socket = address.clone();
            let code = match detach_stdio().and_then(|()| {
                serve(
                    Flags {
                        socket: address,
                        action: String::new(),
                        ..flags
                    },
                    listener,
                )
            }) {
                Ok(()) => 0,
                Err(e) => {
                    // A shim that could not serve (no log FIFO, containerd
                    // unreachable) leaves no socket behind either.
                    remove_socket(&socket);
                    log::error!("shim: {e:#}");
                    1
                }
            };
            std::process::exit(code)
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(listener);
            print_address(&address)
        }
    }
}

/// Records the address in the bundle's `address` file (containerd reads it
/// back after a restart), atomically, through a temp name of this process's
/// own: `containerd_shim`'s fixed `.address` collides when starts overlap
/// or one was killed halfway.
fn write_address(address: &str) -> Result<()> {
    let tmp = PathBuf::from(format!(".address.{}", std::process::id()));
    std::fs::write(&tmp, address)
        .and_then(|()| std::fs::rename(&tmp, "address"))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing the address file for {address}"))
}

/// Prints the address for containerd.
fn print_address(address: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the address to containerd")
}

/// Points stdin, stdout and stderr at /dev/null.
fn detach_stdio() -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .context("redirecting stdio to /dev/null")
}

/// `delete`, run by containerd when the shim went away: kill what is left,
/// unmount the rootfs, remove the state; report the init as killed.
fn delete(flags: Flags) -> Result<()> {
    let bundle = match flags.bundle.as_str() {
        "" => std::env::current_dir().context("reading the bundle directory")?,
        b => PathBuf::from(b),
    };
    let pid = crate::service::cleanup_bundle(&flags.id, &bundle);
    // The dead shim's socket: nobody listens on it any more.
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        remove_dead_socket(address.trim());
    }
    let mut resp = DeleteResponse::new();
    resp.pid = pid.unwrap_or(0) as u32;
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = crate::service::ts(std::time::SystemTime::now());
    let mut out = std::io::stdout().lock();
    resp.write_to_writer(&mut out)
        .context("writing the delete response")?;
    out.flush().context("writing the delete response")
}

/// Serves the task service on `listener` until the last container of the
/// group is gone and containerd asks us to shut down.
fn serve(flags: Flags, listener: UnixListener) -> Result<()> {
    // Before any thread: the handlers are process-wide.
    let signals =
        Signals::new([SIGTERM, SIGINT, SIGPIPE, SIGCHLD]).context("installing signal handlers")?;
    // Orphaned container processes (a daemonising payload) come to us.
    // SAFETY: prctl with these arguments has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("becoming a child subreaper");
    }
    crate::logger::init(flags.debug).context("opening containerd's log FIFO")?;
    let ttrpc_address =
        std::env::var(TTRPC_ADDRESS).with_context(|| format!("{TTRPC_ADDRESS} is not set"))?;
    let exit = Arc::new(ExitSignal::default());
    let service = TaskService::new(flags.namespace.clone(), &ttrpc_address, exit.clone())
        .with_context(|| format!("connecting to containerd at {ttrpc_address}"))?;
    let reaper = service.clone();
    std::thread::Builder::new()
        .name("exits".into())
        .spawn(move || reap_children(signals, reaper))
        .context("starting the exit thread")?;
    let task: Arc<dyn Task + Send + Sync> = Arc::new(service.clone());
    let mut server = Server::new()
        .add_listener(listener.into_raw_fd())
        .context("serving on the shim socket")?
        .register_service(create_task(task));
    server.start().context("starting the ttrpc server")?;
    exit.wait();
    // containerd may already have removed the bundle and its `address`
    // file: remove the socket by the name we were given.
    remove_socket(&flags.socket);
    service.flush_events(Duration::from_secs(2));
    // And exit, without ttrpc's graceful `Server::shutdown`: in ttrpc 0.9
    // it can wait forever for a connection whose reader and handler
    // threads all saw the quit flag before telling the connection's
    // control thread (seen: 3 shims in ~1,500 runs under load, left behind
    // after containerd had cleaned up). containerd takes a connection
    // closed after Shutdown as done; runc's shim exits there too.
    drop(server);
    Ok(())
}

/// Reaps every child as it exits and hands its status to the task service,
/// and to `containerd_shim`'s monitor (its forking mount helper waits there).
fn reap_children(mut signals: Signals, service: TaskService) {
    for signal in signals.forever() {
        // SIGTERM/SIGINT: containerd stops a shim through Shutdown, as it
        // does the runc shim, which also ignores them.
        if signal != SIGCHLD {
            continue;
        }
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                _ => continue,
            };
            // The monitor first: a mount helper may be waited for while
            // the task table is locked.
            let _ = containerd_shim::monitor::monitor_notify_by_pid(pid, code);
            service.on_exit(pid, code);
        }
    }
}

/// Binds and listens on the shim socket at `address`. `None` when a live
/// shim already listens there; a dead shim's socket is replaced.
fn listen(address: &str) -> Result<Option<UnixListener>> {
    let path = socket_path(address);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => return Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(e) => return Err(e).with_context(|| format!("binding {}", path.display())),
    }
    // Another start may have bound it a moment ago and not be listening
    // yet: give it a little time before calling the socket dead.
    for _ in 0..20 {
        if UnixStream::connect(path).is_ok() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    remove_socket(address);
    UnixListener::bind(path)
        .map(Some)
        .with_context(|| format!("binding {}", path.display()))
}

fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Unlinks our socket file (the listener, if still open, keeps working).
fn remove_socket(address: &str) {
    use std::os::unix::fs::FileTypeExt;
    let path = socket_path(address);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Unlinks a socket that no process listens on any more.
fn remove_dead_socket(address: &str) {
    let refused = matches!(
        UnixStream::connect(socket_path(address)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if refused {
        remove_socket(address);
    }
}

/// The group a bundle's container belongs to, from its annotations.
fn group_of(config: &Path) -> Option<String> {
    let bytes = std::fs::read(config).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    GROUP_ANNOTATIONS.iter().find_map(|a| {
        v["annotations"][a]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// Where the runtime keeps a container's state: inside its bundle, so
/// containerd's removal of the bundle takes it along and two containerd
/// instances never share it.
pub fn state_root(bundle: &Path) -> PathBuf {
    bundle.join("amphi-state")
}
