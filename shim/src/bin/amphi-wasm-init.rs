//! `amphi-wasm-init`: the init of the shim's Wasm containers.
//!
//! The shim (`containerd-shim-amphi-v1`) links no Wasm engine, so that the
//! process that stays beside every container is small; it starts this
//! binary, which carries wasmtime, as the init of Wasm containers and Wasm
//! execs. Install it beside the shim (or name it in `AMPHI_WASM_INIT`).
//! Run by hand it only says what it is.

fn main() {
    amphi_runtime::init::run_if_init(Some(&amphi_runtime::wasm::WASMTIME));
    eprintln!(
        "amphi-wasm-init: runs Wasm container inits for containerd-shim-amphi-v1; not for direct use"
    );
    std::process::exit(2);
}
