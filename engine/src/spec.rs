//! The OCI spec of a container run from an image, built the way Docker
//! users expect: Entrypoint + Cmd (CMD on the command line replaces Cmd),
//! the image's Env, WorkingDir and User, a default PATH, and the
//! container's own /etc/hostname, /etc/hosts and /etc/resolv.conf
//! (their content, and the network namespace, are `create`'s).

use std::path::Path;

use crate::bail;
use crate::error::{Context, Result};
use serde_json::{json, Value};

use crate::security::DEFAULT_CAPS;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether the image is a Wasm image (DESIGN.md rule 3 and its platform).
pub fn is_wasm_image(config: &Value, manifest: &Value) -> bool {
    let os = config["os"].as_str().unwrap_or("");
    matches!(os, "wasi" | "wasip1" | "wasip2")
        || config["architecture"] == "wasm"
        || manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| amphi_images::media::is_wasm_layer(l["mediaType"].as_str().unwrap_or("")))
}

/// Resolves `user[:group]` (names looked up in the rootfs) to uid, gid.
pub fn user(spec: &str, rootfs: &Path) -> Result<(u32, u32)> {
    let (u, g) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
            ))
        })
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, lookup_uid_gid(rootfs, n).unwrap_or(0)),
        Err(_) => lookup("etc/passwd", u)
            .with_context(|| format!("user {u:?} is not in the image's /etc/passwd"))?,
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g)
                .map(|(gid, _)| gid)
                .with_context(|| format!("group {g:?} is not in the image's /etc/group"))?,
        };
    }
    Ok((uid, gid))
}

fn lookup_uid_gid(rootfs: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.get(2)?.parse::<u32>().ok()? != uid {
            return None;
        }
        f.get(3)?.parse().ok()
    })
}

/// Builds the spec for `config` (the image config) in bundle `dir`.
pub fn image_spec(
    config: &Value,
    manifest: &Value,
    cmd: &[String],
    hostname: &str,
    dir: &Path,
) -> Result<Value> {
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut args = strings(&c["Entrypoint"]);
    if cmd.is_empty() {
        args.extend(strings(&c["Cmd"]));
    } else {
        args.extend(cmd.iter().cloned());
    }
    if args.is_empty() {
        // A Wasm OCI artifact has no process config: its module is the
        // command (placed at load by `module_file_name`).
        if let Some(l) = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| amphi_images::media::is_wasm_layer(l["mediaType"].as_str().unwrap_or("")))
        {
            args.push(format!("/{}", amphi_images::media::module_file_name(l)));
        }
    }
    if args.is_empty() {
        bail!("no command: the image has no Entrypoint or Cmd and none was given");
    }
    let mut env = strings(&c["Env"]);
    // Docker's additions are for native processes; a Wasm guest sees
    // exactly the image's environment (and -e), as under `wasmtime run`.
    if !is_wasm_image(config, manifest) {
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        env.push(format!("HOSTNAME={hostname}"));
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push("HOME=/root".into());
        }
    }
    let cwd = c["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    let (uid, gid) = match c["User"].as_str().filter(|u| !u.is_empty()) {
        Some(u) => user(u, &dir.join("rootfs"))?,
        None => (0, 0),
    };
    let etc = |name: &str| json!({"destination": format!("/etc/{name}"), "type": "bind", "source": dir.join(name), "options": ["rbind", "rprivate"]});
    let mut annotations = json!({});
    if is_wasm_image(config, manifest) {
        annotations["run.oci.handler"] = json!("wasm");
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "annotations": annotations,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            etc("hostname"), etc("hosts"), etc("resolv.conf")
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}
