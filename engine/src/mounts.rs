//! A container's mounts as Docker's CLI takes them: `-v NAME:DST[:ro]`,
//! `-v /HOST:DST[:ro]`, `-v DST` (anonymous volume), `--mount
//! type=bind|volume|tmpfs,...`, `--tmpfs DST[:OPTS]`, and an anonymous
//! volume for each of the image's `VOLUME`s no user mount covers. Resolved
//! once, at create, into [`MountPoint`]s kept in the record.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::options::RunOptions;

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Source {
    /// A host path.
    Bind {
        /// Its (canonical) path.
        path: String,
    },
    /// A volume of the store.
    Volume {
        /// Its name (random for an anonymous one).
        name: String,
        /// Made for this container.
        anonymous: bool,
        /// Not filled from the image.
        #[serde(default)]
        nocopy: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Its mount options (size=, mode=).
        options: Vec<String>,
    },
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// What.
    pub source: Source,
    /// Where, inside the container.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
}

fn destination(d: &str, what: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(Error::Invalid(format!(
            "bad {what}: the destination {d:?} must be an absolute path"
        )));
    }
    if d.split('/').any(|c| c == "..") {
        return Err(Error::Invalid(format!(
            "bad {what}: the destination {d:?} has \"..\""
        )));
    }
    let t = d.trim_end_matches('/');
    Ok(if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    })
}

fn bind_source(s: &str, what: &str) -> Result<String> {
    let p = std::fs::canonicalize(s)
        .map_err(|e| Error::Invalid(format!("bad {what}: the host path {s}: {e}")))?;
    Ok(p.to_string_lossy().into_owned())
}

fn anonymous() -> Result<Source> {
    Ok(Source::Volume {
        name: crate::names::new_id()?,
        anonymous: true,
        nocopy: false,
    })
}

/// `-v` in its three forms.
fn parse_volume(v: &str) -> Result<MountPoint> {
    let what = format!("-v {v:?}");
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] => (Some(*s), *d, ""),
        [s, d, o] => (Some(*s), *d, *o),
        _ => return Err(Error::Invalid(format!("bad {what}: use SRC:DST[:OPTIONS]"))),
    };
    let mut readonly = false;
    let mut nocopy = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "rprivate" | "private" => {}
            "nocopy" => nocopy = true,
            other => {
                return Err(Error::Invalid(format!(
                    "bad {what}: unknown option {other:?}"
                )))
            }
        }
    }
    let destination = destination(dst, &what)?;
    let source = match src {
        None => anonymous()?,
        Some(s) if s.starts_with('/') => Source::Bind {
            path: bind_source(s, &what)?,
        },
        Some(s) => {
            crate::volume::validate_name(s)?;
            Source::Volume {
                name: s.to_string(),
                anonymous: false,
                nocopy,
            }
        }
    };
    Ok(MountPoint {
        source,
        destination,
        readonly,
    })
}

/// `--mount type=...,source=...,target=...`.
fn parse_mount(m: &str) -> Result<MountPoint> {
    let what = format!("--mount {m:?}");
    let (mut kind, mut src, mut dst) = ("volume", None, None);
    let (mut readonly, mut nocopy) = (false, false);
    let mut tmpfs = Vec::new();
    for field in m.split(',') {
        let (k, v) = field
            .split_once('=')
            .map_or((field, None), |(k, v)| (k, Some(v)));
        let flag = |v: Option<&str>| -> Result<bool> {
            match v {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(x) => Err(Error::Invalid(format!(
                    "bad {what}: {k}={x} is not a boolean"
                ))),
            }
        };
        match (k, v) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => kind = t,
            ("type", Some(t)) => {
                return Err(Error::Invalid(format!(
                    "bad {what}: type {t:?} (use bind, volume or tmpfs)"
                )))
            }
            ("source" | "src", Some(s)) => src = Some(s),
            ("target" | "dst" | "destination", Some(d)) => dst = Some(d),
            ("readonly" | "ro", v) => readonly = flag(v)?,
            ("volume-nocopy", v) => nocopy = flag(v)?,
            ("tmpfs-size", Some(s)) => {
                tmpfs.push(format!("size={}", crate::units::parse_bytes(s)?))
            }
            ("tmpfs-mode", Some(s)) => {
                u32::from_str_radix(s, 8).map_err(|_| {
                    Error::Invalid(format!("bad {what}: tmpfs-mode {s:?} is not octal"))
                })?;
                tmpfs.push(format!("mode={s}"));
            }
            ("bind-propagation" | "consistency", Some(_)) => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "bad {what}: unknown field {field:?}"
                )))
            }
        }
    }
    let dst = dst.ok_or_else(|| Error::Invalid(format!("bad {what}: no target")))?;
    let destination = destination(dst, &what)?;
    let source = match (kind, src) {
        ("bind", Some(s)) => Source::Bind {
            path: bind_source(s, &what)?,
        },
        ("bind", None) => {
            return Err(Error::Invalid(format!(
                "bad {what}: a bind mount needs a source"
            )))
        }
        ("volume", None) => anonymous()?,
        ("volume", Some(s)) => {
            crate::volume::validate_name(s)?;
            Source::Volume {
                name: s.to_string(),
                anonymous: false,
                nocopy,
            }
        }
        (_, Some(_)) => return Err(Error::Invalid(format!("bad {what}: a tmpfs has no source"))),
        _ => Source::Tmpfs { options: tmpfs },
    };
    Ok(MountPoint {
        source,
        destination,
        readonly,
    })
}

