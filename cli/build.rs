include!("../contrib/build/link.rs");

fn main() {
    // `amphi` runs once per command and again as each Wasm container's
    // init; `amphi-init` once per native container.
    no_pie();
    static_link("amphi");
}
