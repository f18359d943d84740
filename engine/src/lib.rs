//! amphi's standalone container engine: what a Docker daemon does for one
//! edge box, without a daemon. Containers have records (id, name, image,
//! options, status) under the store root; each running container has one
//! watcher, the process that is its parent and records its exit (the
//! foreground `amphi run`, or a detached watcher process for `-d`,
//! `start` and restarts); restart policies are the watcher's to apply.
//!
//! The engine drives [`amphi_runtime`] (one runtime container per run of a
//! container) and [`amphi_images`] (the overlay a container runs on, and
//! the images `commit` writes); it knows nothing of containerd.
//!
//! Map: [`options`] (what a user asks), [`record`] (what is kept),
//! [`names`], [`restart`] (policies), `create`, `task` (one run: create,
//! start, supervise, finish), [`watch`] (the watcher), `stop`, `remove`,
//! `reconcile` (containers whose watcher died), [`inspect`], [`copy`],
//! [`commit`], [`prune`], and the spec building in `bundle`, `spec`,
//! [`flags`], [`security`], [`seccomp_profile`] and [`process_opts`].

#![warn(missing_docs)]
#![recursion_limit = "256"]

pub mod bundle;
pub mod commit;
pub mod console;
pub mod copy;
mod create;
pub mod diff;
pub mod env;
mod error;
pub mod exec;
pub mod flags;
pub mod health;
pub mod inspect;
mod kernel_opts;
mod logfmt;
mod logs;
pub mod mounts;
pub mod names;
pub mod network;
pub mod options;
mod pause;
pub mod process_opts;
pub mod prune;
mod reconcile;
pub mod record;
mod remove;
pub mod restart;
pub mod seccomp_profile;
pub mod security;
mod shared_ns;
pub mod spec;
mod stop;
mod task;
pub mod units;
pub mod update;
pub mod volume;
pub mod watch;

use std::path::{Path, PathBuf};

use amphi_runtime::{Runtime, RuntimeConfig};

pub use error::{Context, Error, Result};
pub use logs::LogOptions;
pub use options::RunOptions;
pub use record::{Record, Status};
pub use task::{Finished, Task};

/// The binary, beside the front end's, that runs native container inits.
pub const NATIVE_INIT: &str = "amphi-init";

/// Where the engine keeps things and which binary is its watcher.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The store root: images, container records and bundles, the Wasm cache.
    pub root: PathBuf,
    /// The runtime's state root (lost on reboot; nothing else is).
    pub state: PathBuf,
    /// The command that becomes a detached watcher: this program and the
    /// arguments before [`watch::WATCH_ARGS`]'s (default: this binary).
    /// The program must hand `<exe> --root R --state S container-watch
    /// ID DELAY_MS` to [`Engine::watch`].
    pub watcher_exe: PathBuf,
}

/// The engine: containers from images (or bundles), their lifecycle and
/// their records.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    runtime: Runtime,
}

impl Engine {
    /// An engine over `root` (store) and `state` (runtime state).
    pub fn new(root: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Engine {
        Engine::with_config(EngineConfig {
            root: root.into(),
            state: state.into(),
            watcher_exe: PathBuf::from("/proc/self/exe"),
        })
    }

    /// An engine with the given configuration.
    pub fn with_config(config: EngineConfig) -> Engine {
        // Native inits start from the small `amphi-init` beside this binary
        // when it is installed (no Wasm engine to map and relocate); Wasm
        // inits, and every init without it, from this binary.
        let native_init = std::env::current_exe()
            .ok()
            .map(|p| p.with_file_name(NATIVE_INIT))
            .filter(|p| p.is_file());
        let runtime = Runtime::new(match native_init {
            Some(init) => RuntimeConfig {
                state_root: config.state.clone(),
                wasm_cache: config.root.join("wasm-cache"),
                init_exe: init,
                wasm_init_exe: Some(PathBuf::from("/proc/self/exe")),
                fork_wasm_init: true,
            },
            None => RuntimeConfig {
                state_root: config.state.clone(),
                wasm_cache: config.root.join("wasm-cache"),
                fork_wasm_init: true,
                ..RuntimeConfig::default()
            },
        });
        Engine { config, runtime }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The runtime the engine drives.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The id of the container `query` names (id, name or unique id prefix).
    pub fn resolve(&self, query: &str) -> Result<String> {
        names::resolve(&self.config.root, query)
    }

    /// The record of `query`, brought up to date first (a container whose
    /// watcher died is cleaned up and shown exited).
    pub fn container(&self, query: &str) -> Result<Record> {
        // A whole id's record is read once, not by resolve and again here.
        let rec = match names::whole_id(query).then(|| record::load(&self.config.root, query)) {
            Some(Ok(r)) => r,
            _ => record::load(&self.config.root, &self.resolve(query)?)?,
        };
        self.reconcile(rec)?
            .ok_or_else(|| Error::NoSuchContainer(query.to_string()))
    }

    /// Where it keeps things.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every container's record, brought up to date, oldest first.
    pub fn containers(&self) -> Result<Vec<Record>> {
        Ok(self.containers_and_broken()?.0)
    }

    /// [`Engine::containers`], and beside them the containers whose
    /// record cannot be read: each id and why (`remove` with force removes
    /// them). One listing of the store for both.
    pub fn containers_and_broken(&self) -> Result<(Vec<Record>, record::Broken)> {
        let (records, broken) = record::list_all(&self.config.root)?;
        let mut out = Vec::new();
        for rec in records {
            if let Some(r) = self.reconcile(rec)? {
                out.push(r);
            }
        }
        Ok((out, broken))
    }
}
