//! cgroup v2: one unified hierarchy at /sys/fs/cgroup.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{mkdir, read, read_u64, rmdir, write};
use crate::stats::{parse_flat_keyed, Stats};
use crate::Result;

const ROOT: &str = "/sys/fs/cgroup";

/// A container's cgroup in the unified hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    path: String,
}

impl CgroupV2 {
    pub(super) fn new(path: &str) -> Self {
        CgroupV2 {
            path: path.to_string(),
        }
    }

    pub(super) fn dir(&self) -> PathBuf {
        Path::new(ROOT).join(&self.path)
    }

    pub(super) fn create(&self) -> Result<()> {
        // Controllers must be enabled in every ancestor's subtree_control.
        let mut dir = PathBuf::from(ROOT);
        for part in self.path.split('/') {
            let available = read(&dir, "cgroup.controllers").unwrap_or_default();
            for c in ["cpuset", "cpu", "memory", "pids"] {
                if available.split(' ').any(|a| a == c) {
                    // Ignored: an ancestor may hold processes (no internal
                    // processes rule); limits then fail with a clear error.
                    let _ = write(&dir, "cgroup.subtree_control", &format!("+{c}"));
                }
            }
            dir.push(part);
            if !dir.exists() {
                mkdir(&dir)?;
            }
        }
        Ok(())
    }

    pub(super) fn add_pid(&self, pid: i32) -> Result<()> {
        write(&self.dir(), "cgroup.procs", &pid.to_string())
    }

    pub(super) fn apply(&self, res: &LinuxResources) -> Result<()> {
        let dir = self.dir();
        if let Some(mem) = res.memory() {
            let limit = mem.limit();
            if let Some(l) = limit {
                write(&dir, "memory.max", &max_or(l))?;
            }
            // OCI swap is memory+swap; v2 limits swap alone.
            if let Some(s) = mem.swap() {
                let v = match (s, limit) {
                    (s, _) if s < 0 => "max".to_string(),
                    (s, Some(l)) if l >= 0 => s.saturating_sub(l).max(0).to_string(),
                    (s, _) => s.to_string(),
                };
                if dir.join("memory.swap.max").exists() {
                    write(&dir, "memory.swap.max", &v)?;
                }
            }
            if let Some(r) = mem.reservation() {
                write(&dir, "memory.low", &max_or(r))?;
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(s) = cpu.shares().filter(|s| *s > 0) {
                // The conversion runc and crun use.
                let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                write(&dir, "cpu.weight", &weight.to_string())?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let period = cpu.period().filter(|p| *p > 0).unwrap_or(100_000);
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                write(&dir, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                write(&dir, "cpuset.cpus", c)?;
            }
            if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                write(&dir, "cpuset.mems", m)?;
            }
        }
        if let Some(pids) = res.pids() {
            let v = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".into()
            };
            write(&dir, "pids.max", &v)?;
        }
        if let Some(unified) = res.unified() {
            for (k, v) in unified {
                if k.contains('/') || k.starts_with('.') {
                    return Err(crate::Error::Spec(format!("bad unified cgroup key {k:?}")));
                }
                write(&dir, k, v)?;
            }
        }
        Ok(())
    }

    pub(super) fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self.dir();
        write(&dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        // The kernel reports completion in cgroup.events ("frozen 1").
        for _ in 0..1000 {
            let events = parse_flat_keyed(&read(&dir, "cgroup.events").unwrap_or_default());
            if events.get("frozen").copied() == Some(frozen as u64) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    pub(super) fn oom_kills(&self) -> u64 {
        let events = parse_flat_keyed(&read(&self.dir(), "memory.events").unwrap_or_default());
        events.get("oom_kill").copied().unwrap_or(0)
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let dir = self.dir();
        let mut st = Stats {
            hierarchy: 2,
            ..Stats::default()
        };
        st.memory.usage = read_u64(&dir, "memory.current");
        st.memory.max_usage = read_u64(&dir, "memory.peak");
        st.memory.limit = read_u64(&dir, "memory.max");
        let events = parse_flat_keyed(&read(&dir, "memory.events").unwrap_or_default());
        st.memory.failcnt = events.get("max").copied().unwrap_or(0);
        st.memory.oom_kills = events.get("oom_kill").copied().unwrap_or(0);
        st.memory.events = events;
        st.memory.swap = crate::stats::Counter {
            usage: read_u64(&dir, "memory.swap.current"),
            max_usage: read_u64(&dir, "memory.swap.peak"),
            limit: read_u64(&dir, "memory.swap.max"),
            failcnt: 0,
        };
        st.io = crate::stats::parse_io_stat(&read(&dir, "io.stat").unwrap_or_default());
        st.memory.stat = parse_flat_keyed(&read(&dir, "memory.stat").unwrap_or_default());
        let cpu = parse_flat_keyed(&read(&dir, "cpu.stat").unwrap_or_default());
        let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
        st.cpu.usage_ns = us("usage_usec");
        st.cpu.user_ns = us("user_usec");
        st.cpu.system_ns = us("system_usec");
        st.cpu.nr_periods = cpu.get("nr_periods").copied().unwrap_or(0);
        st.cpu.nr_throttled = cpu.get("nr_throttled").copied().unwrap_or(0);
        st.cpu.throttled_ns = us("throttled_usec");
        st.pids.current = read_u64(&dir, "pids.current");
        let max = read_u64(&dir, "pids.max");
        st.pids.limit = if max == u64::MAX { 0 } else { max };
        Ok(st)
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn remove_parent(&self, parent: &str) {
        let _ = std::fs::remove_dir(Path::new(ROOT).join(parent));
    }

    pub(super) fn remove(&self) -> Result<()> {
        rmdir(&self.dir())
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}
