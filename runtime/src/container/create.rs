//! Creating a container: the sandbox made, or nothing left behind.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use crate::bundle::Bundle;
use crate::cgroup::Cgroup;
use crate::init::{InitConfig, InitMessage, Payload};
use crate::spawn::{spawn_init, ChildStdio, Start};
use crate::state::{validate_id, PayloadKind, State, Status, SECCOMP_FILE, START_FIFO};
use crate::{Error, Result};

use super::entrypoint::resolve_entrypoint;
use super::{Container, CreateOptions, Runtime};

impl Runtime {
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
