//! `containerd-shim-amphi-v1`: containerd's runtime v2 shim for amphi
//! (runtime type `io.containerd.amphi.v1`), speaking task API v2 over ttrpc.
//! One shim serves every container of a sandbox group; its task service
//! drives `amphi-runtime`, so native and Wasm containers share one path.

mod events;
mod info;
mod io;
mod logger;
mod metrics;
mod oom;
mod options;
mod service;
mod shim;

/// The runtime type containerd knows us by.
pub(crate) const RUNTIME_ID: &str = "io.containerd.amphi.v1";

/// The helper binary that runs Wasm container inits, installed beside
/// the shim.
pub(crate) const WASM_INIT: &str = "amphi-wasm-init";

fn main() {
    // Native container inits are this binary re-executed: branch off first.
    // No Wasm engine here: Wasm inits are the helper's (see WASM_INIT).
    amphi_runtime::init::run_if_init(None);
    // One malloc arena for all threads: the shim's threads mostly sleep,
    // and an arena per thread costs resident memory in every shim.
    // SAFETY: called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if let Err(e) = shim::run() {
        eprintln!("{RUNTIME_ID}: {e:#}");
        std::process::exit(1);
    }
}
