//! The persisted state of a container: `<state root>/<id>/state.json`.
//!
//! Any process can load it to find and control the container; only the
//! process that reaps the container's init records its exit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::{Error, Result};

/// File name of the state inside a container's state directory.
pub const STATE_FILE: &str = "state.json";
/// The FIFO the init blocks on until `start`.
pub const START_FIFO: &str = "start.fifo";
/// The compiled seccomp filter, in the state dir, when the spec has one.
pub const SECCOMP_FILE: &str = "seccomp.bpf";

/// Where a container is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The sandbox is set up; the payload waits for `start`.
    Created,
    /// The payload runs.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// A native process, `execve`d.
    Native,
    /// A WASI module run under wasmtime.
    Wasm,
}

impl std::fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadKind::Native => "native",
            PayloadKind::Wasm => "wasm",
        })
    }
}

/// Everything another process needs to find and control a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Rootfs directory (host path).
    pub rootfs: PathBuf,
    /// Lifecycle status as last recorded.
    pub status: Status,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot) to tell it from a reused pid.
    pub pid_start_time: u64,
    /// Native or Wasm.
    pub payload: PayloadKind,
    /// Cgroup path, relative to each hierarchy's root.
    pub cgroup: String,
    /// The entrypoint inside the container.
    pub entrypoint: String,
    /// When the container was created.
    pub created_at: SystemTime,
    /// When the container was started.
    pub started_at: Option<SystemTime>,
    /// Exit code (128+signal when killed), once stopped and reaped.
    pub exit_code: Option<i32>,
    /// When the init exited.
    pub exited_at: Option<SystemTime>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// What a Wasm payload (the init's or an exec's) is granted.
    #[serde(default)]
    pub wasm: crate::wasm_options::WasmOptions,
}

impl State {
    /// The directory holding this container's state under `root`.
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    /// Loads the state of container `id` from `root`.
    pub fn load(root: &Path, id: &str) -> Result<State> {
        let path = Self::dir(root, id).join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Bundle {
            path: path.clone(),
            msg: format!("corrupt state: {e}"),
        })
    }

    /// Writes the state atomically (temp file + rename), so a reader never
    /// sees half of it.
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = Self::dir(root, &self.id);
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(&bytes).at(&tmp)?;
        drop(f);
        // A reboot may lose runtime state: no flush-before-rename needed.
        replace_volatile(&tmp, &dir.join(STATE_FILE)).at(&dir)
    }

    /// Whether the recorded init process is still alive (and not a reused pid).
    pub fn init_alive(&self) -> bool {
        if self.exit_code.is_some() {
            return false;
        }
        match process_start_time(self.pid) {
            Some(t) => t == self.pid_start_time && !is_zombie(self.pid),
            None => false,
        }
    }

    /// The status, corrected for an init that died since it was recorded.
    pub fn current_status(&self) -> Status {
        match self.status {
            Status::Running | Status::Paused | Status::Created if !self.init_alive() => {
                Status::Stopped
            }
            s => s,
        }
    }
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat), or None when it does not exist.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is a zombie (exited, not yet reaped).
pub fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Checks a container id: it names a directory and a cgroup, so keep it tame.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// Puts `tmp` in `dest`'s place, atomically for readers, for a file that a
/// power cut may lose: swapped with the old one (`RENAME_EXCHANGE`), which
/// is then removed, rather than renamed over it. ext4 writes a file that
/// is renamed over another out before the rename commits (`auto_da_alloc`,
/// its guard against empty files after a crash), so removing it later
/// frees real blocks, which on a disk mounted with `discard` is a trim
/// the removal waits for; a file swapped in is written back in its own
/// time, and one removed before then never reaches the disk. Where the
/// filesystem cannot exchange, or `dest` is not there yet, a plain rename.
pub fn replace_volatile(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => fs::remove_file(tmp),
        Err(Errno::ENOENT | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::rename(tmp, dest)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x").is_ok());
        for bad in ["", ".", "..", "a/b", "-x", "a b", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_start_time_is_known() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
