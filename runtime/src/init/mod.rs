//! The container init: this same binary, re-executed by `spawn`
//! inside the container's new namespaces.
//!
//! It reads its `InitConfig` from the sync socket, sets up the sandbox
//! (namespaces joined by path, rootfs and mounts, pivot_root, hostname,
//! rlimits, user, capabilities), loads a Wasm payload's compiled module,
//! answers `ok` or `error: ...` on the socket, then blocks on the start FIFO.
//! On `start` it either `execve`s the native entrypoint or runs the module.

mod exec;
mod process;
mod rootfs;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::spawn::{INIT_ENV, INIT_FD};
use crate::{Error, Result};

/// What the payload is, as resolved by the creating process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Payload {
    /// `execve` this path (inside the container).
    Native,
    /// Run this module (host path), compiled through the cache at `cache`.
    Wasm { module: PathBuf, cache: PathBuf },
}

/// Runs Wasm payloads in an init. The wasmtime implementation is
/// [`crate::wasm::WASMTIME`]; this seam lets a binary leave it out.
pub trait WasmEngine: Sync {
    /// Makes the module at `module` (a host path) ready to run: from the
    /// compiled-module cache at `cache`, compiling it there on a miss.
    /// Called before `pivot_root`. Errors are the container's create error.
    fn prepare(&self, module: &Path, cache: &Path) -> Result<Box<dyn WasmModule>>;
}

/// A module made ready by [`WasmEngine::prepare`].
pub trait WasmModule {
    /// Maps the compiled module and resolves its imports. The init calls
    /// it once it has reported ready, while containerd goes from create to
    /// start, unless a seccomp filter is due (then before the filter, with
    /// the rest of its set-up) or it runs an exec; `run` calls it if no one
    /// did. A failure after ready shows when the module would run.
    fn load(&mut self) -> Result<()>;

    /// Readies the run: the guest's `args` and `env`, its preopened
    /// directories and whatever may start threads. Called once the init has dropped its
    /// privileges (a thread started earlier would keep them) and before it
    /// reports ready, so it is off `start`'s path, and before the seccomp
    /// filter when that goes last: what the runtime itself opens is not the
    /// guest's to be refused.
    /// `grants`: its preopens and what else it may do.
    fn settle(&mut self, args: &[String], env: &[(String, String)], grants: &Grants) -> Result<()>;

    /// Runs the payload (a module's `_start`, a command's `wasi:cli/run`,
    /// or serves a `wasi:http/proxy` until stopped); returns the exit code
    /// (the guest's own, 128+signal when stopped, 134 on a trap).
    /// Linear memory may not grow past `max_memory` bytes.
    fn run(self: Box<Self>, max_memory: Option<u64>) -> i32;
}

/// What a Wasm guest is granted beyond its args and env.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Directories to preopen, each by its container path under its
    /// name, from [`crate::preopens::of_spec`].
    pub preopens: Vec<crate::preopens::Preopen>,
    /// The outgoing HTTP requests a component may make.
    pub http_outgoing: crate::http_outgoing::Outgoing,
    /// Where an HTTP component listens, if its spec says.
    pub http_listen: Option<std::net::SocketAddr>,
}

impl Grants {
    /// The grants of these options inside the container, after the
    /// pivot: a preopen asked for by name must be a directory, a mount of
    /// a file (/etc/hosts) is no preopen.
    pub(crate) fn present(options: &crate::wasm_options::WasmOptions) -> Result<Grants> {
        let mut preopens = Vec::new();
        for p in &options.preopens {
            if Path::new(&p.path).is_dir() {
                preopens.push(p.clone());
            } else if p.required {
                return Err(Error::Spec(format!(
                    "Wasm preopen {}: no such directory in the container",
                    p.path
                )));
            }
        }
        Ok(Grants {
            preopens,
            http_outgoing: options.http_outgoing.clone(),
            http_listen: options.http_listen,
        })
    }
}

/// The engine this binary passed to [`run_if_init`].
static ENGINE: std::sync::OnceLock<Option<&'static dyn WasmEngine>> = std::sync::OnceLock::new();

