//! The CNI plugins, invoked as the CNI spec (1.0) says: one process per
//! plugin of a network configuration list, `CNI_COMMAND` ADD, CHECK or DEL
//! with the container's id, netns and interface in the environment, the
//! plugin's configuration (with `name`, `cniVersion`, `prevResult` and the
//! `runtimeConfig` of the capabilities it declares) on stdin, and its
//! result or error as JSON on stdout. ADD runs the list in order, each
//! plugin given the result of the one before; DEL runs it in reverse with
//! the ADD's result; a failed ADD is undone with a DEL, as the spec asks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Where the plugin binaries are: `AMPHI_CNI_PATH` (colon-separated), else
/// Debian's `/usr/lib/cni`, else upstream's `/opt/cni/bin`.
pub fn plugin_dirs() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("AMPHI_CNI_PATH").filter(|p| !p.is_empty()) {
        return std::env::split_paths(&p).collect();
    }
    ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.join("bridge").is_file())
        .collect()
}

/// One container's attachment to a network, as the plugins see it.
pub struct Invocation<'a> {
    /// The container's id (`CNI_CONTAINERID`).
    pub container_id: &'a str,
    /// Its network namespace (`CNI_NETNS`).
    pub netns: &'a Path,
    /// The interface inside it (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// Values for the plugins' declared capabilities (`runtimeConfig`).
    pub runtime_config: &'a Value,
}

/// Runs ADD over the configuration list `conf`; returns the last result.
/// On failure the plugins that ran are undone (DEL of the whole list).
pub fn add(conf: &Value, inv: &Invocation) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for plugin in plugins(conf)? {
        match exec(conf, plugin, "ADD", inv, prev.as_ref()) {
            Ok(r) => prev = Some(r),
            Err(e) => {
                let _ = del(conf, inv, prev.as_ref());
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| json!({"cniVersion": conf["cniVersion"]})))
}

/// Runs CHECK over the list with the ADD's result.
pub fn check(conf: &Value, inv: &Invocation, result: &Value) -> Result<()> {
    for plugin in plugins(conf)? {
        exec(conf, plugin, "CHECK", inv, Some(result))?;
    }
    Ok(())
}

/// Runs DEL over the list in reverse. Every plugin is asked even when one
/// fails (so what it holds is released); the first error is returned.
pub fn del(conf: &Value, inv: &Invocation, result: Option<&Value>) -> Result<()> {
    let mut first = None;
    for plugin in plugins(conf)?.iter().rev() {
        if let Err(e) = exec(conf, plugin, "DEL", inv, result) {
            tracing::warn!("CNI DEL: {e}");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn plugins(conf: &Value) -> Result<&Vec<Value>> {
    conf["plugins"]
        .as_array()
        .ok_or_else(|| Error::Invalid("CNI configuration list has no plugins".into()))
}

/// The stdin of one plugin: its own object, the list's name and version,
/// the previous result, and the runtime values of its capabilities.
fn plugin_config(conf: &Value, plugin: &Value, prev: Option<&Value>, inv: &Invocation) -> Value {
    let mut c = plugin.clone();
    c["name"] = conf["name"].clone();
    c["cniVersion"] = conf["cniVersion"].clone();
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    let caps = plugin["capabilities"].as_object();
    let mut rc = serde_json::Map::new();
    for (k, v) in inv.runtime_config.as_object().into_iter().flatten() {
        if caps.is_some_and(|c| c.get(k) == Some(&Value::Bool(true))) {
            rc.insert(k.clone(), v.clone());
        }
    }
    if !rc.is_empty() {
        c["runtimeConfig"] = Value::Object(rc);
    }
    c
}

fn exec(
    conf: &Value,
    plugin: &Value,
    command: &str,
    inv: &Invocation,
    prev: Option<&Value>,
) -> Result<Value> {
    let kind = plugin["type"].as_str().unwrap_or("");
    if kind.is_empty() || kind.contains('/') {
        return Err(Error::Invalid(format!("bad CNI plugin type {kind:?}")));
    }
    let dirs = plugin_dirs();
    let bin = dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "CNI plugin {kind:?} not found in {} (install containernetworking-plugins, or set AMPHI_CNI_PATH)",
                std::env::join_paths(&dirs).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
            ))
        })?;
    let stdin = serde_json::to_vec(&plugin_config(conf, plugin, prev, inv)).expect("json");
    let what = format!("CNI {command} of {kind} for {}", inv.container_id);
    let began = std::time::Instant::now();
    let mut child = Command::new(&bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_PATH", std::env::join_paths(&dirs).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(&bin, e))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(&stdin);
    }
    let out = child.wait_with_output().map_err(|e| Error::io(&bin, e))?;
    // What each plugin costs a run (AMPHI_LOG=amphi_engine=debug).
    tracing::debug!(
        plugin = kind,
        command,
        ms = began.elapsed().as_millis() as u64,
        "CNI plugin ran"
    );
    if out.status.success() {
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(prev.cloned().unwrap_or(Value::Null));
        }
        return serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Invalid(format!("{what}: unreadable result: {e}")));
    }
    // The spec's error object, else whatever the plugin printed.
    let msg = match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if v["msg"].is_string() => {
            let details = v["details"].as_str().filter(|d| !d.is_empty());
            match details {
                Some(d) => format!("{} ({d})", v["msg"].as_str().unwrap_or("")),
                None => v["msg"].as_str().unwrap_or("").to_string(),
            }
        }
        _ => String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_string(),
    };
    Err(Error::Invalid(format!("{what} failed: {msg}")))
}

/// The first IPv4 address of the result (without its prefix) and its
/// interface's MAC address, if any.
pub fn result_address(result: &Value) -> Option<(std::net::Ipv4Addr, String)> {
    let ip = result["ips"].as_array()?.iter().find_map(|i| {
        let a = i["address"].as_str()?;
        a.split('/').next()?.parse().ok()
    })?;
    let mac = result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        .and_then(|i| i["mac"].as_str())
        .unwrap_or("")
        .to_string();
    Some((ip, mac))
}
