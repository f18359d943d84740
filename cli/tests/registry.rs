//! `amphi pull`, `push`, `login` and `run` against a real registry on
//! 127.0.0.1: Debian's `docker-registry` (the CNCF distribution registry),
//! started per test on its own port and storage, plain, and with TLS (a CA
//! and certificate made with `openssl`) and htpasswd basic auth. Images get
//! there by `skopeo copy` from OCI layouts the tests write (a multi-arch
//! index, gzip and zstd layers, a Wasm artifact). Faults come from a small
//! TCP proxy in front of the registry: a connection cut mid-layer, 503s and
//! 429s, a stalled connection, and SIGKILLs of `amphi pull` mid-transfer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amphi_testkit::TestDirs;
use common::{amphi_cmd, text};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (scripts/install-deps installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A self-signed certificate (RSA 2048, two days) for `subject`.
fn self_signed(subject: &str, key: &Path, cert: &Path) {
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
}

/// A private registry, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Registry {
    /// Plain HTTP, or with `tls` a CA-signed certificate and htpasswd auth
    /// (user `edge`, password `s3cret`); the CA lands in `certs_d/<addr>/ca.crt`.
    fn start(dir: &Path, tls: Option<&Path>) -> Registry {
        Registry::start_with(dir, tls, "")
    }

    /// As `start`, with `extra` appended to the registry's config.
    fn start_with(dir: &Path, tls: Option<&Path>, extra: &str) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let port = amphi_testkit::free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            data.display()
        );
        if let Some(certs_d) = tls {
            let d = dir.to_string_lossy().into_owned();
            let p = |n: &str| format!("{d}/{n}");
            self_signed(
                "/CN=amphi-test-ca",
                Path::new(&p("ca.key")),
                Path::new(&p("ca.crt")),
            );
            tool(
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    &p("reg.key"),
                    "-out",
                    &p("reg.csr"),
                ],
            );
            std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            tool(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &p("reg.csr"),
                    "-CA",
                    &p("ca.crt"),
                    "-CAkey",
                    &p("ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &p("san.ext"),
                    "-out",
                    &p("reg.crt"),
                ],
            );
            let htpasswd = tool("htpasswd", &["-Bbn", "edge", "s3cret"]);
            std::fs::write(p("htpasswd"), htpasswd).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: amphi-test\n    path: {}\n",
                p("reg.crt"),
                p("reg.key"),
                p("htpasswd")
            ));
            let ca_dir = certs_d.join(&addr);
            std::fs::create_dir_all(&ca_dir).unwrap();
            std::fs::copy(p("ca.crt"), ca_dir.join("ca.crt")).unwrap();
        }
        config.push_str(extra);
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (scripts/install-deps installs it)");
        for _ in 0..500 {
            if TcpStream::connect(&addr).is_ok() {
                return Registry { child, addr, data };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the registry did not come up");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the next blob GETs.
#[derive(Default)]
struct Faults {
    /// Statuses to answer instead of the registry, one per blob GET.
    statuses: Vec<u16>,
    /// Close the next blob GET's connection after this many response bytes.
    cut_after: Option<u64>,
    /// Hold the next blob GET's connection silent this long.
    stall: Option<Duration>,
    /// Pause this long after every 64 KiB passed on (a slow link).
    throttle: Option<Duration>,
    /// Request lines seen, with their Range header.
    seen: Vec<String>,
}

/// A fault-injecting HTTP/1.1 proxy on loopback in front of `upstream`.
struct Proxy {
    addr: String,
    faults: Arc<Mutex<Faults>>,
    /// Response bytes passed on.
    bytes: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let bytes = Arc::new(AtomicU64::new(0));
        let (f, b, up) = (faults.clone(), bytes.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (f, b, up) = (f.clone(), b.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &f, &b);
                });
            }
        });
        Proxy {
            addr,
            faults,
            bytes,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.faults.lock().unwrap().seen.clone()
    }
}