/// Prepares a Wasm payload with this binary's engine.
fn prepare_wasm(module: &Path, cache: &Path) -> Result<Box<dyn WasmModule>> {
    match ENGINE.get().copied().flatten() {
        Some(engine) => engine.prepare(module, cache),
        None => Err(Error::Wasm {
            path: module.to_path_buf(),
            msg: "this binary runs no Wasm payloads (its Wasm helper should have been used)".into(),
        }),
    }
}

/// Everything the init needs, sent by the creating process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub id: String,
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The entrypoint's path inside the container.
    pub entrypoint: String,
    pub payload: Payload,
    /// The start FIFO (host path).
    pub fifo: PathBuf,
    /// The effective memory limit in bytes, to bound Wasm linear memory.
    pub memory_limit: Option<i64>,
    /// Host file with the cgroup's current memory usage.
    pub memory_usage_file: Option<PathBuf>,
    /// Host cgroup directories to show at a `cgroup` mount: (name, dir).
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    /// The spec's seccomp profile, compiled.
    pub seccomp: Option<crate::seccomp::Program>,
    /// `PR_SET_PDEATHSIG` for the payload.
    #[serde(default)]
    pub parent_death_signal: Option<i32>,
    /// Stay pid 1 as a reaper of a forked native payload.
    #[serde(default)]
    pub reaper: bool,
    /// A Wasm payload's preopens, outgoing HTTP and listen address.
    #[serde(default)]
    pub wasm: crate::wasm_options::WasmOptions,
    /// The cgroup the init moves itself into; `None`: its creator moves it.
    #[serde(default)]
    pub self_join: Option<crate::cgroup::SelfJoin>,
}

/// What the init is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum InitMessage {
    /// Become a new container's init.
    Create(Box<InitConfig>),
    /// Run another process in a running container.
    Exec(Box<ExecConfig>),
}

/// An extra process in an existing container's namespaces and cgroup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    /// Host pid of the container's init, whose namespaces we join.
    pub target_pid: i32,
    pub process: Process,
    /// The entrypoint's path inside the container.
    pub entrypoint: String,
    pub payload: Payload,
    /// The container's seccomp profile, compiled.
    pub seccomp: Option<crate::seccomp::Program>,
    /// The container's Wasm options (preopens, outgoing HTTP, listen).
    #[serde(default)]
    pub wasm: crate::wasm_options::WasmOptions,
    /// The cgroup to move into before joining the container; `None`: the
    /// creator moves us.
    #[serde(default)]
    pub self_join: Option<crate::cgroup::SelfJoin>,
}

/// Call first thing in `main` of every binary that creates containers: when
/// this process was started as a container init it never returns. `wasm`
/// runs Wasm payloads (pass `Some(&amphi_runtime::wasm::WASMTIME)`); a
/// binary that passes `None` must name a helper that can, in
/// [`crate::RuntimeConfig::wasm_init_exe`].
pub fn run_if_init(wasm: Option<&'static dyn WasmEngine>) {
    // Set in every process: a Wasm init forked from this one, without an
    // exec (see `RuntimeConfig::fork_wasm_init`), finds it here.
    let _ = ENGINE.set(wasm);
    if std::env::var_os(INIT_ENV).is_none() {
        return;
    }
    // SAFETY: single-threaded at this point; the variable is ours.
    unsafe { std::env::remove_var(INIT_ENV) };
    let code = main();
    std::process::exit(code);
}

/// Whether this binary's own engine runs Wasm payloads (a Wasm init may
/// then be forked from this process instead of exec'd).
pub(crate) fn runs_wasm() -> bool {
    ENGINE.get().copied().flatten().is_some()
}

/// The config of an init about to be forked without an exec: the child
/// finds it in its copy of our memory instead of parsing it off the
/// socket (a spec's JSON takes ~0.4 ms to read here).
static FORK_CONFIG: std::sync::Mutex<Option<Box<InitConfig>>> = std::sync::Mutex::new(None);

/// Leaves `cfg` for the init forked next (see [`FORK_CONFIG`]).
pub(crate) fn leave_for_fork(cfg: InitConfig) {
    *FORK_CONFIG.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(cfg));
}

