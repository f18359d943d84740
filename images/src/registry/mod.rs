//! Registries: `pull`, `push`, `login` over the OCI distribution protocol
//! (`client.rs`: HTTPS with the system's and `certs.d` CAs, plain HTTP for
//! loopback and insecure registries, the auth challenge, retries), with
//! resumable blob downloads (`blob.rs`) streamed into the store as `image
//! load` streams archives (`pull.rs`), and uploads that skip what the
//! registry has (`push.rs`).

pub mod auth;
mod blob;
pub mod client;
mod pull;
mod push;
pub mod reference;

pub use client::{Client, RegistryOptions};
pub use pull::{pull, PullOptions, PullProgress, Pulled, Quiet};
pub use push::{push, Pushed};
pub use reference::Reference;

/// Checks `creds` against `registry` (`login`): an authenticated request to
/// its API root must succeed.
pub fn login(
    opts: &RegistryOptions,
    registry: &str,
    creds: auth::Credentials,
) -> crate::Result<()> {
    let r = Reference::parse(&format!("{registry}/library/x"))?;
    let c = Client::connect(opts, &r.registry, r.api_host(), "library/x", false)?
        .with_credentials(creds);
    let url = format!("{}/v2/", c.base());
    let resp = c.send(&format!("{registry}/v2/"), &|http| http.get(&url))?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            Err(crate::Error::Registry(format!(
                "login to {registry} failed: unauthorized: wrong user name or password"
            )))
        }
        s => Err(crate::Error::Registry(format!(
            "login to {registry} failed: {s}"
        ))),
    }
}

/// Removes the partial downloads no pull is working on (`system prune`):
/// what a killed or failed pull kept for a resume. Returns the bytes freed.
pub fn sweep_partials(store: &crate::Store) -> u64 {
    let mut freed = 0;
    let tmp = store.root().join("tmp");
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("partial-") || name.ends_with(".lock") {
            continue;
        }
        let lock_path = e.path().with_extension("lock");
        let Ok(f) = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&lock_path)
        else {
            continue;
        };
        // A pull holds the lock while it fills the file: leave that one.
        if let Ok(lock) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            freed += e.metadata().map_or(0, |m| m.len());
            let _ = std::fs::remove_file(e.path());
            let _ = std::fs::remove_file(&lock_path);
            drop(lock);
        }
    }
    freed
}
