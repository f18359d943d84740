//! The directories a Wasm guest is given (its WASI preopens), from the
//! spec: the rootfs as `/` read-write unless the annotation
//! [`PREOPENS_ANNOTATION`] narrows it, then every bind and tmpfs mount of a
//! directory at its container path, so a guest that looks a directory up
//! by its preopen name finds it. A listed directory may be given another
//! name (`PATH::NAME`, as `wasmtime run --dir HOST::GUEST` names one):
//! `/t::/` gives the guest the container's /t as its `/`, and
//! `/t::fs-tests.dir` under the relative name the WASI test suite's older
//! tests look up.

use std::collections::HashMap;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The annotation that narrows a Wasm container's preopens: `none` (no
/// preopen at all: fd 3 stays free, as under a bare `wasmtime run`), or a
/// comma-separated list of container directories, each `PATH`, `PATH:ro`
/// or `PATH:rw` (read-write is the default), optionally renamed
/// (`PATH::NAME`, `PATH::NAME:ro`), which replaces the rootfs as `/`.
/// Mounted directories are preopened too, unless it is `none`.
pub const PREOPENS_ANNOTATION: &str = "io.amphi.wasm.preopens";

/// One directory a Wasm guest is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    /// Its path inside the container.
    pub path: String,
    /// The name the guest sees it by: its path unless renamed.
    pub name: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
    /// Whether it must exist (asked for by name), or may be skipped when
    /// it is no directory (a mount of a file, such as /etc/hosts).
    pub required: bool,
}

/// Parses the annotation's value: `None` for `none`, else the list.
pub fn parse(value: &str) -> Result<Option<Vec<Preopen>>> {
    let bad = |msg: String| Error::Spec(format!("annotation {PREOPENS_ANNOTATION}: {msg}"));
    let value = value.trim();
    if value == "none" {
        return Ok(None);
    }
    let mut list: Vec<Preopen> = Vec::new();
    for item in value.split(',').map(str::trim) {
        // The name may hold a single ':' but not '::'; the mode comes last.
        let (path, rest) = match item.split_once("::") {
            Some((p, rest)) => (p, Some(rest)),
            None => (item, None),
        };
        let moded = rest.unwrap_or(path);
        let (head, read_only) = match moded.rsplit_once(':') {
            Some((p, "ro")) => (p, true),
            Some((p, "rw")) => (p, false),
            Some((_, mode)) if rest.is_none() => {
                return Err(bad(format!("{item:?}: unknown mode {mode:?} (ro or rw)")))
            }
            _ => (moded, false),
        };
        let (path, name) = match rest {
            Some(_) => (path, Some(head)),
            None => (head, None),
        };
        if name.is_some_and(|n| n.is_empty() || n.contains('\0')) {
            return Err(bad(format!("{item:?}: an empty preopen name")));
        }
        if !path.starts_with('/') {
            return Err(bad(format!("{item:?}: not an absolute container path")));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(bad(format!("{item:?}: a path with '..'")));
        }
        let path = normalise(path);
        if list.iter().any(|p| p.path == path) {
            return Err(bad(format!("{path} is listed twice")));
        }
        let name = name.map_or_else(|| path.clone(), str::to_string);
        list.push(Preopen {
            path,
            name,
            read_only,
            required: true,
        });
    }
    Ok(Some(list))
}

/// `/a//b/./c/` → `/a/b/c`.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The preopens of a Wasm container with this spec (see the module docs).
/// A bad annotation is an error naming it.
pub fn of_spec(spec: &Spec) -> Result<Vec<Preopen>> {
    let empty = HashMap::new();
    let annotations = spec.annotations().as_ref().unwrap_or(&empty);
    let mut list = match annotations.get(PREOPENS_ANNOTATION).map(|v| parse(v)) {
        None => vec![Preopen {
            path: "/".into(),
            name: "/".into(),
            read_only: false,
            required: true,
        }],
        Some(Ok(Some(list))) => list,
        Some(Ok(None)) => return Ok(Vec::new()),
        Some(Err(e)) => return Err(e),
    };
    for m in mounts(spec) {
        if !list.iter().any(|p| p.path == m.path) {
            list.push(m);
        }
    }
    Ok(list)
}

/// The spec's bind and tmpfs mounts outside the kernel's filesystems
/// (/proc, /sys, /dev), at their container paths; whether each is a
/// directory is only known inside the container.
fn mounts(spec: &Spec) -> Vec<Preopen> {
    let system = |d: &str| {
        ["/proc", "/sys", "/dev"]
            .iter()
            .any(|s| d == *s || d.starts_with(&format!("{s}/")))
    };
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            let opts = m.options().clone().unwrap_or_default();
            m.typ().as_deref() == Some("tmpfs")
                || m.typ().as_deref() == Some("bind")
                || opts.iter().any(|o| o == "bind" || o == "rbind")
        })
        .filter_map(|m| {
            let path = normalise(&m.destination().to_string_lossy());
            let read_only = m
                .options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o == "ro"));
            (path != "/" && !system(&path)).then_some(Preopen {
                name: path.clone(),
                path,
                read_only,
                required: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotation: Option<&str>) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv/d", "options": ["rbind", "ro"]},
                {"destination": "/etc/hosts", "type": "bind", "source": "/x/hosts", "options": ["rbind"]},
            ]
        });
        if let Some(a) = annotation {
            v["annotations"] = serde_json::json!({ PREOPENS_ANNOTATION: a });
        }
        serde_json::from_value(v).unwrap()
    }

    fn paths(list: &[Preopen]) -> Vec<(&str, bool)> {
        list.iter()
            .map(|p| (p.path.as_str(), p.read_only))
            .collect()
    }

    #[test]
    fn the_rootfs_and_the_mounts_by_default() {
        let list = of_spec(&spec(None)).unwrap();
        assert_eq!(
            paths(&list),
            [("/", false), ("/data", true), ("/etc/hosts", false)]
        );
        assert!(list[0].required && !list[1].required);
    }

    #[test]
    fn the_annotation_narrows_or_removes_them() {
        let list = of_spec(&spec(Some("/app:ro, /tmp/"))).unwrap();
        assert_eq!(
            paths(&list),
            [
                ("/app", true),
                ("/tmp", false),
                ("/data", true),
                ("/etc/hosts", false)
            ]
        );
        assert!(of_spec(&spec(Some("none"))).unwrap().is_empty());
        // Listing a mount's path decides its mode.
        let list = of_spec(&spec(Some("/data:rw"))).unwrap();
        assert_eq!(paths(&list)[0], ("/data", false));
    }

    #[test]
    fn a_listed_directory_may_be_renamed() {
        let list = of_spec(&spec(Some("/t::/,/data::fs-tests.dir:ro,/x::a:b"))).unwrap();
        let named: Vec<_> = list
            .iter()
            .map(|p| (p.path.as_str(), p.name.as_str(), p.read_only))
            .collect();
        assert_eq!(
            named,
            [
                ("/t", "/", false),
                ("/data", "fs-tests.dir", true),
                ("/x", "a:b", false),
                ("/etc/hosts", "/etc/hosts", false)
            ]
        );
    }

    #[test]
    fn a_bad_annotation_is_named() {
        for bad in ["app", "/a:rx", "/a/../b", "/a,/a/", "", "/a::", "/a:::ro"] {
            let e = of_spec(&spec(Some(bad))).unwrap_err().to_string();
            assert!(e.contains(PREOPENS_ANNOTATION), "{bad}: {e}");
        }
    }
}
