//! Resource figures of a container, read from its cgroup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of a container's cgroup figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The cgroup hierarchy they come from: 1 (per-controller v1) or 2
    /// (unified); the keys of `memory.stat` follow it.
    pub hierarchy: u8,
    /// Memory figures.
    pub memory: MemoryStats,
    /// CPU figures.
    pub cpu: CpuStats,
    /// Process count figures.
    pub pids: PidsStats,
    /// Block I/O per device (v2).
    pub io: Vec<IoStats>,
}

/// Memory use of the cgroup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Current usage in bytes.
    pub usage: u64,
    /// Peak usage in bytes, where the kernel keeps it.
    pub max_usage: u64,
    /// The limit in bytes (u64::MAX for none).
    pub limit: u64,
    /// Times the usage hit the limit (v1 failcnt, v2 `max` events).
    pub failcnt: u64,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kills: u64,
    /// Swap: v1's memory+swap counters (`memory.memsw.*`), v2's swap alone
    /// (`memory.swap.current`, `.max`, `.peak`).
    pub swap: Counter,
    /// v1 kernel memory (`memory.kmem.*`).
    pub kernel: Counter,
    /// v1 kernel TCP buffers (`memory.kmem.tcp.*`).
    pub kernel_tcp: Counter,
    /// v2 `memory.events` (low, high, max, oom, oom_kill).
    pub events: BTreeMap<String, u64>,
    /// memory.stat, as the kernel names its keys.
    pub stat: BTreeMap<String, u64>,
}

/// One resource counter: usage, peak, limit and times the limit was hit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counter {
    /// Current usage in bytes.
    pub usage: u64,
    /// Peak usage in bytes.
    pub max_usage: u64,
    /// The limit in bytes (u64::MAX for none).
    pub limit: u64,
    /// Times the usage hit the limit.
    pub failcnt: u64,
}

/// CPU use of the cgroup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuStats {
    /// Total CPU time in nanoseconds.
    pub usage_ns: u64,
    /// User CPU time in nanoseconds.
    pub user_ns: u64,
    /// System CPU time in nanoseconds.
    pub system_ns: u64,
    /// Enforcement periods elapsed.
    pub nr_periods: u64,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: u64,
    /// Time spent throttled in nanoseconds.
    pub throttled_ns: u64,
    /// CPU time per CPU in nanoseconds (v1 `cpuacct.usage_percpu`).
    pub per_cpu_ns: Vec<u64>,
}

/// Bytes and operations of one block device (v2 `io.stat`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IoStats {
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

/// Process count of the cgroup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks now in the cgroup.
    pub current: u64,
    /// The limit (0 for none).
    pub limit: u64,
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events).
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// Parses v2 `io.stat` lines (`MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...`).
pub(crate) fn parse_io_stat(text: &str) -> Vec<IoStats> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (major, minor) = it.next()?.split_once(':')?;
            let mut e = IoStats {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..IoStats::default()
            };
            for kv in it {
                let (k, v) = kv.split_once('=')?;
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_stat_lines() {
        let v = super::parse_io_stat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(
            (
                v[0].major,
                v[0].minor,
                v[0].rbytes,
                v[0].wbytes,
                v[0].rios,
                v[0].wios
            ),
            (8, 0, 4096, 8192, 1, 2)
        );
    }
}
