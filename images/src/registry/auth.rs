//! Credentials and the registry's auth challenge: Docker's `config.json`
//! (`auths`, base64 `user:password`, mode 0600), and the `WWW-Authenticate`
//! header that says how to authenticate (`Basic`, or `Bearer` with a token
//! from `realm` for `service` and `scope`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{Error, Result};

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password (or an identity token).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Docker's client config file: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json` (so `docker login`'s credentials serve amphi
/// and the other way round).
pub fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker/config.json")
}

/// The key a registry's credentials are kept under (Docker Hub's is its
/// historical URL).
fn key(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

fn read(path: &Path) -> Result<Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Invalid(format!("{}: not JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The stored credentials for `registry`, if any.
pub fn lookup(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let v = read(path)?;
    let Some(entry) = v["auths"]
        .get(key(registry))
        .or_else(|| v["auths"].get(registry))
    else {
        return Ok(None);
    };
    let Some(auth) = entry["auth"].as_str() else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| {
            Error::Invalid(format!(
                "{}: auth of {registry} is not base64",
                path.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&raw);
    let (u, p) = text.split_once(':').ok_or_else(|| {
        Error::Invalid(format!(
            "{}: auth of {registry} is not user:password",
            path.display()
        ))
    })?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

/// Writes `path` atomically with mode 0600 (it holds secrets).
fn write(path: &Path, v: &Value) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&serde_json::to_vec_pretty(v).expect("json"))
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Keeps `creds` for `registry`, leaving the file's other entries alone.
pub fn store(path: &Path, registry: &str, creds: &Credentials) -> Result<()> {
    let mut v = read(path)?;
    if !v["auths"].is_object() {
        v["auths"] = json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    v["auths"][key(registry)] = json!({ "auth": auth });
    write(path, &v)
}

/// Forgets `registry`'s credentials; false when there were none.
pub fn remove(path: &Path, registry: &str) -> Result<bool> {
    let mut v = read(path)?;
    let mut removed = false;
    if let Some(auths) = v["auths"].as_object_mut() {
        removed |= auths.remove(&key(registry)).is_some();
        removed |= auths.remove(registry).is_some();
    }
    if removed {
        write(path, &v)?;
    }
    Ok(removed)
}

/// How a registry asks to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic auth.
    Basic,
    /// A bearer token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// Its `service` parameter.
        service: Option<String>,
        /// The `scope` the registry named, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = std::collections::HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(k, v.to_string());
        s = after.trim_start_matches(',').trim();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate x"), None);
    }

    #[test]
    fn config_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"other:1":{"auth":"eDp5"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store(&p, "127.0.0.1:5000", &c).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), Some(c));
        assert_eq!(lookup(&p, "other:1").unwrap().unwrap().username, "x");
        assert!(remove(&p, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), None);
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "x");
    }
}
