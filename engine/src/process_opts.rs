//! `amphi run` options that shape the container's process, as Docker's
//! do: `--user UID[:GID]|NAME[:GROUP]` (names from the image's
//! /etc/passwd and /etc/group), `--group-add`, `--ulimit NAME=SOFT[:HARD]`.

use std::path::Path;

use crate::error::{Context, Result};
use serde_json::{json, Value};

/// Applies `--user`, `--group-add` and `--ulimit` to the spec `v` of a
/// container whose rootfs is `rootfs`.
pub fn apply(
    v: &mut Value,
    rootfs: &Path,
    user: Option<&str>,
    groups: &[String],
    ulimits: &[String],
) -> Result<()> {
    if let Some(u) = user {
        let (uid, gid) = crate::spec::user(u, rootfs)?;
        v["process"]["user"]["uid"] = json!(uid);
        v["process"]["user"]["gid"] = json!(gid);
    }
    if !groups.is_empty() {
        let mut gids: Vec<u32> =
            serde_json::from_value(v["process"]["user"]["additionalGids"].clone())
                .unwrap_or_default();
        for g in groups {
            let gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => group_id(rootfs, g)
                    .with_context(|| format!("group {g:?} is not in the image's /etc/group"))?,
            };
            if !gids.contains(&gid) {
                gids.push(gid);
            }
        }
        v["process"]["user"]["additionalGids"] = json!(gids);
    }
    if !ulimits.is_empty() {
        let mut limits: Vec<Value> =
            serde_json::from_value(v["process"]["rlimits"].clone()).unwrap_or_default();
        for u in ulimits {
            let (typ, soft, hard) = parse_ulimit(u)?;
            limits.retain(|l| l["type"] != typ);
            limits.push(json!({"type": typ, "soft": soft, "hard": hard}));
        }
        v["process"]["rlimits"] = json!(limits);
    }
    Ok(())
}

fn group_id(rootfs: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
    })
}

/// The limits Docker's `--ulimit` knows, by its names.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

/// `nofile=1024:2048` -> ("RLIMIT_NOFILE", 1024, 2048); one number sets
/// both; -1 is unlimited.
pub fn parse_ulimit(s: &str) -> Result<(String, u64, u64)> {
    let bad = |why: &str| crate::Error::Invalid(format!("bad --ulimit {s:?}: {why}"));
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD]"))?;
    if !ULIMITS.contains(&name) {
        return Err(bad(&format!("unknown limit {name:?}")));
    }
    let num = |t: &str| -> Result<u64> {
        if t == "-1" || t == "unlimited" {
            return Ok(u64::MAX);
        }
        t.parse()
            .map_err(|_| bad(&format!("{t:?} is not a number")))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            ("RLIMIT_NOFILE".into(), 1024, 2048)
        );
        assert_eq!(
            parse_ulimit("nproc=50").unwrap(),
            ("RLIMIT_NPROC".into(), 50, 50)
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().2, u64::MAX);
        for bad in ["nofile", "bogus=1", "nofile=x", "nofile=10:5"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }
}
