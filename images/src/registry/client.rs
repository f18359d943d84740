//! One registry repository over HTTP: HTTPS with the system's CA store
//! (and a registry's own CA from `certs.d/<host>/ca.crt`, as Docker reads
//! them), plain HTTP for loopback and insecure registries, the auth
//! challenge answered (basic, or a bearer token), and every request retried
//! with back-off on connection errors, timeouts, 5xx and 429.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::StatusCode;

use super::auth::{self, Challenge, Credentials};
use super::reference::is_loopback;
use crate::{Error, Result};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Docker's `certs.d` layout: `<dir>/<host[:port]>/ca.crt` is trusted
    /// for that registry (default `/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
    /// The credentials file (Docker's config.json).
    pub auth_file: PathBuf,
    /// How long a request or a read may wait before it counts as failed.
    pub timeout: Duration,
    /// How many times a failed request or transfer is tried again.
    pub retries: u32,
    /// The first delay between tries (doubled each time).
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            auth_file: auth::config_path(),
            timeout: Duration::from_secs(30),
            retries: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The media types a manifest GET accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A session with one repository of one registry.
pub struct Client {
    http: Http,
    base: String,
    /// The registry as users name it.
    pub registry: String,
    /// The repository.
    pub repository: String,
    creds: Option<Credentials>,
    scopes: Vec<String>,
    /// The Authorization header the last challenge settled on.
    auth_header: Mutex<Option<String>>,
    opts: RegistryOptions,
}

fn net(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Registry(format!("{what}: {e}"))
}

/// Whether a request error is worth trying again.
fn transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

impl Client {
    /// Opens a session with `repository` at `registry` (as users name it;
    /// `api_host` is where its API answers), for pulling or, with `push`,
    /// pushing too.
    pub fn connect(
        opts: &RegistryOptions,
        registry: &str,
        api_host: &str,
        repository: &str,
        push: bool,
    ) -> Result<Client> {
        let mut builder = Http::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .user_agent(concat!("amphi/", env!("CARGO_PKG_VERSION")));
        let ca = opts.certs_dir.join(registry).join("ca.crt");
        if let Ok(pem) = std::fs::read(&ca) {
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::Invalid(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| net("setting up the HTTP client", e))?;
        let creds = auth::lookup(&opts.auth_file, registry)?;
        let action = if push { "pull,push" } else { "pull" };
        let mut c = Client {
            http,
            base: format!("https://{api_host}"),
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            scopes: vec![format!("repository:{repository}:{action}")],
            auth_header: Mutex::new(None),
            opts: opts.clone(),
        };
        let plain_ok = is_loopback(registry) || opts.insecure.iter().any(|h| h == registry);
        // HTTPS first; plain HTTP only where Docker would allow it.
        match c.http.get(format!("{}/v2/", c.base)).send() {
            Ok(_) => {}
            Err(e) if plain_ok && (e.is_connect() || e.is_request()) => {
                c.base = format!("http://{api_host}");
            }
            Err(e) => return Err(net(&format!("{registry}: cannot connect over HTTPS"), e)),
        }
        Ok(c)
    }

    /// Uses `creds` instead of the stored ones (`login`).
    pub fn with_credentials(mut self, creds: Credentials) -> Client {
        self.creds = Some(creds);
        self
    }

    /// Also asks for pull access to `repository` (a cross-repository mount).
    pub fn add_pull_scope(&mut self, repository: &str) {
        self.scopes.push(format!("repository:{repository}:pull"));
        *self.auth_header.lock().unwrap() = None;
    }

    /// `https://host` or `http://host`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` under `/v2/<repository>/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        match self.auth_header.lock().unwrap().as_ref() {
            Some(h) => rb.header(reqwest::header::AUTHORIZATION, h),
            None => rb,
        }
    }

    /// Sends the request `build` makes (again on each try): the auth
    /// challenge answered once, connection errors, timeouts, 5xx and 429
    /// tried again with back-off (a 429's Retry-After honoured, up to a
    /// few seconds). Returns the final response, whatever its status.
    pub fn send(&self, what: &str, build: &dyn Fn(&Http) -> RequestBuilder) -> Result<Response> {
        let mut delay = self.opts.backoff;
        let mut answered = false;
        let mut tries = 0;
        loop {
            let r = self.authorize(build(&self.http)).send();
            let retry_after = match &r {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !answered => {
                    answered = true;
                    self.answer(resp)?;
                    continue;
                }
                Ok(resp)
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error() =>
                {
                    resp.headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|s| s.parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(5)))
                }
                Ok(_) => return r.map_err(|e| net(what, e)),
                Err(e) if transient(e) => None,
                Err(_) => return r.map_err(|e| net(what, e)),
            };
            tries += 1;
            if tries > self.opts.retries {
                return match r {
                    Ok(resp) => Err(Error::Registry(format!("{what}: {}", resp.status()))),
                    Err(e) => Err(net(what, e)),
                };
            }
            match &r {
                Ok(resp) => tracing::info!("{what}: {}; trying again", resp.status()),
                Err(e) => tracing::info!("{what}: {e}; trying again"),
            }
            std::thread::sleep(retry_after.unwrap_or(delay));
            delay *= 2;
        }
    }

    /// How many tries a transfer gets and the first delay between them.
    pub fn retry_policy(&self) -> (u32, Duration) {
        (self.opts.retries, self.opts.backoff)
    }

    /// Answers a 401's challenge: fetches a token, or settles on basic auth.
    fn answer(&self, resp: &Response) -> Result<()> {
        let header = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        match auth::parse_challenge(header) {
            Some(Challenge::Basic) | None => {
                let Some(c) = &self.creds else {
                    return Err(Error::Registry(format!(
                        "{}: authentication required (amphi login {})",
                        self.registry, self.registry
                    )));
                };
                *self.auth_header.lock().unwrap() = Some(format!("Basic {}", base64_basic(c)));
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut rb = self.http.get(&realm);
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s));
                }
                for s in &self.scopes {
                    query.push(("scope", s.clone()));
                }
                rb = rb.query(&query);
                if let Some(c) = &self.creds {
                    rb = rb.basic_auth(&c.username, Some(&c.password));
                }
                let r = rb
                    .send()
                    .map_err(|e| net(&format!("token from {realm}"), e))?;
                if r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN {
                    return Err(Error::Registry(format!(
                        "{}: unauthorized: the credentials were refused",
                        self.registry
                    )));
                }
                if !r.status().is_success() {
                    return Err(Error::Registry(format!(
                        "token from {realm}: {}",
                        r.status()
                    )));
                }
                let body = r
                    .bytes()
                    .map_err(|e| net(&format!("token from {realm}"), e))?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| Error::Registry(format!("token from {realm}: not JSON: {e}")))?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| {
                        Error::Registry(format!("token from {realm}: no token in the answer"))
                    })?;
                *self.auth_header.lock().unwrap() = Some(format!("Bearer {token}"));
                Ok(())
            }
        }
    }
}

fn base64_basic(c: &Credentials) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
}
