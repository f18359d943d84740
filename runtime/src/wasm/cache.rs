//! Compiled Wasm on disk: one artifact per module or component and engine,
//! published atomically, found again by the file's identity without
//! reading it.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::{component, engine, one_line, WASI_P0, WASI_P1};
use crate::{Error, Result};

/// What a compiled artifact holds, told by its file name so that the init
/// knows how to run it before mapping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A WASI preview 1 command module.
    Module,
    /// A WASI 0.2 component exporting `wasi:cli/run`.
    Command,
    /// A WASI 0.2 component exporting `wasi:http/incoming-handler`.
    Http,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Module => "cwasm",
            Kind::Command => "command.cwasm",
            Kind::Http => "http.cwasm",
        }
    }

    /// The kind of the artifact at `path`, from its name.
    pub(crate) fn of_artifact(path: &Path) -> Kind {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        [Kind::Command, Kind::Http]
            .into_iter()
            .find(|k| name.ends_with(&format!(".{}", k.suffix())))
            .unwrap_or(Kind::Module)
    }
}

/// Compiled modules on disk, keyed by the module's sha256 and the engine's
/// version and settings.
#[derive(Debug, Clone)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir` (created on first use).
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        ModuleCache { dir: dir.into() }
    }

    /// The module's bytes and where its artifact lives if it is one
    /// already (a component's name also says which world it serves, which
    /// only a compile finds out).
    fn lookup(&self, module: &Path) -> Result<(Vec<u8>, String, Option<PathBuf>)> {
        let bytes = std::fs::read(module).map_err(|e| Error::Wasm {
            path: module.to_path_buf(),
            msg: format!("cannot read: {e}"),
        })?;
        let key = cache_key(&process_engine()?, &bytes);
        let kinds: &[Kind] = if wasmparser::Parser::is_component(&bytes) {
            &[Kind::Command, Kind::Http]
        } else {
            &[Kind::Module]
        };
        let found = kinds
            .iter()
            .map(|k| self.dir.join(format!("{key}.{}", k.suffix())))
            .find(|p| p.is_file());
        Ok((bytes, key, found))
    }

    /// Compiles `bytes` (of the file `module`) and publishes the artifact
    /// under `key`; returns its path.
    fn compile(&self, module: &Path, bytes: &[u8], key: &str) -> Result<PathBuf> {
        let bad = |msg: String| Error::Wasm {
            path: module.to_path_buf(),
            msg,
        };
        let engine = process_engine()?;
        let (compiled, kind) = if wasmparser::Parser::is_component(bytes) {
            let compiled = engine
                .precompile_component(bytes)
                .map_err(|e| bad(one_line(&e)))?;
            // SAFETY: the bytes were produced by this engine just now.
            let loaded = unsafe { Component::deserialize(&engine, &compiled) }
                .map_err(|e| bad(one_line(&e)))?;
            let kind = component::check(&engine, &loaded).map_err(bad)?;
            (compiled, kind)
        } else {
            let compiled = engine
                .precompile_module(bytes)
                .map_err(|e| bad(one_line(&e)))?;
            // SAFETY: as above.
            let loaded = unsafe { Module::deserialize(&engine, &compiled) }
                .map_err(|e| bad(one_line(&e)))?;
            check_wasi_command(&loaded).map_err(bad)?;
            (compiled, Kind::Module)
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(format!("{key}.{}", kind.suffix()));
        // Atomic publish: concurrent creators race harmlessly to the same name.
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1
            .write_all(&compiled)
            .map_err(|e| Error::io(&tmp.0, e))?;
        drop(tmp.1);
        std::fs::rename(&tmp.0, &path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Returns the compiled artifact for the module at `module`, compiling
    /// and storing it first when it is not cached yet; rejects modules that
    /// are not WASI preview 1 commands. The caller (a container init) stays
    /// single-threaded, as `setns` into a mount namespace requires: a miss
    /// is compiled in a forked child, whose compiler threads and memory end
    /// with it.
    pub(crate) fn ensure(&self, module: &Path) -> Result<PathBuf> {
        let by_file = self.by_file(module);
        if let Some(path) = by_file.as_ref().and_then(|l| self.follow(l)) {
            return Ok(path);
        }
        let (bytes, key, found) = self.lookup(module)?;
        if let Some(path) = found {
            self.remember(by_file.as_deref(), &path);
            return Ok(path);
        }
        let path = self.compile_aside(module, &bytes, &key)?;
        self.remember(by_file.as_deref(), &path);
        Ok(path)
    }

    /// Where the artifact of this very file is recorded: `by-file/` holds
    /// one link per module file seen, named by its inode, size, mtime and
    /// ctime (to the nanosecond) and the engine, so a known file is neither
    /// read nor hashed again (a 10 MB module costs ~10 ms to hash). Any
    /// change to the file changes its ctime, which no one can set back; the
    /// device is left out because an overlay rootfs gets a new one per
    /// mount, while its lower files keep their inodes.
    fn by_file(&self, module: &Path) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(module).ok()?;
        let engine = engine_hash(&process_engine().ok()?);
        Some(self.dir.join("by-file").join(format!(
            "{:x}-{:x}-{}.{:09}-{}.{:09}-{:016x}",
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            engine
        )))
    }

    /// The artifact `link` names, if both are there.
    fn follow(&self, link: &Path) -> Option<PathBuf> {
        let name = std::fs::read_link(link).ok()?;
        let path = self.dir.join(name.file_name()?);
        path.is_file().then_some(path)
    }

    /// Records `artifact` as the one of the file behind `link`. Best
    /// effort: without the link the next start hashes the module again.
    fn remember(&self, link: Option<&Path>, artifact: &Path) {
        let (Some(link), Some(name)) = (link, artifact.file_name()) else {
            return;
        };
        let Some(dir) = link.parent() else { return };
        let _ = std::fs::create_dir_all(dir);
        let tmp = tmp_name(dir);
        let target = Path::new("..").join(name);
        if std::os::unix::fs::symlink(&target, &tmp).is_ok() && std::fs::rename(&tmp, link).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Compiles `bytes` into `path` in a forked child (see `ensure`).
    fn compile_aside(&self, module: &Path, bytes: &[u8], key: &str) -> Result<PathBuf> {
        let (rx, tx) = nix::unistd::pipe().map_err(|e| Error::sys("pipe", e))?;
        // SAFETY: the caller is single-threaded, so the child may do anything.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))? {
            nix::unistd::ForkResult::Child => {
                drop(rx);
                // The artifact's path goes back through the pipe: only the
                // compile learns a component's world.
                let mut tx = std::fs::File::from(tx);
                let code = match self.compile(module, bytes, key) {
                    Ok(path) => {
                        let _ = tx.write_all(path.as_os_str().as_encoded_bytes());
                        0
                    }
                    Err(e) => {
                        let _ = tx.write_all(e.to_string().as_bytes());
                        1
                    }
                };
                // SAFETY: leave without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(tx);
                let mut msg = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rx), &mut msg);
                let status = nix::sys::wait::waitpid(child, None);
                match status {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(PathBuf::from(msg)),
                    _ if !msg.is_empty() => Err(Error::Wasm {
                        path: module.to_path_buf(),
                        msg: msg
                            .strip_prefix(&format!("wasm module {}: ", module.display()))
                            .unwrap_or(&msg)
                            .to_string(),
                    }),
                    other => Err(Error::Wasm {
                        path: module.to_path_buf(),
                        msg: format!("compiler process failed: {other:?}"),
                    }),
                }
            }
        }
    }
}

