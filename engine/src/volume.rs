//! Volumes: directories of the store (`<root>/volumes/<name>/_data`) that
//! outlive containers, bind-mounted where a container asks (`-v
//! NAME:/path`, `--mount type=volume`) or where its image declares a
//! `VOLUME` (an anonymous volume, removed with the container by `rm -v`
//! or `--rm`). A new volume starts with the image's files at its path, as
//! Docker's do. Only `volume rm` and `volume prune` remove named volumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{record, Engine};

const META: &str = "volume.json";

/// A volume's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created: SystemTime,
    /// Made for one container (an image's VOLUME or `-v /path`).
    #[serde(default)]
    pub anonymous: bool,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether its content was set (copied from an image, or used).
    #[serde(default)]
    pub initialised: bool,
}

fn dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The directory a volume's data lives in.
pub fn data(root: &Path, name: &str) -> PathBuf {
    dir(root).join(name).join("_data")
}

/// Checks a volume name: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut c = name.chars();
    let ok = name.len() >= 2
        && name.len() <= 255
        && c.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "bad volume name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a host path must be absolute)"
        )));
    }
    Ok(())
}

fn load(root: &Path, name: &str) -> Result<Volume> {
    let p = dir(root).join(name).join(META);
    let bytes = std::fs::read(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Invalid(format!("no such volume: {name}")),
        _ => Error::io(&p, e),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: corrupt volume record: {e}", p.display())))
}

fn save(root: &Path, v: &Volume) -> Result<()> {
    let p = dir(root).join(&v.name).join(META);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).expect("json"))
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}

impl Engine {
    /// Makes volume `name` (an existing one is returned as it is, as
    /// Docker's `volume create` does).
    pub fn create_volume(&self, name: &str, labels: &[String], anonymous: bool) -> Result<Volume> {
        validate_name(name)?;
        let root = self.root();
        if let Ok(v) = load(root, name) {
            return Ok(v);
        }
        let d = data(root, name);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        let mut map = BTreeMap::new();
        for l in labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            map.insert(k.to_string(), v.to_string());
        }
        let v = Volume {
            name: name.to_string(),
            created: SystemTime::now(),
            anonymous,
            labels: map,
            initialised: false,
        };
        save(root, &v)?;
        Ok(v)
    }

    /// A volume by name.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        load(self.root(), name)
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir(self.root()))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(v) = load(self.root(), &e.file_name().to_string_lossy()) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The containers (names) whose mounts use volume `name`. A container
    /// whose record cannot be read may use any: it is counted, so no
    /// volume is removed until it is (`rm -f`).
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let Ok((records, broken)) = record::list_all(self.root()) else {
            return vec!["(the containers cannot be listed)".into()];
        };
        let mut users: Vec<String> = records
            .into_iter()
            .filter(|r| r.volume_names().iter().any(|v| v == name))
            .map(|r| r.name)
            .collect();
        users.extend(
            broken
                .into_iter()
                .map(|(id, _)| format!("{id} (its record cannot be read)")),
        );
        users
    }

    /// Removes a volume no container uses.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        load(self.root(), name)?;
        if let Some(user) = self.volume_users(name).first() {
            return Err(Error::Invalid(format!(
                "volume {name} is in use by container {user}: remove it first"
            )));
        }
        let d = dir(self.root()).join(name);
        std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))
    }

    /// Removes the volumes no container uses: anonymous ones, and named
    /// ones too with `all` (as Docker's `volume prune [-a]`).
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for v in self.volumes()? {
            if (v.anonymous || all) && self.volume_users(&v.name).is_empty() {
                self.remove_volume(&v.name)?;
                out.push(v.name);
            }
        }
        Ok(out)
    }

    /// Gives a volume its first content: what the image has at `path` in
    /// `rootfs` (the container's, freshly mounted), unless it has content
    /// or was set before.
    pub(crate) fn init_volume(&self, name: &str, rootfs: &Path, path: &str) -> Result<()> {
        let root = self.root();
        let mut v = load(root, name)?;
        if v.initialised {
            return Ok(());
        }
        let d = data(root, name);
        let empty = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .next()
            .is_none();
        let src = amphi_runtime::paths::resolve_in_root(rootfs, Path::new(path), true);
        if empty && src.is_dir() {
            for e in std::fs::read_dir(&src).map_err(|e| Error::io(&src, e))? {
                let e = e.map_err(|e| Error::io(&src, e))?;
                crate::copy::copy_tree(&e.path(), &d.join(e.file_name()))?;
            }
            // The directory's own mode and owner, as the image has them.
            if let Ok(m) = std::fs::metadata(&src) {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let _ = std::fs::set_permissions(
                    &d,
                    std::fs::Permissions::from_mode(m.mode() & 0o7777),
                );
                let _ = std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()));
            }
        }
        v.initialised = true;
        save(root, &v)
    }
}

impl Engine {
    /// `volume inspect`: Docker's shape.
    pub fn inspect_volume(&self, name: &str) -> Result<serde_json::Value> {
        let v = self.volume(name)?;
        Ok(serde_json::json!({
            "CreatedAt": crate::inspect::rfc3339(Some(v.created)),
            "Driver": "local",
            "Labels": v.labels,
            "Mountpoint": data(self.root(), &v.name),
            "Name": v.name,
            "Options": {},
            "Scope": "local",
            "Anonymous": v.anonymous,
        }))
    }
}
