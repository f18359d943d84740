//! Builds the example workloads: every `wasm/*.wat` into a module and every
//! `native/*.c` into a statically linked program, with the C compiler the
//! `cc` crate finds (the one Rust's own C builds use).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut table = String::from(
        "/// (name, bytes) of every WASI example module.\npub const WASM: &[(&str, &[u8])] = &[\n",
    );
    for src in sorted("wasm", "wat") {
        let name = src.file_stem().unwrap().to_str().unwrap().to_string();
        let wasm = wat::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::write(&dest, wasm).unwrap();
        table += &format!("    ({name:?}, include_bytes!({:?})),\n", dest);
    }
    table += "];\n/// (name, bytes) of every static native example program.\npub const NATIVE: &[(&str, &[u8])] = &[\n";
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    for src in sorted("native", "c") {
        let name = src.file_stem().unwrap().to_str().unwrap().to_string();
        let dest = out.join(&name);
        let status = Command::new(compiler.path())
            .args(["-static", "-Os", "-s", "-Wall", "-o"])
            .arg(&dest)
            .arg(&src)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling {} failed", src.display());
        table += &format!("    ({name:?}, include_bytes!({:?})),\n", dest);
    }
    table += "];\n";
    std::fs::write(out.join("programs.rs"), table).unwrap();
    println!("cargo:rerun-if-changed=wasm");
    println!("cargo:rerun-if-changed=native");
}

fn sorted(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    v.sort();
    v
}
