//! The Wasm payload under wasmtime: one engine configuration, an on-disk
//! cache of compiled modules, and running a WASI preview 1 command inside
//! the sandbox.
//!
//! This is the one place that names wasmtime. The runtime reaches it only
//! through [`crate::init::WasmEngine`], which a binary hands to
//! [`crate::init::run_if_init`]: a binary that passes [`WASMTIME`] carries
//! the engine, one that passes `None` (the containerd shim) links none of
//! it and names a helper binary for Wasm inits instead.
//!
//! The init prepares the module before `pivot_root`, while the host's
//! cache is visible: on a cache hit it only opens the compiled artifact,
//! which it maps (`Module::deserialize_open_file`) once it has reported
//! ready, while containerd makes its way from create to start; on a miss it
//! compiles once and publishes the artifact for every later container. The
//! init joins the container's cgroup only after that, so a compile is never
//! charged to (or killed by) a small container's memory limit.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::{Error, Result};

/// The WASI preview 1 import module name.
const WASI_P1: &str = "wasi_snapshot_preview1";

/// The engine every compile and every load uses: the settings are part of
/// the cache key, so they live in one place.
pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    // The Wasm proposals are wasmtime's defaults, as its CLI has them
    // (exception handling, GC types and function references, tail calls,
    // multi-memory, relaxed SIMD, memory64, threads' atomics: Config's
    // WASM3 set with the crate's gc and threads features). On top, shared
    // memories may be created: toolchains emit them for `-pthread` builds
    // that run single-threaded under WASI preview 1.
    config.shared_memory(true);
    // kill/SIGTERM must stop even a busy loop: generated code checks the epoch.
    config.epoch_interruption(true);
    config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    Engine::new(&config).map_err(|e| Error::Wasm {
        path: PathBuf::new(),
        msg: e.to_string(),
    })
}

