//! amphi's image store, the way Docker's content store works: blobs kept
//! under their sha256 (verified while written), refs naming manifests, and
//! OCI image archives in and out. This crate knows nothing of processes.
//!
//! This first slice holds the store, deterministic layer tars, OCI/Docker
//! archive writing (`image save`) and packing a Wasm module into a runnable
//! image (`image pack --wasm`).

pub mod archive;
pub mod digest;
mod error;
pub mod layer;
pub mod media;
pub mod pack;
pub mod store;

pub use error::{Error, Result};
pub use store::Store;
