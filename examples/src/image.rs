//! OCI image archives of the examples, for tools that import images
//! (`ctr images import`), written with amphi's own image store.
//!
//! The native image holds every native example under /bin (Cmd
//! /bin/hello); the Wasm image is shaped as the Wasm ecosystem ships them:
//! platform wasip1/wasm, the module at /app.wasm (hello) as Entrypoint, and
//! the other example modules beside it; the component image likewise, with
//! platform wasip2/wasm.

use std::path::Path;

use amphi_images::layer::LayerBuilder;
use amphi_images::{archive, pack, Store};
use anyhow::{Context, Result};
use serde_json::json;

use crate::{Kind, MESSAGE, NATIVE};

/// Writes an OCI image archive of the `kind` examples to `out`, named `name`
/// (e.g. `docker.io/library/amphi-wasm:latest`).
pub fn write_image(out: &Path, kind: Kind, name: &str) -> Result<()> {
    let mut layer = LayerBuilder::new();
    layer.file("etc/message", 0o644, MESSAGE.as_bytes())?;
    let (os, arch, entrypoint) = match kind {
        Kind::Native => {
            for (n, b) in NATIVE {
                layer.file(&format!("bin/{n}"), 0o755, b)?;
            }
            ("linux", "amd64", "")
        }
        Kind::Wasm | Kind::Component => {
            for (n, b) in kind.wasm() {
                layer.file(&format!("{n}.wasm"), 0o644, b)?;
            }
            let hello = kind.wasm().iter().find(|(n, _)| *n == "hello").unwrap().1;
            layer.file("app.wasm", 0o644, hello)?;
            let os = if kind == Kind::Wasm {
                "wasip1"
            } else {
                "wasip2"
            };
            (os, "wasm", "/app.wasm")
        }
    };
    let config = json!({
        "architecture": arch,
        "os": os,
        // Native: a Cmd that `amphi run IMAGE CMD...` replaces, as Docker
        // users expect; Wasm: the module as Entrypoint, as Wasm images ship.
        "config": if entrypoint.is_empty() {
            json!({"Cmd": ["/bin/hello"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]})
        } else {
            json!({"Entrypoint": [entrypoint], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]})
        },
        "history": [{"created_by": "amphi-examples"}],
    });
    write_archive(out, &[layer.build()?], config, name)
}

/// Writes an image archive (OCI layout + manifest.json, as `image save`
/// does) at `out`: the given layer tars, bottom first, under `config`,
/// tagged `name`.
pub fn write_archive(
    out: &Path,
    layers: &[Vec<u8>],
    config: serde_json::Value,
    name: &str,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path())?;
    let ids = pack::write_image(&store, layers, config, None)?;
    store.tag(name, &ids.manifest)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    archive::save(&store, &[name.to_string()], std::io::BufWriter::new(file))?;
    Ok(())
}

/// An image archive of busybox-static with its applets linked, /etc/passwd
/// and /etc/group (users `app` 1234:5678 and `nobody`), and the native
/// examples under /examples; Cmd `sh`, as the busybox image users know;
/// EXPOSE 80 for its httpd.
pub fn write_busybox_image(out: &Path, name: &str) -> Result<()> {
    let bin = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (busybox-static; scripts/install-deps installs it)")?;
    let mut layer = LayerBuilder::new();
    layer.file("bin/busybox", 0o755, &bin).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .context("running busybox --list-full")?;
    for path in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        if path != "bin/busybox" {
            layer.symlink(path, "/bin/busybox")?;
        }
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1234:5678::/tmp:/bin/sh\n",
        )
        ?
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\napp:x:5678:\n")
        ?
        .file("tmp/.keep", 0o644, b"")?;
    for (n, b) in NATIVE {
        layer.file(&format!("examples/{n}"), 0o755, b)?;
    }
    write_archive(
        out,
        &[layer.build()?],
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            // EXPOSE 80: its httpd's port, for `run -P`.
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "ExposedPorts": {"80/tcp": {}}},
        }),
        name,
    )
}
