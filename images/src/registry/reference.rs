//! Image references as Docker parses them: `busybox` is
//! `docker.io/library/busybox:latest`, `host:port/repo@sha256:...` names a
//! registry and a digest.

use crate::store::normalize;
use crate::{Error, Result};

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as users name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest, if any.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `s` with Docker's defaults.
    pub fn parse(s: &str) -> Result<Reference> {
        let full = normalize(s)?;
        let (registry, rest) = full
            .split_once('/')
            .ok_or_else(|| Error::InvalidRef(s.to_string(), "no repository".into()))?;
        let (name, digest) = match rest.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (rest, None),
        };
        if let Some(d) = &digest {
            crate::digest::hex_part(d)?;
        }
        let (repository, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
            _ => (name.to_string(), None),
        };
        if repository.is_empty() {
            return Err(Error::InvalidRef(s.to_string(), "no repository".into()));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is fetched by: the digest, else the tag.
    pub fn locator(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host the registry API answers on (Docker Hub's differs from
    /// its name).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The name the store keeps it under (`registry/repo:tag` or `@digest`).
    pub fn store_name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}/{}:{t}", self.registry, self.repository),
            (None, Some(d)) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, None) => format!("{}/{}:latest", self.registry, self.repository),
        }
    }
}

/// Whether `host` (with or without a port) is this machine: Docker lets
/// such registries speak plain HTTP without being listed as insecure.
pub fn is_loopback(host: &str) -> bool {
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag, None);
        assert_eq!(r.locator(), d);
        let r = Reference::parse("localhost:5000/app:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("v1"))
        );
        assert!(
            is_loopback("localhost:5000")
                && is_loopback("127.0.0.1:1")
                && is_loopback("[::1]:5000")
        );
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(Reference::parse("UPPER/case").is_err());
    }
}
