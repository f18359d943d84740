//! `containerd-shim-amphi-v1`: containerd's runtime v2 shim for amphi
//! (runtime type `io.containerd.amphi.v1`), speaking task API v2 over ttrpc.
//! One shim serves every container of a sandbox group; its task service
//! drives `amphi-runtime`, so native and Wasm containers share one path.

mod events;
mod io;
mod service;
mod shim;

fn main() {
    // Container inits are this binary re-executed: branch off first.
    amphi_runtime::init::run_if_init();
    containerd_shim::run::<shim::AmphiShim>("io.containerd.amphi.v1", None);
}
