//! The Wasm payload under wasmtime: one engine configuration, an on-disk
//! cache of compiled modules and components, and running them inside the
//! sandbox: WASI preview 1 command modules (`p1.rs` is this file's
//! `run_module`), WASI 0.2 `wasi:cli/command` components (`component.rs`)
//! and `wasi:http/proxy` components, served (`http.rs`).
//!
//! This is the one place that names wasmtime. The runtime reaches it only
//! through [`crate::init::WasmEngine`], which a binary hands to
//! [`crate::init::run_if_init`]: a binary that passes [`WASMTIME`] carries
//! the engine, one that passes `None` (the containerd shim) links none of
//! it and names a helper binary for Wasm inits instead.
//!
//! The init prepares the payload before `pivot_root`, while the host's
//! cache is visible: on a cache hit it only opens the compiled artifact,
//! which it maps once it has reported ready, while containerd makes its
//! way from create to start; on a miss it compiles once and publishes the
//! artifact for every later container. The init joins the container's
//! cgroup only after that, so a compile is never charged to (or killed
//! by) a small container's memory limit.

mod cache;
mod component;
mod http;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use wasmtime::{Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::{Error, Result};
use cache::{process_engine, Kind, ModuleCache};

/// The WASI preview 1 import module name.
const WASI_P1: &str = "wasi_snapshot_preview1";
/// WASI's preview 0 (`wasi_unstable`), which older toolchains emit and
/// wasmtime's CLI still links; the same context serves it.
const WASI_P0: &str = "wasi_unstable";

/// The engine every compile and every load uses: the settings are part of
/// the cache key, so they live in one place.
pub fn engine() -> Result<Engine> {
    Engine::new(&config()).map_err(|e| Error::Wasm {
        path: PathBuf::new(),
        msg: e.to_string(),
    })
}

/// The engine HTTP components are served with: the same settings (its
/// artifacts are the same), with wasmtime's pooling allocator, as
/// `wasmtime serve` has it — an instance per request then takes a
/// prepared slot instead of mapping its memories anew (twice the
/// requests/s here). Where the host refuses the pool's address-space
/// reservation, the on-demand engine serves.
fn serving_engine() -> Result<Engine> {
    static SERVING: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = SERVING.get() {
        return Ok(e.clone());
    }
    let mut config = config();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
        wasmtime::PoolingAllocationConfig::default(),
    ));
    let engine = match Engine::new(&config) {
        Ok(e) => e,
        Err(e) => {
            // Said in the container's log: requests/s are halved.
            let _ = writeln!(
                std::io::stderr(),
                "amphi: no pooling allocator here ({}): instances are allocated on demand",
                one_line(&e)
            );
            process_engine()?
        }
    };
    let _ = SERVING.set(engine.clone());
    Ok(engine)
}

fn config() -> Config {
    let mut config = Config::new();
    // The Wasm proposals are wasmtime's defaults, as its CLI has them
    // (exception handling, GC types and function references, tail calls,
    // multi-memory, relaxed SIMD, memory64, threads' atomics: Config's
    // WASM3 set with the crate's gc and threads features), and the
    // component model. On top, shared memories may be created: toolchains
    // emit them for `-pthread` builds that run single-threaded under WASI
    // preview 1.
    config.shared_memory(true);
    config.wasm_component_model(true);
    // kill/SIGTERM must stop even a busy loop: generated code checks the epoch.
    config.epoch_interruption(true);
    config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    config
}

fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
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
            kind: Kind::of_artifact(&cwasm),
            artifact: Some((cwasm, file)),
            linked: None,
            load_error: None,
            runtime: None,
            settled: None,
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
        let linked = match self.kind {
            Kind::Module => load_module(&path, file).map(Linked::Module),
            kind => component::load(&path, file, kind).map(Linked::Component),
        };
        match linked {
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
        grants: &crate::init::Grants,
    ) -> Result<()> {
        let guest = Guest {
            args: args.to_vec(),
            env: env.to_vec(),
            grants: grants.clone(),
        };
        self.settled = Some(match self.kind {
            Kind::Module => {
                self.runtime = Some(tokio_runtime().map_err(|e| Error::io("tokio runtime", e))?);
                Settled::P1(guest.builder(true)?.build_p1())
            }
            Kind::Command => {
                self.runtime = Some(tokio_runtime().map_err(|e| Error::io("tokio runtime", e))?);
                let wasi = guest.builder(true)?.build();
                Settled::P2(wasi, guest.grants.http_outgoing)
            }
            // Each request gets a context of its own, built as it comes;
            // the server's threads start in `run`, after any seccomp filter.
            Kind::Http => Settled::Http(guest),
        });
        Ok(())
    }

    fn run(self: Box<Self>, max_memory: Option<u64>) -> i32 {
        run(*self, max_memory)
    }
}

/// What the guest is given: its args and env and the init's grants.
#[derive(Debug, Clone)]
pub(crate) struct Guest {
    args: Vec<String>,
    env: Vec<(String, String)>,
    grants: crate::init::Grants,
}

impl Guest {
    /// A WASI context builder with the guest's args, env, stdio,
    /// preopens and the container's network for `wasi:sockets` (the
    /// netns is the sandbox; preview 1 has no call that makes a socket);
    /// `inline_blocking` runs blocking file calls on the calling thread (a
    /// current-thread runtime has no other).
    fn builder(&self, inline_blocking: bool) -> Result<WasiCtxBuilder> {
        let mut b = WasiCtxBuilder::new();
        b.inherit_stdio()
            .args(&self.args)
            .envs(&self.env)
            .allow_blocking_current_thread(inline_blocking)
            .inherit_network()
            .allow_ip_name_lookup(true);
        for p in &self.grants.preopens {
            let perms = if p.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&p.path, &p.name, perms)
                .map_err(|e| Error::Wasm {
                    path: p.path.clone().into(),
                    msg: format!("preopening {}: {}", p.path, one_line(&e)),
                })?;
        }
        Ok(b)
    }
}

