//! Test support shared by amphi's test suites: unique container ids,
//! per-test directories, and the leak check every test ends with.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A container id no other test (in this or any parallel process) uses.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Network state of tests: bridges, rules, pins, leases.
pub mod net;

/// A loopback TCP port nothing listens on now (the kernel's pick), for a
/// server a test or bench starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .expect("bind an ephemeral port on loopback")
        .local_addr()
        .expect("its address")
        .port()
}

/// A test's own directories: a bundle dir, a state root and a store root,
/// all under one temp dir removed at drop.
pub struct TestDirs {
    /// The temp dir holding everything.
    pub tmp: tempfile::TempDir,
    /// Where the test writes its bundle.
    pub bundle: PathBuf,
    /// The runtime's state root.
    pub state: PathBuf,
    /// The store root (Wasm cache, images).
    pub store: PathBuf,
}

impl TestDirs {
    /// Fresh directories for one test.
    pub fn new() -> TestDirs {
        let tmp = tempfile::Builder::new()
            .prefix("amphi-test-")
            .tempdir()
            .expect("temp dir");
        let bundle = tmp.path().join("bundle");
        let state = tmp.path().join("state");
        let store = tmp.path().join("store");
        for d in [&bundle, &state, &store] {
            std::fs::create_dir_all(d).unwrap();
        }
        TestDirs {
            tmp,
            bundle,
            state,
            store,
        }
    }
}

/// A test that failed half-way must not leave detached containers
/// running: every watcher of this store is killed (its container dies with
/// it), and whatever is still mounted under the temp dir is unmounted,
/// before the directory goes.
impl Drop for TestDirs {
    fn drop(&mut self) {
        // Every amphi this test started (foreground runs and watchers alike
        // carry its store root in their environment or arguments).
        let store = self.store.to_string_lossy().into_owned();
        let env_mark = format!("AMPHI_ROOT={store}\0");
        let me = std::process::id() as i32;
        let watchers: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let c = String::from_utf8_lossy(&c);
                let e = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let e = String::from_utf8_lossy(&e);
                (c.contains("container-watch") && c.contains(store.as_str()))
                    || (c.starts_with("/") && c.contains("amphi") && e.contains(env_mark.as_str()))
            })
            .collect();
        for pid in &watchers {
            // SAFETY: plain kill.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(tmp.as_str()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            if let Ok(c) = std::ffi::CString::new(p) {
                // SAFETY: a valid path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // Their cgroups, which only the next amphi command of this store
        // would have removed (and none comes): every process left in one
        // killed, then the directory, then an `amphi` parent left empty.
        let ids: Vec<String> = std::fs::read_dir(self.store.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        for id in &ids {
            remove_cgroups_named(id);
        }
        // A failed test's containers died with their watchers, before any
        // CNI DEL: their rules go (by id, and by the address of each
        // attachment), and the store's bridges (its default one included,
        // which amphi keeps as Docker keeps docker0) with it.
        net::drop_rules_naming(&net::attachment_needles(&self.store));
        net::drop_bridges(&self.store);
    }
}

impl Default for TestDirs {
    fn default() -> Self {
        Self::new()
    }
}

/// Every leak the check found, empty when clean.
pub fn leaks(id: &str, state_root: &Path, rootfs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let state_dir = state_root.join(id);
    if state_dir.exists() {
        found.push(format!("state dir {} remains", state_dir.display()));
    }
    for dir in cgroup_dirs_named(id) {
        found.push(format!("cgroup {} remains", dir.display()));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let rootfs = rootfs.to_string_lossy();
    for line in mountinfo.lines() {
        if line
            .split(' ')
            .nth(4)
            .is_some_and(|mp| mp.starts_with(rootfs.as_ref()))
        {
            found.push(format!("mount remains: {line}"));
        }
    }
    for pid in processes_of(id) {
        found.push(format!("process {pid} of container {id} remains"));
    }
    found
}

/// Panics with the list of leaks of container `id`, if any.
pub fn assert_no_leaks(id: &str, state_root: &Path, rootfs: &Path) {
    let found = leaks(id, state_root, rootfs);
    assert!(
        found.is_empty(),
        "container {id} leaked:\n{}",
        found.join("\n")
    );
}

/// Kills what is left in the cgroups named `id` and removes them (and
/// their parent, when that is left empty and is amphi's).
pub fn remove_cgroups_named(id: &str) {
    for dir in cgroup_dirs_named(id) {
        for _ in 0..100 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Some(parent) = dir.parent().filter(|p| p.ends_with("amphi")) {
            // Fails (as it should) while another container's cgroup is in it.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Cgroup directories named `id` anywhere under /sys/fs/cgroup (two levels
/// below each hierarchy, which covers `amphi/<id>` and `<ns>/<id>`).
pub fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for root in roots {
        let Ok(level1) = std::fs::read_dir(&root) else {
            continue;
        };
        for l1 in level1.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let candidate = l1.join(id);
            if candidate.is_dir() {
                out.push(candidate);
            }
        }
    }
    out
}

/// Pids of container inits (`amphi-init <id>`) still alive.
pub fn processes_of(id: &str) -> Vec<i32> {
    let want = format!("amphi-init\0{id}\0");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

/// `len` bytes that look random (xorshift64 from `seed`, which advances):
/// layer content no compressor shrinks, for load and crash tests.
pub fn noise(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// A block device of this host as (major, minor), for tests that try to
/// reach it from inside a container.
pub fn host_block_device() -> (String, String) {
    // Not an empty removable drive (a VM's CD drive opens with ENOMEDIUM).
    let sized = |n: &String| {
        let read = |f: &str| std::fs::read_to_string(format!("/sys/dev/block/{n}/{f}"));
        let empty = read("size").is_ok_and(|s| s.trim() == "0");
        !(empty && read("removable").is_ok_and(|s| s.trim() == "1"))
    };
    let names: Vec<String> = std::fs::read_dir("/sys/dev/block")
        .expect("/sys/dev/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let name = names
        .iter()
        .filter(|n| sized(n))
        .min()
        .or(names.iter().min())
        .cloned()
        .expect("this host has a block device");
    let (major, minor) = name.split_once(':').expect("major:minor");
    (major.to_string(), minor.to_string())
}

/// Whether systemd is this host's init, on a D-Bus system bus (what the
/// systemd cgroup driver needs).
pub fn systemd_runs() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && std::os::unix::net::UnixStream::connect("/run/dbus/system_bus_socket").is_ok()
}

/// A systemd unit's property: `systemctl show -p PROP --value UNIT`.
pub fn unit_property(unit: &str, prop: &str) -> String {
    let out = std::process::Command::new("systemctl")
        .args(["show", "-p", prop, "--value", unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
