//! amphi's container runtime: an OCI runtime bundle becomes a running,
//! sandboxed container whose payload is either a native Linux process or a
//! WASI module under wasmtime. Both payloads get the same sandbox (namespaces,
//! rootfs, mounts, user, capabilities, rlimits) and the same cgroup.
//!
//! The crate knows nothing of containerd or image stores. Front ends (the
//! `amphi` CLI and the containerd shim) drive it through [`Runtime`] and
//! [`Container`], and must call [`init::run_if_init`] first thing in `main`:
//! the container init is this same binary, re-executed (see ARCHITECTURE.md).
//! A front end that passes no Wasm engine there links none of wasmtime and
//! names a helper binary for Wasm inits ([`RuntimeConfig::wasm_init_exe`]).

#![warn(missing_docs)]

pub mod bundle;
pub mod cgroup;
mod container;
pub mod detect;
mod error;
pub mod features;
pub mod http_outgoing;
pub mod init;
pub mod init_layer;
pub mod mount;
pub mod netdev;
pub mod paths;
pub mod preopens;
mod seccomp;
mod spawn;
pub mod state;
pub mod stats;
mod sync;
pub mod wasm;
pub mod wasm_options;

pub use container::{
    Container, CreateOptions, ExecProcess, ExitStatus, Runtime, RuntimeConfig, Stdio,
};
pub use error::{Error, Result};
pub use state::{State, Status};
pub use stats::Stats;

/// Signal names for [`Container::kill`].
pub use nix::sys::signal as nix_signal;
/// Re-exported so front ends build specs and resources with the same types.
pub use oci_spec;
