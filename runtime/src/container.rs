//! The container lifecycle: create → start → (kill | wait) → delete, plus
//! state, pids, pause/resume, update and stats.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process};

use crate::bundle::Bundle;
use crate::cgroup::Cgroup;
use crate::init::{ExecConfig, InitConfig, InitMessage, Payload};
use crate::paths::{find_in_rootfs, DEFAULT_PATH};
use crate::spawn::{spawn_init, ChildStdio, Start};
use crate::state::{validate_id, PayloadKind, State, Status, SECCOMP_FILE, START_FIFO};
use crate::stats::Stats;
use crate::{detect, Error, Result};

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

    /// Creates container `id` from the bundle in `dir`: the sandbox is set
    /// up and the payload waits for [`Container::start`]. On error nothing
    /// is left behind (no state dir, cgroup or process).
    pub fn create(&self, id: &str, dir: &Path, opts: CreateOptions) -> Result<Container> {
        validate_id(id)?;
        let bundle = Bundle::load(dir)?;
        self.create_from(id, bundle, opts)
    }

    /// Like [`Runtime::create`] for an already loaded (possibly adjusted) bundle.
    pub fn create_from(&self, id: &str, bundle: Bundle, opts: CreateOptions) -> Result<Container> {
        validate_id(id)?;
        let (mut clone_flags, pid_ns) = check_namespaces(&bundle)?;
        // Asked before the thread below exists: a Wasm init may be forked
        // from a process single-threaded but for that thread, once joined.
        let single_threaded = crate::spawn::single_threaded();
        // A new network namespace costs the kernel ~0.7 ms: it is made now,
        // on a thread of ours, while the rest of the create runs, instead
        // of on the init's path; the init joins it by path. Should we fail
        // before the join, the thread's handle closes with it.
        let early_net = (clone_flags & libc::CLONE_NEWNET != 0)
            .then(|| {
                std::thread::Builder::new()
                    .name("netns".into())
                    .stack_size(64 << 10)
                    .spawn(crate::netdev::new_namespace)
                    .ok()
            })
            .flatten();
        // Compiled here, so a bad profile fails before anything exists.
        let seccomp = match bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
        {
            Some(profile) => Some(crate::seccomp::compile(profile)?),
            None => None,
        };
        let ep = resolve_entrypoint(&bundle)?;
        // Checked here, so a bad annotation fails before anything exists;
        // kept for execs, which may run Wasm in a native container too.
        let wasm = match crate::wasm_options::WasmOptions::of_spec(&bundle.spec) {
            Ok(w) => w,
            Err(e) if ep.kind == PayloadKind::Wasm => return Err(e),
            Err(_) => Default::default(),
        };
        let payload = match ep.kind {
            PayloadKind::Native => Payload::Native,
            PayloadKind::Wasm => Payload::Wasm {
                module: ep.host.clone(),
                cache: self.config.wasm_cache.clone(),
            },
        };
        std::fs::create_dir_all(&self.config.state_root)
            .map_err(|e| Error::io(&self.config.state_root, e))?;
        let dir = State::dir(&self.config.state_root, id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.into()))
            }
            Err(e) => return Err(Error::io(&dir, e)),
        }
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let cgroup_path = opts
            .cgroup_path
            .clone()
            .or_else(|| {
                bundle
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.cgroups_path().as_ref())
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| format!("amphi/{id}"));
        let mut undo = Undo {
            dir: Some(dir.clone()),
            cgroup: None,
            making: None,
            pid: None,
        };
        let cgroup = Cgroup::open(&cgroup_path)?;
        if cgroup.exists() && !cgroup.procs()?.is_empty() {
            return Err(Error::Cgroup {
                path: cgroup_path.into(),
                msg: "is in use by other processes".into(),
            });
        }
        if cgroup.is_systemd() {
            // Fails early, before any process exists, without systemd.
            cgroup.create()?;
            undo.cgroup = Some(cgroup.clone());
        }
        let resources = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone());
        // The devices cgroup's rules: the spec's, and its listed devices.
        let device_rules = resources
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let devices = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        let start = if self.config.fork_wasm_init
            && ep.kind == PayloadKind::Wasm
            && pid_ns.is_none()
            && crate::init::runs_wasm()
            && single_threaded
        {
            Start::Fork
        } else {
            Start::Exec
        };
        // The cgroup is made on a thread of ours while the rest of create
        // (and, for an exec'd init, the clone and exec) runs, so the init
        // rarely waits for CGROUP_READY. A forked init needs us
        // single-threaded at the clone: the thread is joined before it.
        // systemd's scope needs the init's pid: it comes after.
        if !cgroup.is_systemd() {
            let (cg, res) = (cgroup.clone(), resources.clone());
            let (rules, listed) = (device_rules.clone(), devices.clone());
            // Set first: should we fail, Undo joins the thread, then
            // removes whatever of the cgroup it made.
            undo.cgroup = Some(cgroup.clone());
            undo.making = std::thread::Builder::new()
                .name("cgroup".into())
                .stack_size(256 << 10)
                .spawn(move || make_cgroup(&cg, res.as_ref(), &rules, &listed))
                .ok();
        }
        if let Some(prog) = &seccomp {
            // Exec'd processes get the same filter (see `Container::exec`).
            let file = dir.join(SECCOMP_FILE);
            std::fs::write(&file, prog.to_bytes()).map_err(|e| Error::io(&file, e))?;
        }
        let fifo = dir.join(START_FIFO);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
        let memory_limit = resources
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit());
        let mut spec = bundle.spec.clone();
        // Kept open until the init has joined it (it reports ready).
        let _netns = match early_net.map(|t| t.join()) {
            Some(Ok(made)) => {
                let fd = made.map_err(|e| Error::io("making the network namespace", e))?;
                let path = format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    std::os::fd::AsRawFd::as_raw_fd(&fd)
                );
                join_network_at(&mut spec, path.into());
                clone_flags &= !libc::CLONE_NEWNET;
                Some(fd)
            }
            // The thread panicked: the init makes its own, as without one.
            Some(Err(_)) | None => None,
        };
        let cfg = InitConfig {
            id: id.to_string(),
            spec,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            entrypoint: ep.inside.clone(),
            payload,
            fifo,
            memory_limit,
            memory_usage_file: Some(cgroup.memory_usage_file()),
            cgroup_dirs: cgroup.mount_dirs(),
            seccomp,
            parent_death_signal: opts.parent_death_signal.map(|s| s as i32),
            reaper: opts.reaper,
            wasm: wasm.clone(),
            self_join: cgroup.self_join(),
        };
        let stdio = ChildStdio {
            stdin: opts.stdio.stdin.as_ref(),
            stdout: opts.stdio.stdout.as_ref(),
            stderr: opts.stdio.stderr.as_ref(),
        };
        let cfg_self_joins = cfg.self_join.is_some();
        let exe = self.config.init_exe_for(ep.kind);
        // The config goes first (a forked init has it in its copy of our
        // memory): the init reads it, brings lo up and finds its module
        // while we make the cgroup, and waits for CGROUP_READY before
        // anything that needs the cgroup.
        let config = match start {
            Start::Fork => {
                crate::init::leave_for_fork(cfg);
                None
            }
            Start::Exec => Some(
                serde_json::to_vec(&InitMessage::Create(Box::new(cfg))).expect("config serialises"),
            ),
        };
        let mut early_cgroup = None;
        if start == Start::Fork {
            early_cgroup = undo.making.take().map(|t| t.join());
        }
        let spawned = spawn_init(exe, id, clone_flags, pid_ns.as_deref(), &stdio, start);
        drop(crate::init::take_fork_config());
        let (pid, sock) = spawned?;
        undo.pid = Some(pid);
        let init_err = |msg: String| Error::Init {
            id: id.to_string(),
            msg,
        };
        if let Some(config) = config {
            crate::sync::send_config(&sock, &config)
                .map_err(|e| init_err(format!("sending config to init: {e}")))?;
        }
        // The init sets up what needs no cgroup meanwhile (it waits for
        // CGROUP_READY, sent below, before it joins).
        if let Some(made) = early_cgroup.or_else(|| undo.making.take().map(|t| t.join())) {
            made.unwrap_or_else(|_| Err(init_err("making the cgroup: thread panicked".into())))?;
        } else if cgroup.is_systemd() {
            // systemd's scope takes the init at once, whatever its payload,
            // and before the init sets up (it mounts the scope's cgroup);
            // a scope exists only with a process in it.
            cgroup.start_scope(pid, resources.as_ref())?;
            cgroup.limit_devices(&device_rules, &devices)?;
        } else {
            // No thread could be started: made here.
            make_cgroup(&cgroup, resources.as_ref(), &device_rules, &devices)?;
        }
        (&sock)
            .write_all(&[crate::sync::CGROUP_READY])
            .map_err(|e| init_err(format!("sync socket: {e}")))?;
        sock.shutdown(std::net::Shutdown::Write)
            .map_err(|e| init_err(format!("sync socket: {e}")))?;
        // An init that moves itself (v1, see `SelfJoin`) does so first
        // thing; else it is moved while it sets up, not before, as a move
        // by another process waits out an RCU grace period: a native init
        // at once, a Wasm init once its module is `prepared`. Either way a
        // compile on a cache miss is not charged to, or OOM-killed by, the
        // container's memory limit, and nothing of the container's runs
        // before `start`.
        let mut joined = if cgroup.is_systemd() || cfg_self_joins {
            Some(Ok(()))
        } else {
            (ep.kind == PayloadKind::Native).then(|| cgroup.add_pid(pid))
        };
        let mut console = None;
        let line = loop {
            let (line, fd) =
                crate::sync::read_line(&sock).map_err(|e| init_err(format!("sync socket: {e}")))?;
            match line.as_str() {
                "console" => console = fd,
                crate::sync::PREPARED if joined.is_none() => joined = Some(cgroup.add_pid(pid)),
                _ => break line,
            }
        };
        match line.trim_end() {
            "ok" => match joined {
                Some(result) => result?,
                None => {
                    return Err(init_err(
                        "init reported ok without preparing its module".into(),
                    ))
                }
            },
            "" => {
                return Err(init_err(format!(
                    "init {} exited during setup",
                    exe.display()
                )))
            }
            other => {
                return Err(init_err(
                    other.strip_prefix("error: ").unwrap_or(other).to_string(),
                ))
            }
        }
        let pid_start_time = crate::state::process_start_time(pid).unwrap_or(0);
        let state = State {
            id: id.to_string(),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            status: Status::Created,
            pid,
            pid_start_time,
            payload: ep.kind,
            cgroup: cgroup_path,
            entrypoint: ep.inside,
            created_at: SystemTime::now(),
            started_at: None,
            exit_code: None,
            exited_at: None,
            oom_killed: false,
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            wasm,
        };
        state.save(&self.config.state_root)?;
        undo.disarm();
        Ok(Container {
            root: self.config.state_root.clone(),
            state,
            cgroup,
            console,
        })
    }

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

