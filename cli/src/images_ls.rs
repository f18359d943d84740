//! `amphi images` / `image ls`, as `docker images` prints them:
//! REPOSITORY, TAG, IMAGE ID, CREATED and SIZE, newest first; `-q` for
//! the unique ids, `--no-trunc`, `--format` templates, and a
//! `REPOSITORY[:TAG]` argument to list only those.

use std::collections::HashSet;

use amphi_images::store::familiar;
use amphi_images::Store;
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

/// `amphi image ls` flags.
#[derive(Args)]
pub struct ImageLsArgs {
    /// All images (there are no intermediate ones: the same as without).
    #[arg(short, long)]
    all: bool,
    /// Only image ids, each once.
    #[arg(short, long)]
    quiet: bool,
    /// Full image ids.
    #[arg(long)]
    no_trunc: bool,
    /// Go-template-like format, e.g. '{{.Repository}}:{{.Tag}}' or 'table {{.ID}}\t{{.Size}}'.
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag, with REPOSITORY:TAG).
    reference: Option<String>,
}

/// A familiar name split as Docker shows it: repository, tag (`<none>`
/// for an image named by digest only) and digest.
fn split(name: &str) -> (String, String, String) {
    let (name, digest) = name.split_once('@').map_or((name, ""), |(n, d)| (n, d));
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
            digest.to_string(),
        ),
        None => (name.to_string(), "<none>".into(), digest.to_string()),
    }
}

/// Lists the store's images.
pub fn ls(store: &Store, a: &ImageLsArgs) -> Result<u8> {
    let _ = a.all;
    let mut rows = Vec::new();
    for (name, digest) in store.refs()? {
        let manifest: Value = serde_json::from_slice(&store.read_blob(&digest)?)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let config: Value = store
            .read_blob(&config_digest)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let created = config["created"]
            .as_str()
            .and_then(amphi_engine::inspect::parse_rfc3339);
        let (repo, tag, _) = split(&familiar(&name));
        if let Some(want) = &a.reference {
            let (wr, wt, _) = split(want);
            let tag_given = want[want.rfind('/').map_or(0, |i| i + 1)..].contains(':');
            if repo != wr || (tag_given && tag != wt) {
                continue;
            }
        }
        let hex = config_digest
            .strip_prefix("sha256:")
            .unwrap_or(&config_digest);
        let id = if a.no_trunc {
            config_digest.clone()
        } else {
            hex[..hex.len().min(12)].to_string()
        };
        let size = amphi_images::media::layers_size(&manifest);
        rows.push((
            created,
            id.clone(),
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id,
                "Digest": digest,
                "CreatedSince": created.map_or_else(|| "N/A".to_string(), |t| crate::ps::ago(Some(t))),
                "CreatedAt": created.map_or_else(String::new, |t| amphi_engine::inspect::rfc3339(Some(t))),
                "Size": crate::format::decimal_size(size, 3),
            }),
        ));
    }
    // Newest first, as Docker's.
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    if a.quiet {
        let mut seen = HashSet::new();
        for (_, id, _) in &rows {
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let default = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
    let template = a.format.as_deref().unwrap_or(default);
    let rows: Vec<Value> = rows.into_iter().map(|(_, _, row)| row).collect();
    let headers = [
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
    ];
    print!("{}", crate::format::list(template, &headers, &rows)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn names_split_as_docker_shows_them() {
        let s = |n: &str| split(n);
        assert_eq!(
            s("busybox:latest"),
            ("busybox".into(), "latest".into(), "".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/team/app:1"),
            ("127.0.0.1:5000/team/app".into(), "1".into(), "".into())
        );
        assert_eq!(
            s("127.0.0.1:5000/app@sha256:ab"),
            (
                "127.0.0.1:5000/app".into(),
                "<none>".into(),
                "sha256:ab".into()
            )
        );
    }
}
