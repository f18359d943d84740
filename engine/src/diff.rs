//! `diff`: a container's changes to its image's filesystem, as `docker
//! diff` lists them: `A` added, `C` changed (a directory something inside
//! changed, too) and `D` deleted (overlay's whiteouts), each path once, in
//! path order. Read from the overlay's upper dir against the image's
//! layers; the mount points amphi made are no change of the user's.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bail;
use crate::commit::{is_empty_dir, is_opaque, mount_points};
use crate::error::{Error, Result};
use crate::{record, Engine};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The path inside the container.
    pub path: String,
    /// `A`, `C` or `D`.
    pub kind: char,
}

impl Engine {
    /// The changes of container `query`.
    pub fn diff(&self, query: &str) -> Result<Vec<Change>> {
        let rec = self.container(query)?;
        if rec.image_digest.is_none() {
            bail!(
                "container {} runs a bundle in place: it has no layer of its own to compare",
                rec.name
            );
        }
        let gd = self.graph_driver(&rec);
        let lowers: Vec<PathBuf> = gd["Data"]["LowerDir"]
            .as_str()
            .unwrap_or("")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        let dir = record::dir(self.root(), &rec.id);
        let spec: Value = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let skip = mount_points(&spec);
        let mut out = Vec::new();
        walk(&dir.join("upper"), Path::new(""), &lowers, &skip, &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn in_lower(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    skip: &HashSet<PathBuf>,
    out: &mut Vec<Change>,
) -> Result<()> {
    let abs = upper.join(rel);
    let entries = match std::fs::read_dir(&abs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&abs, e)),
    };
    for e in entries {
        let e = e.map_err(|e| Error::io(&abs, e))?;
        let r = rel.join(e.file_name());
        let p = upper.join(&r);
        let m = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        let ft = m.file_type();
        let shown = format!("/{}", r.display());
        if ft.is_char_device() && m.rdev() == 0 {
            out.push(Change {
                path: shown,
                kind: 'D',
            });
            continue;
        }
        if skip.contains(&r) && (ft.is_file() && m.len() == 0 || ft.is_dir() && is_empty_dir(&p)) {
            continue;
        }
        let existed = in_lower(lowers, &r);
        out.push(Change {
            path: shown,
            kind: if existed { 'C' } else { 'A' },
        });
        if ft.is_dir() {
            // An opaque directory hides what the image had in it.
            if existed && is_opaque(&p) {
                for l in lowers {
                    if let Ok(names) = std::fs::read_dir(l.join(&r)) {
                        for n in names.flatten() {
                            let hidden = r.join(n.file_name());
                            if std::fs::symlink_metadata(upper.join(&hidden)).is_err() {
                                out.push(Change {
                                    path: format!("/{}", hidden.display()),
                                    kind: 'D',
                                });
                            }
                        }
                    }
                }
            }
            walk(upper, &r, lowers, skip, out)?;
        }
    }
    Ok(())
}