/// Rolls back a half-made container when creation fails.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    /// The thread making `cgroup`, until joined.
    making: Option<std::thread::JoinHandle<Result<()>>>,
    pid: Option<i32>,
}

impl Undo {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.pid = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        // Whatever the thread makes is removed below, so it ends first.
        if let Some(t) = self.making.take() {
            let _ = t.join();
        }
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Points the spec's new network namespace at `path`, to be joined.
fn join_network_at(spec: &mut oci_spec::runtime::Spec, path: PathBuf) {
    let namespaces = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut());
    for ns in namespaces.into_iter().flatten() {
        if ns.typ() == LinuxNamespaceType::Network && ns.path().is_none() {
            ns.set_path(Some(path.clone()));
        }
    }
}

/// Makes a non-systemd cgroup (every hierarchy, for v1) with the spec's
/// limits and device rules.
fn make_cgroup(
    cgroup: &Cgroup,
    resources: Option<&oci_spec::runtime::LinuxResources>,
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    devices: &[oci_spec::runtime::LinuxDevice],
) -> Result<()> {
    cgroup.create()?;
    if let Some(r) = resources {
        cgroup.apply(r)?;
    }
    cgroup.limit_devices(rules, devices)
}

/// Which namespaces the clone creates, and the pid namespace it joins
/// instead of making one (a pod's shared, or the host's); rejects what the
/// runtime can't do.
fn check_namespaces(bundle: &Bundle) -> Result<(libc::c_int, Option<PathBuf>)> {
    let namespaces = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut flags = 0;
    let mut has_mount = false;
    let mut pid_ns = None;
    for ns in &namespaces {
        let typ = ns.typ();
        if typ == LinuxNamespaceType::User {
            return Err(Error::Spec("user namespaces are not supported yet".into()));
        }
        if typ == LinuxNamespaceType::Time {
            return Err(Error::Spec("time namespaces are not supported yet".into()));
        }
        if typ == LinuxNamespaceType::Mount {
            if ns.path().is_some() {
                return Err(Error::Spec(
                    "joining an existing mount namespace is not supported".into(),
                ));
            }
            has_mount = true;
        }
        match ns.path() {
            None => flags |= typ as libc::c_int,
            Some(path) if typ == LinuxNamespaceType::Pid => pid_ns = Some(path.clone()),
            Some(_) => {}
        }
    }
    if !has_mount {
        return Err(Error::Spec(
            "the spec must ask for a mount namespace".into(),
        ));
    }
    Ok((flags, pid_ns))
}

