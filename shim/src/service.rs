//! The task service: containerd's Task RPCs over amphi-runtime containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amphi_runtime::bundle::Bundle;
use amphi_runtime::nix_signal::Signal;
use amphi_runtime::oci_spec::runtime::{LinuxResources, Process};
use amphi_runtime::{Container, CreateOptions, Runtime, RuntimeConfig};
use containerd_shim::api::*;
use containerd_shim::protos::events::task::*;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics::*;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};

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

    fn on_exit(&self, pid: i32, code: i32) {
        let now = SystemTime::now();
        let mut tasks = self.lock();
        let mut found = false;
        for (id, task) in tasks.iter_mut() {
            if task.init.pid == pid && task.init.exit.is_none() {
                found = true;
                self.init_exited(id, task, code, now);
                break;
            }
            if let Some((exec_id, e)) = task
                .execs
                .iter_mut()
                .find(|(_, e)| e.proc_.pid == pid && e.proc_.exit.is_none())
            {
                found = true;
                if let Some(c) = &e.proc_.console {
                    c.wait_drained(Duration::from_secs(2));
                }
                e.proc_.exit = Some((code, now));
                e.proc_.status = Status::STOPPED;
                self.events.send(
                    TASK_EXIT_EVENT_TOPIC,
                    exit_event(id, exec_id, pid, code, now),
                );
                let running = task
                    .execs
                    .values()
                    .any(|e| e.proc_.pid != 0 && e.proc_.exit.is_none());
                if task.init_exit_pending && !running {
                    task.init_exit_pending = false;
                    let (c, t) = task.init.exit.unwrap();
                    self.events.send(
                        TASK_EXIT_EVENT_TOPIC,
                        exit_event(id, id, task.init.pid, c, t),
                    );
                }
                break;
            }
        }
        if !found {
            let mut early = self.early_exits.lock().unwrap();
            if early.len() < 4096 {
                early.insert(pid, (code, now));
            }
        }
        drop(tasks);
        self.changed.notify_all();
    }

    fn init_exited(&self, id: &str, task: &mut TaskEntry, code: i32, at: SystemTime) {
        let status = task.container.record_exit_code(code).ok();
        let code = status.map_or(code, |s| s.code);
        if let Some(c) = &task.init.console {
            c.wait_drained(Duration::from_secs(2));
        }
        task.init.exit = Some((code, at));
        task.init.status = Status::STOPPED;
        // Before the exit event; the OOM thread may have been first.
        if status.is_some_and(|s| s.oom_killed) {
            let _ = self.oom.report(id, task.container.cgroup(), &self.events);
        }
        // The pid namespace dies with its init: execs follow at once.
        let _ = task.container.kill(Signal::SIGKILL, true);
        if task
            .execs
            .values()
            .any(|e| e.proc_.pid != 0 && e.proc_.exit.is_none())
        {
            task.init_exit_pending = true;
        } else {
            self.events.send(
                TASK_EXIT_EVENT_TOPIC,
                exit_event(id, id, task.init.pid, code, at),
            );
        }
    }

    fn take_early_exit(&self, pid: i32) -> Option<(i32, SystemTime)> {
        self.early_exits.lock().unwrap().remove(&pid)
    }
}

fn exit_event(container: &str, id: &str, pid: i32, code: i32, at: SystemTime) -> TaskExit {
    let mut ev = TaskExit::new();
    ev.container_id = container.to_string();
    ev.id = id.to_string();
    ev.pid = pid as u32;
    ev.exit_status = code as u32;
    ev.exited_at = ts(at);
    ev
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

/// Mounts one of the request's rootfs mounts. In this thread when its
/// options fit a page; otherwise through `containerd_shim`, which shortens
/// overlay lowerdirs by changing directory in a forked child (a fork of
/// this multi-threaded process that every mount would otherwise pay).
fn mount_rootfs(
    m: &containerd_shim::protos::types::mount::Mount,
    init_layer: Option<&Path>,
    target: &Path,
) -> Result<(), String> {
    let fits = |options: &[String]| {
        let size: usize = options.iter().map(|o| o.len() + 1).sum();
        size + 512 < page_size()
    };
    // The init layer lives apart from containerd's snapshots, so the
    // shortening below could not cover it: long lists go without it.
    let with_layer = init_layer
        .and_then(|l| amphi_runtime::init_layer::add_to_overlay(&m.type_, &m.options, l))
        .filter(|o| fits(o));
    let options = with_layer.as_deref().unwrap_or(&m.options);
    if fits(options) {
        amphi_runtime::mount::mount_rootfs(&m.type_, &m.source, options, target)
            .map_err(|e| e.to_string())
    } else {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()),
            Some(m.source.as_str()),
            &m.options,
            target,
        )
        .map_err(|e| e.to_string())
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    let _ = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH);
}

