//! `amphi pull`, `push`, `login`, `logout` and `tag`: the store's registry
//! side, with `docker pull`'s output (a bar per layer on a terminal, plain
//! lines otherwise, then `Digest:` and `Status:`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use amphi_images::registry::auth::{self, Credentials};
use amphi_images::registry::{self, PullOptions, PullProgress, RegistryOptions};
use amphi_images::store::familiar;
use amphi_images::Store;
use anyhow::{bail, Context, Result};

/// How amphi reaches registries: `--insecure-registry` hosts and those of
/// `<root>/daemon.json`'s `insecure-registries` (Docker's key) may use plain
/// HTTP; CAs in `AMPHI_CERTS_D` (default `/etc/docker/certs.d`);
/// `AMPHI_REGISTRY_TIMEOUT` seconds per request or read (default 30).
pub fn options(root: &Path, insecure: &[String]) -> Result<RegistryOptions> {
    let mut opts = RegistryOptions {
        insecure: insecure.to_vec(),
        ..RegistryOptions::default()
    };
    let daemon = root.join("daemon.json");
    if let Ok(text) = std::fs::read_to_string(&daemon) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", daemon.display()))?;
        for h in v["insecure-registries"].as_array().into_iter().flatten() {
            if let Some(h) = h.as_str() {
                opts.insecure.push(h.to_string());
            }
        }
    }
    if let Some(d) = std::env::var_os("AMPHI_CERTS_D") {
        opts.certs_dir = d.into();
    }
    if let Some(t) = std::env::var("AMPHI_REGISTRY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        opts.timeout = Duration::from_secs_f64(t.max(0.1));
    }
    Ok(opts)
}

/// `docker pull`'s display: on a terminal a bar per layer, otherwise a
/// line as each layer is in.
struct Display {
    bars: Option<indicatif::MultiProgress>,
    per_layer: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Display {
    fn new() -> Display {
        let tty = std::io::stdout().is_terminal();
        Display {
            bars: tty.then(indicatif::MultiProgress::new),
            per_layer: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(s);
            }
            None => println!("{s}"),
        }
    }
}

fn short(d: &str) -> &str {
    d.strip_prefix("sha256:")
        .map_or(d, |h| &h[..h.len().min(12)])
}

impl PullProgress for Display {
    fn layers(&self, layers: &[(String, u64, bool)]) {
        for (d, size, present) in layers {
            if *present {
                self.line(&format!("{}: Already exists", short(d)));
                continue;
            }
            if let Some(m) = &self.bars {
                let b = m.add(indicatif::ProgressBar::new(*size));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_prefix(short(d).to_string());
                b.set_message("Downloading");
                self.per_layer.lock().unwrap().insert(d.clone(), b);
            }
        }
    }

    fn bytes(&self, digest: &str, n: u64) {
        if let Some(b) = self.per_layer.lock().unwrap().get(digest) {
            b.inc(n);
        }
    }

    fn done(&self, digest: &str) {
        match self.per_layer.lock().unwrap().remove(digest) {
            Some(b) => b.finish_with_message("Pull complete"),
            None => println!("{}: Pull complete", short(digest)),
        }
    }
}

/// `amphi pull`.
pub fn pull(
    store: &Store,
    opts: RegistryOptions,
    reference: &str,
    platform: Option<String>,
    quiet: bool,
) -> Result<()> {
    let r = registry::Reference::parse(reference)?;
    let popts = PullOptions {
        platform,
        registry: opts,
        ..PullOptions::default()
    };
    if quiet {
        // As `docker pull -q`: the name alone.
        let pulled = registry::pull(store, reference, &popts, &registry::Quiet)?;
        println!("{}", pulled.name);
        return Ok(());
    }
    println!("{}: Pulling from {}", r.locator(), r.repository);
    let display = Display::new();
    let pulled = registry::pull(store, reference, &popts, &display)?;
    println!("Digest: {}", pulled.digest);
    let name = familiar(&pulled.name);
    if pulled.up_to_date {
        println!("Status: Image is up to date for {name}");
    } else {
        println!("Status: Downloaded newer image for {name}");
    }
    println!("{}", pulled.name);
    Ok(())
}

/// Whether `image` (as `amphi run` takes it) must be pulled first: a
/// reference the store lacks, not a path to an archive.
pub fn missing(store: &Store, image: &str) -> bool {
    if is_archive(image) {
        return false;
    }
    matches!(
        store.resolve(image),
        Err(amphi_images::Error::UnknownRef(_))
    )
}

/// `amphi run`'s pull of an image it lacks, reported on stderr as Docker does.
pub fn pull_for_run(
    store: &Store,
    opts: RegistryOptions,
    image: &str,
    platform: Option<String>,
    missing: bool,
) -> Result<()> {
    if missing {
        eprintln!("Unable to find image '{image}' locally");
    }
    let r = registry::pull(
        store,
        image,
        &PullOptions {
            platform,
            registry: opts,
            ..PullOptions::default()
        },
        &registry::Quiet,
    )
    .with_context(|| format!("pulling {image}"))?;
    eprintln!("Digest: {}", r.digest);
    if r.up_to_date {
        eprintln!("Status: Image is up to date for {}", familiar(&r.name));
    } else {
        eprintln!("Status: Downloaded newer image for {}", familiar(&r.name));
    }
    Ok(())
}

/// Whether `image` names an archive on disk rather than a reference.
pub fn is_archive(image: &str) -> bool {
    image.contains('/') && Path::new(image).exists() || image.ends_with(".tar")
}

/// `amphi push`.
pub fn push(store: &Store, opts: RegistryOptions, source: &str, dest: Option<&str>) -> Result<()> {
    let target = dest.unwrap_or(source);
    let r = registry::Reference::parse(target)?;
    println!(
        "The push refers to repository [{}/{}]",
        r.registry, r.repository
    );
    let p = registry::push(store, source, dest, &opts)?;
    println!(
        "{}: digest: {} size: {} ({} blobs sent, {} already there)",
        r.locator(),
        p.digest,
        p.size,
        p.sent,
        p.skipped
    );
    Ok(())
}

/// `amphi login`.
pub fn login(
    opts: RegistryOptions,
    server: &str,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Result<()> {
    let server = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let Some(username) = username else {
        bail!("give the user name with -u");
    };
    let password = match (password, password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (or -p)"),
    };
    let creds = Credentials { username, password };
    let file = opts.auth_file.clone();
    registry::login(&opts, server, creds.clone())?;
    auth::store(&file, server, &creds)?;
    println!("Login Succeeded");
    Ok(())
}

/// `amphi logout`.
pub fn logout(opts: RegistryOptions, server: &str) -> Result<()> {
    if auth::remove(&opts.auth_file, server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}

/// `amphi tag SRC DST`.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<()> {
    let digest = store.resolve(source)?;
    store.tag(target, &digest)?;
    Ok(())
}
