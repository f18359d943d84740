//! amphi's image store, the way Docker's content store works: blobs kept
//! under their sha256 (verified while written), refs naming manifests, and
//! OCI image archives in and out. This crate knows nothing of processes.
//!
//! Here: the store, loading OCI and Docker archives with verification
//! and safe unpacking into chain-ID snapshots, deterministic layer tars,
//! archive writing (`image save`) and packing a Wasm module into a runnable
//! image (`image pack --wasm`).

#![warn(missing_docs)]

pub mod archive;
pub mod digest;
mod error;
pub mod gc;
pub mod layer;
pub mod load;
pub mod media;
pub mod pack;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;
pub mod xattr;

pub use error::{Error, Result};
pub use store::Store;
