//! A thin cgroup layer for v1 (per-controller hierarchies) and v2 (unified).
//!
//! Why not cgroups-rs: it hides which files it writes and in what order, and
//! its v1 hybrid-host detection differs from what this runtime needs (v1
//! controllers beside an empty cgroup2 mount). These few files are the whole
//! interface, so we write them ourselves, naming the file on every error.

mod device_bpf;
mod devices;
pub mod systemd;
mod v1;
mod v2;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxResources};

use crate::stats::Stats;
use crate::{Error, Result};

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub enum Cgroup {
    /// Per-controller v1 hierarchies.
    V1(v1::CgroupV1),
    /// The unified v2 hierarchy.
    V2(v2::CgroupV2),
    /// A systemd scope unit (v2): made by systemd, with the container's
    /// init in it, by [`Cgroup::start_scope`].
    Systemd(systemd::Scope),
}

/// Where a cgroup's files are: the per-controller v1 hierarchies or the
/// unified one.
enum Tree<'a> {
    V1(&'a v1::CgroupV1),
    V2(&'a v2::CgroupV2),
}

/// The parent of the cgroups the runtime names itself (`amphi/<id>`).
pub const OWN_PARENT: &str = "amphi";

/// Which cgroup version this host uses for resource control.
pub fn host_is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directories a process moves itself into with [`join_self`]: the
/// container's v1 cgroup, one per hierarchy.
///
/// Why the init moves itself: a move written by another process (a pid
/// into `cgroup.procs`) takes the kernel's global cgroup threadgroup lock
/// for writing, which first waits out an RCU grace period (~10 ms on this
/// host, per container). A single-threaded process that writes `0` (itself)
/// into a v1 `tasks` file needs no threadgroup stability and skips that
/// lock (`cgroup_procs_write_start`). v2 has no such file outside threaded
/// subtrees, so there the creator still moves the init.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SelfJoin {
    dirs: Vec<PathBuf>,
}

/// Moves the calling process into the cgroup of `join`, one hierarchy at a
/// time. Single-threaded callers only write `0` to each `tasks` file; a
/// caller with threads moves its whole thread group through `cgroup.procs`
/// (slower, but no thread is left behind).
pub(crate) fn join_self(join: &SelfJoin) -> Result<()> {
    let file = if single_threaded() {
        "tasks"
    } else {
        "cgroup.procs"
    };
    for dir in &join.dirs {
        write(dir, file, "0")?;
    }
    Ok(())
}

fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

