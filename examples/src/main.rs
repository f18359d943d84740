//! `amphi-examples`: lists the example workloads and writes OCI bundles of them.
//!
//! ```text
//! amphi-examples list
//! amphi-examples bundle wasm/hello DIR [-- ARGS...]   # ARGS replace the default args
//! amphi-examples image wasm|component|native|busybox OUT.tar NAME  # OCI image archive
//! amphi-examples wasm|component NAME FILE             # write one module/component to FILE
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["list"] => {
            for n in amphi_examples::names() {
                println!("{n}");
            }
        }
        ["bundle", name, dir, rest @ ..] => {
            let (kind, mut argv) = amphi_examples::example(name)?;
            if let ["--", extra @ ..] = rest {
                if !extra.is_empty() {
                    argv = extra.iter().map(|s| s.to_string()).collect();
                }
            }
            amphi_examples::write_bundle(Path::new(dir), kind, &argv)?;
        }
        ["image", "busybox", out, name] => {
            amphi_examples::write_busybox_image(Path::new(out), name)?;
        }
        ["image", kind, out, name] => {
            let kind = match *kind {
                "wasm" => amphi_examples::Kind::Wasm,
                "component" => amphi_examples::Kind::Component,
                "native" => amphi_examples::Kind::Native,
                _ => bail!("image kind must be wasm, component or native"),
            };
            amphi_examples::write_image(Path::new(out), kind, name)?;
        }
        [kind @ ("wasm" | "component"), name, file] => {
            let table = if *kind == "wasm" {
                amphi_examples::WASM
            } else {
                amphi_examples::COMPONENT
            };
            let (_, bytes) = table
                .iter()
                .find(|(n, _)| n == name)
                .with_context(|| format!("no {kind} example {name:?}"))?;
            std::fs::write(file, bytes).with_context(|| format!("writing {file}"))?;
        }
        _ => {
            bail!("usage: amphi-examples list | bundle KIND/NAME DIR [-- ARGS...] | image KIND OUT.tar NAME | wasm|component NAME FILE")
        }
    }
    Ok(())
}
