//! Resource figures of a container, read from its cgroup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of a container's cgroup figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Memory figures.
    pub memory: MemoryStats,
    /// CPU figures.
    pub cpu: CpuStats,
    /// Process count figures.
    pub pids: PidsStats,
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
    /// memory.stat, as the kernel names its keys.
    pub stat: BTreeMap<String, u64>,
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
