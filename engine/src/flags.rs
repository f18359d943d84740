//! `amphi run`'s options applied over a container's OCI spec: process,
//! security (capabilities, seccomp, devices, privileged) and resources.
//! (The network namespace and mounts are `create`'s: they need the store.)

use amphi_runtime::bundle::Bundle;
use amphi_runtime::oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::bail;
use crate::error::{Context, Result};
use crate::options::{Resources, RunOptions};
use crate::units;

/// Capabilities, no_new_privileges and seccomp: an image run gets
/// Docker's default profile for its capabilities; a bundle keeps its own
/// unless `--security-opt seccomp=...` says otherwise.
fn apply_security(v: &mut Value, a: &RunOptions) -> Result<()> {
    use crate::seccomp_profile::{default_profile, to_spec};
    use crate::security::{capabilities, parse_security_opts, Seccomp};
    let sec = parse_security_opts(&a.security_opt)?;
    if a.privileged {
        crate::security::make_privileged(v)?;
    }
    for d in &a.devices {
        crate::security::add_device(v, d)?;
    }
    let strings =
        |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap_or_default() };
    let mut caps = strings(&v["process"]["capabilities"]["bounding"]);
    if !a.cap_add.is_empty() || !a.cap_drop.is_empty() {
        caps = capabilities(&caps, &a.cap_add, &a.cap_drop)?;
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set] = json!(caps);
        }
    }
    if sec.no_new_privileges {
        v["process"]["noNewPrivileges"] = json!(true);
    }
    let profile = match &sec.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seccomp profile {}", path.display()))?;
            let p: Value = serde_json::from_str(&text)
                .with_context(|| format!("seccomp profile {}", path.display()))?;
            Some(
                to_spec(&p, &caps)
                    .with_context(|| format!("seccomp profile {}", path.display()))?,
            )
        }
        // Docker runs privileged containers unconfined.
        Seccomp::Default if a.privileged => None,
        Seccomp::Default if a.bundle.is_none() => Some(to_spec(&default_profile(), &caps)?),
        Seccomp::Default => return Ok(()),
    };
    match profile {
        Some(p) => v["linux"]["seccomp"] = p,
        None => {
            if let Some(l) = v["linux"].as_object_mut() {
                l.remove("seccomp");
            }
        }
    }
    Ok(())
}

/// `--annotation K=V` and `--wasm-preopen` (the preopens annotation, its
/// value checked now so a typo fails before anything is made).
fn apply_annotations(v: &mut Value, a: &RunOptions) -> Result<()> {
    use amphi_runtime::preopens::{parse, PREOPENS_ANNOTATION};
    if !v.get("annotations").is_some_and(Value::is_object) {
        v["annotations"] = json!({});
    }
    for kv in &a.annotations {
        let Some((k, val)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("bad --annotation {kv:?}: use KEY=VALUE")
        };
        v["annotations"][k] = json!(val);
    }
    if !a.wasm_preopens.is_empty() {
        let value = a.wasm_preopens.join(",");
        if a.wasm_preopens.len() > 1 && a.wasm_preopens.iter().any(|p| p == "none") {
            bail!("bad --wasm-preopen: none cannot be given with directories");
        }
        v["annotations"][PREOPENS_ANNOTATION] = json!(value);
    }
    if let Some(value) = v["annotations"][PREOPENS_ANNOTATION].as_str() {
        parse(value)?;
    }
    Ok(())
}

/// Applies the options over the bundle's spec; `args`, when given,
/// replaces the process's arguments.
pub fn apply(bundle: Bundle, id: &str, a: &RunOptions, args: Option<&[String]>) -> Result<Bundle> {
    let mut v = serde_json::to_value(&bundle.spec).expect("a spec serialises");
    let obj = |v: &mut Value, key: &str| -> () {
        if !v.get(key).is_some_and(Value::is_object) {
            v[key] = json!({});
        }
    };
    if let Some(args) = args.filter(|a| !a.is_empty()) {
        v["process"]["args"] = json!(args);
    }
    // Without -t the container shares amphi's own stdio (a terminal
    // included); with it, a console of its own that amphi relays.
    v["process"]["terminal"] = json!(a.tty);
    // The caller's environment now: the spec keeps what it resolved to.
    crate::env::apply(&mut v["process"], &a.env_files, &a.env)?;
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("bad -w {w:?}: must be an absolute path");
        }
        v["process"]["cwd"] = json!(w);
    }
    if let Some(h) = &a.hostname {
        v["hostname"] = json!(h);
    }
    apply_annotations(&mut v, a)?;
    apply_security(&mut v, a)?;
    crate::process_opts::apply(
        &mut v,
        &bundle.rootfs,
        a.user.as_deref(),
        &a.group_add,
        &a.ulimits,
    )?;
    crate::kernel_opts::apply(&mut v, a)?;
    if a.read_only {
        v["root"]["readonly"] = json!(true);
    }
    obj(&mut v, "linux");
    obj(&mut v["linux"], "resources");
    apply_resources(&mut v["linux"]["resources"], &a.resources)?;
    if let Some(parent) = a.cgroup_parent.as_deref() {
        v["linux"]["cgroupsPath"] = json!(cgroups_path(parent, id)?);
    }
    let spec: Spec = serde_json::from_value(v).context("applying flags to the spec")?;
    Ok(Bundle::from_spec(bundle.dir, spec)?)
}

