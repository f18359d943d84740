//! cgroup v1: one directory per controller hierarchy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::devices::DeviceRule;
use super::{mkdir, read, read_u64, rmdir, write};
use crate::stats::{parse_flat_keyed, Stats};
use crate::{Error, Result};

/// The controllers the runtime limits, accounts, freezes or guards devices
/// with. Joining a hierarchy costs a mkdir, a write and an rmdir per
/// container, so the ones it does not use (blkio, ...) are left alone.
const CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices",
];

/// A container's cgroup across the v1 hierarchies.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    /// (controller, hierarchy mount point) for each mounted controller.
    mounts: &'static [(String, PathBuf)],
    path: String,
}

impl CgroupV1 {
    pub(super) fn new(path: &str) -> Result<Self> {
        let mounts = mounted_controllers()?;
        if !mounts.iter().any(|(c, _)| c == "memory") {
            return Err(Error::Cgroup {
                path: "/sys/fs/cgroup".into(),
                msg: "no cgroup v1 memory controller is mounted".into(),
            });
        }
        Ok(CgroupV1 {
            mounts,
            path: path.to_string(),
        })
    }

    fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        self.mounts
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, m)| m.join(&self.path))
    }

    /// The distinct directories of this cgroup (co-mounted controllers share one).
    pub(super) fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let mut seen: Vec<&Path> = Vec::new();
        self.mounts.iter().filter_map(move |(_, m)| {
            if seen.contains(&m.as_path()) {
                None
            } else {
                seen.push(m.as_path());
                Some(m.join(&self.path))
            }
        })
    }

    pub(super) fn named_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for (_, m) in self.mounts {
            let name = m
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, m.join(&self.path)));
            }
        }
        out
    }

    pub(super) fn memory_dir(&self) -> PathBuf {
        self.dir_of("memory")
            .expect("memory controller checked in new")
    }

    pub(super) fn procs_file(&self) -> PathBuf {
        self.memory_dir().join("cgroup.procs")
    }

    pub(super) fn create(&self) -> Result<()> {
        for dir in self.dirs().collect::<Vec<_>>() {
            mkdir(&dir)?;
        }
        if let Some((_, mount)) = self.mounts.iter().find(|(c, _)| c == "cpuset") {
            // A new v1 cpuset starts empty and refuses tasks: inherit each
            // level's cpus and mems from its parent, top down.
            let mut dir = mount.clone();
            for part in self.path.split('/') {
                let parent = dir.clone();
                dir.push(part);
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if read(&dir, file).unwrap_or_default().is_empty() {
                        let value = read(&parent, file).unwrap_or_default();
                        write(&dir, file, &value)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn limit_devices(&self, rules: &[DeviceRule]) -> Result<()> {
        let Some(dir) = self.dir_of("devices") else {
            return Err(Error::Cgroup {
                path: "/sys/fs/cgroup".into(),
                msg: "no cgroup v1 devices controller is mounted: device access cannot be limited"
                    .into(),
            });
        };
        // One write per rule (the kernel parses one per write), on two fds
        // opened once.
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))
        };
        let (mut allow, mut deny) = (open("devices.allow")?, open("devices.deny")?);
        for rule in rules {
            let (file, name) = if rule.allow {
                (&mut allow, "devices.allow")
            } else {
                (&mut deny, "devices.deny")
            };
            let line = rule.to_string();
            std::io::Write::write_all(file, line.as_bytes()).map_err(|e| Error::Cgroup {
                path: dir.join(name),
                msg: format!("cannot write {line:?}: {e}"),
            })?;
        }
        Ok(())
    }

    pub(super) fn add_pid(&self, pid: i32) -> Result<()> {
        for dir in self.dirs().collect::<Vec<_>>() {
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    pub(super) fn apply(&self, res: &LinuxResources) -> Result<()> {
        if let Some(mem) = res.memory() {
            let dir = self.memory_dir();
            let has_swap = dir.join("memory.memsw.limit_in_bytes").exists();
            match (mem.limit(), mem.swap().filter(|_| has_swap)) {
                (Some(limit), Some(swap)) => {
                    // memsw must stay >= limit at every step: order the writes.
                    if write(&dir, "memory.limit_in_bytes", &limit.to_string()).is_err() {
                        write(&dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                        write(&dir, "memory.limit_in_bytes", &limit.to_string())?;
                    } else {
                        write(&dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
                    }
                }
                (Some(limit), None) => write(&dir, "memory.limit_in_bytes", &limit.to_string())?,
                (None, Some(swap)) => {
                    write(&dir, "memory.memsw.limit_in_bytes", &swap.to_string())?
                }
                (None, None) => {}
            }
            if let Some(r) = mem.reservation() {
                write(&dir, "memory.soft_limit_in_bytes", &r.to_string())?;
            }
            if let Some(s) = mem.swappiness().filter(|s| *s <= 100) {
                write(&dir, "memory.swappiness", &s.to_string())?;
            }
            if mem.disable_oom_killer() == Some(true) {
                write(&dir, "memory.oom_control", "1")?;
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(dir) = self.dir_of("cpu") {
                if let Some(s) = cpu.shares().filter(|s| *s > 0) {
                    write(&dir, "cpu.shares", &s.to_string())?;
                }
                if let Some(p) = cpu.period().filter(|p| *p > 0) {
                    write(&dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = cpu.quota().filter(|q| *q != 0) {
                    write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
            if let Some(dir) = self.dir_of("cpuset") {
                if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                    write(&dir, "cpuset.cpus", c)?;
                }
                if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                    write(&dir, "cpuset.mems", m)?;
                }
            }
        }
        if let Some(pids) = res.pids() {
            if let Some(dir) = self.dir_of("pids") {
                let v = if pids.limit() > 0 {
                    pids.limit().to_string()
                } else {
                    "max".into()
                };
                write(&dir, "pids.max", &v)?;
            }
        }
        Ok(())
    }

    pub(super) fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self.dir_of("freezer").ok_or_else(|| Error::Cgroup {
            path: "/sys/fs/cgroup/freezer".into(),
            msg: "no freezer controller is mounted".into(),
        })?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        // Freezing can take several rounds while tasks are in the kernel.
        for _ in 0..1000 {
            write(&dir, "freezer.state", want)?;
            if read(&dir, "freezer.state").as_deref() == Some(want) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(Error::Cgroup {
            path: dir,
            msg: format!("did not reach {want}"),
        })
    }

    pub(super) fn oom_kills(&self) -> u64 {
        read(&self.memory_dir(), "memory.oom_control")
            .map(|s| parse_flat_keyed(&s).get("oom_kill").copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let mut st = Stats {
            hierarchy: 1,
            ..Stats::default()
        };
        let mem = self.memory_dir();
        if !mem.exists() {
            return Err(Error::Cgroup {
                path: mem,
                msg: "does not exist".into(),
            });
        }
        st.memory.usage = read_u64(&mem, "memory.usage_in_bytes");
        st.memory.max_usage = read_u64(&mem, "memory.max_usage_in_bytes");
        st.memory.limit = read_u64(&mem, "memory.limit_in_bytes");
        st.memory.failcnt = read_u64(&mem, "memory.failcnt");
        st.memory.oom_kills = self.oom_kills();
        st.memory.stat = parse_flat_keyed(&read(&mem, "memory.stat").unwrap_or_default());
        let counter = |prefix: &str| crate::stats::Counter {
            usage: read_u64(&mem, &format!("{prefix}.usage_in_bytes")),
            max_usage: read_u64(&mem, &format!("{prefix}.max_usage_in_bytes")),
            limit: read_u64(&mem, &format!("{prefix}.limit_in_bytes")),
            failcnt: read_u64(&mem, &format!("{prefix}.failcnt")),
        };
        st.memory.swap = counter("memory.memsw");
        st.memory.kernel = counter("memory.kmem");
        st.memory.kernel_tcp = counter("memory.kmem.tcp");
        if let Some(dir) = self.dir_of("cpuacct") {
            st.cpu.usage_ns = read_u64(&dir, "cpuacct.usage");
            st.cpu.per_cpu_ns = read(&dir, "cpuacct.usage_percpu")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            let ticks = parse_flat_keyed(&read(&dir, "cpuacct.stat").unwrap_or_default());
            let ns_per_tick = 1_000_000_000 / clock_ticks();
            st.cpu.user_ns = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
            st.cpu.system_ns = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
        }
        if let Some(dir) = self.dir_of("cpu") {
            let s = parse_flat_keyed(&read(&dir, "cpu.stat").unwrap_or_default());
            st.cpu.nr_periods = s.get("nr_periods").copied().unwrap_or(0);
            st.cpu.nr_throttled = s.get("nr_throttled").copied().unwrap_or(0);
            st.cpu.throttled_ns = s.get("throttled_time").copied().unwrap_or(0);
        }
        if let Some(dir) = self.dir_of("pids") {
            st.pids.current = read_u64(&dir, "pids.current");
            let max = read_u64(&dir, "pids.max");
            st.pids.limit = if max == u64::MAX { 0 } else { max };
        }
        Ok(st)
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn remove_parent(&self, parent: &str) {
        let mut seen: Vec<&Path> = Vec::new();
        for (_, m) in self.mounts {
            if !seen.contains(&m.as_path()) {
                seen.push(m.as_path());
                let _ = std::fs::remove_dir(m.join(parent));
            }
        }
    }

    pub(super) fn remove(&self) -> Result<()> {
        let mut result = Ok(());
        for dir in self.dirs().collect::<Vec<_>>() {
            if let Err(e) = rmdir(&dir) {
                result = Err(e);
            }
        }
        result
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The v1 hierarchies mounted on this host, from /proc/self/mountinfo;
/// read once per process (a shim serves many creates; hierarchies are
/// mounted at boot and stay).
fn mounted_controllers() -> Result<&'static [(String, PathBuf)]> {
    static MOUNTS: std::sync::OnceLock<Vec<(String, PathBuf)>> = std::sync::OnceLock::new();
    if let Some(m) = MOUNTS.get() {
        return Ok(m);
    }
    let m = read_mounted_controllers()?;
    Ok(MOUNTS.get_or_init(|| m))
}

fn read_mounted_controllers() -> Result<Vec<(String, PathBuf)>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    let mut out = Vec::new();
    for line in info.lines() {
        // "... mountpoint opts - fstype source superopts"
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts = post.nth(1).unwrap_or("");
        let Some(mountpoint) = pre.split(' ').nth(4) else {
            continue;
        };
        for opt in superopts.split(',') {
            if CONTROLLERS.contains(&opt) && !out.iter().any(|(c, _)| c == opt) {
                out.push((opt.to_string(), PathBuf::from(mountpoint)));
            }
        }
    }
    Ok(out)
}
