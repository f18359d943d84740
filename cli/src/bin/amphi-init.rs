//! `amphi-init`: the init of `amphi`'s native containers. It carries no
//! Wasm engine, so the binary every native container starts from is a
//! fraction of `amphi`'s size (Wasm containers start from `amphi` itself,
//! which carries wasmtime). Install it beside `amphi`; without it `amphi`
//! runs every init itself. Run by hand it only says what it is.

fn main() {
    amphi_runtime::init::run_if_init(None);
    eprintln!("amphi-init: runs native container inits for amphi; not for direct use");
    std::process::exit(2);
}