/// One engine per process: a long-lived caller must not pay an engine
/// set-up on every call just for the cache key.
pub(super) fn process_engine() -> Result<Engine> {
    static PROCESS_ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = PROCESS_ENGINE.get() {
        return Ok(e.clone());
    }
    let e = engine()?;
    let _ = PROCESS_ENGINE.set(e.clone());
    Ok(e)
}

/// A name in `dir` no other process or call uses, for writing aside.
fn tmp_name(dir: &Path) -> PathBuf {
    dir.join(format!(".tmp-{}-{}", std::process::id(), unique()))
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    let path = tmp_name(dir);
    let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    Ok((path, f))
}

fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// sha256 of the module plus a hash of the engine's version and settings.
fn cache_key(engine: &Engine, module: &[u8]) -> String {
    let digest = Sha256::digest(module);
    format!("{}-{:016x}", hex(&digest), engine_hash(engine))
}

/// A hash of the engine's version and settings: another engine's
/// artifacts are not this one's to load.
fn engine_hash(engine: &Engine) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A WASI command exports `_start` and imports only WASI preview 1 (or
/// its predecessor, as `wasmtime run` links both).
fn check_wasi_command(module: &Module) -> std::result::Result<(), String> {
    if module.get_export("_start").is_none() {
        return Err("exports no _start function: not a WASI command module".into());
    }
    if let Some(i) = module
        .imports()
        .find(|i| i.module() != WASI_P1 && i.module() != WASI_P0)
    {
        return Err(format!(
            "imports {}::{}, but only {WASI_P1} and {WASI_P0} are provided",
            i.module(),
            i.name()
        ));
    }
    Ok(())
}
