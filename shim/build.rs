include!("../contrib/build/link.rs");

fn main() {
    // containerd execs the shim twice per container (`start`, `delete`) and
    // its Wasm init once.
    no_pie();
    static_link("the shim");
}
