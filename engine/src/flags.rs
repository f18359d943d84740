//! `amphi run`'s options applied over a container's OCI spec: process,
//! security (capabilities, seccomp, devices, privileged) and resources.
//! (The network namespace and mounts are `create`'s: they need the store.)

use amphi_runtime::bundle::Bundle;
use amphi_runtime::oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::bail;
use crate::error::{Context, Result};
use crate::options::RunOptions;
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
    if !a.env.is_empty() {
        let mut env: Vec<String> =
            serde_json::from_value(v["process"]["env"].take()).unwrap_or_default();
        for kv in &a.env {
            let Some((k, _)) = kv.split_once('=') else {
                bail!("bad -e {kv:?}: use KEY=VALUE")
            };
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
            env.push(kv.clone());
        }
        v["process"]["env"] = json!(env);
    }
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
    if a.read_only {
        v["root"]["readonly"] = json!(true);
    }
    obj(&mut v, "linux");
    obj(&mut v["linux"], "resources");
    let res = &mut v["linux"]["resources"];
    if let Some(m) = &a.memory {
        let bytes = units::parse_bytes(m)?;
        obj(res, "memory");
        // No swap on top, so the limit is the limit.
        res["memory"]["limit"] = json!(bytes);
        res["memory"]["swap"] = json!(bytes);
    }
    if let Some(c) = &a.cpus {
        let (quota, period) = units::parse_cpus(c)?;
        obj(res, "cpu");
        res["cpu"]["quota"] = json!(quota);
        res["cpu"]["period"] = json!(period);
    }
    if let Some(p) = a.pids_limit {
        if p <= 0 {
            bail!("bad --pids-limit {p}: must be positive");
        }
        res["pids"] = json!({ "limit": p });
    }
    if let Some(parent) = a.cgroup_parent.as_deref() {
        v["linux"]["cgroupsPath"] = json!(cgroups_path(parent, id)?);
    }
    let spec: Spec = serde_json::from_value(v).context("applying flags to the spec")?;
    Ok(Bundle::from_spec(bundle.dir, spec)?)
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