struct Entrypoint {
    inside: String,
    host: PathBuf,
    kind: PayloadKind,
}

fn resolve_entrypoint(bundle: &Bundle) -> Result<Entrypoint> {
    let process = bundle
        .spec
        .process()
        .as_ref()
        .expect("bundle checks process");
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    resolve_in(&bundle.rootfs, process, &annotations)
}

fn resolve_in(
    rootfs: &Path,
    process: &Process,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Entrypoint> {
    let program = match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => &args[0],
        _ => return Err(Error::Spec("process.args is empty".into())),
    };
    let path_var = process
        .env()
        .iter()
        .flatten()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let cwd = process.cwd().to_string_lossy();
    let (inside, host) =
        find_in_rootfs(rootfs, program, &cwd, path_var).ok_or_else(|| Error::Entrypoint {
            path: program.clone(),
            msg: format!("not found in rootfs {}", rootfs.display()),
        })?;
    let magic = detect::has_wasm_magic(&host).map_err(|e| Error::io(&host, e))?;
    let kind = detect::payload_kind(annotations, &host);
    let bad = |msg: &str| Error::Entrypoint {
        path: inside.clone(),
        msg: msg.into(),
    };
    match kind {
        PayloadKind::Wasm if !magic => {
            return Err(bad(
                "the spec asks for Wasm but the file is not a WebAssembly module (no \\0asm magic)",
            ))
        }
        PayloadKind::Native if inside.ends_with(".wasm") => {
            return Err(bad("is not a WebAssembly module (no \\0asm magic)"))
        }
        PayloadKind::Native => {
            let mode = host
                .metadata()
                .map_err(|e| Error::io(&host, e))?
                .permissions()
                .mode();
            if mode & 0o111 == 0 {
                return Err(bad("is not executable"));
            }
        }
        PayloadKind::Wasm => {}
    }
    Ok(Entrypoint { inside, host, kind })
}

