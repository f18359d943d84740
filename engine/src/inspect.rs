//! `inspect`: containers and images as Docker's API shows them (the
//! fields that apply; amphi's own additions are not invented).

use std::path::Path;
use std::time::SystemTime;

use amphi_images::snapshot::Snapshots;
use amphi_images::store::familiar;
use amphi_images::Store;
use serde_json::{json, Value};

use crate::bail;
use crate::error::Result;
use crate::record::{self, Record, Status};
use crate::restart::Policy;
use crate::{bundle, Engine};

/// The config's `history`, with an empty entry in front for each of its
/// `layers` that no non-empty entry accounts for (a config without
/// history, or one that a tool wrote short), so that the n-th non-empty
/// entry is the n-th layer's.
pub(crate) fn padded_history(config: &Value, layers: usize) -> Vec<Value> {
    let given = config["history"].as_array().cloned().unwrap_or_default();
    let made = given
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    let mut out = vec![json!({}); layers.saturating_sub(made)];
    out.extend(given);
    out
}

/// RFC 3339 with nanoseconds, in UTC, as Docker writes times; Go's zero
/// time for none.
pub fn rfc3339(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".into();
    };
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count
/// since 1970-01-01.
/// Parses an RFC 3339 time as image configs carry it
/// (`2024-05-01T12:00:00.123Z`, or with a `+HH:MM` offset).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    // The offset: Z, or +HH:MM / -HH:MM after the seconds.
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, o) = time.split_at(at);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    let secs = days_from_civil(y, m as u32, day as u32) * 86400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Engine {
    /// `inspect` of a container: Docker's shape.
    pub fn inspect(&self, query: &str) -> Result<Value> {
        let rec = self.container(query)?;
        let dir = record::dir(self.root(), &rec.id);
        let spec: Value = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let image_config = self.image_config(&rec);
        let paused = rec.state.status == Status::Running && self.is_paused(&rec.id);
        Ok(container_json(
            self.root(),
            &rec,
            &dir,
            &spec,
            &image_config,
            paused,
        ))
    }

    fn image_config(&self, rec: &Record) -> Value {
        let (Some(digest), Ok(store)) = (
            rec.image_id.as_deref(),
            Store::open(self.root().join("images")),
        ) else {
            return Value::Null;
        };
        store
            .read_blob(digest)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// `inspect` of an image: Docker's shape.
    pub fn inspect_image(&self, reference: &str) -> Result<Value> {
        let store = Store::open(self.root().join("images"))?;
        let digest = store.resolve(reference)?;
        let (manifest, config_digest, config, _) = bundle::image_layers(&store, &digest)?;
        let tags: Vec<String> = store
            .refs()?
            .into_iter()
            .filter(|(_, d)| *d == digest)
            .map(|(n, _)| familiar(&n))
            .collect();
        let size = amphi_images::media::layers_size(&manifest);
        let c = &config["config"];
        Ok(json!({
            "Id": config_digest,
            "RepoTags": tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": config["comment"].as_str().unwrap_or(""),
            "Created": config["created"].as_str().unwrap_or(""),
            "Author": config["author"].as_str().unwrap_or(""),
            "Config": {
                "User": c["User"].as_str().unwrap_or(""),
                "Env": c["Env"],
                "Cmd": c["Cmd"],
                "Entrypoint": c["Entrypoint"],
                "WorkingDir": c["WorkingDir"].as_str().unwrap_or(""),
                "Labels": c["Labels"],
                "StopSignal": c["StopSignal"],
                "ExposedPorts": c["ExposedPorts"],
                "Volumes": c["Volumes"],
            },
            "Architecture": config["architecture"],
            "Os": config["os"],
            "Size": size,
            "RootFS": {"Type": "layers", "Layers": config["rootfs"]["diff_ids"]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
            "Descriptor": {
                "mediaType": manifest["mediaType"],
                "digest": digest,
            },
        }))
    }

    /// An image's history, newest first, as Docker's image history API
    /// gives it: each entry of the config's `history` with the size of the
    /// layer it made (its blob's; 0 for an `empty_layer`), the newest
    /// named by the image's id and tags, the rest `<missing>` (a pulled
    /// image has no parent images). Layers the history does not mention
    /// get empty entries first ([`padded_history`]); more non-empty
    /// entries than layers is refused.
    pub fn image_history(&self, reference: &str) -> Result<Vec<Value>> {
        let store = Store::open(self.root().join("images"))?;
        let digest = store.resolve(reference)?;
        let (manifest, config_digest, config, _) = bundle::image_layers(&store, &digest)?;
        let layers = manifest["layers"].as_array().map_or(&[][..], Vec::as_slice);
        let entries = padded_history(&config, layers.len());
        let mut next_layer = 0;
        let mut out = Vec::new();
        for h in &entries {
            let size = if h["empty_layer"].as_bool().unwrap_or(false) {
                0
            } else {
                let Some(l) = layers.get(next_layer) else {
                    bail!("image {reference}: its history has more non-empty entries than its {} layers", layers.len());
                };
                next_layer += 1;
                l["size"].as_u64().unwrap_or(0)
            };
            let created = h["created"]
                .as_str()
                .and_then(parse_rfc3339)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            out.push(json!({
                "Id": "<missing>",
                "Created": created,
                "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                "Tags": null,
                "Size": size,
                "Comment": h["comment"].as_str().unwrap_or(""),
            }));
        }
        out.reverse();
        if let Some(newest) = out.first_mut() {
            let tags: Vec<String> = store
                .refs()?
                .into_iter()
                .filter(|(_, d)| *d == digest)
                .map(|(n, _)| familiar(&n))
                .collect();
            newest["Id"] = json!(config_digest);
            newest["Tags"] = json!(tags);
        }
        Ok(out)
    }

    /// The overlay's directories, as Docker's GraphDriver.Data shows them.
    pub fn graph_driver(&self, rec: &Record) -> Value {
        graph_driver(self.root(), rec)
    }
}

fn graph_driver(root: &Path, rec: &Record) -> Value {
    let dir = record::dir(root, &rec.id);
    let lower = rec.image_digest.as_deref().and_then(|d| {
        let store = Store::open(root.join("images")).ok()?;
        let (_, _, _, chains) = bundle::image_layers(&store, d).ok()?;
        let snaps = Snapshots::open(store.root()).ok()?;
        let dirs: Vec<String> = chains
            .iter()
            .rev()
            .filter_map(|c| snaps.fs_path(c).ok())
            .map(|p| p.display().to_string())
            .collect();
        Some(dirs.join(":"))
    });
    match lower {
        Some(lower) => json!({
            "Name": "overlay2",
            "Data": {
                "LowerDir": lower,
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": dir.join("rootfs"),
            }
        }),
        None => json!({"Name": "bind", "Data": {"MergedDir": bundle::rootfs_path(
            root,
            &rec.id,
            None,
            &rec.image,
        )}}),
    }
}

fn container_json(
    root: &Path,
    rec: &Record,
    dir: &Path,
    spec: &Value,
    image: &Value,
    paused: bool,
) -> Value {
    let o = &rec.options;
    let st = &rec.state;
    let ic = &image["config"];
    let policy = rec.policy();
    let (policy_name, max) = match policy {
        Policy::No => ("no", 0),
        Policy::OnFailure { max } => ("on-failure", max),
        Policy::Always => ("always", 0),
        Policy::UnlessStopped => ("unless-stopped", 0),
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    // Entrypoint and Cmd as Docker splits them: the image's (or
    // --entrypoint's) entrypoint, and the rest of the process's args.
    let entrypoint: Vec<String> = match &o.entrypoint {
        Some(e) => vec![e.clone()],
        None if o.bundle.is_some() => vec![],
        None => strings(&ic["Entrypoint"]),
    };
    let cmd: Vec<String> = rec.args.iter().skip(entrypoint.len()).cloned().collect();
    let labels: serde_json::Map<String, Value> = ic["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(rec.labels().into_iter().map(|(k, v)| (k, json!(v))))
        .collect();
    let mounts: Vec<Value> = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["type"] == "bind"
                && !m["source"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&*dir.to_string_lossy())
                && !rec
                    .mounts
                    .iter()
                    .any(|r| m["destination"] == r.destination.as_str())
        })
        .map(|m| {
            let opts = strings(&m["options"]);
            let ro = opts.iter().any(|x| x == "ro");
            json!({
                "Type": "bind",
                "Source": m["source"],
                "Destination": m["destination"],
                "Mode": if ro { "ro" } else { "" },
                "RW": !ro,
                "Propagation": "rprivate",
            })
        })
        .collect();
    let mounts: Vec<Value> = rec
        .mounts
        .iter()
        .map(|m| crate::mounts::inspect(root, m))
        .chain(mounts)
        .collect();
    let binds: Vec<String> = o.volumes.clone();
    let bytes = |v: &Option<String>| -> i64 {
        match v.as_deref() {
            Some("-1") => -1,
            v => v
                .and_then(|m| crate::units::parse_bytes(m).ok())
                .unwrap_or(0),
        }
    };
    let memory = bytes(&o.resources.memory);
    let sysctls: serde_json::Map<String, Value> = o
        .sysctls
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let nano_cpus = o
        .resources
        .cpus
        .as_deref()
        .and_then(|c| c.parse::<f64>().ok())
        .map_or(0, |c| (c * 1e9) as i64);
    let network = match rec.network_mode() {
        "" => "default".to_string(),
        m => m.to_string(),
    };
    let user = spec["process"]["user"].clone();
    let mut ports = ic["ExposedPorts"].as_object().cloned().unwrap_or_default();
    for k in crate::create::exposed_ports(&o.expose).unwrap_or_default() {
        ports.insert(k, json!({}));
    }
    let exposed = if ports.is_empty() {
        Value::Null
    } else {
        Value::Object(ports)
    };
    json!({
        "Id": rec.id,
        "Created": rfc3339(Some(rec.created)),
        "Path": rec.args.first().cloned().unwrap_or_default(),
        "Args": rec.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if paused { "paused".to_string() } else { st.status.to_string() },
            "Running": st.status == Status::Running,
            "Paused": paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": rfc3339(st.started_at),
            "FinishedAt": rfc3339(st.finished_at),
            "Health": rec.health.as_ref().map(|_| {
                let h = crate::health::load(root, &rec.id).unwrap_or_else(|| crate::health::Health {
                    status: "starting".into(),
                    ..Default::default()
                });
                serde_json::to_value(h).expect("json")
            }),
        },
        "Image": rec.image_id.clone().unwrap_or_default(),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("log"),
        "Name": format!("/{}", rec.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": network,
            "PortBindings": crate::network::port_bindings(&o.publish),
            "PublishAllPorts": o.publish_all,
            "Dns": o.dns,
            "DnsSearch": o.dns_search,
            "DnsOptions": o.dns_options,
            "ExtraHosts": o.add_hosts,
            "Tmpfs": o.tmpfs,
            "RestartPolicy": {"Name": policy_name, "MaximumRetryCount": max},
            "AutoRemove": o.rm,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "GroupAdd": o.group_add,
            "Privileged": o.privileged,
            "ReadonlyRootfs": o.read_only,
            "SecurityOpt": o.security_opt,
            "Memory": memory,
            // Without --memory-swap a limit allows no swap on top.
            "MemorySwap": if o.resources.memory_swap.is_some() { bytes(&o.resources.memory_swap) } else { memory },
            "MemoryReservation": bytes(&o.resources.memory_reservation),
            "NanoCpus": nano_cpus,
            "CpuShares": o.resources.cpu_shares.unwrap_or(0),
            "CpusetCpus": o.resources.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": o.resources.cpuset_mems.clone().unwrap_or_default(),
            "ShmSize": o.shm_size.as_ref().map_or(64 << 20, |s| bytes(&Some(s.clone()))),
            "Sysctls": sysctls,
            "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
            "PidMode": o.pid.clone().unwrap_or_default(),
            "IpcMode": o.ipc.clone().unwrap_or_else(|| "private".into()),
            "UTSMode": o.uts.clone().unwrap_or_default(),
            "PidsLimit": o.resources.pids_limit,
            "Devices": o.devices.iter().map(|d| {
                let mut p = d.splitn(3, ':');
                let host = p.next().unwrap_or("");
                let ctr = p.next().unwrap_or(host);
                json!({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": p.next().unwrap_or("rwm")})
            }).collect::<Vec<_>>(),
            "Ulimits": o.ulimits,
            "Init": o.init,
            "Runtime": "amphi",
        },
        "GraphDriver": graph_driver(root, rec),
        "Mounts": mounts,
        "Config": {
            "Hostname": spec["hostname"].as_str().unwrap_or(""),
            "Domainname": "",
            "User": o.user.clone().or_else(|| ic["User"].as_str().map(String::from)).unwrap_or_default(),
            "AttachStdin": o.interactive && !o.detach,
            "AttachStdout": !o.detach,
            "AttachStderr": !o.detach,
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "StdinOnce": o.interactive && !o.detach,
            "Env": spec["process"]["env"],
            "Cmd": cmd,
            "Image": rec.image,
            "Volumes": ic["Volumes"],
            "ExposedPorts": exposed,
            "WorkingDir": spec["process"]["cwd"].as_str().unwrap_or(""),
            "Entrypoint": if entrypoint.is_empty() { Value::Null } else { json!(entrypoint) },
            "OnBuild": Value::Null,
            "Labels": labels,
            "StopSignal": rec.stop_signal,
            "StopTimeout": rec.stop_timeout,
        },
        "NetworkSettings": crate::network::settings(root, rec),
        "Amphi": {"Payload": rec.payload, "ProcessUser": user, "Watcher": st.watcher.map(|w| w.pid)},
    })
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_offsets_count() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_714_564_800, 123_000_000);
        assert_eq!(parse_rfc3339(&rfc3339(Some(t))), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123Z"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00.123+02:00"), Some(t));
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