/// `--tmpfs DST[:OPTS]`.
fn parse_tmpfs(t: &str) -> Result<MountPoint> {
    let what = format!("--tmpfs {t:?}");
    let (d, o) = t.split_once(':').unwrap_or((t, ""));
    let mut readonly = false;
    let options = o
        .split(',')
        .filter(|o| !o.is_empty())
        .filter(|o| {
            let ro = *o == "ro";
            readonly |= ro;
            !ro && *o != "rw"
        })
        .map(String::from)
        .collect();
    Ok(MountPoint {
        source: Source::Tmpfs { options },
        destination: destination(d, &what)?,
        readonly,
    })
}

/// Every mount of a new container: the user's, then an anonymous volume
/// for each image `VOLUME` none of them covers. One destination is
/// mounted once.
pub fn resolve(opts: &RunOptions, image_config: &Value) -> Result<Vec<MountPoint>> {
    let mut out: Vec<MountPoint> = Vec::new();
    let user = opts
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .chain(opts.mounts.iter().map(|m| parse_mount(m)))
        .chain(opts.tmpfs.iter().map(|t| parse_tmpfs(t)));
    for m in user {
        let m = m?;
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(Error::Invalid(format!(
                "duplicate mount point: {}",
                m.destination
            )));
        }
        out.push(m);
    }
    for (path, _) in image_config["config"]["Volumes"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let d = destination(path, &format!("the image's VOLUME {path:?}"))?;
        if !out.iter().any(|o| o.destination == d) {
            out.push(MountPoint {
                source: anonymous()?,
                destination: d,
                readonly: false,
            });
        }
    }
    Ok(out)
}

/// The OCI spec mount of `m` (a volume's source its data directory).
pub fn spec_mount(root: &Path, m: &MountPoint) -> Value {
    let ro = |mut o: Vec<String>| {
        if m.readonly {
            o.push("ro".into());
        }
        o
    };
    match &m.source {
        Source::Bind { path } => {
            json!({"destination": m.destination, "type": "bind", "source": path,
            "options": ro(vec!["rbind".into(), "rprivate".into()])})
        }
        Source::Volume { name, .. } => json!({"destination": m.destination, "type": "bind",
            "source": crate::volume::data(root, name),
            "options": ro(vec!["rbind".into(), "rprivate".into(), "nosuid".into(), "nodev".into()])}),
        Source::Tmpfs { options } => {
            // Docker's defaults for --tmpfs, the user's options after them.
            let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
            o.extend(options.iter().cloned());
            json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": ro(o)})
        }
    }
}

/// An entry of `inspect`'s `Mounts`, as Docker shows it.
pub fn inspect(root: &Path, m: &MountPoint) -> Value {
    let (kind, source, name) = match &m.source {
        Source::Bind { path } => ("bind", path.clone(), None),
        Source::Volume { name, .. } => (
            "volume",
            crate::volume::data(root, name).display().to_string(),
            Some(name.clone()),
        ),
        Source::Tmpfs { .. } => ("tmpfs", String::new(), None),
    };
    let mut v = json!({
        "Type": kind,
        "Source": source,
        "Destination": m.destination,
        "Mode": if m.readonly { "ro" } else { "" },
        "RW": !m.readonly,
        "Propagation": if kind == "bind" { "rprivate" } else { "" },
    });
    if let Some(n) = name {
        v["Name"] = json!(n);
        v["Driver"] = json!("local");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms() {
        let m = parse_volume("data:/srv/data:ro").unwrap();
        assert_eq!(
            m.source,
            Source::Volume {
                name: "data".into(),
                anonymous: false,
                nocopy: false
            }
        );
        assert!(m.readonly && m.destination == "/srv/data");
        assert!(matches!(
            parse_volume("/tmp:/host").unwrap().source,
            Source::Bind { .. }
        ));
        assert!(matches!(
            parse_volume("/cache").unwrap().source,
            Source::Volume {
                anonymous: true,
                ..
            }
        ));
        for bad in [
            "rel/path:/x",
            "data:relative",
            "data:/x:rx",
            "a:/x/../y",
            "/nonexistent-amphi-path:/x",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        let m = parse_mount("type=tmpfs,target=/run,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(
            m.source,
            Source::Tmpfs {
                options: vec!["size=1048576".into(), "mode=1777".into()]
            }
        );
        let m = parse_mount("type=volume,src=v1,dst=/v,readonly,volume-nocopy").unwrap();
        assert!(m.readonly && matches!(m.source, Source::Volume { nocopy: true, .. }));
        for bad in [
            "type=bind,target=/x",
            "type=nfs,target=/x",
            "target=/x,colour=red",
            "type=tmpfs,src=a,target=/x",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
        assert!(parse_tmpfs("/run:size=64k,ro").unwrap().readonly);
    }

    #[test]
    fn image_volumes_are_anonymous_unless_covered() {
        let cfg = json!({"config": {"Volumes": {"/data": {}, "/logs": {}}}});
        let opts = RunOptions {
            volumes: vec!["mine:/data".into()],
            ..Default::default()
        };
        let all = resolve(&opts, &cfg).unwrap();
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0].source, Source::Volume { name, .. } if name == "mine"));
        assert!(
            matches!(
                &all[1].source,
                Source::Volume {
                    anonymous: true,
                    ..
                }
            ) && all[1].destination == "/logs"
        );
        let dup = RunOptions {
            volumes: vec!["a1:/x".into(), "/tmp:/x".into()],
            ..Default::default()
        };
        assert!(resolve(&dup, &json!({})).is_err());
    }
}