/// Whether `path` is the root of a mount. Mounts of ours nest only under
/// a mounted rootfs, so when it is not one there is nothing to unmount and
/// no need to read the mount table (containerd runs `delete` after every
/// shim exit, most often with everything already unmounted).
fn is_mount_root(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statx is a valid buffer for the kernel to fill.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statx.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            0,
            &mut st,
        )
    };
    if rc != 0 {
        // Gone: nothing to unmount. Anything else: look.
        let e = std::io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::ENOENT) | Some(libc::ENOTDIR));
    }
    let known = st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    // A kernel too old to say (before 5.8): assume a mount and look.
    !known || st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
}

/// After a shim died: kill what is left of container `id`, unmount its
/// rootfs and remove its state. Returns the init's pid when it was known.
pub fn cleanup_bundle(id: &str, bundle: &Path) -> Option<i32> {
    let rt = runtime_for(bundle);
    let pid = match rt.load(id) {
        Ok(c) => {
            let pid = c.pid();
            let _ = c.delete(true);
            Some(pid)
        }
        Err(_) => None,
    };
    if is_mount_root(&bundle.join("rootfs")) {
        unmount_rootfs(bundle);
    }
    let _ = std::fs::remove_dir_all(state_root(bundle));
    pid
}

fn any_json<T: serde::de::DeserializeOwned>(any: &Any, what: &str) -> TtrpcResult<T> {
    serde_json::from_slice(&any.value)
        .map_err(|e| err(Code::INVALID_ARGUMENT, format!("malformed {what}: {e}")))
}