/// Takes back what [`leave_for_fork`] left: the forked child's config, or
/// (in the parent, once forked) its copy to drop.
pub(crate) fn take_fork_config() -> Option<Box<InitConfig>> {
    FORK_CONFIG.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The init forked without an exec: its fds are placed as an exec'd
/// init's are (stdio, the sync socket at [`INIT_FD`], nothing else), and
/// it runs from here as one would from `run_if_init`. Never returns.
pub(crate) fn forked_main() -> ! {
    // As an exec'd Rust program starts (a front end may have set SIGPIPE
    // back to its default to end quietly in a closed pipe).
    // SAFETY: setting a disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    std::process::exit(main())
}

fn main() -> i32 {
    unblock_signals();
    // SAFETY: spawn placed the sync socket at INIT_FD and nothing else owns it.
    let mut sync = unsafe { File::from_raw_fd(INIT_FD) };
    let _ = nix::fcntl::fcntl(
        &sync,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    if let Some(cfg) = take_fork_config() {
        return create_main(&cfg, sync);
    }
    let Ok(buf) = crate::sync::read_config(&mut sync) else {
        return 126;
    };
    match serde_json::from_slice(&buf) {
        Ok(InitMessage::Create(cfg)) => create_main(&cfg, sync),
        Ok(InitMessage::Exec(cfg)) => exec::main(&cfg, sync),
        Err(e) => {
            let _ = writeln!(sync, "error: bad init config: {e}");
            126
        }
    }
}

/// Reports a setup failure on the sync socket as one line.
fn report(sync: &mut File, e: &Error) -> i32 {
    let msg = e.to_string().replace('\n', " ");
    let _ = writeln!(sync, "error: {msg}");
    126
}

fn create_main(cfg: &InitConfig, mut sync: File) -> i32 {
    let ready = match setup(cfg, &sync) {
        Ok(r) => r,
        Err(e) => return report(&mut sync, &e),
    };
    if writeln!(sync, "ok").is_err() {
        return 126;
    }
    drop(sync);
    let mut payload = ready.payload;
    if let Loaded::Wasm(module) = &mut payload {
        // Off `create`'s path; an error is reported by `run`.
        let _ = module.load();
    }
    // Block until `start` writes a byte to the FIFO.
    let mut fifo = File::from(ready.fifo);
    let mut byte = [0u8; 1];
    match fifo.read(&mut byte) {
        Ok(1) => {}
        _ => return 126,
    }
    drop(fifo);
    if let Some(sig) = cfg.parent_death_signal {
        // Last: changing credentials clears it. A filter that refuses
        // prctl leaves the container to the engine's clean-up instead.
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) };
    }
    let process = cfg.spec.process().as_ref().expect("bundle checks process");
    if cfg.reaper && matches!(payload, Loaded::Native) {
        return process::exec_under_reaper(process, &cfg.entrypoint);
    }
    run_payload(process, &cfg.entrypoint, payload, ready.wasm_memory_budget)
}

/// The last step, shared by create and exec: exec the native entrypoint or
/// run the module.
fn run_payload(process: &Process, entrypoint: &str, payload: Loaded, budget: Option<u64>) -> i32 {
    match payload {
        Loaded::Native => process::exec(process, entrypoint),
        Loaded::Wasm(prepared) => prepared.run(budget),
    }
}

enum Loaded {
    Native,
    Wasm(Box<dyn WasmModule>),
}

struct Ready {
    fifo: OwnedFd,
    payload: Loaded,
    wasm_memory_budget: Option<u64>,
}

