//! What a container shares with, or asks of, the host's kernel, as
//! Docker's flags say it: `--pid`/`--ipc`/`--uts host` (the host's
//! namespace instead of one of its own; another container's is
//! `shared_ns`'s), namespaced `--sysctl`s, the size of /dev/shm and the
//! OOM score.

use serde_json::{json, Value};

use crate::bail;
use crate::error::Result;
use crate::options::RunOptions;
use crate::units;

/// Applies the options to the spec `v`.
pub(crate) fn apply(v: &mut Value, a: &RunOptions) -> Result<()> {
    for (flag, value, ns) in [
        ("--pid", &a.pid, "pid"),
        ("--ipc", &a.ipc, "ipc"),
        ("--uts", &a.uts, "uts"),
    ] {
        match value.as_deref() {
            None | Some("") => {}
            Some("host") => {
                if let Some(list) = v["linux"]["namespaces"].as_array_mut() {
                    list.retain(|n| n["type"] != ns);
                }
                if ns == "ipc" {
                    if a.shm_size.is_some() {
                        bail!("conflicting options: --shm-size and --ipc host");
                    }
                    // POSIX shared memory is the host's too, as Docker's.
                    if let Some(shm) = v["mounts"]
                        .as_array_mut()
                        .and_then(|m| m.iter_mut().find(|m| m["destination"] == "/dev/shm"))
                    {
                        *shm = json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                                      "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]});
                    }
                }
                if ns == "uts" {
                    if a.hostname.is_some() {
                        bail!("conflicting options: --hostname and --uts host");
                    }
                    // The host's name is the host's: nothing to set.
                    if let Some(o) = v.as_object_mut() {
                        o.remove("hostname");
                    }
                }
            }
            // Settled by `shared_ns`: the pin and, for IPC, /dev/shm.
            Some(m) if m.starts_with(crate::network::CONTAINER_MODE) && ns != "uts" => {
                if ns == "ipc" && a.shm_size.is_some() {
                    bail!("conflicting options: --shm-size and --ipc {m}");
                }
            }
            Some("private" | "shareable") if ns == "ipc" => {}
            // Its own IPC namespace, and no /dev/shm at all.
            Some("none") if ns == "ipc" => {
                if let Some(list) = v["mounts"].as_array_mut() {
                    list.retain(|m| m["destination"] != "/dev/shm");
                }
            }
            Some(other) if ns == "ipc" => {
                bail!("bad --ipc {other:?}: use private, shareable, none, host or container:NAME")
            }
            Some(other) if ns == "pid" => {
                bail!(
                    "bad --pid {other:?}: use host or container:NAME (or leave it out for its own)"
                )
            }
            Some(other) => bail!("bad {flag} {other:?}: use host (or leave it out for its own)"),
        }
    }
    let network = a.network.as_deref().unwrap_or("");
    if !a.sysctls.is_empty() {
        if !v["linux"]["sysctl"].is_object() {
            v["linux"]["sysctl"] = json!({});
        }
        for kv in &a.sysctls {
            let Some((k, val)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                bail!("bad --sysctl {kv:?}: use KEY=VALUE")
            };
            check_sysctl(k, network, a.ipc.as_deref() == Some("host"))?;
            v["linux"]["sysctl"][k] = json!(val);
        }
    }
    if let Some(s) = &a.shm_size {
        let bytes = units::parse_bytes(s)
            .map_err(|e| crate::Error::Invalid(format!("bad --shm-size: {e}")))?;
        let shm = v["mounts"]
            .as_array_mut()
            .and_then(|m| m.iter_mut().find(|m| m["destination"] == "/dev/shm"));
        let Some(shm) = shm else {
            bail!("--shm-size: the spec mounts no /dev/shm");
        };
        let mut opts: Vec<String> =
            serde_json::from_value(shm["options"].take()).unwrap_or_default();
        opts.retain(|o| !o.starts_with("size="));
        opts.push(format!("size={bytes}"));
        shm["options"] = json!(opts);
    }
    if let Some(adj) = a.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            bail!("bad --oom-score-adj {adj}: must be between -1000 and 1000");
        }
        v["process"]["oomScoreAdj"] = json!(adj);
    }
    Ok(())
}

/// Only sysctls the container's own namespaces scope may be set, as
/// Docker allows: the IPC ones (unless the IPC namespace is the host's)
/// and `net.*` (unless the network namespace is the host's, or another
/// container's: `--network container:NAME`, which Docker refuses too).
fn check_sysctl(key: &str, network: &str, host_ipc: bool) -> Result<()> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        if host_ipc {
            bail!("--sysctl {key}: not allowed with --ipc host (it would change the host's)");
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if network == "host" || network.starts_with(crate::network::CONTAINER_MODE) {
            bail!("--sysctl {key}: not allowed with --network {network} (the network namespace is not the container's own)");
        }
        return Ok(());
    }
    bail!("--sysctl {key}: not a namespaced kernel parameter (use net.*, kernel.shm*, kernel.msg*, kernel.sem or fs.mqueue.*)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({
            "hostname": "c1",
            "process": {},
            "mounts": [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "size=65536k"]}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}
        })
    }

    #[test]
    fn host_namespaces_shm_sysctls_and_oom_score() {
        let mut v = spec();
        let a = RunOptions {
            pid: Some("host".into()),
            uts: Some("host".into()),
            shm_size: Some("256m".into()),
            sysctls: vec!["net.ipv4.ip_forward=1".into(), "kernel.shmmax=1000".into()],
            oom_score_adj: Some(-500),
            ..Default::default()
        };
        apply(&mut v, &a).unwrap();
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{"type": "ipc"}, {"type": "mount"}])
        );
        assert!(v.get("hostname").is_none());
        assert_eq!(
            v["mounts"][0]["options"],
            json!(["nosuid", "size=268435456"])
        );
        assert_eq!(v["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        assert_eq!(v["process"]["oomScoreAdj"], -500);
    }

    #[test]
    fn what_would_reach_the_host_is_refused() {
        let bad = |a: RunOptions| apply(&mut spec(), &a).unwrap_err().to_string();
        let e = bad(RunOptions {
            sysctls: vec!["kernel.hostname=x".into()],
            ..Default::default()
        });
        assert!(e.contains("not a namespaced"), "{e}");
        let e = bad(RunOptions {
            sysctls: vec!["net.ipv4.ip_forward=1".into()],
            network: Some("host".into()),
            ..Default::default()
        });
        assert!(e.contains("--network host"), "{e}");
        let e = bad(RunOptions {
            uts: Some("host".into()),
            hostname: Some("x".into()),
            ..Default::default()
        });
        assert!(e.contains("conflicting"), "{e}");
        let e = bad(RunOptions {
            pid: Some("sibling:x".into()),
            ..Default::default()
        });
        assert!(e.contains("bad --pid"), "{e}");
        let e = bad(RunOptions {
            ipc: Some("container:x".into()),
            shm_size: Some("1m".into()),
            ..Default::default()
        });
        assert!(e.contains("conflicting"), "{e}");
        let e = bad(RunOptions {
            sysctls: vec!["net.ipv4.ip_forward=1".into()],
            network: Some("container:abc".into()),
            ..Default::default()
        });
        assert!(e.contains("--network container:abc"), "{e}");
        let e = bad(RunOptions {
            oom_score_adj: Some(1001),
            ..Default::default()
        });
        assert!(e.contains("-1000 and 1000"), "{e}");
        let e = bad(RunOptions {
            shm_size: Some("0".into()),
            ..Default::default()
        });
        assert!(e.contains("--shm-size"), "{e}");
    }
}
