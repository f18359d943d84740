//! A container's record: what it is (id, name, image, options) and where it
//! stands (status, exit, restarts, its watcher), kept under the store root
//! (`<root>/containers/<id>/record.json`) so it survives a reboot. Every
//! change goes through [`update`], under the container's lock, so the
//! watcher and the commands a user types never lose each other's writes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use amphi_runtime::state::{is_zombie, process_start_time};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::options::RunOptions;

const RECORD: &str = "record.json";
const LOCK: &str = "lock";

/// Lifecycle status, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    #[default]
    Created,
    /// Its init runs.
    Running,
    /// Exited; its watcher waits to start it again.
    Restarting,
    /// Ended.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        })
    }
}

/// A process identified beyond pid reuse: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Host pid.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id() as i32;
        ProcessId {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    /// Whether it still lives (and is not a zombie or a reused pid).
    pub fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }
}

/// Where a container stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    /// Lifecycle status.
    pub status: Status,
    /// Host pid of the init while running, else 0.
    pub pid: i32,
    /// The last exit code (128+signal when killed).
    pub exit_code: i32,
    /// Whether the kernel's OOM killer ended the last run.
    pub oom_killed: bool,
    /// Why the last start or run failed, if amphi failed it.
    pub error: String,
    /// When the last run started.
    pub started_at: Option<SystemTime>,
    /// When the last run ended.
    pub finished_at: Option<SystemTime>,
    /// Restarts by the restart policy since the last start by a user.
    pub restart_count: u32,
    /// Stopped (or killed) by a user: the restart policy stays its hand
    /// (Docker's HasBeenManuallyStopped).
    pub stopped_by_user: bool,
    /// The process that is the container's parent and records its exit:
    /// the foreground `amphi run`/`start -a`, or a detached watcher.
    pub watcher: Option<ProcessId>,
    /// The `amphi run` that made the container to start it at once, until
    /// it prepares that run: should it die in between, the container is
    /// orphaned like one whose watcher died (a `--rm` one is removed).
    pub creator: Option<ProcessId>,
}

impl RunState {
    /// Records a run amphi could not start or had to abandon: exited 125
    /// with `error`, no watcher.
    pub fn failed(&mut self, error: String) {
        self.status = Status::Exited;
        self.error = error;
        self.exit_code = 125;
        self.watcher = None;
        self.finished_at = Some(SystemTime::now());
    }
}

/// A container's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created: SystemTime,
    /// The image as the user named it (or the bundle's path).
    pub image: String,
    /// The image's manifest digest; `None` for a bundle.
    pub image_digest: Option<String>,
    /// The image's config digest (Docker's image ID); `None` for a bundle.
    pub image_id: Option<String>,
    /// The process it runs: path and arguments, as in the final spec.
    pub args: Vec<String>,
    /// Native or Wasm.
    pub payload: String,
    /// The signal `stop` sends first.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u64,
    /// What the user asked for.
    pub options: RunOptions,
    /// Its mounts (volumes, binds, tmpfs), resolved at create.
    #[serde(default)]
    pub mounts: Vec<crate::mounts::MountPoint>,
    /// Its health check, settled at create (the image's and the flags).
    #[serde(default)]
    pub health: Option<crate::health::HealthConfig>,
    /// Where it stands.
    pub state: RunState,
}

impl Record {
    /// Whether it runs or is about to run again.
    pub fn is_active(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Restarting)
    }

    /// Its network mode: `bridge`, a network's name, `host`, `none`, or
    /// empty for a bundle's own spec (records before networks: `host`).
    pub fn network_mode(&self) -> &str {
        match self.options.network.as_deref() {
            Some(n) => n,
            None if self.options.bundle.is_some() => "",
            None => "host",
        }
    }

    /// Every network it is on: its network mode's, when that is a
    /// network, then those `network connect` added.
    pub fn networks(&self) -> Vec<String> {
        let mode = self.network_mode();
        let first = crate::network::is_attached_mode(mode).then(|| mode.to_string());
        first
            .into_iter()
            .chain(self.options.extra_networks.iter().cloned())
            .collect()
    }

    /// The volumes its mounts use.
    pub fn volume_names(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                crate::mounts::Source::Volume { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The anonymous volumes made for it.
    pub fn anonymous_volumes(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter_map(|m| match &m.source {
                crate::mounts::Source::Volume {
                    name,
                    anonymous: true,
                    ..
                } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Labels as (key, value).
    pub fn labels(&self) -> Vec<(String, String)> {
        self.options
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            })
            .collect()
    }
}

/// The directory holding every container's record and bundle.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    containers_dir(root).join(id)
}

/// Loads the record of `id`.
pub fn load(root: &Path, id: &str) -> Result<Record> {
    let path = dir(root, id).join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSuchContainer(id.to_string()))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: corrupt record: {e}", path.display())))
}

/// Writes a record atomically (temp file + rename). A `--rm` container's
/// is gone after a reboot anyway, so it is swapped in without ext4's
/// flush-before-rename (see `amphi_runtime::state::replace_volatile`);
/// every other record keeps that guard against a power cut.
pub fn save(root: &Path, rec: &Record) -> Result<()> {
    let d = dir(root, &rec.id);
    let tmp = d.join(".record.json.tmp");
    let bytes = serde_json::to_vec_pretty(rec).expect("a record serialises");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    let dest = d.join(RECORD);
    if rec.options.rm {
        amphi_runtime::state::replace_volatile(&tmp, &dest)
    } else {
        std::fs::rename(&tmp, &dest)
    }
    .map_err(|e| Error::io(&d, e))
}

/// Holds container `id`'s lock while alive.
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Takes container `id`'s lock (waiting for it).
pub fn lock(root: &Path, id: &str) -> Result<Lock> {
    let path = dir(root, id).join(LOCK);
    let f = match File::options().create(true).append(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoSuchContainer(id.to_string()))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    Flock::lock(f, FlockArg::LockExclusive)
        .map(Lock)
        .map_err(|(_, e)| Error::io(path, e.into()))
}

/// Loads, changes and saves `id`'s record under its lock; returns the
/// record as saved.
pub fn update(root: &Path, id: &str, f: impl FnOnce(&mut Record)) -> Result<Record> {
    let _lock = lock(root, id)?;
    let mut rec = load(root, id)?;
    f(&mut rec);
    save(root, &rec)?;
    Ok(rec)
}

/// Every container's record, oldest first.
pub fn list(root: &Path) -> Result<Vec<Record>> {
    let (records, broken) = list_all(root)?;
    for (id, e) in broken {
        tracing::warn!("container {id} skipped: {e}");
    }
    Ok(records)
}

/// Containers whose record cannot be read: each id and why.
pub type Broken = Vec<(String, Error)>;

/// Every record, oldest first, and beside them the containers whose record
/// cannot be read: one damaged record (a disk fault, a hand edit) hides
/// only its own container, which `rm -f` then removes.
pub fn list_all(root: &Path) -> Result<(Vec<Record>, Broken)> {
    let (mut out, mut broken) = (Vec::new(), Vec::new());
    let d = containers_dir(root);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, broken)),
        Err(e) => return Err(Error::io(d, e)),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(id) = name.to_str() else { continue };
        if id.starts_with('.') {
            continue;
        }
        // A directory being made or removed has no record (yet, or any
        // more): not a container.
        match load(root, id) {
            Ok(r) => out.push(r),
            Err(Error::NoSuchContainer(_)) => {}
            Err(e) => broken.push((id.to_string(), e)),
        }
    }
    out.sort_by_key(|r| r.created);
    Ok((out, broken))
}
