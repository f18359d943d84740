//! Which outgoing HTTP requests (`wasi:http/outgoing-handler`) a Wasm
//! component may make, from the annotation [`HTTP_OUTGOING_ANNOTATION`]:
//! all (the default, as under `wasmtime serve`), none, or only those to
//! the listed authorities.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `allow` (the default), `deny`, or a comma-separated list of
/// `HOST[:PORT]` a component may send requests to (a host without a port
/// allows any of its ports). Anything else is refused with wasi:http's
/// `HTTP-request-denied`.
pub const HTTP_OUTGOING_ANNOTATION: &str = "io.amphi.wasm.http-outgoing";

/// The policy for outgoing requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outgoing {
    /// Any request goes out (through the container's network).
    #[default]
    All,
    /// None does.
    Nothing,
    /// Only to these `host` or `host:port` authorities (lower case).
    Only(Vec<String>),
}

impl Outgoing {
    /// The policy the spec's annotations ask for; a bad value is an error
    /// naming the annotation.
    pub fn of_annotations(annotations: &HashMap<String, String>) -> Result<Outgoing> {
        let Some(value) = annotations.get(HTTP_OUTGOING_ANNOTATION) else {
            return Ok(Outgoing::All);
        };
        match value.trim() {
            "allow" => Ok(Outgoing::All),
            "deny" => Ok(Outgoing::Nothing),
            list => {
                let mut hosts = Vec::new();
                for item in list.split(',').map(str::trim) {
                    let (host, port) = item.rsplit_once(':').unwrap_or((item, ""));
                    let bad_host = host.is_empty()
                        || !host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
                    if bad_host || (!port.is_empty() && port.parse::<u16>().is_err()) {
                        return Err(Error::Spec(format!(
                            "annotation {HTTP_OUTGOING_ANNOTATION}: {item:?} is not HOST[:PORT] \
                             (or use allow / deny)"
                        )));
                    }
                    hosts.push(item.to_ascii_lowercase());
                }
                Ok(Outgoing::Only(hosts))
            }
        }
    }

    /// Whether a request to `host` on `port` may go out.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        match self {
            Outgoing::All => true,
            Outgoing::Nothing => false,
            Outgoing::Only(list) => {
                let host = host.to_ascii_lowercase();
                let with_port = format!("{host}:{port}");
                list.iter().any(|a| *a == host || *a == with_port)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &str) -> Result<Outgoing> {
        Outgoing::of_annotations(&HashMap::from([(
            HTTP_OUTGOING_ANNOTATION.to_string(),
            v.to_string(),
        )]))
    }

    #[test]
    fn policies() {
        assert_eq!(
            Outgoing::of_annotations(&HashMap::new()).unwrap(),
            Outgoing::All
        );
        assert!(!of("deny").unwrap().allows("a", 80));
        let only = of("api.example:443, Cache").unwrap();
        assert!(only.allows("api.example", 443));
        assert!(!only.allows("api.example", 80));
        assert!(only.allows("cache", 8080));
        assert!(!only.allows("other", 443));
        for bad in ["", "a:b", "x y", "h:99999"] {
            assert!(
                of(bad)
                    .unwrap_err()
                    .to_string()
                    .contains(HTTP_OUTGOING_ANNOTATION),
                "{bad}"
            );
        }
    }
}
