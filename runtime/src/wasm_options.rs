//! What a Wasm container's spec asks for its guest beyond args and env:
//! its preopens ([`crate::preopens`]), the outgoing HTTP it may make
//! ([`crate::http_outgoing`]) and where an HTTP component listens
//! ([`HTTP_LISTEN_ANNOTATION`]). Read by the creator, so a bad value fails
//! create in one line; sent to the init and kept in the state for execs.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::http_outgoing::Outgoing;
use crate::preopens::Preopen;
use crate::{Error, Result};

/// The address (`IP:PORT`) a `wasi:http/proxy` component listens on,
/// unless the container's env names one in `WASMTIME_HTTP_PROXY_SOCKET_ADDR`
/// (runwasi's variable); default `0.0.0.0:8080`, as `wasmtime serve`.
pub const HTTP_LISTEN_ANNOTATION: &str = "io.amphi.wasm.http-listen";

/// A Wasm container's options, from its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmOptions {
    /// What to preopen (before the init sees which are directories).
    pub preopens: Vec<Preopen>,
    /// The outgoing HTTP requests a component may make.
    pub http_outgoing: Outgoing,
    /// Where an HTTP component listens, if the annotation says.
    pub http_listen: Option<SocketAddr>,
}

impl WasmOptions {
    /// The options of a container with this spec.
    pub fn of_spec(spec: &oci_spec::runtime::Spec) -> Result<WasmOptions> {
        let empty = Default::default();
        let annotations = spec.annotations().as_ref().unwrap_or(&empty);
        let http_listen = match annotations.get(HTTP_LISTEN_ANNOTATION) {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|_| {
                Error::Spec(format!(
                    "annotation {HTTP_LISTEN_ANNOTATION}: {v:?} is not IP:PORT"
                ))
            })?),
        };
        Ok(WasmOptions {
            preopens: crate::preopens::of_spec(spec)?,
            http_outgoing: Outgoing::of_annotations(annotations)?,
            http_listen,
        })
    }
}