/// One request per connection (the proxy asks both sides to close after it).
fn serve(
    client: TcpStream,
    upstream: &str,
    faults: &Mutex<Faults>,
    bytes: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("range:") {
            range = line.trim().to_string();
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push(line);
    }
    let request = head.first().cloned().unwrap_or_default();
    let blob_get = request.starts_with("GET ") && request.contains("/blobs/sha256:");
    let (status, cut, stall, throttle) = {
        let mut f = faults.lock().unwrap();
        f.seen.push(format!("{} {range}", request.trim()));
        if blob_get {
            let s = (!f.statuses.is_empty()).then(|| f.statuses.remove(0));
            (s, f.cut_after, f.stall.take(), f.throttle)
        } else {
            (None, None, None, f.throttle)
        }
    };
    let mut client = client;
    if let Some(s) = status {
        let reason = if s == 429 {
            "Too Many Requests"
        } else {
            "Service Unavailable"
        };
        write!(
            client,
            "HTTP/1.1 {s} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    if let Some(d) = stall {
        std::thread::sleep(d);
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    for l in &head {
        up.write_all(l.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    up.write_all(&body)?;
    let mut buf = [0u8; 65536];
    let mut sent = 0u64;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let n = match cut {
            Some(c) if sent + n as u64 >= c => (c - sent) as usize,
            _ => n,
        };
        client.write_all(&buf[..n])?;
        sent += n as u64;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        if cut.is_some_and(|c| sent >= c) {
            // Once: the retry goes through.
            faults.lock().unwrap().cut_after = None;
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        if let Some(t) = throttle {
            std::thread::sleep(t);
        }
    }
}

/// An OCI layout of images for `skopeo copy`: blobs, and index.json naming
/// each top-level descriptor by tag.
struct Layout {
    dir: PathBuf,
    tags: Vec<Value>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            tags: Vec::new(),
        }
    }

    fn blob(&self, b: &[u8]) -> String {
        let d = sha(b);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        d
    }

    /// An image of `layers` (media type, stored bytes, uncompressed bytes)
    /// and `config`; returns the manifest's descriptor.
    fn image(
        &self,
        layers: &[(&str, Vec<u8>, Vec<u8>)],
        mut config: Value,
        config_type: &str,
    ) -> Value {
        if config_type == "application/vnd.oci.image.config.v1+json" {
            config["rootfs"] = json!({"type": "layers", "diff_ids": layers.iter().map(|l| sha(&l.2)).collect::<Vec<_>>()});
        }
        let config = serde_json::to_vec(&config).unwrap();
        let descs: Vec<Value> = layers
            .iter()
            .map(|(mt, stored, _)| json!({"mediaType": mt, "digest": self.blob(stored), "size": stored.len()}))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": self.blob(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.blob(&manifest), "size": manifest.len()})
    }

    fn tag(&mut self, mut desc: Value, tag: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.tags.push(desc);
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": self.tags})).unwrap(),
        )
        .unwrap();
    }

    /// `skopeo copy --all` of `tag` to `dest` (a registry reference).
    fn copy_to(&self, tag: &str, dest: &str, extra: &[&str]) {
        let src = format!("oci:{}:{tag}", self.dir.display());
        let dst = format!("docker://{dest}");
        let mut args = vec!["copy", "--all", "--dest-tls-verify=false"];
        args.extend(extra);
        args.extend([src.as_str(), dst.as_str()]);
        tool("skopeo", &args);
    }
}

/// A layer tar of `files` (path, mode, bytes).
fn tar_of(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = amphi_images::layer::LayerBuilder::new();
    for (p, m, data) in files {
        b.file(p, *m, data).unwrap();
    }
    b.build().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The busybox image's single layer, read back out of its archive.
fn busybox_layer(dirs: &TestDirs) -> Vec<u8> {
    let tar = dirs.tmp.path().join("bb.tar");
    amphi_examples::write_busybox_image(&tar, "bb:1").unwrap();
    let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let mut biggest = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().size().unwrap() > biggest.len() as u64
            && e.path().unwrap().starts_with("blobs")
        {
            biggest.clear();
            e.read_to_end(&mut biggest).unwrap();
        }
    }
    biggest
}

/// amphi with the test's roots, credentials file and registry CAs.
fn amphi(dirs: &TestDirs, args: &[&str]) -> std::process::Output {
    amphi_env(dirs, args).output().unwrap()
}

fn amphi_env(dirs: &TestDirs, args: &[&str]) -> Command {
    let mut c = amphi_cmd(dirs, args);
    c.env("DOCKER_CONFIG", dirs.tmp.path().join("docker-config"))
        .env("AMPHI_CERTS_D", dirs.tmp.path().join("certs.d"))
        .env("AMPHI_REGISTRY_TIMEOUT", "3");
    c
}

fn ok(dirs: &TestDirs, args: &[&str]) -> String {
    common::succeeded(args, amphi(dirs, args))
}

/// The store holds nothing half-made: every blob hashes to its name.
fn assert_store_whole(store: &Path) {
    for e in std::fs::read_dir(store.join("images/blobs/sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let b = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha(&b)[7..],
            *e.file_name().to_string_lossy(),
            "a blob is not whole"
        );
    }
}

fn image_id(dirs: &TestDirs, r: &str) -> String {
    let v: Value = serde_json::from_str(&ok(dirs, &["image", "inspect", r])).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn pull_run_and_push_round_trip_with_skopeo() {
    let dirs = TestDirs::new();
    let reg = Registry::start(&dirs.tmp.path().join("registry"), None);
    let mut layout = Layout::new(&dirs.tmp.path().join("layout"));
    let bb = busybox_layer(&dirs);
    let linux_config = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}});
    // A gzip layer under the busybox one's diff ID, and a zstd image.
    let gz = layout.image(
        &[(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gzip(&bb),
            bb.clone(),
        )],
        linux_config.clone(),
        "application/vnd.oci.image.config.v1+json",
    );
    let extra = tar_of(&[("etc/zstd-was-here", 0o644, b"yes\n")]);
    let zst = layout.image(
        &[
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                gzip(&bb),
                bb.clone(),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd::encode_all(&extra[..], 3).unwrap(),
                extra.clone(),
            ),
        ],
        linux_config,
        "application/vnd.oci.image.config.v1+json",
    );
    // A Wasm artifact: the module itself as its layer.
    let module = amphi_examples::WASM
        .iter()
        .find(|(n, _)| *n == "hello")
        .unwrap()
        .1
        .to_vec();
    let mut wasm_layer_desc = layout.image(
        &[("application/wasm", module.clone(), module.clone())],
        json!({"architecture": "wasm", "os": "wasip1"}),
        "application/vnd.wasm.config.v0+json",
    );
    wasm_layer_desc["platform"] = json!({"os": "wasip1", "architecture": "wasm"});
    let mut linux = gz.clone();
    linux["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [wasm_layer_desc, linux],
    }))
    .unwrap();
    let index_desc = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": layout.blob(&index), "size": index.len()});
    layout.tag(gz, "gz");
    layout.tag(zst, "zst");
    layout.tag(index_desc, "multi");
    let base = format!("{}/test", reg.addr);
    layout.copy_to("zst", &format!("{base}/app:zst"), &[]);
    layout.copy_to("multi", &format!("{base}/app:multi"), &[]);

    // The index resolves to this host's image; `run` pulls what it lacks.
    let out = ok(&dirs, &["pull", &format!("{base}/app:multi")]);
    assert!(
        out.contains("Pull complete") && out.contains("Status: Downloaded newer image"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("Digest: sha256:")),
        "{out}"
    );
    let run = amphi(
        &dirs,
        &[
            "run",
            "--rm",
            &format!("{base}/app:zst"),
            "cat",
            "/etc/zstd-was-here",
        ],
    );
    assert_eq!(text(&run.stdout), "yes\n", "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("Unable to find image"),
        "{}",
        text(&run.stderr)
    );
    // --pull never: a missing image is not fetched; always: one present is
    // checked again; --platform picks the index's Wasm image.
    let never = amphi(
        &dirs,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            &format!("{base}/app:gz"),
            "true",
        ],
    );
    assert_eq!(never.status.code(), Some(125));
    assert!(
        !text(&never.stderr).contains("Unable to find"),
        "{}",
        text(&never.stderr)
    );
    let always = amphi(
        &dirs,
        &[
            "run",
            "--rm",
            "--pull",
            "always",
            &format!("{base}/app:zst"),
            "cat",
            "/etc/zstd-was-here",
        ],
    );
    assert_eq!(text(&always.stdout), "yes\n", "{}", text(&always.stderr));
    assert!(
        text(&always.stderr).contains("Status: Image is up to date"),
        "{}",
        text(&always.stderr)
    );
    let bad = amphi(&dirs, &["run", "--rm", "--pull", "sometimes", "x"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad.stderr).contains("sometimes"),
        "{}",
        text(&bad.stderr)
    );
    let wasm = amphi(
        &dirs,
        &[
            "run",
            "--rm",
            "--pull",
            "always",
            "--platform",
            "wasip1/wasm",
            &format!("{base}/app:multi"),
        ],
    );
    assert_eq!(
        text(&wasm.stdout),
        "Hello from Wasm!\n",
        "{}",
        text(&wasm.stderr)
    );
    ok(&dirs, &["pull", &format!("{base}/app:multi")]);
    // The shared layer was not fetched again.
    let again = ok(&dirs, &["pull", &format!("{base}/app:multi")]);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    // -q: the name alone, as `docker pull -q` prints it.
    let quiet = ok(&dirs, &["pull", "-q", &format!("{base}/app:multi")]);
    assert_eq!(quiet, format!("{base}/app:multi\n"));
    // The Wasm platform of the index, and its artifact, run.
    ok(
        &dirs,
        &[
            "pull",
            "--platform",
            "wasip1/wasm",
            &format!("{base}/app:multi"),
        ],
    );
    let w = amphi(&dirs, &["run", "--rm", &format!("{base}/app:multi")]);
    assert_eq!(text(&w.stdout), "Hello from Wasm!\n", "{}", text(&w.stderr));
    let out = amphi(
        &dirs,
        &[
            "pull",
            "--platform",
            "linux/s390x",
            &format!("{base}/app:multi"),
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no image for linux/s390x"),
        "{}",
        text(&out.stderr)
    );

    // Push under another name; skopeo reads it; a fresh store pulls it
    // back to the same manifest digest and image ID.
    ok(
        &dirs,
        &[
            "tag",
            &format!("{base}/app:zst"),
            &format!("{}/other/pushed:1", reg.addr),
        ],
    );
    let id = image_id(&dirs, &format!("{}/other/pushed:1", reg.addr));
    let out = ok(&dirs, &["push", &format!("{}/other/pushed:1", reg.addr)]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let inspect: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/other/pushed:1", reg.addr),
        ],
    ))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    let back = dirs.tmp.path().join("back");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/other/pushed:1", reg.addr),
            &format!("oci:{}:x", back.display()),
        ],
    );
    let fresh = TestDirs::new();
    std::fs::create_dir_all(fresh.tmp.path()).unwrap();
    let out = amphi(&fresh, &["pull", &format!("{}/other/pushed:1", reg.addr)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        image_id(&fresh, &format!("{}/other/pushed:1", reg.addr)),
        id
    );
    assert_store_whole(&dirs.store);
}

