//! Builds the example workloads: every `wasm/*.wat` into a module, the
//! command modules also into WASI 0.2 components (wasmtime's preview 1
//! command adapter, as `wasm-tools component new --adapt` does), every
//! `http/*.wat` core module into a `wasi:http/proxy` component and every
//! `cli/*.wat` one into a `wasi:cli/command` (the world in `wit/`
//! embedded, as `wasm-tools component embed` does), and every
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
    table += "];\n/// (name, bytes) of every WASI 0.2 example component.\npub const COMPONENT: &[(&str, &[u8])] = &[\n";
    for src in sorted("wasm", "wat") {
        let name = src.file_stem().unwrap().to_str().unwrap().to_string();
        if !COMMANDS.contains(&name.as_str()) {
            continue;
        }
        let module = wat::parse_file(&src).unwrap();
        let component = adapt(&module).unwrap_or_else(|e| panic!("{}: {e:#}", src.display()));
        table += &component_entry(&out, &name, &component);
    }
    for (dir, world) in [("cli", "cli-command"), ("http", "http-hello")] {
        for src in sorted(dir, "wat") {
            let name = src.file_stem().unwrap().to_str().unwrap().to_string();
            let module = wat::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let component =
                embed(module, world).unwrap_or_else(|e| panic!("{}: {e:#}", src.display()));
            table += &component_entry(&out, &format!("{dir}-{name}"), &component);
        }
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
    println!("cargo:rerun-if-changed=cli");
    println!("cargo:rerun-if-changed=http");
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-changed=native");
}

/// The preview 1 command modules that are also built as components (the
/// rest exercise core proposals the adapter has nothing to do with).
const COMMANDS: &[&str] = &[
    "args_env", "busy", "cat", "echo", "exit42", "grow", "hello", "preopens", "trap", "write",
];

fn component_entry(out: &Path, name: &str, bytes: &[u8]) -> String {
    let dest = out.join(format!("{name}.component.wasm"));
    std::fs::write(&dest, bytes).unwrap();
    format!("    ({name:?}, include_bytes!({:?})),\n", dest)
}

/// A preview 1 command module as a WASI 0.2 `wasi:cli/command` component.
fn adapt(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider as adapter;
    wit_component::ComponentEncoder::default()
        .module(module)?
        .adapter(
            adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            adapter::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )?
        .validate(true)
        .encode()
}

/// A core module written against a world of `wit/` (its imports and
/// exports lowered by the canonical ABI) as a component of that world.
fn embed(mut module: Vec<u8>, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(Path::new("wit"))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
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