impl Cgroup {
    /// The cgroup at `path` (relative to each hierarchy's root, or
    /// systemd's `slice:prefix:name`), not created.
    pub fn open(path: &str) -> Result<Cgroup> {
        if systemd::is_systemd_path(path) {
            return Ok(Cgroup::Systemd(systemd::Scope::parse(path)?));
        }
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::Spec(format!("bad cgroup path {path:?}")));
        }
        Ok(if host_is_v2() {
            Cgroup::V2(v2::CgroupV2::new(path))
        } else {
            Cgroup::V1(v1::CgroupV1::new(path)?)
        })
    }

    /// Whether systemd makes this cgroup, around a first process
    /// ([`Cgroup::start_scope`]), rather than [`Cgroup::create`].
    pub fn is_systemd(&self) -> bool {
        matches!(self, Cgroup::Systemd(_))
    }

    /// The hierarchy the cgroup's files are in (a systemd scope's are v2).
    fn tree(&self) -> Tree<'_> {
        match self {
            Cgroup::V1(c) => Tree::V1(c),
            Cgroup::V2(c) => Tree::V2(c),
            Cgroup::Systemd(s) => Tree::V2(&s.v2),
        }
    }

    /// Creates the cgroup (and its parents) in every hierarchy. A systemd
    /// scope needs a process: see [`Cgroup::start_scope`].
    pub fn create(&self) -> Result<()> {
        match self {
            Cgroup::V1(c) => c.create(),
            Cgroup::V2(c) => c.create(),
            // Fails early, before any process exists, without systemd.
            Cgroup::Systemd(s) => s.check_reachable(),
        }
    }

    /// Has systemd start the scope unit with `pid` in it, limited by `res`
    /// (as unit properties and in the scope's files). Other cgroups: moves
    /// `pid` in.
    pub fn start_scope(&self, pid: i32, res: Option<&LinuxResources>) -> Result<()> {
        match self {
            Cgroup::Systemd(s) => {
                s.start(pid, res)?;
                res.map_or(Ok(()), |r| s.v2.apply(r))
            }
            _ => self.add_pid(pid),
        }
    }

    /// Applies the spec's resource limits.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        match self {
            Cgroup::V1(c) => c.apply(res),
            Cgroup::V2(c) => c.apply(res),
            Cgroup::Systemd(s) => {
                s.set_properties(res)?;
                s.v2.apply(res)
            }
        }
    }

    /// Restricts which devices the cgroup's processes may make, read and
    /// write: nothing but the usual /dev nodes, what `spec` allows and the
    /// nodes `listed` in the spec's `linux.devices`. Done at create only;
    /// an Update's device rules are not applied.
    pub fn limit_devices(&self, spec: &[LinuxDeviceCgroup], listed: &[LinuxDevice]) -> Result<()> {
        let rules = devices::rules(spec, listed);
        match self.tree() {
            // v2 has no devices controller: an eBPF program enforces them.
            Tree::V2(c) => device_bpf::attach(&c.dir(), &rules),
            Tree::V1(c) => c.limit_devices(&rules),
        }
    }

    /// What a new process of this cgroup needs to move itself in
    /// ([`join_self`]); `None` where its creator must move it.
    pub(crate) fn self_join(&self) -> Option<SelfJoin> {
        match self {
            Cgroup::V1(c) => Some(SelfJoin {
                dirs: c.dirs().collect(),
            }),
            Cgroup::V2(_) | Cgroup::Systemd(_) => None,
        }
    }

    /// Moves a process into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        match self.tree() {
            Tree::V2(c) => c.add_pid(pid),
            Tree::V1(c) => c.add_pid(pid),
        }
    }

    /// Pids of every process in the cgroup.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let file = match self.tree() {
            Tree::V2(c) => c.dir().join("cgroup.procs"),
            Tree::V1(c) => c.procs_file(),
        };
        match std::fs::read_to_string(&file) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(file, e)),
        }
    }

    /// Freezes (pauses) every process of the cgroup.
    pub fn freeze(&self) -> Result<()> {
        match self.tree() {
            Tree::V2(c) => c.set_frozen(true),
            Tree::V1(c) => c.set_frozen(true),
        }
    }

    /// Thaws (resumes) the cgroup.
    pub fn thaw(&self) -> Result<()> {
        match self.tree() {
            Tree::V2(c) => c.set_frozen(false),
            Tree::V1(c) => c.set_frozen(false),
        }
    }

    /// Resource figures.
    pub fn stats(&self) -> Result<Stats> {
        match self.tree() {
            Tree::V2(c) => c.stats(),
            Tree::V1(c) => c.stats(),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.tree() {
            Tree::V2(c) => c.oom_kills(),
            Tree::V1(c) => c.oom_kills(),
        }
    }

    /// A descriptor that becomes readable when the kernel OOM-kills in this
    /// cgroup (and possibly at other memory events: confirm with
    /// [`Cgroup::oom_kills`]). v1: an eventfd registered on
    /// `memory.oom_control`; v2: an inotify watch on `memory.events`.
    /// Non-blocking; drain it with [`drain_notifier`] after each wake-up.
    pub fn oom_notifier(&self) -> Result<OwnedFd> {
        match self.tree() {
            Tree::V1(c) => {
                let dir = c.memory_dir();
                let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
                    0,
                    nix::sys::eventfd::EfdFlags::EFD_CLOEXEC
                        | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
                )
                .map_err(|e| Error::sys("eventfd", e))?;
                let control = dir.join("memory.oom_control");
                let oc = std::fs::File::open(&control).map_err(|e| Error::io(&control, e))?;
                // The kernel keeps what it needs; `oc` may close after this.
                write(
                    &dir,
                    "cgroup.event_control",
                    &format!("{} {}", efd.as_raw_fd(), oc.as_raw_fd()),
                )?;
                Ok(efd.into())
            }
            Tree::V2(c) => {
                let events = c.dir().join("memory.events");
                let ino = nix::sys::inotify::Inotify::init(
                    nix::sys::inotify::InitFlags::IN_CLOEXEC
                        | nix::sys::inotify::InitFlags::IN_NONBLOCK,
                )
                .map_err(|e| Error::sys("inotify_init", e))?;
                ino.add_watch(&events, nix::sys::inotify::AddWatchFlags::IN_MODIFY)
                    .map_err(|e| Error::sys(format!("inotify {}", events.display()), e))?;
                Ok(ino.into())
            }
        }
    }

    /// Sends `sig` to every process in the cgroup.
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) -> Result<()> {
        for pid in self.procs()? {
            // A process may exit between listing and signalling.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        Ok(())
    }

    /// Kills every process (freezing first so none can fork away), then
    /// removes the cgroup from every hierarchy. Safe to call again.
    pub fn destroy(&self) -> Result<()> {
        if !self.procs()?.is_empty() {
            let _ = self.freeze();
            self.signal_all(nix::sys::signal::Signal::SIGKILL)?;
            let _ = self.thaw();
        }
        // The kernel refuses rmdir (EBUSY) until the last task has fully
        // exited, which can trail the kill by a few milliseconds.
        if let Cgroup::Systemd(s) = self {
            // systemd removes the scope's cgroup when the unit stops.
            s.stop()?;
        }
        let mut last = Ok(());
        for attempt in 0..200 {
            last = match self.tree() {
                Tree::V2(c) => c.remove(),
                Tree::V1(c) => c.remove(),
            };
            if last.is_ok() {
                self.remove_own_parents();
                return Ok(());
            }
            if attempt % 20 == 19 {
                self.signal_all(nix::sys::signal::Signal::SIGKILL)?;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        last
    }

    /// The file holding the cgroup's current memory usage in bytes.
    pub fn memory_usage_file(&self) -> PathBuf {
        match self.tree() {
            Tree::V2(c) => c.dir().join("memory.current"),
            Tree::V1(c) => c.memory_dir().join("memory.usage_in_bytes"),
        }
    }

    /// The cgroup's directories to show inside the container at a `cgroup`
    /// mount: one per v1 hierarchy (named like its mount), or the v2 one
    /// with an empty name.
    pub fn mount_dirs(&self) -> Vec<(String, PathBuf)> {
        match self.tree() {
            Tree::V2(c) => vec![(String::new(), c.dir())],
            Tree::V1(c) => c.named_dirs(),
        }
    }

    /// Removes the runtime's own parent (`amphi/`) once it is empty, so
    /// nothing of ours outlives the last container. Parents of other
    /// managers (containerd's namespace, kubepods) are not ours to remove.
    fn remove_own_parents(&self) {
        let path = match self {
            Cgroup::V1(c) => c.path().to_string(),
            Cgroup::V2(c) => c.path().to_string(),
            // systemd prunes its own slices.
            Cgroup::Systemd(_) => return,
        };
        if !path.starts_with(&format!("{OWN_PARENT}/")) {
            return;
        }
        // Fails harmlessly (EBUSY) while other containers live in it.
        match self {
            Cgroup::V1(c) => c.remove_parent(OWN_PARENT),
            Cgroup::V2(c) => c.remove_parent(OWN_PARENT),
            Cgroup::Systemd(_) => {}
        }
    }

    /// Whether the cgroup exists in any hierarchy.
    pub fn exists(&self) -> bool {
        match self.tree() {
            Tree::V2(c) => c.dir().exists(),
            Tree::V1(c) => c.dirs().any(|d| d.exists()),
        }
    }
}

/// Writes `value` to `dir/file`, naming the file on error.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| Error::Cgroup {
        path,
        msg: format!("cannot write {value:?}: {e}"),
    })
}

/// Reads `dir/file` as one trimmed string.
pub(crate) fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads `dir/file` as a number ("max" reads as u64::MAX).
pub(crate) fn read_u64(dir: &Path, file: &str) -> u64 {
    match read(dir, file).as_deref() {
        Some("max") => u64::MAX,
        Some(s) => s.parse().unwrap_or(0),
        None => 0,
    }
}

/// Removes a cgroup directory; a missing one is fine.
pub(crate) fn rmdir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Cgroup {
            path: dir.to_path_buf(),
            msg: format!("cannot remove: {e}"),
        }),
    }
}

/// Creates a cgroup directory and its parents. Retries when a parent
/// vanishes midway (another container's delete removing an empty parent).
pub(crate) fn mkdir(dir: &Path) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match std::fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => last = Some(e),
            Err(e) => {
                return Err(Error::Cgroup {
                    path: dir.to_path_buf(),
                    msg: format!("cannot create: {e}"),
                })
            }
        }
    }
    Err(Error::Cgroup {
        path: dir.to_path_buf(),
        msg: format!("cannot create: {}", last.unwrap()),
    })
}

/// Empties a notifier of [`Cgroup::oom_notifier`] after it woke a poller.
pub fn drain_notifier(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}