/// A compiled payload for the init: its artifact, then (after `load`)
/// mapped with its WASI imports resolved, ready to instantiate and run
/// after `start`.
pub(crate) struct Prepared {
    /// Module, command or HTTP component (from the artifact's name).
    kind: Kind,
    /// The artifact, until `load` maps it.
    artifact: Option<(PathBuf, std::fs::File)>,
    linked: Option<Linked>,
    /// Why `load` failed, for `run` to say.
    load_error: Option<String>,
    /// Built by `settle`, or else by `run`.
    runtime: Option<tokio::runtime::Runtime>,
    /// The guest's WASI context (or, to serve, what each request's is
    /// made of), built by `settle`.
    settled: Option<Settled>,
}

/// A payload with its imports resolved.
enum Linked {
    Module(InstancePre<Ctx>),
    Component(component::Linked),
}

/// The guest's WASI state, made by `settle`.
enum Settled {
    P1(WasiP1Ctx),
    P2(wasmtime_wasi::WasiCtx, crate::http_outgoing::Outgoing),
    Http(Guest),
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

/// Maps the compiled module `file` (from `cwasm`) and resolves its WASI
/// imports, off `start`'s path.
fn load_module(cwasm: &Path, file: std::fs::File) -> Result<InstancePre<Ctx>> {
    let engine = process_engine()?;
    let bad = |e: wasmtime::Error| Error::Wasm {
        path: cwasm.to_path_buf(),
        msg: one_line(&e),
    };
    // SAFETY: the cache holds only artifacts this runtime wrote, under a
    // root-owned directory, keyed by the engine's compatibility hash.
    let module = unsafe { Module::deserialize_open_file(&engine, file) }.map_err(bad)?;
    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |c| &mut c.wasi).map_err(bad)?;
    // Only when imported: linking costs each run of the others.
    if module.imports().any(|i| i.module() == WASI_P0) {
        wasmtime_wasi::p0::add_to_linker_async(&mut linker, |c| &mut c.wasi).map_err(bad)?;
    }
    linker.instantiate_pre(&module).map_err(bad)
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

/// The signal that asked the guest to stop, if one did.
fn stop_signal() -> Option<i32> {
    Some(SIGNAL.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// Linear memory and tables may not grow past what the cgroup allows.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_memory: usize,
}

impl Limits {
    fn new(max_memory: Option<u64>) -> Limits {
        let max_memory =
            max_memory.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        Limits { max_memory }
    }
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

/// Store data with the guest's limits.
trait Limited: Send + 'static {
    fn limits(&mut self) -> &mut Limits;
}

/// A store held to `Limits`, whose code traps once a signal bumps the epoch.
fn new_store<T: Limited>(engine: &Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|c| c.limits());
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    store
}

struct Ctx {
    wasi: WasiP1Ctx,
    limits: Limits,
}

impl Limited for Ctx {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

/// Runs the payload with its preopens, args and env and the process's
/// stdio (a component serving HTTP: until a signal stops it). Returns the
/// exit code: the guest's own, 128+signal when stopped by a signal, 134 on
/// a trap.
pub(crate) fn run(mut prepared: Prepared, max_memory: Option<u64>) -> i32 {
    use crate::init::WasmModule;
    if let Err(e) = prepared.load() {
        let _ = writeln!(std::io::stderr(), "amphi: {e}");
        return 126;
    }
    let Prepared {
        kind,
        linked,
        runtime,
        settled,
        ..
    } = prepared;
    let linked = linked.expect("loaded above");
    let Some(settled) = settled else {
        let _ = writeln!(std::io::stderr(), "amphi: the Wasm payload was not settled");
        return 126;
    };
    let engine = match if kind == Kind::Http {
        serving_engine()
    } else {
        process_engine()
    } {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "amphi: {e}");
            return 126;
        }
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
    let limits = Limits::new(max_memory);
    if let (Linked::Component(c), Settled::Http(guest)) = (&linked, &settled) {
        return exit_code(http::serve(&engine, c, guest, limits));
    }
    let rt = match runtime.map_or_else(tokio_runtime, Ok) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "amphi: tokio runtime: {e}");
            return 126;
        }
    };
    let result = match (linked, settled) {
        (Linked::Module(pre), Settled::P1(wasi)) => {
            rt.block_on(run_module(&engine, &pre, Ctx { wasi, limits }))
        }
        (Linked::Component(c), Settled::P2(wasi, outgoing)) => {
            rt.block_on(component::run_command(&engine, &c, wasi, limits, outgoing))
        }
        _ => Err(wasmtime::Error::msg(
            "the Wasm payload was settled for another kind",
        )),
    };
    // The process exits next: tearing the runtime down is waste.
    std::mem::forget(rt);
    exit_code(result)
}

/// The process exit code for a guest's end.
fn exit_code(result: wasmtime::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return exit.0;
            }
            if let Some(sig) = stop_signal() {
                if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    return 128 + sig;
                }
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

async fn run_module(engine: &Engine, pre: &InstancePre<Ctx>, ctx: Ctx) -> wasmtime::Result<i32> {
    let mut store = new_store(engine, ctx);
    let instance = pre.instantiate_async(&mut store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    // A signal that arrived before the store existed must still stop us.
    if stop_signal().is_some() {
        engine.increment_epoch();
    }
    start.call_async(&mut store, ()).await?;
    Ok(0)
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
