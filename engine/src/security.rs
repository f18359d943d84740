//! Docker's security defaults for `amphi run`: its default capability set
//! edited by `--cap-add`/`--cap-drop`, its default seccomp profile
//! (`--security-opt seccomp=unconfined|PROFILE.json`) and
//! `--security-opt no-new-privileges`, `--privileged` and `--device`.
//! The seccomp profile itself is `seccomp_profile.rs`.

use std::path::{Path, PathBuf};

use crate::bail;
use crate::error::{Context, Result};
use serde_json::{json, Value};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Which seccomp profile a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default (image runs) or the bundle's own (`--bundle`).
    Default,
    /// No filter.
    Unconfined,
    /// A profile file, Docker's format or the OCI spec's.
    File(PathBuf),
}

/// What `--security-opt` said.
#[derive(Debug, Clone)]
pub struct SecurityOpts {
    /// The seccomp choice.
    pub seccomp: Seccomp,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
}

/// Parses `--security-opt` values (`seccomp=...`, `no-new-privileges`).
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut s = SecurityOpts {
        seccomp: Seccomp::Default,
        no_new_privileges: false,
    };
    for o in opts {
        match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => s.seccomp = Seccomp::Unconfined,
            Some(("seccomp", file)) if !file.is_empty() => s.seccomp = Seccomp::File(file.into()),
            Some(("no-new-privileges", v)) => {
                s.no_new_privileges = match v {
                    "true" => true,
                    "false" => false,
                    _ => bail!("bad --security-opt {o:?}: no-new-privileges takes true or false"),
                }
            }
            None if o == "no-new-privileges" => s.no_new_privileges = true,
            _ => bail!("unknown --security-opt {o:?} (seccomp=unconfined|FILE, no-new-privileges)"),
        }
    }
    Ok(s)
}

/// A capability name as the spec writes it (`net_admin` -> `CAP_NET_ADMIN`).
pub(crate) fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after Docker's rules: drops first (`ALL` empties
/// it), then adds (`ALL` gives every capability).
pub fn capabilities(base: &[String], add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    let check = |c: &str| -> Result<String> {
        let n = cap_name(c);
        if n == "CAP_ALL" || known.contains(&n) {
            Ok(n)
        } else {
            bail!("unknown capability {c:?}")
        }
    };
    let mut set: Vec<String> = base.to_vec();
    for d in drop {
        match check(d)?.as_str() {
            "CAP_ALL" => set.clear(),
            n => set.retain(|c| c != n),
        }
    }
    for a in add {
        match check(a)?.as_str() {
            "CAP_ALL" => set = held_capabilities()?,
            n if !set.iter().any(|c| c == n) => set.push(n.to_string()),
            _ => {}
        }
    }
    set.sort();
    Ok(set)
}

/// "Every capability", as we can grant it: our bounding set (a host's
/// root may lack some the kernel knows, and capset would refuse them).
fn held_capabilities() -> Result<Vec<String>> {
    let mut all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .context("reading our capability bounding set")?
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    all.sort();
    Ok(all)
}

/// A host device as `linux.devices` and `linux.resources.devices` want it.
fn device_entry(host: &Path, inside: &str, access: &str) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(host).with_context(|| format!("device {}", host.display()))?;
    let typ = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        bail!("{} is not a device", host.display());
    };
    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
    let node = json!({
        "path": inside, "type": typ, "major": major, "minor": minor,
        "fileMode": m.mode() & 0o777, "uid": m.uid(), "gid": m.gid(),
    });
    let rule =
        json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
    Ok((node, rule))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (permissions of `rwm`).
pub fn add_device(v: &mut Value, spec: &str) -> Result<()> {
    let parts: Vec<&str> = spec.split(':').collect();
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, inside, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if perms(p) => (*h, *c, *p),
        _ => bail!("bad --device {spec:?}: use HOST[:CONTAINER][:rwm]"),
    };
    if !inside.starts_with("/dev/") {
        bail!("bad --device {spec:?}: {inside} is not under /dev");
    }
    let (node, rule) = device_entry(Path::new(host), inside, access)?;
    push(&mut v["linux"]["devices"], node);
    push(&mut v["linux"]["resources"]["devices"], rule);
    Ok(())
}

fn push(list: &mut Value, item: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().unwrap().push(item);
}

/// `--privileged`, as Docker: every capability (of ours), no seccomp filter, no
/// masked or read-only paths, /sys writable, every device allowed and
/// the host's device nodes in the container's /dev.
pub fn make_privileged(v: &mut Value) -> Result<()> {
    let all = held_capabilities()?;
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set] = json!(all);
    }
    v["linux"]["maskedPaths"] = json!([]);
    v["linux"]["readonlyPaths"] = json!([]);
    for m in v["mounts"].as_array_mut().into_iter().flatten() {
        if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "ro");
            }
        }
    }
    v["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let mut nodes = Vec::new();
    host_devices(Path::new("/dev"), &mut nodes);
    v["linux"]["devices"] = json!(nodes);
    Ok(())
}

/// The character and block devices under `dir` (not the per-container
/// pts, shm and mqueue mounts, nor /dev/ptmx: the container has its own).
fn host_devices(dir: &Path, out: &mut Vec<Value>) {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !["pts", "shm", "mqueue", "fd"].contains(&e.file_name().to_str().unwrap_or("")) {
                host_devices(&path, out);
            }
        } else if (ft.is_char_device() || ft.is_block_device()) && path != Path::new("/dev/ptmx") {
            if let Ok((node, _)) = device_entry(&path, &path.to_string_lossy(), "rwm") {
                out.push(node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_edits_follow_docker() {
        let base = strings(&DEFAULT_CAPS);
        let c = capabilities(&base, &strings(&["net_admin"]), &strings(&["CHOWN"])).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && !c.contains(&"CAP_CHOWN".into()));
        assert!(capabilities(&base, &[], &strings(&["ALL"]))
            .unwrap()
            .is_empty());
        let c = capabilities(&base, &strings(&["SYS_ADMIN"]), &strings(&["ALL"])).unwrap();
        assert_eq!(c, ["CAP_SYS_ADMIN"]);
        assert!(capabilities(&base, &strings(&["BOGUS"]), &[])
            .unwrap_err()
            .to_string()
            .contains("BOGUS"));
    }

    #[test]
    fn security_opts() {
        let s =
            parse_security_opts(&strings(&["seccomp=unconfined", "no-new-privileges"])).unwrap();
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        assert!(s.no_new_privileges);
        let s = parse_security_opts(&strings(&["seccomp=/p.json"])).unwrap();
        assert_eq!(s.seccomp, Seccomp::File("/p.json".into()));
        assert!(parse_security_opts(&strings(&["apparmor=x"])).is_err());
    }
}