impl TaskService {
    fn create_task(&self, req: &CreateTaskRequest) -> TtrpcResult<i32> {
        let inner = &self.inner;
        if inner.lock().contains_key(&req.id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        let mut mounted = false;
        for m in &req.rootfs {
            if !mounted {
                std::fs::create_dir_all(&rootfs)
                    .map_err(|e| err(Code::INTERNAL, format!("{}: {e}", rootfs.display())))?;
            }
            if let Err(e) = mount_rootfs(m, inner.init_layer.as_deref(), &rootfs) {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                return Err(err(
                    Code::INTERNAL,
                    format!("mounting rootfs ({} from {}): {e}", m.type_, m.source),
                ));
            }
            mounted = true;
        }
        let result = (|| {
            let loaded = Bundle::load(&bundle).map_err(rt_err)?;
            let options = crate::options::parse(req.options.as_ref())
                .map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
            let spec_cgroup = loaded
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_deref())
                .map(|p| p.to_string_lossy().into_owned());
            let cgroup = crate::options::cgroup_path(spec_cgroup.as_deref(), &options)
                .map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
            let stdio = crate::io::open(&req.stdin, &req.stdout, &req.stderr, req.terminal)
                .map_err(|e| err(Code::INVALID_ARGUMENT, format!("opening stdio: {e}")))?;
            let mut container = runtime_for(&bundle)
                .create_from(
                    &req.id,
                    loaded,
                    CreateOptions {
                        stdio,
                        cgroup_path: cgroup,
                        ..CreateOptions::default()
                    },
                )
                .map_err(rt_err)?;
            let console = relay_console(container.take_console(), &req.stdin, &req.stdout)?;
            Ok::<_, ttrpc::Error>((container, console))
        })();
        let (container, console) = match result {
            Ok(r) => r,
            Err(e) => {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                let _ = std::fs::remove_dir_all(state_root(&bundle));
                return Err(e);
            }
        };
        let pid = container.pid();
        let mut init = Proc::new(
            req.stdin.clone(),
            req.stdout.clone(),
            req.stderr.clone(),
            req.terminal,
        );
        init.pid = pid;
        init.console = console;
        let mut task = TaskEntry {
            bundle,
            container,
            rootfs_mounted: mounted,
            init,
            execs: HashMap::new(),
            init_exit_pending: false,
        };
        let mut ev = TaskCreate::new();
        ev.container_id = req.id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        ev.pid = pid as u32;
        ev.checkpoint = req.checkpoint.clone();
        let mut io = containerd_shim::protos::events::task::TaskIO::new();
        io.stdin = req.stdin.clone();
        io.stdout = req.stdout.clone();
        io.stderr = req.stderr.clone();
        io.terminal = req.terminal;
        ev.io = MessageField::some(io);
        inner.events.send(TASK_CREATE_EVENT_TOPIC, ev);
        if let Err(e) = inner.oom.watch(&req.id, task.container.cgroup()) {
            // OOM kills are then still reported when the init dies of one.
            log::warn!("container {}: no live OOM events: {e}", req.id);
        }
        let mut tasks = inner.lock();
        if let Some((code, at)) = inner.take_early_exit(pid) {
            inner.init_exited(&req.id, &mut task, code, at);
        }
        tasks.insert(req.id.clone(), task);
        Ok(pid)
    }
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

impl Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        log::info!("create {} bundle {}", req.id, req.bundle);
        if !req.checkpoint.is_empty() {
            return Err(err(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported",
            ));
        }
        let pid = self.create_task(&req)?;
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
        let pid = if req.exec_id.is_empty() {
            task.container.start().map_err(rt_err)?;
            task.init.status = Status::RUNNING;
            let mut ev = TaskStart::new();
            ev.container_id = req.id.clone();
            ev.pid = task.init.pid as u32;
            inner.events.send(TASK_START_EVENT_TOPIC, ev);
            task.init.pid
        } else {
            let exec = task
                .execs
                .get_mut(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if exec.proc_.status != Status::CREATED {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} was started already", req.exec_id),
                ));
            }
            let p = &exec.proc_;
            let stdio = crate::io::open(&p.stdin, &p.stdout, &p.stderr, p.terminal)
                .map_err(|e| err(Code::INVALID_ARGUMENT, format!("opening stdio: {e}")))?;
            let started = task
                .container
                .exec(runtime_for(&task.bundle).config(), &exec.spec, stdio)
                .map_err(rt_err)?;
            let pid = started.pid;
            let console = relay_console(started.console, &p.stdin, &p.stdout)?;
            exec.proc_.pid = pid;
            exec.proc_.console = console;
            exec.proc_.status = Status::RUNNING;
            let mut ev = TaskExecStarted::new();
            ev.container_id = req.id.clone();
            ev.exec_id = req.exec_id.clone();
            ev.pid = pid as u32;
            inner.events.send(TASK_EXEC_STARTED_EVENT_TOPIC, ev);
            if let Some((code, at)) = inner.take_early_exit(pid) {
                exec.proc_.exit = Some((code, at));
                exec.proc_.status = Status::STOPPED;
                inner.events.send(
                    TASK_EXIT_EVENT_TOPIC,
                    exit_event(&req.id, &req.exec_id, pid, code, at),
                );
            }
            pid
        };
        drop(tasks);
        release_free_memory();
        let mut resp = StartResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let p = task.process(&req.exec_id)?;
        let mut resp = StateResponse::new();
        resp.id = if req.exec_id.is_empty() {
            req.id.clone()
        } else {
            req.exec_id.clone()
        };
        resp.exec_id = req.exec_id.clone();
        resp.bundle = task.bundle.to_string_lossy().into_owned();
        resp.pid = p.pid as u32;
        resp.status = p.status.into();
        resp.stdin = p.stdin.clone();
        resp.stdout = p.stdout.clone();
        resp.stderr = p.stderr.clone();
        resp.terminal = p.terminal;
        if let Some((code, at)) = p.exit {
            resp.exit_status = code as u32;
            resp.exited_at = ts(at);
        }
        Ok(resp)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        loop {
            let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            let exit = if req.exec_id.is_empty() {
                // Reported only once the init's exit event could be sent.
                task.init.exit.filter(|_| !task.init_exit_pending)
            } else {
                task.process(&req.exec_id)?.exit
            };
            if let Some((code, at)) = exit {
                let mut resp = WaitResponse::new();
                resp.exit_status = code as u32;
                resp.exited_at = ts(at);
                return Ok(resp);
            }
            tasks = inner.changed.wait(tasks).unwrap();
        }
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let sig = Signal::try_from(req.signal as i32)
            .map_err(|_| err(Code::INVALID_ARGUMENT, format!("bad signal {}", req.signal)))?;
        if req.exec_id.is_empty() {
            if task.init.exit.is_some() && !req.all {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", req.id),
                ));
            }
            task.container.kill(sig, req.all).map_err(|e| match e {
                amphi_runtime::Error::BadStatus { .. } => err(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", req.id),
                ),
                e => rt_err(e),
            })?;
        } else {
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.pid == 0 || e.proc_.exit.is_some() {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("exec {}: process already finished", req.exec_id),
                ));
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(e.proc_.pid), sig)
                .map_err(|e| err(Code::INTERNAL, format!("kill: {e}")))?;
        }
        Ok(Empty::new())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        let mut resp = DeleteResponse::new();
        if !req.exec_id.is_empty() {
            let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.pid != 0 && e.proc_.exit.is_none() {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            let e = task.execs.remove(&req.exec_id).unwrap();
            resp.pid = e.proc_.pid as u32;
            if let Some((code, at)) = e.proc_.exit {
                resp.exit_status = code as u32;
                resp.exited_at = ts(at);
            }
            return Ok(resp);
        }
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let alive = task.init.status == Status::RUNNING || task.init.status == Status::PAUSED;
        if alive && task.init.exit.is_none() {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("container {} is running: kill it first", req.id),
            ));
        }
        let task = tasks.remove(&req.id).unwrap();
        let (code, at) = task
            .init
            .exit
            .unwrap_or((128 + libc::SIGKILL, SystemTime::now()));
        let pid = task.init.pid;
        let bundle = task.bundle.clone();
        let mounted = task.rootfs_mounted;
        drop(tasks);
        inner.oom.unwatch(&req.id);
        task.container.delete(true).map_err(rt_err)?;
        if mounted {
            unmount_rootfs(&bundle);
        }
        let _ = std::fs::remove_dir_all(state_root(&bundle));
        let mut ev = TaskDelete::new();
        ev.container_id = req.id.clone();
        ev.pid = pid as u32;
        ev.exit_status = code as u32;
        ev.exited_at = ts(at);
        inner.events.send(TASK_DELETE_EVENT_TOPIC, ev);
        resp.pid = pid as u32;
        resp.exit_status = code as u32;
        resp.exited_at = ts(at);
        inner.changed.notify_all();
        Ok(resp)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let mut resp = PidsResponse::new();
        for pid in task.container.pids().map_err(rt_err)? {
            let mut info = containerd_shim::protos::api::ProcessInfo::new();
            info.pid = pid as u32;
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.set_paused(&req.id, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.set_paused(&req.id, false)
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        Err(err(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by amphi",
        ))
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let mut tasks = self.inner.lock();
        let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
        if task.execs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        if task.init.exit.is_some() || task.init.status != Status::RUNNING {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        let spec: Process = any_json(req.spec.get_or_default(), "exec process spec")?;
        let proc_ = Proc::new(
            req.stdin.clone(),
            req.stdout.clone(),
            req.stderr.clone(),
            req.terminal,
        );
        task.execs
            .insert(req.exec_id.clone(), ExecProc { proc_, spec });
        let mut ev = TaskExecAdded::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.inner.events.send(TASK_EXEC_ADDED_EVENT_TOPIC, ev);
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let p = task.process(&req.exec_id)?;
        let console = p
            .console
            .as_ref()
            .ok_or_else(|| err(Code::FAILED_PRECONDITION, "the process has no terminal"))?;
        console
            .resize(req.width, req.height)
            .map_err(|e| err(Code::INTERNAL, format!("resize: {e}")))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        // Stdin FIFOs go to the container directly: closing containerd's
        // write side is what delivers EOF; nothing of ours holds it open.
        let tasks = self.inner.lock();
        tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let res: LinuxResources = any_json(req.resources.get_or_default(), "resources")?;
        task.container.update(&res).map_err(rt_err)?;
        Ok(Empty::new())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let stats = task.container.stats().map_err(rt_err)?;
        let any = crate::metrics::to_any(&stats).map_err(|e| err(Code::INTERNAL, e))?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(any);
        Ok(resp)
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let tasks = self.inner.lock();
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        if let Some(task) = tasks.get(&req.id) {
            resp.task_pid = task.init.pid as u32;
        }
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        // A grouped shim stays while any of its containers does.
        if self.inner.lock().is_empty() {
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }
}
