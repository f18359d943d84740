//! The task service: containerd's Task RPCs over amphi-runtime containers.
//! `task.rs` answers the RPCs; `create.rs` makes a task from a bundle,
//! `exits.rs` turns reaped exits into state and events, `rootfs.rs` mounts
//! and unmounts the bundle's rootfs.

mod create;
mod exits;
mod rootfs;
mod task;

pub use rootfs::cleanup_bundle;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amphi_runtime::oci_spec::runtime::Process;
use amphi_runtime::{Container, Runtime, RuntimeConfig};
use containerd_shim::api::*;
use containerd_shim::protos::events::task::*;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics::*;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{ExitSignal, TtrpcResult};

use crate::events::Events;
use crate::io::Console;
use crate::oom::OomWatch;
use crate::shim::state_root;

/// The store root: compiled Wasm modules and the init layer live there,
/// shared by all containers.
fn store_root() -> PathBuf {
    std::env::var_os("AMPHI_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/amphi"))
}

/// Where compiled Wasm modules are cached.
fn wasm_cache() -> PathBuf {
    store_root().join("wasm-cache")
}

/// Hands the heap's free pages back to the kernel. Called when a container
/// settles into running: a shim then mostly sleeps beside it for its whole
/// life, and what create and start allocated need not stay resident.
fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

fn err(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// Maps runtime errors to the ttrpc codes containerd understands.
fn rt_err(e: amphi_runtime::Error) -> ttrpc::Error {
    use amphi_runtime::Error as E;
    let code = match &e {
        E::NotFound(_) => Code::NOT_FOUND,
        E::AlreadyExists(_) => Code::ALREADY_EXISTS,
        E::InvalidId(_) | E::Bundle { .. } | E::Spec(_) | E::Entrypoint { .. } | E::Wasm { .. } => {
            Code::INVALID_ARGUMENT
        }
        E::BadStatus { .. } => Code::FAILED_PRECONDITION,
        _ => Code::INTERNAL,
    };
    err(code, e.to_string())
}

pub(crate) fn ts(t: SystemTime) -> MessageField<Timestamp> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    MessageField::some(ts)
}

/// One process of a task: the init or an exec.
struct Proc {
    pid: i32,
    status: Status,
    exit: Option<(i32, SystemTime)>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    console: Option<Console>,
}

impl Proc {
    fn new(stdin: String, stdout: String, stderr: String, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            status: Status::CREATED,
            exit: None,
            stdin,
            stdout,
            stderr,
            terminal,
            console: None,
        }
    }
}

struct ExecProc {
    proc_: Proc,
    spec: Process,
}

struct TaskEntry {
    bundle: PathBuf,
    container: Container,
    rootfs_mounted: bool,
    init: Proc,
    execs: HashMap<String, ExecProc>,
    /// The init exited while execs still ran: its exit event waits for theirs.
    init_exit_pending: bool,
}

impl TaskEntry {
    /// The init (empty `exec_id`) or the named exec.
    fn process(&self, exec_id: &str) -> TtrpcResult<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .map(|e| &e.proc_)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {exec_id} not found")))
    }
}

/// Relays a console the init sent back, if the process asked for one.
fn relay_console(
    master: Option<std::os::fd::OwnedFd>,
    stdin: &str,
    stdout: &str,
) -> TtrpcResult<Option<Console>> {
    master
        .map(|m| {
            crate::io::attach_console(m, stdin, stdout)
                .map_err(|e| err(Code::INTERNAL, format!("relaying the console: {e}")))
        })
        .transpose()
}

struct Inner {
    events: Events,
    oom: Arc<OomWatch>,
    exit: Arc<ExitSignal>,
    tasks: Mutex<HashMap<String, TaskEntry>>,
    /// Exits of pids not registered yet (a process that exits before its
    /// Create/Start returns): consumed on registration.
    early_exits: Mutex<HashMap<i32, (i32, SystemTime)>>,
    changed: Condvar,
    /// Put under every overlay rootfs (`amphi_runtime::init_layer`); `None`
    /// when it could not be made (then the init makes mount points itself).
    init_layer: Option<PathBuf>,
}

/// containerd's Task service for amphi containers.
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

impl TaskService {
    /// Starts the event publisher, connected to containerd at
    /// `ttrpc_address`, and the OOM watch. Child exits come in through
    /// [`TaskService::on_exit`].
    pub fn new(
        namespace: String,
        ttrpc_address: &str,
        exit: Arc<ExitSignal>,
    ) -> std::io::Result<TaskService> {
        let oom = Arc::new(OomWatch::new()?);
        let init_layer = amphi_runtime::init_layer::ensure(&store_root())
            .inspect_err(|e| log::warn!("no init layer: {e}"))
            .ok();
        let inner = Arc::new(Inner {
            events: Events::new(namespace, ttrpc_address)?,
            oom: oom.clone(),
            exit,
            tasks: Mutex::new(HashMap::new()),
            early_exits: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            init_layer,
        });
        let weak_oom = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("oom".into())
            .spawn(move || loop {
                let woken = oom.wait();
                let Some(inner) = weak_oom.upgrade() else {
                    return;
                };
                for (id, cgroup) in woken {
                    inner.oom.report_woken(&id, &cgroup, &inner.events);
                }
            })?;
        Ok(TaskService { inner })
    }

    /// A child of the shim exited with `code` (128+signal when killed).
    pub fn on_exit(&self, pid: i32, code: i32) {
        self.inner.on_exit(pid, code);
    }

    /// Waits (at most `timeout`) for the events raised so far to reach
    /// containerd.
    pub fn flush_events(&self, timeout: Duration) {
        self.inner.events.flush(timeout);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, TaskEntry>> {
        self.tasks.lock().unwrap()
    }
}

fn not_found(id: &str) -> ttrpc::Error {
    err(Code::NOT_FOUND, format!("container {id} not found"))
}

fn runtime_for(bundle: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        state_root: state_root(bundle),
        wasm_cache: wasm_cache(),
        wasm_init_exe: Some(wasm_init_exe()),
        ..RuntimeConfig::default()
    })
}

/// The binary that runs Wasm inits: this shim links no Wasm engine (it
/// stays small; see `src/bin/amphi-wasm-init.rs`). Beside the shim, or
/// `AMPHI_WASM_INIT`.
fn wasm_init_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("AMPHI_WASM_INIT") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
        .with_file_name(crate::WASM_INIT)
}

fn any_json<T: serde::de::DeserializeOwned>(any: &Any, what: &str) -> TtrpcResult<T> {
    serde_json::from_slice(&any.value)
        .map_err(|e| err(Code::INVALID_ARGUMENT, format!("malformed {what}: {e}")))
}

impl TaskService {
    /// Pause or Resume: freeze or thaw, then publish the event.
    fn set_paused(&self, id: &str, paused: bool) -> TtrpcResult<Empty> {
        let mut tasks = self.inner.lock();
        let task = tasks.get_mut(id).ok_or_else(|| not_found(id))?;
        if paused {
            task.container.pause().map_err(rt_err)?;
            task.init.status = Status::PAUSED;
            let mut ev = TaskPaused::new();
            ev.container_id = id.to_string();
            self.inner.events.send(TASK_PAUSED_EVENT_TOPIC, ev);
        } else {
            task.container.resume().map_err(rt_err)?;
            task.init.status = Status::RUNNING;
            let mut ev = TaskResumed::new();
            ev.container_id = id.to_string();
            self.inner.events.send(TASK_RESUMED_EVENT_TOPIC, ev);
        }
        Ok(Empty::new())
    }
}
