//! `push`: every blob of the image the registry lacks (a HEAD says which;
//! one in another repository of the same registry is mounted, not sent),
//! uploaded in one PUT each, then the manifest exactly as stored, so the
//! image pulls back with the same manifest digest and image ID.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use super::client::{Client, RegistryOptions};
use super::reference::Reference;
use crate::{Error, Result, Store};

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where it went (`registry/repo:tag`).
    pub name: String,
    /// The manifest digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Blobs sent, and blobs the registry had or mounted.
    pub sent: usize,
    /// Blobs skipped.
    pub skipped: usize,
}

/// Repositories of a registry a blob is known to be in (for mounts),
/// kept beside the store's blobs: `<store>/origins/<hex>` lines of
/// `registry/repository`.
fn origins(store: &Store, digest: &str) -> Vec<String> {
    let Ok(hex) = crate::digest::hex_part(digest) else {
        return Vec::new();
    };
    std::fs::read_to_string(store.root().join("origins").join(hex))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Records that `digest` is in `registry/repository`.
pub(crate) fn remember_origin(store: &Store, digest: &str, registry: &str, repository: &str) {
    let Ok(hex) = crate::digest::hex_part(digest) else {
        return;
    };
    let dir = store.root().join("origins");
    let _ = std::fs::create_dir_all(&dir);
    let line = format!("{registry}/{repository}");
    let path = dir.join(hex);
    let mut known = origins(store, digest);
    if !known.contains(&line) {
        known.push(line);
        let _ = std::fs::write(&path, known.join("\n") + "\n");
    }
}

fn exists(c: &Client, digest: &str) -> Result<bool> {
    let url = c.url(&format!("blobs/{digest}"));
    let r = c.send(&format!("HEAD blob {digest}"), &|http| http.head(&url))?;
    Ok(r.status().is_success())
}

/// Tries a cross-repository mount of `digest` from `from`.
fn mount(c: &Client, digest: &str, from: &str) -> Result<bool> {
    let url = c.url("blobs/uploads/");
    let r = c.send(&format!("mount {digest} from {from}"), &|http| {
        http.post(&url)
            .query(&[("mount", digest), ("from", from)])
            .header(reqwest::header::CONTENT_LENGTH, "0")
    })?;
    Ok(r.status() == StatusCode::CREATED)
}

/// Absolute URL of an upload `Location` (registries may answer with a path).
fn absolute(c: &Client, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else {
        format!("{}{}", c.base(), loc)
    }
}

/// Uploads blob `digest` from `path` (monolithic: POST, then one PUT).
fn upload(c: &Client, digest: &str, path: &Path) -> Result<()> {
    let what = format!("upload of {digest}");
    let start = c.url("blobs/uploads/");
    let r = c.send(&what, &|http| {
        http.post(&start)
            .header(reqwest::header::CONTENT_LENGTH, "0")
    })?;
    if r.status() != StatusCode::ACCEPTED {
        return Err(Error::Registry(format!("{what}: {}", r.status())));
    }
    let loc = r
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| Error::Registry(format!("{what}: no upload location")))?;
    let url = absolute(c, loc);
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let r = c.send(&what, &|http| {
        let file = std::fs::File::open(path).expect("blob file opened above");
        http.put(&url)
            .query(&[("digest", digest)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size.to_string())
            .body(reqwest::blocking::Body::sized(file, size))
    })?;
    if r.status() != StatusCode::CREATED {
        return Err(Error::Registry(format!("{what}: {}", r.status())));
    }
    Ok(())
}

/// Pushes the image `source` names in `store` to `dest` (default: the
/// same name).
pub fn push(
    store: &Store,
    source: &str,
    dest: Option<&str>,
    opts: &RegistryOptions,
) -> Result<Pushed> {
    let manifest_digest = store.resolve(source)?;
    let target = Reference::parse(dest.unwrap_or(source))?;
    let body = store.read_blob(&manifest_digest)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("manifest {manifest_digest}: {e}")))?;
    let media_type = v["mediaType"]
        .as_str()
        .unwrap_or(crate::media::MANIFEST)
        .to_string();
    let mut blobs: Vec<String> = vec![v["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()];
    for l in v["layers"].as_array().into_iter().flatten() {
        blobs.push(l["digest"].as_str().unwrap_or_default().to_string());
    }
    let mut c = Client::connect(
        opts,
        &target.registry,
        target.api_host(),
        &target.repository,
        true,
    )?;
    // Repositories of this registry that hold one of our blobs: mountable.
    let prefix = format!("{}/", target.registry);
    let mut sources: Vec<String> = blobs
        .iter()
        .flat_map(|b| origins(store, b))
        .filter_map(|o| o.strip_prefix(&prefix).map(String::from))
        .filter(|r| *r != target.repository)
        .collect();
    sources.sort();
    sources.dedup();
    for s in &sources {
        c.add_pull_scope(s);
    }
    let (mut sent, mut skipped) = (0, 0);
    for b in &blobs {
        if exists(&c, b)? {
            skipped += 1;
            continue;
        }
        let from = origins(store, b)
            .into_iter()
            .filter_map(|o| o.strip_prefix(&prefix).map(String::from))
            .find(|r| *r != target.repository);
        if let Some(from) = from {
            if mount(&c, b, &from)? {
                skipped += 1;
                continue;
            }
        }
        upload(&c, b, &store.blob_path(b)?)?;
        sent += 1;
    }
    let url = c.url(&format!("manifests/{}", target.locator()));
    let what = format!("manifest of {}", target.store_name());
    let r = c.send(&what, &|http| {
        http.put(&url)
            .header(reqwest::header::CONTENT_TYPE, &media_type)
            .body(body.clone())
    })?;
    if r.status() != StatusCode::CREATED {
        let status = r.status();
        let text = r.text().unwrap_or_default();
        return Err(Error::Registry(format!("{what}: {status} {}", text.trim())));
    }
    for b in &blobs {
        remember_origin(store, b, &target.registry, &target.repository);
    }
    Ok(Pushed {
        name: target.store_name(),
        digest: manifest_digest,
        size: body.len() as u64,
        sent,
        skipped,
    })
}
