//! Namespaces shared between containers, as Docker's `--pid
//! container:NAME` and `--ipc container:NAME` share them, and the IPC
//! namespace a container offers (`--ipc shareable`).
//!
//! A joining run pins the target's namespace at a path of its own in the
//! state root, as `--network container:` pins a netns, so its spec names
//! a stable path for every start and the namespace stays its until the
//! run ends. POSIX shared memory (/dev/shm) can only be shared if it lives
//! on the host's side: a shareable container's /dev/shm is a tmpfs the
//! engine mounts under the state root for each run and binds in; a
//! container joining its IPC namespace binds the same tmpfs. A private
//! container keeps the tmpfs its runtime mounts inside (no host mount, no
//! cost). Everything here goes when the run ends.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::bail;
use crate::error::{Error, Result};
use crate::network::{netns, CONTAINER_MODE};
use crate::options::RunOptions;
use crate::record::{self, Record, Status};
use crate::{units, Engine};

/// The namespaces that can be another container's: spec type and name.
const KINDS: [(&str, &str); 2] = [("pid", "PID"), ("ipc", "IPC")];

/// Docker's default size of /dev/shm.
const DEFAULT_SHM: i64 = 64 << 20;

fn mode<'a>(opts: &'a RunOptions, kind: &str) -> &'a str {
    match kind {
        "pid" => opts.pid.as_deref(),
        _ => opts.ipc.as_deref(),
    }
    .unwrap_or("")
}

impl Engine {
    fn shared_dir(&self, id: &str) -> PathBuf {
        self.config.state.join("ns").join(id)
    }

    /// Where `id`'s run pins the `kind` namespace it joins.
    fn ns_pin(&self, id: &str, kind: &str) -> PathBuf {
        self.shared_dir(id).join(kind)
    }

    /// The host-side /dev/shm of shareable container `id`'s run.
    fn shm_dir(&self, id: &str) -> PathBuf {
        self.shared_dir(id).join("shm")
    }

    /// Settles `--pid`/`--ipc container:NAME` at create: the target named
    /// by id (a rename or a new container of that name is not it); a
    /// target whose IPC is not shareable is refused, as Docker refuses it.
    pub(crate) fn namespace_options(&self, opts: &mut RunOptions) -> Result<()> {
        for (kind, what) in KINDS {
            let Some(target) = mode(opts, kind).strip_prefix(CONTAINER_MODE) else {
                continue;
            };
            let other = self.container(target)?;
            if kind == "ipc" && other.options.ipc.as_deref() != Some("shareable") {
                bail!(
                    "non-shareable IPC: container {} must be made with --ipc shareable to share it",
                    other.name
                );
            }
            let resolved = Some(format!("{CONTAINER_MODE}{}", other.id));
            match kind {
                "pid" => opts.pid = resolved,
                _ => opts.ipc = resolved,
            }
            tracing::debug!(target = other.id, "joins its {what} namespace");
        }
        Ok(())
    }

    /// The spec of new container `id`: a joined namespace by its pin, and
    /// /dev/shm bound from the host's side when shared.
    pub(crate) fn apply_shared_namespaces(&self, id: &str, v: &mut Value, opts: &RunOptions) {
        for (kind, _) in KINDS {
            if mode(opts, kind).starts_with(CONTAINER_MODE) {
                if let Some(list) = v["linux"]["namespaces"].as_array_mut() {
                    list.retain(|n| n["type"] != kind);
                    list.push(json!({"type": kind, "path": self.ns_pin(id, kind)}));
                }
            }
        }
        let shm = match mode(opts, "ipc") {
            "shareable" => Some(self.shm_dir(id)),
            m => m.strip_prefix(CONTAINER_MODE).map(|t| self.shm_dir(t)),
        };
        if let Some(source) = shm {
            if let Some(m) = v["mounts"]
                .as_array_mut()
                .and_then(|m| m.iter_mut().find(|m| m["destination"] == "/dev/shm"))
            {
                *m = json!({"destination": "/dev/shm", "type": "bind", "source": source,
                            "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]});
            }
        }
    }

    /// Before `rec`'s run: the namespaces it joins pinned (their owners
    /// must be running), and its own shareable /dev/shm mounted. Undone
    /// on failure.
    pub(crate) fn share_namespaces(&self, rec: &Record) -> Result<()> {
        let opts = &rec.options;
        let wanted = KINDS
            .iter()
            .any(|(k, _)| mode(opts, k).starts_with(CONTAINER_MODE))
            || mode(opts, "ipc") == "shareable";
        if !wanted {
            return Ok(());
        }
        let made = (|| -> Result<()> {
            for (kind, what) in KINDS {
                let Some(target) = mode(opts, kind).strip_prefix(CONTAINER_MODE) else {
                    continue;
                };
                let pid = self.running_init(rec, target, what)?;
                netns::pin_existing(
                    &self.ns_pin(&rec.id, kind),
                    Path::new(&format!("/proc/{pid}/ns/{kind}")),
                )?;
            }
            if mode(opts, "ipc") == "shareable" {
                let size = match &opts.shm_size {
                    Some(s) => units::parse_bytes(s)
                        .map_err(|e| Error::Invalid(format!("bad --shm-size: {e}")))?,
                    None => DEFAULT_SHM,
                };
                let dir = self.shm_dir(&rec.id);
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                use nix::mount::{mount, MsFlags};
                mount(
                    Some("shm"),
                    &dir,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    Some(format!("mode=1777,size={size}").as_str()),
                )
                .map_err(|e| Error::io(&dir, e.into()))?;
            }
            Ok(())
        })();
        if made.is_err() {
            let _ = self.release_namespaces(&rec.id);
        }
        made
    }

    /// After `id`'s run (or in the clean-up of one whose watcher died):
    /// its pins and /dev/shm go. Nothing there is no error.
    pub(crate) fn release_namespaces(&self, id: &str) -> Result<()> {
        let dir = self.shared_dir(id);
        // Every run's clean-up asks: one stat when there is nothing.
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        for (kind, _) in KINDS {
            netns::unpin(&self.ns_pin(id, kind))?;
        }
        let shm = self.shm_dir(id);
        while crate::bundle::is_mounted(&shm) {
            use nix::mount::{umount2, MntFlags};
            if let Err(e) = umount2(&shm, MntFlags::MNT_DETACH) {
                return Err(Error::io(&shm, e.into()));
            }
        }
        for d in [shm.as_path(), dir.as_path()] {
            match std::fs::remove_dir(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(d, e)),
                _ => {}
            }
        }
        // The last run's goes with it: nothing of amphi stays in the
        // state root once no container runs.
        let _ = std::fs::remove_dir(self.config.state.join("ns"));
        Ok(())
    }

    /// The host pid of the init of `target`, the container whose `what`
    /// namespace `rec` joins: it must be there and running.
    pub(crate) fn running_init(&self, rec: &Record, target: &str, what: &str) -> Result<i32> {
        let other = record::load(self.root(), target).map_err(|_| {
            Error::Invalid(format!(
                "container {}: the container whose {what} namespace it joins ({target}) is gone",
                rec.name
            ))
        })?;
        self.runtime()
            .load(&other.id)
            .ok()
            .map(|c| c.pid())
            .filter(|p| *p > 0 && other.state.status == Status::Running)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "cannot join the {what} namespace of container {}: it is not running",
                    other.name
                ))
            })
    }
}