/// Compiled modules on disk, keyed by the module's sha256 and the engine's
/// version and settings.
#[derive(Debug, Clone)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created on first use).
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache { dir: dir.into() }
    }

    /// The module's bytes and where its artifact lives (or would).
    fn lookup(&self, module: &Path) -> Result<(Vec<u8>, PathBuf)> {
        let bytes = std::fs::read(module).map_err(|e| Error::Wasm {
            path: module.to_path_buf(),
            msg: format!("cannot read: {e}"),
        })?;
        let key = cache_key(&process_engine()?, &bytes);
        Ok((bytes, self.dir.join(format!("{key}.cwasm"))))
    }

    fn compile(&self, module: &Path, bytes: &[u8], path: &Path) -> Result<()> {
        let bad = |msg: String| Error::Wasm {
            path: module.to_path_buf(),
            msg,
        };
        let engine = process_engine()?;
        let compiled = engine
            .precompile_module(bytes)
            .map_err(|e| bad(one_line(&e)))?;
        // SAFETY: the bytes were produced by this engine just now.
        let loaded =
            unsafe { Module::deserialize(&engine, &compiled) }.map_err(|e| bad(one_line(&e)))?;
        check_wasi_command(&loaded).map_err(bad)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // Atomic publish: concurrent creators race harmlessly to the same name.
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1
            .write_all(&compiled)
            .map_err(|e| Error::io(&tmp.0, e))?;
        drop(tmp.1);
        std::fs::rename(&tmp.0, path).map_err(|e| Error::io(path, e))
    }

    /// Returns the compiled artifact for the module at `module`, compiling
    /// and storing it first when it is not cached yet; rejects modules that
    /// are not WASI preview 1 commands. The caller (a container init) stays
    /// single-threaded, as `setns` into a mount namespace requires: a miss
    /// is compiled in a forked child, whose compiler threads and memory end
    /// with it.
    pub(crate) fn ensure(&self, module: &Path) -> Result<PathBuf> {
        let by_file = self.by_file(module);
        if let Some(path) = by_file.as_ref().and_then(|l| self.follow(l)) {
            return Ok(path);
        }
        let (bytes, path) = self.lookup(module)?;
        if path.exists() {
            self.remember(by_file.as_deref(), &path);
            return Ok(path);
        }
        let path = self.compile_aside(module, &bytes, path)?;
        self.remember(by_file.as_deref(), &path);
        Ok(path)
    }

    /// Where the artifact of this very file is recorded: `by-file/` holds
    /// one link per module file seen, named by its inode, size, mtime and
    /// ctime (to the nanosecond) and the engine, so a known file is neither
    /// read nor hashed again (a 10 MB module costs ~10 ms to hash). Any
    /// change to the file changes its ctime, which no one can set back; the
    /// device is left out because an overlay rootfs gets a new one per
    /// mount, while its lower files keep their inodes.
    fn by_file(&self, module: &Path) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(module).ok()?;
        let engine = engine_hash(&process_engine().ok()?);
        Some(self.dir.join("by-file").join(format!(
            "{:x}-{:x}-{}.{:09}-{}.{:09}-{:016x}",
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            engine
        )))
    }

    /// The artifact `link` names, if both are there.
    fn follow(&self, link: &Path) -> Option<PathBuf> {
        let name = std::fs::read_link(link).ok()?;
        let path = self.dir.join(name.file_name()?);
        path.is_file().then_some(path)
    }

    /// Records `artifact` as the one of the file behind `link`. Best
    /// effort: without the link the next start hashes the module again.
    fn remember(&self, link: Option<&Path>, artifact: &Path) {
        let (Some(link), Some(name)) = (link, artifact.file_name()) else {
            return;
        };
        let Some(dir) = link.parent() else { return };
        let _ = std::fs::create_dir_all(dir);
        let tmp = tmp_name(dir);
        let target = Path::new("..").join(name);
        if std::os::unix::fs::symlink(&target, &tmp).is_ok() && std::fs::rename(&tmp, link).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Compiles `bytes` into `path` in a forked child (see `ensure`).
    fn compile_aside(&self, module: &Path, bytes: &[u8], path: PathBuf) -> Result<PathBuf> {
        let (rx, tx) = nix::unistd::pipe().map_err(|e| Error::sys("pipe", e))?;
        // SAFETY: the caller is single-threaded, so the child may do anything.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))? {
            nix::unistd::ForkResult::Child => {
                drop(rx);
                let code = match self.compile(module, bytes, &path) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = std::fs::File::from(tx).write_all(e.to_string().as_bytes());
                        1
                    }
                };
                // SAFETY: leave without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(tx);
                let mut msg = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rx), &mut msg);
                let status = nix::sys::wait::waitpid(child, None);
                match status {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(path),
                    _ if !msg.is_empty() => Err(Error::Wasm {
                        path: module.to_path_buf(),
                        msg: msg
                            .strip_prefix(&format!("wasm module {}: ", module.display()))
                            .unwrap_or(&msg)
                            .to_string(),
                    }),
                    other => Err(Error::Wasm {
                        path: module.to_path_buf(),
                        msg: format!("compiler process failed: {other:?}"),
                    }),
                }
            }
        }
    }
}

/// One engine per process: a long-lived caller must not pay an engine
/// set-up on every call just for the cache key.
fn process_engine() -> Result<Engine> {
    static PROCESS_ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = PROCESS_ENGINE.get() {
        return Ok(e.clone());
    }
    let e = engine()?;
    let _ = PROCESS_ENGINE.set(e.clone());
    Ok(e)
}

/// A name in `dir` no other process or call uses, for writing aside.
fn tmp_name(dir: &Path) -> PathBuf {
    dir.join(format!(".tmp-{}-{}", std::process::id(), unique()))
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    let path = tmp_name(dir);
    let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    Ok((path, f))
}

fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// sha256 of the module plus a hash of the engine's version and settings.
fn cache_key(engine: &Engine, module: &[u8]) -> String {
    let digest = Sha256::digest(module);
    format!("{}-{:016x}", hex(&digest), engine_hash(engine))
}

/// A hash of the engine's version and settings: another engine's
/// artifacts are not this one's to load.
fn engine_hash(engine: &Engine) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// A WASI command exports `_start` and imports only WASI preview 1.
fn check_wasi_command(module: &Module) -> std::result::Result<(), String> {
    if module.get_export("_start").is_none() {
        return Err("exports no _start function: not a WASI command module".into());
    }
    if let Some(i) = module.imports().find(|i| i.module() != WASI_P1) {
        return Err(format!(
            "imports {}::{}, but only {WASI_P1} is provided",
            i.module(),
            i.name()
        ));
    }
    Ok(())
}

/// The wasmtime engine, for [`crate::init::run_if_init`].
pub static WASMTIME: Wasmtime = Wasmtime;

