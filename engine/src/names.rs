//! Container ids and names: random 64-hex ids, unique names (random ones
//! when none is given), and resolving what a user typed (an id, a name or
//! a unique id prefix, as Docker allows).

use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::record;

/// A new container id: 64 random hex digits, as Docker's.
pub fn new_id() -> Result<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble",
    "quiet", "proud", "sharp", "tender", "vivid", "wise",
];
const NOUNS: [&str; 16] = [
    "axolotl",
    "newt",
    "frog",
    "toad",
    "salamander",
    "caecilian",
    "olm",
    "siren",
    "hellbender",
    "mudpuppy",
    "eft",
    "treefrog",
    "bullfrog",
    "peeper",
    "mantella",
    "tadpole",
];

/// A random name in Docker's adjective_noun style (amphibians, of course).
pub fn random_name() -> Result<String> {
    let b = random_bytes::<4>()?;
    Ok(format!(
        "{}_{}_{:04x}",
        ADJECTIVES[b[0] as usize % 16],
        NOUNS[b[1] as usize % 16],
        u16::from_le_bytes([b[2], b[3]])
    ))
}

/// Checks a user-given name: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if !ok {
        bail!("bad container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*");
    }
    Ok(())
}

/// Holds the lock under which names are taken.
pub struct NamesLock(#[allow(dead_code)] Flock<std::fs::File>);

/// Takes the lock under which a new container's name is checked and its
/// directory made, so two `run --name x` cannot both win.
pub fn lock_names(root: &Path) -> Result<NamesLock> {
    let d = record::containers_dir(root);
    std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    let path = d.join(".names.lock");
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map(NamesLock)
        .map_err(|(_, e)| Error::io(path, e.into()))
}

/// Whether `query` has the form of a whole container id (64 hex digits).
pub(crate) fn whole_id(query: &str) -> bool {
    query.len() == 64 && query.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The id of the container `query` names: its id, its name (a leading
/// `/` allowed, as Docker prints names), or a unique prefix of its id.
pub fn resolve(root: &Path, query: &str) -> Result<String> {
    // A whole id (what amphi itself passes around) is its own record: no
    // need to read every other one.
    if whole_id(query) {
        if let Ok(r) = record::load(root, query) {
            return Ok(r.id);
        }
    }
    let records = record::list(root)?;
    let name = query.strip_prefix('/').unwrap_or(query);
    if let Some(r) = records.iter().find(|r| r.id == query || r.name == name) {
        return Ok(r.id.clone());
    }
    if query.is_empty() || !query.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::NoSuchContainer(query.to_string()));
    }
    let mut hits = records.iter().filter(|r| r.id.starts_with(query));
    match (hits.next(), hits.next()) {
        (Some(r), None) => Ok(r.id.clone()),
        (Some(_), Some(_)) => Err(Error::Ambiguous(query.to_string())),
        _ => Err(Error::NoSuchContainer(query.to_string())),
    }
}

impl crate::Engine {
    /// Renames container `query` to `new` (Docker's `rename`): checked and
    /// unique as at create; on a network, its peers know it by the new
    /// name from now on.
    pub fn rename(&self, query: &str, new: &str) -> Result<()> {
        validate_name(new)?;
        let root = self.root();
        let _names = lock_names(root)?;
        let id = resolve(root, query)?;
        if let Some(other) = record::list(root)?.iter().find(|r| r.name == new) {
            if other.id == id {
                bail!("container {new} is named {new} already");
            }
            return Err(Error::NameInUse(new.to_string(), other.id.clone()));
        }
        let mut old = String::new();
        record::update(root, &id, |r| {
            old = std::mem::replace(&mut r.name, new.to_string());
        })?;
        self.renamed(&id, &old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        validate_name(&random_name().unwrap()).unwrap();
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
        validate_name("web-1.prod_a").unwrap();
    }
}