/// The resource flags over the spec's `linux.resources` (`run`, and
/// `update` of a container's).
pub(crate) fn apply_resources(res: &mut Value, a: &Resources) -> Result<()> {
    let obj = |v: &mut Value, key: &str| {
        if !v.get(key).is_some_and(Value::is_object) {
            v[key] = json!({});
        }
    };
    apply_memory(res, a)?;
    if let Some(c) = &a.cpus {
        let (quota, period) = units::parse_cpus(c)?;
        obj(res, "cpu");
        res["cpu"]["quota"] = json!(quota);
        res["cpu"]["period"] = json!(period);
    }
    if let Some(s) = a.cpu_shares {
        if !(2..=262_144).contains(&s) {
            bail!("bad --cpu-shares {s}: must be between 2 and 262144");
        }
        obj(res, "cpu");
        res["cpu"]["shares"] = json!(s);
    }
    for (flag, value, key) in [
        ("--cpuset-cpus", &a.cpuset_cpus, "cpus"),
        ("--cpuset-mems", &a.cpuset_mems, "mems"),
    ] {
        if let Some(list) = value {
            check_cpu_list(flag, list)?;
            obj(res, "cpu");
            res["cpu"][key] = json!(list);
        }
    }
    if let Some(p) = a.pids_limit {
        if p <= 0 {
            bail!("bad --pids-limit {p}: must be positive");
        }
        res["pids"] = json!({ "limit": p });
    }
    Ok(())
}

/// `-m`, `--memory-swap` and `--memory-reservation`, as Docker reads
/// them: the swap figure is memory and swap together, -1 for unlimited
/// swap; without it a limit allows no swap on top.
fn apply_memory(res: &mut Value, a: &Resources) -> Result<()> {
    let limit = a.memory.as_deref().map(units::parse_bytes).transpose()?;
    let swap = match a.memory_swap.as_deref() {
        None => limit,
        Some(_) if limit.is_none() => {
            bail!("--memory-swap needs --memory (the limit it adds swap to)")
        }
        Some("-1") => Some(-1),
        Some(s) => {
            let total = units::parse_bytes(s)?;
            if limit.is_some_and(|l| total < l) {
                bail!("bad --memory-swap {s}: must be at least --memory (it is memory and swap together)");
            }
            Some(total)
        }
    };
    let reservation = a
        .memory_reservation
        .as_deref()
        .map(units::parse_bytes)
        .transpose()?;
    if let (Some(r), Some(l)) = (reservation, limit) {
        if r > l {
            bail!("bad --memory-reservation: must be at most --memory");
        }
    }
    if limit.is_none() && reservation.is_none() {
        return Ok(());
    }
    if !res["memory"].is_object() {
        res["memory"] = json!({});
    }
    if let Some(l) = limit {
        res["memory"]["limit"] = json!(l);
    }
    if let Some(s) = swap {
        res["memory"]["swap"] = json!(s);
    }
    if let Some(r) = reservation {
        res["memory"]["reservation"] = json!(r);
    }
    Ok(())
}

/// A cpuset list: numbers and ranges, comma-separated (e.g. 0-2,4).
fn check_cpu_list(flag: &str, list: &str) -> Result<()> {
    let ok = !list.is_empty()
        && list.split(',').all(|part| {
            let mut ends = part.splitn(2, '-').map(|n| n.parse::<u32>());
            match (ends.next(), ends.next()) {
                (Some(Ok(_)), None) => true,
                (Some(Ok(a)), Some(Ok(b))) => a <= b,
                _ => false,
            }
        });
    if !ok {
        bail!("bad {flag} {list:?}: use numbers and ranges, e.g. 0-1 or 0,2");
    }
    Ok(())
}

/// The cgroups path of `--cgroup-parent`: a slice means systemd's
/// `slice:amphi:<id>` (the scope `amphi-<id>.scope`), anything else a
/// cgroupfs directory holding `<id>`.
pub(crate) fn cgroups_path(parent: &str, id: &str) -> Result<String> {
    if parent.ends_with(".slice") {
        if let Err(e) = amphi_runtime::cgroup::systemd::expand_slice(parent) {
            bail!("bad --cgroup-parent: {e}");
        }
        return Ok(format!("{parent}:amphi:{id}"));
    }
    let rel = parent.trim_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("bad --cgroup-parent {parent:?}: a slice name or a cgroup path");
    }
    Ok(format!("{rel}/{id}"))
}
