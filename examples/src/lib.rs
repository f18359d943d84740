//! amphi's example workloads and the OCI bundles made of them.
//!
//! Wasm examples are WASI preview 1 modules written in WAT; the command
//! modules are also WASI 0.2 components (`component/NAME`), and
//! `component/http-hello` is a `wasi:http/proxy` handler; native examples
//! are small static C programs. All are built by this crate's build
//! script, so a fresh machine needs only the Rust toolchain (and its C
//! compiler).
//!
//! A bundle's rootfs holds every example of its kind (`/bin/NAME` for
//! native, `/NAME.wasm` for Wasm modules and components) plus
//! `/etc/message`, so one bundle can run any of them by its args.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

mod image;
pub use image::{write_archive, write_busybox_image, write_image};

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The text of `/etc/message` in every example rootfs.
pub const MESSAGE: &str = "a file from the container rootfs\n";

/// Which payload a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Static native programs in /bin.
    Native,
    /// WASI modules at /NAME.wasm.
    Wasm,
    /// WASI 0.2 components at /NAME.wasm.
    Component,
}

impl Kind {
    /// The Wasm binaries of this kind (none for native).
    fn wasm(self) -> &'static [(&'static str, &'static [u8])] {
        match self {
            Kind::Native => &[],
            Kind::Wasm => WASM,
            Kind::Component => COMPONENT,
        }
    }
}

/// Looks up an example by `kind/name` (e.g. `wasm/hello`, `native/exit42`)
/// and returns its kind and default args.
pub fn example(spec: &str) -> Result<(Kind, Vec<String>)> {
    let (kind, name) = spec
        .split_once('/')
        .with_context(|| format!("example {spec:?}: use KIND/NAME"))?;
    let (kind, table, path) = match kind {
        "wasm" => (Kind::Wasm, WASM, format!("/{name}.wasm")),
        "component" => (Kind::Component, COMPONENT, format!("/{name}.wasm")),
        "native" => (Kind::Native, NATIVE, format!("/bin/{name}")),
        _ => bail!("example {spec:?}: kind must be wasm, component or native"),
    };
    if !table.iter().any(|(n, _)| *n == name) {
        bail!("no example {spec:?}; try: {}", names().join(", "));
    }
    let mut args = vec![path];
    if name == "cat" {
        args.push("/etc/message".into());
    }
    Ok((kind, args))
}

/// Every example, as `kind/name`.
pub fn names() -> Vec<String> {
    WASM.iter()
        .map(|(n, _)| format!("wasm/{n}"))
        .chain(COMPONENT.iter().map(|(n, _)| format!("component/{n}")))
        .chain(NATIVE.iter().map(|(n, _)| format!("native/{n}")))
        .collect()
}

/// Writes an OCI bundle at `dir` (config.json + rootfs) for `kind` running
/// `args`. The config is the one `runc spec` writes, minus the terminal.
pub fn write_bundle(dir: &Path, kind: Kind, args: &[String]) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for sub in ["proc", "sys", "dev", "tmp", "etc", "bin"] {
        std::fs::create_dir_all(rootfs.join(sub))
            .with_context(|| format!("creating {}", rootfs.join(sub).display()))?;
    }
    std::fs::write(rootfs.join("etc/message"), MESSAGE)?;
    match kind {
        Kind::Native => {
            for (name, bytes) in NATIVE {
                write_exe(&rootfs.join("bin").join(name), bytes)?;
            }
        }
        Kind::Wasm | Kind::Component => {
            for (name, bytes) in kind.wasm() {
                std::fs::write(rootfs.join(format!("{name}.wasm")), bytes)?;
            }
        }
    }
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&default_spec(args))?)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(config)
}

fn write_exe(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Edits a bundle's config.json in place.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) -> Result<()> {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

/// The spec `runc spec` generates (without a terminal) for `args`.
pub fn default_spec(args: &[String]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "amphi",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}