fn setup(cfg: &InitConfig, sync: &File) -> Result<Ready> {
    let linux = cfg.spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    // Namespaces given by path are joined here (a pid namespace was
    // entered by the clone already); the others were created by clone.
    for ns in namespaces.iter() {
        if ns.typ() == LinuxNamespaceType::Pid {
            continue;
        }
        if let Some(path) = ns.path() {
            process::join_namespace(ns.typ(), path)?;
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    // A network namespace of its own starts with lo down: bring it up.
    if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
    {
        crate::netdev::loopback_up().map_err(|e| Error::io("bringing lo up", e))?;
    }
    process::apply_sysctls(&cfg.spec)?;
    process::set_oom_score_adj(&cfg.spec)?;
    // A Wasm module is found in the cache (compiled, on a miss) first,
    // outside the container's cgroup. Then we move ourselves in or, where
    // we cannot, `prepared` tells the creator it may move us, which it does
    // while we set up the rootfs.
    let mut payload = match &cfg.payload {
        Payload::Native => Loaded::Native,
        Payload::Wasm { module, cache } => {
            let prepared = prepare_wasm(module, cache)?;
            if cfg.self_join.is_none() {
                writeln!(&*sync, "{}", crate::sync::PREPARED)
                    .map_err(|e| Error::io("sync socket", e))?;
            }
            Loaded::Wasm(prepared)
        }
    };
    // Everything from here on needs the container's cgroup.
    let mut ready = [0u8; 1];
    (&*sync)
        .read_exact(&mut ready)
        .ok()
        .filter(|_| ready[0] == crate::sync::CGROUP_READY)
        .ok_or_else(|| Error::Spec("the creator did not make the container's cgroup".into()))?;
    if let Some(join) = &cfg.self_join {
        crate::cgroup::join_self(join)?;
    }
    rootfs::prepare(cfg)?;
    if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !has(LinuxNamespaceType::Uts) {
            return Err(Error::Spec(
                "hostname is set but the spec has no UTS namespace".into(),
            ));
        }
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("sethostname {h}"), e))?;
    }
    if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        let c =
            std::ffi::CString::new(d).map_err(|_| Error::Spec("domainname has a NUL".into()))?;
        // SAFETY: valid pointer and length.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            return Err(Error::sys(format!("setdomainname {d}"), nix::Error::last()));
        }
    }
    // What the container's cgroup holds already is not the guest's to use.
    let wasm_memory_budget = match (&payload, cfg.memory_limit.filter(|l| *l > 0)) {
        (Loaded::Wasm(_), Some(limit)) => {
            let used: u64 = cfg
                .memory_usage_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            Some((limit as u64).saturating_sub(used + (4 << 20)))
        }
        _ => None,
    };
    // O_RDWR: the open never blocks and the FIFO always has a reader while
    // the init lives, so `start` can tell a live init from a dead one.
    let fifo: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cfg.fifo)
        .map_err(|e| Error::io(&cfg.fifo, e))?
        .into();
    rootfs::pivot(&cfg.rootfs, rootfs::rootfs_propagation(cfg)?)?;
    rootfs::finish(cfg)?;
    let process = cfg.spec.process().as_ref().expect("bundle checks process");
    process::setup_console(process, sync)?;
    process::new_session(process)?;
    process::apply_rlimits(process)?;
    drop_privileges(
        process,
        cfg.seccomp.as_ref(),
        &mut payload,
        true,
        &Grants::present(&cfg.wasm)?,
    )?;
    Ok(Ready {
        fifo,
        payload,
        wasm_memory_budget,
    })
}

/// Switches user and capabilities, enters the cwd and readies a Wasm
/// module (loading it too unless `may_defer_load` and no filter is due),
/// installing the seccomp filter where runc does: last, when
/// no_new_privs lets an unprivileged process install it; otherwise before
/// the capabilities go, as installing then needs CAP_SYS_ADMIN.
fn drop_privileges(
    process: &Process,
    seccomp: Option<&crate::seccomp::Program>,
    payload: &mut Loaded,
    may_defer_load: bool,
    grants: &Grants,
) -> Result<()> {
    if let Loaded::Wasm(module) = payload {
        if seccomp.is_some() || !may_defer_load {
            module.load()?;
        }
    }
    let last = process.no_new_privileges() == Some(true);
    if let (Some(filter), false) = (seccomp, last) {
        filter.install()?;
    }
    process::switch_user_and_caps(process)?;
    process::chdir_cwd(process)?;
    if let Loaded::Wasm(module) = payload {
        let args = process.args().clone().unwrap_or_default();
        module.settle(&args, &process::spec_env(process), grants)?;
    }
    if let (Some(filter), true) = (seccomp, last) {
        filter.install()?;
    }
    Ok(())
}

fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}