/// Runs Wasm payloads under wasmtime (see the module docs).
pub struct Wasmtime;

impl crate::init::WasmEngine for Wasmtime {
    fn prepare(&self, module: &Path, cache: &Path) -> Result<Box<dyn crate::init::WasmModule>> {
        let cwasm = ModuleCache::new(cache).ensure(module)?;
        // Opened now, while the cache is in sight; `load` maps it, perhaps
        // after pivot_root.
        let file = std::fs::File::open(&cwasm).map_err(|e| Error::io(&cwasm, e))?;
        Ok(Box::new(Prepared {
            artifact: Some((cwasm, file)),
            linked: None,
            load_error: None,
            runtime: None,
            wasi: None,
        }))
    }
}

impl crate::init::WasmModule for Prepared {
    fn load(&mut self) -> Result<()> {
        if self.linked.is_some() {
            return Ok(());
        }
        let Some((path, file)) = self.artifact.take() else {
            return Err(Error::Wasm {
                path: PathBuf::new(),
                msg: self.load_error.clone().unwrap_or_default(),
            });
        };
        match load(&path, file) {
            Ok(linked) => {
                self.linked = Some(linked);
                Ok(())
            }
            Err(e) => {
                self.load_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn settle(
        &mut self,
        args: &[String],
        env: &[(String, String)],
        preopens: &[(String, bool)],
    ) -> Result<()> {
        self.runtime = Some(tokio_runtime().map_err(|e| Error::io("tokio runtime", e))?);
        let mut b = WasiCtxBuilder::new();
        b.inherit_stdio()
            .args(args)
            .envs(env)
            // Blocking WASI calls run on this thread, not a tokio blocking pool.
            .allow_blocking_current_thread(true)
            .preopened_dir("/", "/", FsPerms::ReadWrite)
            .map_err(|e| Error::Wasm {
                path: "/".into(),
                msg: format!("preopening the rootfs: {}", one_line(&e)),
            })?;
        for (dir, ro) in preopens {
            let perms = if *ro {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(dir, dir, perms).map_err(|e| Error::Wasm {
                path: dir.into(),
                msg: format!("preopening {dir}: {}", one_line(&e)),
            })?;
        }
        let wasi = b.build_p1();
        self.wasi = Some(wasi);
        Ok(())
    }

    fn run(self: Box<Self>, max_memory: Option<u64>) -> i32 {
        run(*self, max_memory)
    }
}

/// A compiled module for the init: its artifact, then (after `load`)
/// mapped with its WASI imports resolved, ready to instantiate and run
/// after `start`.
pub(crate) struct Prepared {
    /// The artifact, until `load` maps it.
    artifact: Option<(PathBuf, std::fs::File)>,
    linked: Option<(Engine, InstancePre<Ctx>)>,
    /// Why `load` failed, for `run` to say.
    load_error: Option<String>,
    /// Built by `settle`, or else by `run`.
    runtime: Option<tokio::runtime::Runtime>,
    /// The guest's WASI context, built by `settle`.
    wasi: Option<WasiP1Ctx>,
}

/// The guest runs as a future on a current-thread tokio runtime, which
/// drives WASI's timers and readiness itself: no worker threads (the sync
/// WASI API would block on a runtime with a worker per CPU), and blocking
/// file calls run inline (`allow_blocking_current_thread`).
fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Maps the compiled artifact `file` (from `cwasm`) and resolves its WASI
/// imports, off `start`'s path.
fn load(cwasm: &Path, file: std::fs::File) -> Result<(Engine, InstancePre<Ctx>)> {
    let engine = process_engine()?;
    // SAFETY: the cache holds only artifacts this runtime wrote, under a
    // root-owned directory, keyed by the engine's compatibility hash.
    let module =
        unsafe { Module::deserialize_open_file(&engine, file) }.map_err(|e| Error::Wasm {
            path: cwasm.to_path_buf(),
            msg: one_line(&e),
        })?;
    let bad = |e: wasmtime::Error| Error::Wasm {
        path: cwasm.to_path_buf(),
        msg: one_line(&e),
    };
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |c| &mut c.wasi).map_err(bad)?;
    let pre = linker.instantiate_pre(&module).map_err(bad)?;
    Ok((engine, pre))
}

static ENGINE: OnceLock<Engine> = OnceLock::new();
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
    // Async-signal-safe: an atomic add. Running code traps at its next check.
    if let Some(engine) = ENGINE.get() {
        engine.increment_epoch();
    }
}

/// Linear memory and tables may not grow past what the cgroup allows.
struct Limits {
    max_memory: usize,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_memory)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000_000)
    }
}

