//! Task Stats as containerd reads them: cgroup figures in its cgroups v1
//! `Metrics` (type `io.containerd.cgroups.v1.Metrics`) or, on the unified
//! hierarchy, its v2 `Metrics` (`io.containerd.cgroups.v2.Metrics`), with
//! the fields the runc shim fills. The CRI plugin derives a container's
//! working set from them (usage less inactive file pages), kubelet its
//! evictions and `kubectl top`.

use amphi_runtime::Stats;
use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};

/// The figures, encoded as the `Any` a Stats response carries.
pub fn to_any(s: &Stats) -> Result<Any, String> {
    let mut any = Any::new();
    let bytes = if s.hierarchy == 2 {
        any.type_url = "io.containerd.cgroups.v2.Metrics".into();
        to_v2(s).write_to_bytes()
    } else {
        any.type_url = "io.containerd.cgroups.v1.Metrics".into();
        to_v1(s).write_to_bytes()
    };
    any.value = bytes.map_err(|e| e.to_string())?;
    Ok(any)
}

fn entry(c: &amphi_runtime::stats::Counter) -> MessageField<v1::MemoryEntry> {
    let mut e = v1::MemoryEntry::new();
    e.usage = c.usage;
    e.max = c.max_usage;
    e.limit = c.limit;
    e.failcnt = c.failcnt;
    MessageField::some(e)
}

/// cgroups v1: every `memory.stat` key the message has a field for.
pub fn to_v1(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);
    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage_ns;
    usage.user = s.cpu.user_ns;
    usage.kernel = s.cpu.system_ns;
    usage.per_cpu = s.cpu.per_cpu_ns.clone();
    let mut throttle = v1::Throttle::new();
    throttle.periods = s.cpu.nr_periods;
    throttle.throttled_periods = s.cpu.nr_throttled;
    throttle.throttled_time = s.cpu.throttled_ns;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(throttle);
    m.cpu = MessageField::some(cpu);
    let stat = |k: &str| s.memory.stat.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.cache = stat("cache");
    mem.rss = stat("rss");
    mem.rss_huge = stat("rss_huge");
    mem.mapped_file = stat("mapped_file");
    mem.dirty = stat("dirty");
    mem.writeback = stat("writeback");
    mem.pg_pg_in = stat("pgpgin");
    mem.pg_pg_out = stat("pgpgout");
    mem.pg_fault = stat("pgfault");
    mem.pg_maj_fault = stat("pgmajfault");
    mem.inactive_anon = stat("inactive_anon");
    mem.active_anon = stat("active_anon");
    mem.inactive_file = stat("inactive_file");
    mem.active_file = stat("active_file");
    mem.unevictable = stat("unevictable");
    mem.hierarchical_memory_limit = stat("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = stat("hierarchical_memsw_limit");
    mem.total_cache = stat("total_cache");
    mem.total_rss = stat("total_rss");
    mem.total_rss_huge = stat("total_rss_huge");
    mem.total_mapped_file = stat("total_mapped_file");
    mem.total_dirty = stat("total_dirty");
    mem.total_writeback = stat("total_writeback");
    mem.total_pg_pg_in = stat("total_pgpgin");
    mem.total_pg_pg_out = stat("total_pgpgout");
    mem.total_pg_fault = stat("total_pgfault");
    mem.total_pg_maj_fault = stat("total_pgmajfault");
    mem.total_inactive_anon = stat("total_inactive_anon");
    mem.total_active_anon = stat("total_active_anon");
    mem.total_inactive_file = stat("total_inactive_file");
    mem.total_active_file = stat("total_active_file");
    mem.total_unevictable = stat("total_unevictable");
    mem.usage = entry(&amphi_runtime::stats::Counter {
        usage: s.memory.usage,
        max_usage: s.memory.max_usage,
        limit: s.memory.limit,
        failcnt: s.memory.failcnt,
    });
    mem.swap = entry(&s.memory.swap);
    mem.kernel = entry(&s.memory.kernel);
    mem.kernel_tcp = entry(&s.memory.kernel_tcp);
    m.memory = MessageField::some(mem);
    m
}