/// A container found in or created into the state root.
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
    state: State,
    cgroup: Cgroup,
    console: Option<OwnedFd>,
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its host pid.
    pub pid: i32,
    /// The master side of its terminal, when its spec asked for one.
    pub console: Option<OwnedFd>,
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

    /// Lets the payload run.
    pub fn start(&mut self) -> Result<()> {
        if self.state.current_status() != Status::Created || self.state.started_at.is_some() {
            return Err(self.bad_status("only a created container can be started"));
        }
        let fifo = State::dir(&self.root, &self.state.id).join(START_FIFO);
        // Non-blocking: ENXIO means no reader, i.e. the init is gone.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| Error::Init {
                id: self.state.id.clone(),
                msg: format!("init is not waiting on {}: {e}", fifo.display()),
            })?;
        f.write_all(&[1]).map_err(|e| Error::io(&fifo, e))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        self.state.status = Status::Running;
        self.state.started_at = Some(SystemTime::now());
        self.state.save(&self.root)
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

    /// Blocks until the init exits and records its status. Only the
    /// process that created the container (its parent) or a child
    /// subreaper above it can wait.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(code) = self.state.exit_code {
            return Ok(self.recorded_exit(code));
        }
        loop {
            match waitpid(Pid::from_raw(self.state.pid), None) {
                Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return self.record_exit(ws)
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("waitpid {}", self.state.pid), e)),
            }
        }
    }

    /// Like [`Container::wait`] without blocking: `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.try_wait_then(true)
    }

    /// [`Container::try_wait`] for a caller that deletes the container
    /// next (the engine's watcher, which records the exit itself): the
    /// exit is kept in memory, not written to the state first.
    pub fn try_wait_to_delete(&mut self) -> Result<Option<ExitStatus>> {
        self.try_wait_then(false)
    }

    fn try_wait_then(&mut self, save: bool) -> Result<Option<ExitStatus>> {
        if let Some(code) = self.state.exit_code {
            return Ok(Some(self.recorded_exit(code)));
        }
        match waitpid(Pid::from_raw(self.state.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => self.note_exit(c, save).map(Some),
            Ok(WaitStatus::Signaled(_, sig, _)) => self.note_exit(128 + sig as i32, save).map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(Error::sys(format!("waitpid {}", self.state.pid), e)),
        }
    }

    fn recorded_exit(&self, code: i32) -> ExitStatus {
        ExitStatus {
            code,
            signal: (code > 128 && code < 160).then_some(code - 128),
            oom_killed: self.state.oom_killed,
        }
    }

    /// Records an exit reaped by the caller's own `waitpid` loop (a shim
    /// reaping on SIGCHLD), and returns it as an [`ExitStatus`].
    pub fn record_exit(&mut self, ws: WaitStatus) -> Result<ExitStatus> {
        match ws {
            WaitStatus::Exited(_, c) => self.record_exit_code(c),
            WaitStatus::Signaled(_, s, _) => self.record_exit_code(128 + s as i32),
            _ => Err(self.bad_status("not an exit status")),
        }
    }

    /// Records an exit code reaped elsewhere (128+signal for a signal).
    pub fn record_exit_code(&mut self, code: i32) -> Result<ExitStatus> {
        self.note_exit(code, true)
    }

    /// Takes note of the exit, in the state file too when `save`.
    fn note_exit(&mut self, code: i32, save: bool) -> Result<ExitStatus> {
        let signal = (code > 128 && code < 160).then_some(code - 128);
        let oom_killed = signal == Some(libc::SIGKILL) && self.cgroup.oom_kills() > 0;
        self.state.exit_code = Some(code);
        self.state.exited_at = Some(SystemTime::now());
        self.state.oom_killed = oom_killed;
        self.state.status = Status::Stopped;
        if save {
            self.state.save(&self.root)?;
        }
        Ok(ExitStatus {
            code,
            signal,
            oom_killed,
        })
    }

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

    /// Removes the container: its cgroup and state directory. A container
    /// whose init still lives is refused unless `force`, which kills it.
    pub fn delete(mut self, force: bool) -> Result<()> {
        if self.state.init_alive() {
            if !force {
                return Err(self.bad_status("kill it first or delete with force"));
            }
            if self.state.current_status() == Status::Paused {
                let _ = self.cgroup.thaw();
            }
            let _ = self.cgroup.signal_all(Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(self.state.pid), Signal::SIGKILL);
            if let Some(ws) = reap_killed(self.state.pid) {
                let _ = self.record_exit(ws);
            }
        }
        self.cgroup.destroy()?;
        let dir = State::dir(&self.root, &self.state.id);
        // Another deleter (a watcher reaping it while `rm -f` runs) may
        // have removed it first.
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&dir, e)),
            _ => Ok(()),
        }
    }
}

/// Reaps a SIGKILLed init if it is our child, waiting a bounded time.
///
/// A pid-namespace init stays in its exit path until every process of the
/// namespace has been reaped, and an exec'd process orphaned to a child
/// subreaper (the caller) may be one of those zombies: blocking here could
/// then wait on ourselves. The cgroup is empty by then, so giving up is safe;
/// the init is reaped by whoever reaps the caller's children.
fn reap_killed(pid: i32) -> Option<WaitStatus> {
    for _ in 0..400 {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Some(ws),
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            // Not our child: its parent reaps it.
            Err(_) => return None,
        }
    }
    None
}
