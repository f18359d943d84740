//! `commit`: a container's changes (its overlay upper dir) become a new
//! layer on top of its image: overlay's whiteouts (0:0 character devices)
//! become OCI `.wh.NAME` entries and opaque directories a `.wh..wh..opq`
//! entry; the new image's config is the container's (Cmd, Entrypoint,
//! Env, WorkingDir, User, Labels), with `-m` and `-a` as its Comment and
//! Author and a history entry, as Docker's commit writes them. File
//! capabilities and user xattrs go along as PAX records.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use amphi_images::pack::{extend_image, ImageIds};
use amphi_images::store::normalize;
use amphi_images::Store;
use serde_json::{json, Value};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::inspect::rfc3339;
use crate::{bundle, record, Engine};

/// What `commit` records besides the changes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The commit message (`-m`): the image's Comment.
    pub message: Option<String>,
    /// The author (`-a`).
    pub author: Option<String>,
}

impl Engine {
    /// Commits `query`'s changes as a new image, tagged `reference` when
    /// given. Returns the new image's ids.
    pub fn commit(
        &self,
        query: &str,
        reference: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<ImageIds> {
        let rec = self.container(query)?;
        let Some(base) = rec.image_digest.clone() else {
            bail!(
                "container {} runs a bundle, not an image: nothing to commit onto",
                rec.name
            );
        };
        let reference = reference.map(normalize).transpose()?;
        let dir = record::dir(self.root(), &rec.id);
        let spec: Value = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| Error::io(dir.join("config.json"), e))?,
        )
        .context("the container's config.json")?;
        let store = Store::open(self.root().join("images"))?;
        let (_, _, mut config, _) = bundle::image_layers(&store, &base)?;
        let tar_path = dir.join(".commit.tar");
        let result = (|| -> Result<ImageIds> {
            let file = std::fs::File::create(&tar_path).map_err(|e| Error::io(&tar_path, e))?;
            let skip = mount_points(&spec);
            write_layer(&dir.join("upper"), &skip, std::io::BufWriter::new(file))?;
            let c = &mut config["config"];
            if !c.is_object() {
                *c = json!({});
            }
            let process = &spec["process"];
            let entrypoint: Vec<String> = match &rec.options.entrypoint {
                Some(e) => vec![e.clone()],
                None => serde_json::from_value(c["Entrypoint"].clone()).unwrap_or_default(),
            };
            let cmd: Vec<String> = rec.args.iter().skip(entrypoint.len()).cloned().collect();
            c["Cmd"] = json!(cmd);
            if !entrypoint.is_empty() {
                c["Entrypoint"] = json!(entrypoint);
            }
            // Docker's additions (HOSTNAME) belong to a container, not an image.
            let env: Vec<String> =
                serde_json::from_value(process["env"].clone()).unwrap_or_default();
            c["Env"] = json!(env
                .into_iter()
                .filter(|e| !e.starts_with("HOSTNAME="))
                .collect::<Vec<_>>());
            if let Some(w) = process["cwd"].as_str() {
                c["WorkingDir"] = json!(w);
            }
            if let Some(u) = &rec.options.user {
                c["User"] = json!(u);
            }
            let mut labels = c["Labels"].as_object().cloned().unwrap_or_default();
            for (k, v) in rec.labels() {
                labels.insert(k, json!(v));
            }
            if !labels.is_empty() {
                c["Labels"] = Value::Object(labels);
            }
            let now = rfc3339(Some(std::time::SystemTime::now()));
            config["created"] = json!(now);
            if let Some(a) = &opts.author {
                config["author"] = json!(a);
            }
            if let Some(m) = &opts.message {
                config["comment"] = json!(m);
            }
            // The base's layers each with an entry first, so that the new
            // one's lines up with the new layer.
            let base_layers = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
            let mut history = crate::inspect::padded_history(&config, base_layers);
            let mut entry = json!({"created": now, "created_by": rec.args.join(" ")});
            if let Some(a) = &opts.author {
                entry["author"] = json!(a);
            }
            if let Some(m) = &opts.message {
                entry["comment"] = json!(m);
            }
            history.push(entry);
            config["history"] = json!(history);
            Ok(extend_image(&store, &base, &tar_path, config.clone())?)
        })();
        let _ = std::fs::remove_file(&tar_path);
        let ids = result?;
        if let Some(r) = reference {
            store.tag(&r, &ids.manifest)?;
        }
        Ok(ids)
    }
}

/// The spec's mount destinations (relative): the empty files and
/// directories made for them in the upper dir are no change of the user's.
pub(crate) fn mount_points(spec: &Value) -> HashSet<PathBuf> {
    spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| PathBuf::from(d.trim_start_matches('/')))
        .collect()
}

/// Writes the upper dir at `upper` as an OCI layer tar.
fn write_layer(upper: &Path, skip: &HashSet<PathBuf>, out: impl std::io::Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    add_dir(&mut b, upper, Path::new(""), skip)?;
    b.into_inner()
        .and_then(|mut w| w.flush().map(|_| ()))
        .map_err(|e| Error::io(upper, e))
}

fn add_dir<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    upper: &Path,
    rel: &Path,
    skip: &HashSet<PathBuf>,
) -> Result<()> {
    let abs = upper.join(rel);
    let names = amphi_images::layer::sorted_names(&abs)?;
    if !rel.as_os_str().is_empty() && is_opaque(&abs) {
        append_empty(b, &rel.join(".wh..wh..opq"), &abs)?;
    }
    let io = |e: std::io::Error| Error::io(upper, e);
    for n in names {
        let r = rel.join(&n);
        let p = upper.join(&r);
        let m = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        let ft = m.file_type();
        if skip.contains(&r) && (ft.is_file() && m.len() == 0 || ft.is_dir() && is_empty_dir(&p)) {
            continue;
        }
        if ft.is_char_device() && m.rdev() == 0 {
            let wh = r.with_file_name(format!(".wh.{}", n.to_string_lossy()));
            append_empty(b, &wh, upper)?;
            continue;
        }
        let xattrs = || amphi_images::xattr::read(&p).map_err(|e| Error::io(&p, e));
        if ft.is_dir() {
            amphi_images::xattr::append(b, &xattrs()?).map_err(io)?;
            b.append_dir(&r, &p).map_err(io)?;
            add_dir(b, upper, &r, skip)?;
        } else if ft.is_file()
            || ft.is_symlink()
            || ft.is_fifo()
            || ft.is_char_device()
            || ft.is_block_device()
        {
            amphi_images::xattr::append(b, &xattrs()?).map_err(io)?;
            b.append_path_with_name(&p, &r).map_err(io)?;
        }
        // Sockets are no part of an image.
    }
    Ok(())
}

fn append_empty<W: std::io::Write>(b: &mut tar::Builder<W>, name: &Path, at: &Path) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, name, std::io::empty())
        .map_err(|e| Error::io(at, e))
}

pub(crate) fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

pub(crate) fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut v = [0u8; 2];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}
