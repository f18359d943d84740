//! The runtime handler's `options` table, as containerd hands it to
//! Create, and where a container's cgroup goes.
//!
//! containerd's CRI plugin encodes a non-runc handler's `options` as
//! `runtimeoptions.v1.Options` (`TypeUrl`, `ConfigPath`, `ConfigBody`),
//! the way gVisor and Kata get theirs: amphi reads its settings from the
//! TOML named by `ConfigPath` or given in `ConfigBody`. A runc-style
//! `containerd.runc.v1.Options` (e.g. from `ctr run --runc-systemd-cgroup`)
//! is understood too. Unknown keys and types are noted in the log, never
//! an error: containerd configs are often copied from runc's.

use amphi_runtime::cgroup::systemd;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::CodedInputStream;
use serde::Deserialize;

/// Settings amphi takes from the handler's options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// `SystemdCgroup`: the spec's cgroupsPath is systemd's
    /// `slice:prefix:name`, placed as systemd places that scope.
    pub systemd_cgroup: bool,
}

/// The TOML keys of a `ConfigPath` / `ConfigBody` file.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(rename = "SystemdCgroup")]
    systemd_cgroup: Option<bool>,
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// containerd's `pkg/runtimeoptions/v1`: registered as
/// `runtimeoptions.v1.Options` by containerd 1.x, as its proto package
/// `cri.runtimeoptions.v1.Options` by 2.x.
const RUNTIME_OPTIONS: [&str; 2] = ["runtimeoptions.v1.Options", "cri.runtimeoptions.v1.Options"];

/// Reads Create's `options`; an unreadable one is an error naming it.
pub fn parse(any: Option<&Any>) -> Result<RuntimeOptions, String> {
    let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
        return Ok(RuntimeOptions::default());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        RUNC_OPTIONS => {
            // runc's Options: field 9 is systemd_cgroup; the rest are runc's own.
            let fields = proto_fields(&any.value).map_err(|e| format!("{name}: {e}"))?;
            let systemd = fields
                .iter()
                .any(|f| matches!(f, (9, Field::Varint(v)) if *v != 0));
            let ignored: Vec<u32> = fields.iter().map(|f| f.0).filter(|n| *n != 9).collect();
            if !ignored.is_empty() {
                log::info!(
                    "runtime options: runc fields {ignored:?} do not apply to amphi, ignored"
                );
            }
            Ok(RuntimeOptions {
                systemd_cgroup: systemd,
            })
        }
        n if RUNTIME_OPTIONS.contains(&n) => {
            let fields = proto_fields(&any.value).map_err(|e| format!("{name}: {e}"))?;
            let text = |n: u32| {
                fields.iter().find_map(|f| match f {
                    (k, Field::Bytes(b)) if *k == n => {
                        Some(String::from_utf8_lossy(b).into_owned())
                    }
                    _ => None,
                })
            };
            let body = match (
                text(3).filter(|b| !b.is_empty()),
                text(2).filter(|p| !p.is_empty()),
            ) {
                (Some(body), _) => body,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("runtime options ConfigPath {path}: {e}"))?,
                (None, None) => return Ok(RuntimeOptions::default()),
            };
            from_toml(&body)
        }
        other => {
            log::info!("runtime options of type {other:?} mean nothing to amphi, ignored");
            Ok(RuntimeOptions::default())
        }
    }
}

fn from_toml(body: &str) -> Result<RuntimeOptions, String> {
    let file: ConfigFile =
        toml::from_str(body).map_err(|e| format!("runtime options config: {}", e.message()))?;
    if !file.unknown.is_empty() {
        let keys: Vec<&str> = file.unknown.keys().map(String::as_str).collect();
        log::info!("runtime options: {keys:?} mean nothing to amphi, ignored");
    }
    Ok(RuntimeOptions {
        systemd_cgroup: file.systemd_cgroup.unwrap_or(false),
    })
}

enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

/// The top-level fields of a protobuf message we have no generated type
/// for: varints and length-delimited values by number; others skipped.
fn proto_fields(bytes: &[u8]) -> Result<Vec<(u32, Field)>, String> {
    let mut is = CodedInputStream::from_bytes(bytes);
    let mut out = Vec::new();
    while let Some(tag) = is.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
        let (number, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((
                number,
                Field::Varint(is.read_uint64().map_err(|e| e.to_string())?),
            )),
            2 => out.push((
                number,
                Field::Bytes(is.read_bytes().map_err(|e| e.to_string())?),
            )),
            _ => containerd_shim::protos::protobuf::rt::skip_field_for_tag(tag, &mut is)
                .map_err(|e| e.to_string())?,
        }
    }
    Ok(out)
}