#[test]
fn tls_basic_auth_and_login() {
    let dirs = TestDirs::new();
    let certs_d = dirs.tmp.path().join("certs.d");
    let reg = Registry::start(&dirs.tmp.path().join("registry"), Some(&certs_d));
    let tar = dirs.tmp.path().join("bb.tar");
    amphi_examples::write_busybox_image(&tar, "bb:1").unwrap();
    ok(&dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    let target = format!("{}/edge/bb:1", reg.addr);
    ok(&dirs, &["tag", "bb:1", &target]);
    // Not logged in: one line that says so.
    let out = amphi(&dirs, &["push", &target]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("authentication required"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
    // A wrong password: refused, one line, nothing kept.
    let login = |pw: &str| {
        let mut c = amphi_env(
            &dirs,
            &["login", "-u", "edge", "--password-stdin", &reg.addr],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        c.stdin.take().unwrap().write_all(pw.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = login("wrong\n");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
    let cfg = dirs.tmp.path().join("docker-config/config.json");
    assert!(!cfg.exists());
    let out = login("s3cret\n");
    assert!(
        text(&out.stdout).contains("Login Succeeded"),
        "{}",
        text(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Over TLS, with the registry's own CA from certs.d.
    ok(&dirs, &["push", &target]);
    let fresh = TestDirs::new();
    let mut c = amphi_cmd(&fresh, &["pull", &target]);
    c.env("DOCKER_CONFIG", dirs.tmp.path().join("docker-config"))
        .env("AMPHI_CERTS_D", &certs_d);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&dirs, &["logout", &reg.addr]);
    let out = amphi(&dirs, &["pull", &target]);
    assert!(
        text(&out.stderr).contains("authentication required"),
        "{}",
        text(&out.stderr)
    );
    let _ = &reg.data;
}

/// A registry with one image of a `mib` MiB random layer; returns the
/// reference and the layer's digest.
fn big_image(dirs: &TestDirs, reg: &Registry, mib: usize) -> (String, String) {
    let mut layout = Layout::new(&dirs.tmp.path().join("layout"));
    let mut seed = 7u64;
    let data = amphi_testkit::noise(mib << 20, &mut seed);
    let layer = tar_of(&[("data/blob", 0o644, &data), ("etc/marker", 0o644, b"big\n")]);
    let desc = layout.image(
        &[(
            "application/vnd.oci.image.layer.v1.tar",
            layer.clone(),
            layer.clone(),
        )],
        json!({"architecture": "amd64", "os": "linux"}),
        "application/vnd.oci.image.config.v1+json",
    );
    layout.tag(desc, "big");
    let r = format!("{}/test/big:1", reg.addr);
    layout.copy_to("big", &r, &[]);
    (r, sha(&layer))
}

#[test]
fn a_layer_that_does_not_match_its_digest_leaves_the_store_unchanged() {
    let dirs = TestDirs::new();
    let reg = Registry::start(&dirs.tmp.path().join("registry"), None);
    let (r, _) = big_image(&dirs, &reg, 1);
    // Damage the registry's copy of the layer (its largest blob, as skopeo
    // wrote it), size kept.
    let blobs = reg.data.join("docker/registry/v2/blobs/sha256");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .map(|e| e.path().join("data"))
        })
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let blob = files.pop().unwrap();
    let digest = format!(
        "sha256:{}",
        blob.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let mut b = std::fs::read(&blob).unwrap();
    let n = b.len();
    b[n / 2] ^= 0xff;
    std::fs::write(&blob, &b).unwrap();
    let out = amphi(&dirs, &["pull", &r]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    // The gzip checksum or the digest catches it, naming the layer.
    assert!(
        err.contains(&digest) && (err.contains("digest mismatch") || err.contains("corrupt")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        ok(&dirs, &["image", "ls"]).lines().count(),
        1,
        "a ref was written"
    );
    let blobs = std::fs::read_dir(dirs.store.join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs were kept");
    let snaps: Vec<_> = std::fs::read_dir(dirs.store.join("images/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "l")
        .collect();
    assert!(snaps.is_empty(), "snapshots were kept: {snaps:?}");
    let partials: Vec<_> = std::fs::read_dir(dirs.store.join("images/tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(partials.is_empty(), "temp files were kept: {partials:?}");
}

#[test]
fn cut_connections_errors_and_stalls_are_resumed_and_retried() {
    let dirs = TestDirs::new();
    let reg = Registry::start(&dirs.tmp.path().join("registry"), None);
    let (r, _) = big_image(&dirs, &reg, 4);
    let proxy = Proxy::start(&reg.addr);
    let via = r.replace(&reg.addr, &proxy.addr);
    // Cut after 1 MiB: the pull resumes with a Range request.
    proxy.faults.lock().unwrap().cut_after = Some(1 << 20);
    ok(&dirs, &["pull", &via]);
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|l| l.contains("/blobs/sha256:")
                && l.to_ascii_lowercase().contains("range: bytes=")),
        "no Range request: {seen:#?}"
    );
    // 503, 429, 503: tried again until it works.
    let fresh = TestDirs::new();
    proxy.faults.lock().unwrap().statuses = vec![503, 429, 503];
    let out = amphi(&fresh, &["pull", &via]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(proxy.faults.lock().unwrap().statuses.is_empty());
    // A stalled connection times out (AMPHI_REGISTRY_TIMEOUT=3) and is
    // tried again.
    let fresh = TestDirs::new();
    proxy.faults.lock().unwrap().stall = Some(Duration::from_secs(8));
    let out = amphi(&fresh, &["pull", &via]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_store_whole(&fresh.store);
}

#[test]
fn a_pull_killed_at_ten_points_leaves_a_consistent_store_and_resumes() {
    let dirs = TestDirs::new();
    let reg = Registry::start(&dirs.tmp.path().join("registry"), None);
    let (r, _) = big_image(&dirs, &reg, 8);
    let proxy = Proxy::start(&reg.addr);
    let via = r.replace(&reg.addr, &proxy.addr);
    // A slow link, so that kills land mid-transfer.
    proxy.faults.lock().unwrap().throttle = Some(Duration::from_millis(16));
    let total = (8u64 << 20) + 4096;
    for point in 1..=10u64 {
        let start = proxy.bytes.load(Ordering::Relaxed);
        let mut child = amphi_env(&dirs, &["pull", &via])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once a tenth more of the layer went through (or it ended).
        let goal = start + total / 12;
        for _ in 0..3000 {
            if proxy.bytes.load(Ordering::Relaxed) >= goal || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        // No ref unless the pull had finished; every blob whole.
        assert_store_whole(&dirs.store);
        let ls = ok(&dirs, &["image", "ls"]);
        if ls.lines().count() > 1 {
            assert!(point > 1, "a ref appeared at once: {ls}");
            break;
        }
    }
    // The next pull completes and fetches only what was missing.
    proxy.faults.lock().unwrap().throttle = None;
    let before = proxy.bytes.load(Ordering::Relaxed);
    ok(&dirs, &["pull", &via]);
    let fetched = proxy.bytes.load(Ordering::Relaxed) - before;
    assert!(
        fetched < total / 2,
        "the last pull fetched {fetched} of {total} bytes"
    );
    assert_store_whole(&dirs.store);
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token server for the registry's bearer auth (Docker Hub's flow): it
/// answers `GET /token?service=..&scope=..` from user `edge`/`s3cret` with
/// a JWT signed by a key whose certificate the registry trusts.
struct TokenServer {
    addr: String,
    cert: PathBuf,
    issued: Arc<AtomicU64>,
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        self_signed("/CN=amphi-token-issuer", &key, &cert);
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(der)
        };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let issued = Arc::new(AtomicU64::new(0));
        let (count, dir) = (issued.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("authorization: basic ") {
                        use base64::Engine as _;
                        let v = line.trim()["authorization: basic ".len()..].to_string();
                        authorized = base64::engine::general_purpose::STANDARD
                            .decode(v)
                            .is_ok_and(|d| d == b"edge:s3cret");
                    }
                }
                let mut conn = conn;
                if !authorized {
                    let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let query = request
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .split_once('?')
                    .map_or("", |q| q.1)
                    .to_string();
                let mut access = Vec::new();
                for kv in query.split('&') {
                    if let Some(v) = kv.strip_prefix("scope=") {
                        let v = percent_decode(v);
                        let parts: Vec<&str> = v.split(':').collect();
                        if parts.len() == 3 {
                            access.push(json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                        }
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = json!({"iss": "amphi-test", "sub": "edge", "aud": "amphi-registry", "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", count.load(Ordering::Relaxed)), "access": access});
                let signing = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let input = dir.join(format!("sign-{}", count.load(Ordering::Relaxed)));
                std::fs::write(&input, &signing).unwrap();
                let sig = Command::new("openssl")
                    .args(["dgst", "-sha256", "-binary", "-sign"])
                    .arg(dir.join("token.key"))
                    .arg(&input)
                    .output()
                    .unwrap()
                    .stdout;
                let jwt = format!("{signing}.{}", b64url(&sig));
                count.fetch_add(1, Ordering::Relaxed);
                let body =
                    json!({"token": jwt, "access_token": jwt, "expires_in": 300}).to_string();
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        TokenServer { addr, cert, issued }
    }
}

#[test]
fn bearer_token_auth_as_docker_hub_does_it() {
    let dirs = TestDirs::new();
    let tokens = TokenServer::start(&dirs.tmp.path().join("token"));
    let extra = format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: amphi-registry\n    issuer: amphi-test\n    rootcertbundle: {}\n",
        tokens.addr,
        tokens.cert.display()
    );
    let reg = Registry::start_with(&dirs.tmp.path().join("registry"), None, &extra);
    let tar = dirs.tmp.path().join("bb.tar");
    amphi_examples::write_busybox_image(&tar, "bb:1").unwrap();
    ok(&dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    let target = format!("{}/team/bb:1", reg.addr);
    ok(&dirs, &["tag", "bb:1", &target]);
    // Without credentials the token server refuses: one line.
    let out = amphi(&dirs, &["push", &target]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let login = |pw: &str| {
        amphi_env(&dirs, &["login", "-u", "edge", "-p", pw, &reg.addr])
            .output()
            .unwrap()
    };
    assert_eq!(login("wrong").status.code(), Some(125));
    let out = login("s3cret");
    assert!(
        text(&out.stdout).contains("Login Succeeded"),
        "{}",
        text(&out.stderr)
    );
    ok(&dirs, &["push", &target]);
    let fresh = TestDirs::new();
    let mut c = amphi_cmd(&fresh, &["pull", &target]);
    c.env("DOCKER_CONFIG", dirs.tmp.path().join("docker-config"));
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        tokens.issued.load(Ordering::Relaxed) >= 2,
        "no tokens were issued"
    );
    assert_eq!(image_id(&fresh, &target), image_id(&dirs, &target));
}