/// cgroups v2: `memory.stat` by its v2 keys, `memory.events`, `io.stat`.
pub fn to_v2(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage_ns / 1000;
    cpu.user_usec = s.cpu.user_ns / 1000;
    cpu.system_usec = s.cpu.system_ns / 1000;
    cpu.nr_periods = s.cpu.nr_periods;
    cpu.nr_throttled = s.cpu.nr_throttled;
    cpu.throttled_usec = s.cpu.throttled_ns / 1000;
    m.cpu = MessageField::some(cpu);
    let stat = |k: &str| s.memory.stat.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.anon = stat("anon");
    mem.file = stat("file");
    mem.kernel_stack = stat("kernel_stack");
    mem.slab = stat("slab");
    mem.sock = stat("sock");
    mem.shmem = stat("shmem");
    mem.file_mapped = stat("file_mapped");
    mem.file_dirty = stat("file_dirty");
    mem.file_writeback = stat("file_writeback");
    mem.anon_thp = stat("anon_thp");
    mem.inactive_anon = stat("inactive_anon");
    mem.active_anon = stat("active_anon");
    mem.inactive_file = stat("inactive_file");
    mem.active_file = stat("active_file");
    mem.unevictable = stat("unevictable");
    mem.slab_reclaimable = stat("slab_reclaimable");
    mem.slab_unreclaimable = stat("slab_unreclaimable");
    mem.pgfault = stat("pgfault");
    mem.pgmajfault = stat("pgmajfault");
    mem.workingset_refault = stat("workingset_refault_anon") + stat("workingset_refault_file");
    mem.workingset_activate = stat("workingset_activate_anon") + stat("workingset_activate_file");
    mem.workingset_nodereclaim = stat("workingset_nodereclaim");
    mem.pgrefill = stat("pgrefill");
    mem.pgscan = stat("pgscan");
    mem.pgsteal = stat("pgsteal");
    mem.pgactivate = stat("pgactivate");
    mem.pgdeactivate = stat("pgdeactivate");
    mem.pglazyfree = stat("pglazyfree");
    mem.pglazyfreed = stat("pglazyfreed");
    mem.thp_fault_alloc = stat("thp_fault_alloc");
    mem.thp_collapse_alloc = stat("thp_collapse_alloc");
    mem.usage = s.memory.usage;
    mem.usage_limit = s.memory.limit;
    mem.max_usage = s.memory.max_usage;
    mem.swap_usage = s.memory.swap.usage;
    mem.swap_limit = s.memory.swap.limit;
    mem.swap_max_usage = s.memory.swap.max_usage;
    m.memory = MessageField::some(mem);
    let ev = |k: &str| s.memory.events.get(k).copied().unwrap_or(0);
    let mut events = v2::MemoryEvents::new();
    events.low = ev("low");
    events.high = ev("high");
    events.max = ev("max");
    events.oom = ev("oom");
    events.oom_kill = ev("oom_kill");
    m.memory_events = MessageField::some(events);
    let mut io = v2::IOStat::new();
    io.usage =
        s.io.iter()
            .map(|d| {
                let mut e = v2::IOEntry::new();
                e.major = d.major;
                e.minor = d.minor;
                e.rbytes = d.rbytes;
                e.wbytes = d.wbytes;
                e.rios = d.rios;
                e.wios = d.wios;
                e
            })
            .collect();
    m.io = MessageField::some(io);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_fills_what_the_cri_plugin_reads() {
        let mut s = Stats {
            hierarchy: 1,
            ..Stats::default()
        };
        s.memory.usage = 100;
        s.memory.stat.insert("total_inactive_file".into(), 30);
        s.cpu.per_cpu_ns = vec![5, 7];
        let any = to_any(&s).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.total_inactive_file, 30);
        assert_eq!(m.memory.usage.usage, 100);
        assert_eq!(m.cpu.usage.per_cpu, vec![5, 7]);
    }

    #[test]
    fn v2_on_the_unified_hierarchy() {
        let mut s = Stats {
            hierarchy: 2,
            ..Stats::default()
        };
        s.memory.usage = 100;
        s.memory.stat.insert("inactive_file".into(), 30);
        s.memory.events.insert("oom_kill".into(), 2);
        s.cpu.usage_ns = 5_000;
        let any = to_any(&s).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!((m.memory.usage, m.memory.inactive_file), (100, 30));
        assert_eq!(m.memory_events.oom_kill, 2);
        assert_eq!(m.cpu.usage_usec, 5);
    }
}
