//! `amphi stats`, as `docker stats` shows containers: CONTAINER ID, NAME,
//! CPU %, MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O and PIDS, refreshed
//! every second (once with `--no-stream`); `--format` templates (`json`
//! for a JSON line each); `--raw` the cgroup's own figures as JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use amphi_engine::{Engine, Status};
use amphi_runtime::Stats;
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::format::{binary_size, decimal_size};

/// `amphi stats` flags.
#[derive(Args)]
pub struct StatsArgs {
    /// Every container (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// One table, then exit.
    #[arg(long)]
    no_stream: bool,
    /// Full container ids.
    #[arg(long)]
    no_trunc: bool,
    /// Go-template-like format ('table {{.Name}}\t{{.CPUPerc}}'), or json.
    #[arg(long)]
    format: Option<String>,
    /// The cgroup's figures as JSON, one object per container.
    #[arg(long)]
    raw: bool,
    /// Containers (default: every running one).
    ids: Vec<String>,
}

/// One reading of a container.
struct Sample {
    at: Instant,
    cpu_ns: u64,
}

/// Runs `amphi stats`.
pub fn stats(engine: &Engine, a: &StatsArgs) -> Result<u8> {
    let ids = |engine: &Engine| -> Result<Vec<(String, String)>> {
        if a.ids.is_empty() {
            return Ok(engine
                .containers()?
                .into_iter()
                .filter(|r| a.all || r.state.status == Status::Running)
                .map(|r| (r.id, r.name))
                .collect());
        }
        a.ids
            .iter()
            .map(|q| engine.container(q).map(|r| (r.id, r.name)))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    };
    if a.raw {
        for (id, name) in ids(engine)? {
            let s = engine
                .runtime()
                .load(&id)
                .map_err(|_| anyhow::anyhow!("container {name} is not running"))?
                .stats()?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        return Ok(0);
    }
    let tty = std::io::stdout().is_terminal();
    let mut before: HashMap<String, Sample> = HashMap::new();
    let mut first = true;
    loop {
        let list = ids(engine)?;
        let mut rows = Vec::new();
        for (id, name) in &list {
            let c = engine.runtime().load(id).ok();
            let s = c.as_ref().and_then(|c| c.stats().ok());
            let pid = c.as_ref().map_or(0, |c| c.pid());
            rows.push(row(id, name, s.as_ref(), pid, &mut before, a.no_trunc));
        }
        // The first CPU % needs a second reading.
        if first {
            first = false;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let text = render(a.format.as_deref(), &rows)?;
        let mut out = std::io::stdout();
        if tty && !a.no_stream {
            // Docker's redraw: home, clear, the table.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{text}")?;
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A container's row, and its reading kept for the next CPU %.
fn row(
    id: &str,
    name: &str,
    s: Option<&Stats>,
    pid: i32,
    before: &mut HashMap<String, Sample>,
    no_trunc: bool,
) -> Value {
    let short = if no_trunc { id } else { &id[..12] };
    let Some(s) = s else {
        return json!({"ID": short, "Name": name, "CPUPerc": "--", "MemUsage": "-- / --", "MemPerc": "--",
                      "NetIO": "--", "BlockIO": "--", "PIDs": "--"});
    };
    let now = Sample {
        at: Instant::now(),
        cpu_ns: s.cpu.usage_ns,
    };
    let cpu = match before.get(id) {
        Some(b) => {
            let wall = now.at.duration_since(b.at).as_nanos().max(1) as f64;
            now.cpu_ns.saturating_sub(b.cpu_ns) as f64 / wall * 100.0
        }
        None => 0.0,
    };
    before.insert(id.to_string(), now);
    // As Docker: the page cache that can go is not counted.
    let inactive = ["total_inactive_file", "inactive_file"]
        .iter()
        .find_map(|k| s.memory.stat.get(*k).copied())
        .unwrap_or(0);
    let used = s.memory.usage.saturating_sub(inactive);
    let host = host_memory();
    let limit = if s.memory.limit == 0 || s.memory.limit >= host {
        host
    } else {
        s.memory.limit
    };
    let mem_pct = used as f64 / limit.max(1) as f64 * 100.0;
    let (rx, tx) = net_io(pid);
    let (r, w) =
        s.io.iter()
            .fold((0, 0), |(r, w), d| (r + d.rbytes, w + d.wbytes));
    json!({
        "ID": short,
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", binary_size(used, 4), binary_size(limit, 4)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", decimal_size(rx, 3), decimal_size(tx, 3)),
        "BlockIO": format!("{} / {}", decimal_size(r, 3), decimal_size(w, 3)),
        "PIDs": s.pids.current.to_string(),
    })
}

fn render(format: Option<&str>, rows: &[Value]) -> Result<String> {
    if format == Some("json") {
        return Ok(rows.iter().map(|r| format!("{r}\n")).collect());
    }
    let default = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    let headers = [
        ("ID", "CONTAINER ID"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
    ];
    crate::format::list(format.unwrap_or(default), &headers, rows)
}

/// Bytes received and sent by the interfaces of `pid`'s network
/// namespace, loopback aside.
fn net_io(pid: i32) -> (u64, u64) {
    if pid <= 0 {
        return (0, 0);
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(binary_size(0, 4), "0B");
        assert_eq!(binary_size(1536, 4), "1.5KiB");
        assert_eq!(binary_size(64 << 20, 4), "64MiB");
        assert_eq!(binary_size(25_275_000_000, 4), "23.54GiB");
        assert_eq!(decimal_size(1_234_567, 3), "1.23MB");
        assert_eq!(decimal_size(999, 3), "999B");
        assert_eq!(decimal_size(12_500_000, 4), "12.5MB");
    }
}