/// The cgroup of a container whose spec says `cgroups_path`.
///
/// systemd's `slice:prefix:name` (what containerd writes with the systemd
/// driver, e.g. `kubepods-burstable-pod1.slice:cri-containerd:abc`) goes to
/// the runtime as it is: systemd makes the scope (the runtime's systemd
/// driver). With `SystemdCgroup` set, any other path is an error, as runc
/// has it; without it, cgroupfs paths pass through.
pub fn cgroup_path(
    cgroups_path: Option<&str>,
    opts: &RuntimeOptions,
) -> Result<Option<String>, String> {
    let Some(p) = cgroups_path.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if systemd::is_systemd_path(p) {
        systemd::Scope::parse(p).map_err(|e| e.to_string())?;
        return Ok(Some(p.to_string()));
    }
    if opts.systemd_cgroup {
        return Err(format!(
            "SystemdCgroup is set but cgroupsPath {p:?} is not of the form slice:prefix:name"
        ));
    }
    Ok(Some(p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn any(type_url: &str, write: impl FnOnce(&mut CodedOutputStream)) -> Any {
        let mut value = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut value);
            write(&mut os);
            os.flush().unwrap();
        }
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = value;
        a
    }

    #[test]
    fn runc_options_systemd_cgroup() {
        let a = any("containerd.runc.v1.Options", |os| {
            os.write_string(6, "runc").unwrap();
            os.write_bool(9, true).unwrap();
        });
        assert!(parse(Some(&a)).unwrap().systemd_cgroup);
        let a = any("containerd.runc.v1.Options", |os| {
            os.write_string(6, "runc").unwrap()
        });
        assert!(!parse(Some(&a)).unwrap().systemd_cgroup);
    }

    #[test]
    fn runtime_options_config_body_and_path() {
        let a = any("cri.runtimeoptions.v1.Options", |os| {
            os.write_string(3, "SystemdCgroup = true\nBinaryName = \"x\"\n")
                .unwrap();
        });
        assert!(parse(Some(&a)).unwrap().systemd_cgroup);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("amphi.toml");
        std::fs::write(&file, "SystemdCgroup = false\n").unwrap();
        let a = any("cri.runtimeoptions.v1.Options", |os| {
            os.write_string(2, file.to_str().unwrap()).unwrap();
        });
        assert!(!parse(Some(&a)).unwrap().systemd_cgroup);
        let a = any("cri.runtimeoptions.v1.Options", |os| {
            os.write_string(2, "/nonexistent/amphi.toml").unwrap();
        });
        assert!(parse(Some(&a))
            .unwrap_err()
            .contains("/nonexistent/amphi.toml"));
        let a = any("cri.runtimeoptions.v1.Options", |os| {
            os.write_string(3, "SystemdCgroup = ").unwrap()
        });
        assert!(parse(Some(&a)).is_err());
        let a = any("example.com/other.Options", |os| {
            os.write_bool(1, true).unwrap()
        });
        assert_eq!(parse(Some(&a)).unwrap(), RuntimeOptions::default());
    }

    #[test]
    fn systemd_paths_go_to_the_systemd_driver() {
        let o = RuntimeOptions::default();
        let sd_path = "kubepods-burstable-pod12.slice:cri-containerd:abc";
        assert_eq!(
            cgroup_path(Some(sd_path), &o).unwrap(),
            Some(sd_path.into())
        );
        assert_eq!(
            cgroup_path(Some("/kubepods/burstable/pod12/abc"), &o).unwrap(),
            Some("/kubepods/burstable/pod12/abc".into())
        );
        assert!(cgroup_path(Some("bad--x.slice:p:n"), &o).is_err());
        let sd = RuntimeOptions {
            systemd_cgroup: true,
        };
        assert!(cgroup_path(Some("/kubepods/abc"), &sd).is_err());
        assert_eq!(cgroup_path(None, &sd).unwrap(), None);
    }
}