struct Ctx {
    wasi: WasiP1Ctx,
    limits: Limits,
}

/// Runs the module's `_start` with the rootfs preopened as `/`, the given
/// args and env and the process's stdio. Returns the exit code: the
/// `proc_exit` code, 128+signal when stopped by a signal, 134 on a trap.
pub(crate) fn run(mut prepared: Prepared, max_memory: Option<u64>) -> i32 {
    use crate::init::WasmModule;
    if let Err(e) = prepared.load() {
        let _ = writeln!(std::io::stderr(), "amphi: {e}");
        return 126;
    }
    let Prepared {
        linked,
        runtime,
        wasi,
        ..
    } = prepared;
    let (engine, pre) = linked.expect("loaded above");
    let Some(wasi) = wasi else {
        let _ = writeln!(std::io::stderr(), "amphi: the Wasm module was not settled");
        return 126;
    };
    let _ = ENGINE.set(engine.clone());
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: the handler only touches atomics.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let result = match runtime.map_or_else(tokio_runtime, Ok) {
        Ok(rt) => {
            let r = rt.block_on(run_inner(&engine, &pre, wasi, max_memory));
            // The process exits next: tearing the runtime down is waste.
            std::mem::forget(rt);
            r
        }
        Err(e) => Err(wasmtime::Error::msg(format!("tokio runtime: {e}"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return exit.0;
            }
            let sig = SIGNAL.load(Ordering::SeqCst);
            if sig != 0 && e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                return 128 + sig;
            }
            // Trap messages read "wasm trap: ..." already.
            let _ = writeln!(std::io::stderr(), "{}", describe_trap(&e));
            134
        }
    }
}

/// "wasm `unreachable` instruction executed in boom": the trap and the
/// innermost function, on one line.
fn describe_trap(e: &wasmtime::Error) -> String {
    let what = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => format!("wasm trap: {}", e.root_cause()),
    };
    let frame = e.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames().first().map(|f| {
            f.func_name()
                .map_or_else(|| format!("function {}", f.func_index()), str::to_string)
        })
    });
    match frame {
        Some(f) => format!("{what} in {f}").replace('\n', " "),
        None => what.replace('\n', " "),
    }
}

async fn run_inner(
    engine: &Engine,
    pre: &InstancePre<Ctx>,
    wasi: WasiP1Ctx,
    max_memory: Option<u64>,
) -> wasmtime::Result<()> {
    let max_memory = max_memory.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut store = Store::new(
        engine,
        Ctx {
            wasi,
            limits: Limits { max_memory },
        },
    );
    store.limiter(|c| &mut c.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    let instance = pre.instantiate_async(&mut store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    // A signal that arrived before the store existed must still stop us.
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        engine.increment_epoch();
    }
    start.call_async(&mut store, ()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_takes_what_current_toolchains_emit() {
        let engine = engine().unwrap();
        for (what, src) in [
            ("exceptions", "(module (tag $t (param i32)) (func (throw $t (i32.const 1))))"),
            ("gc", "(module (type $s (struct (field i32))) (func (drop (struct.new $s (i32.const 1)))))"),
            ("tail calls", "(module (func $f (return_call $f)))"),
            ("multi-memory", "(module (memory 1) (memory 1))"),
            ("memory64", "(module (memory i64 1))"),
            ("relaxed simd", "(module (func (param v128) (result v128) (i32x4.relaxed_trunc_f32x4_s (local.get 0))))"),
            ("threads", "(module (memory 1 1 shared))"),
        ] {
            let wasm = wat::parse_str(src).unwrap();
            engine
                .precompile_module(&wasm)
                .unwrap_or_else(|e| panic!("{what}: {}", one_line(&e)));
        }
    }

    #[test]
    fn a_proposal_left_off_is_named_in_one_line() {
        let wasm = wat::parse_str("(module (memory 1 (pagesize 1)))").unwrap();
        let e = engine().unwrap().precompile_module(&wasm).unwrap_err();
        let msg = one_line(&e);
        assert!(msg.contains("custom page sizes"), "{msg}");
        assert!(!msg.contains('\n'));
    }
}
