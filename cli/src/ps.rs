//! `amphi ps`: which containers, and Docker's columns and `--format`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use amphi_engine::inspect::rfc3339;
use amphi_engine::{Engine, Record, Status};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

/// `amphi ps` flags.
#[derive(Args)]
pub struct PsArgs {
    /// All containers (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    no_trunc: bool,
    /// KEY=VALUE: status, name, id, label (KEY or KEY=VALUE), exited, ancestor.
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// Go-template-like format, e.g. 'table {{.ID}}\t{{.Names}}'.
    #[arg(long)]
    format: Option<String>,
}

/// "5 seconds", "About a minute", "3 hours", as Docker's HumanDuration.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        _ => format!("{} months", s / 2_592_000),
    }
}

pub(crate) fn ago(t: Option<SystemTime>) -> String {
    let d = t
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    format!("{} ago", human(d))
}

/// Docker's STATUS column.
fn status_text(root: &Path, r: &Record, paused: bool) -> String {
    let st = &r.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = st
                .started_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            let health = r.health.as_ref().and_then(|_| {
                amphi_engine::health::load(root, &r.id).map(|h| match h.status.as_str() {
                    "starting" => " (health: starting)".to_string(),
                    s => format!(" ({s})"),
                })
            });
            let paused = if paused { " (Paused)" } else { "" };
            format!("Up {}{paused}{}", human(up), health.unwrap_or_default())
        }
        Status::Restarting => format!("Restarting ({}) {}", st.exit_code, ago(st.finished_at)),
        Status::Exited => format!("Exited ({}) {}", st.exit_code, ago(st.finished_at)),
    }
}

/// A container as `ps --format` sees it.
fn ps_row(root: &Path, r: &Record, no_trunc: bool, paused: bool) -> Value {
    let ports = amphi_engine::network::attachment(root, &r.id)
        .map(|a| {
            a.ports
                .iter()
                .map(|p| p.display())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let id = if no_trunc { &r.id[..] } else { &r.id[..12] };
    let mut cmd = r.args.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let labels = r.labels();
    json!({
        "ID": id,
        "Image": r.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": rfc3339(Some(r.created)),
        "RunningFor": ago(Some(r.created)),
        "Ports": ports,
        "State": if paused { "paused".to_string() } else { r.state.status.to_string() },
        "Status": status_text(root, r, paused),
        "Size": "",
        "Names": r.name,
        "Labels": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "LabelMap": labels.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<String, Value>>(),
        "Mounts": r.mounts.iter().map(|m| match &m.source {
            amphi_engine::mounts::Source::Volume { name, .. } => name.clone(),
            amphi_engine::mounts::Source::Bind { path } => path.clone(),
            amphi_engine::mounts::Source::Tmpfs { .. } => m.destination.clone(),
        }).collect::<Vec<_>>().join(","),
        "Networks": match r.network_mode() {
            "" => "default".to_string(),
            m if r.options.extra_networks.is_empty() => m.to_string(),
            _ => r.networks().join(","),
        },
    })
}

/// Whether `r` passes every filter kind (values of one kind are alternatives).
fn matches(root: &Path, r: &Record, filters: &[(String, String)]) -> Result<bool> {
    let mut kinds: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    kinds.dedup();
    for kind in kinds {
        let mut any = false;
        for (_, v) in filters.iter().filter(|(k, _)| k == kind) {
            any |= match kind {
                "status" => r.state.status.to_string() == *v,
                "name" => r.name.contains(v.trim_start_matches('/')),
                "id" => r.id.starts_with(v.as_str()),
                "label" => {
                    let (k, want) = v
                        .split_once('=')
                        .map_or((v.as_str(), None), |(k, x)| (k, Some(x)));
                    r.labels()
                        .iter()
                        .any(|(lk, lv)| lk == k && want.is_none_or(|w| w == lv))
                }
                "exited" => r.state.status == Status::Exited && v.parse() == Ok(r.state.exit_code),
                "ancestor" => r.image == *v || r.image_id.as_deref() == Some(v.as_str()),
                "health" => {
                    let h = r
                        .health
                        .as_ref()
                        .and_then(|_| amphi_engine::health::load(root, &r.id));
                    match h {
                        Some(h) => r.state.status == Status::Running && h.status == *v,
                        None => v == "none",
                    }
                }
                other => {
                    bail!("bad --filter {other:?}: use status, name, id, label, exited, ancestor or health")
                }
            };
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Lists the containers `a` asks for.
pub fn ps(engine: &Engine, a: &PsArgs) -> Result<u8> {
    let (containers, broken) = engine.containers_and_broken()?;
    // A container whose record is damaged is said, not hidden.
    for (id, why) in broken {
        eprintln!("amphi: container {id} cannot be listed: {why} (`amphi rm -f {id}` removes it)");
    }
    let filters: Vec<(String, String)> = a
        .filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("bad --filter {f:?}: use KEY=VALUE"))
        })
        .collect::<Result<_>>()?;
    let status_filtered = filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut recs = Vec::new();
    // As Docker's: without -a, the running and the restarting.
    for r in containers.into_iter().rev() {
        if (a.all || status_filtered || r.is_active()) && matches(engine.root(), &r, &filters)? {
            recs.push(r);
        }
    }
    if a.quiet {
        for r in &recs {
            println!("{}", if a.no_trunc { &r.id[..] } else { &r.id[..12] });
        }
        return Ok(0);
    }
    let default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
    let template = a.format.as_deref().unwrap_or(default);
    let rows: Vec<Value> = recs
        .iter()
        .map(|r| {
            ps_row(
                engine.root(),
                r,
                a.no_trunc,
                r.state.status == Status::Running && engine.is_paused(&r.id),
            )
        })
        .collect();
    let headers = [
        ("ID", "CONTAINER ID"),
        ("RunningFor", "CREATED"),
        ("CreatedAt", "CREATED AT"),
    ];
    print!("{}", crate::format::list(template, &headers, &rows)?);
    Ok(0)
}
