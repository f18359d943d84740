//! `amphi run`: create, start and wait for a container in the foreground,
//! passing signals through and returning its exit status.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amphi_runtime::bundle::Bundle;
use amphi_runtime::oci_spec::runtime::Spec;
use amphi_runtime::{Container, CreateOptions, Runtime, Stdio};
use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use serde_json::{json, Value};
use std::io::Write;

use crate::{image_container, units};

/// Flags of `amphi run` (DESIGN.md's docker-like surface).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background (not yet supported for bundles).
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep stdin open (without it the container's stdin is /dev/null).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal, relayed to ours.
    #[arg(short = 't', long)]
    tty: bool,
    /// Container id (default: random).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (K=V).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Bind mount `SRC:DST[:ro]`.
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Hostname of the container.
    #[arg(long)]
    hostname: Option<String>,
    /// host (share the host's network) or none (isolated).
    #[arg(long)]
    network: Option<String>,
    /// Memory limit, e.g. 64m.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Mount the rootfs read-only.
    #[arg(long)]
    read_only: bool,
    /// Kill the container (SIGKILL, exit 137) when this time is up, e.g. 10s.
    /// (A negative one reaches the parser, which names the fault.)
    #[arg(long, allow_hyphen_values = true)]
    timeout: Option<String>,
    /// Run this OCI runtime bundle (config.json + rootfs).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Add a capability (e.g. NET_ADMIN, or ALL).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Every capability and device, no seccomp filter or masked paths.
    #[arg(long)]
    privileged: bool,
    /// A host device in the container: HOST[:CONTAINER][:rwm].
    #[arg(long = "device")]
    devices: Vec<String>,
    /// The user: UID[:GID] or NAME[:GROUP] (from the image's /etc/passwd).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// A supplementary group (GID or name from the image's /etc/group).
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// A resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long = "ulimit")]
    ulimits: Vec<String>,
    /// Run this instead of the image's Entrypoint (its Cmd is dropped).
    #[arg(long)]
    entrypoint: Option<String>,
    /// IMAGE [CMD ARGS...], or with --bundle: CMD ARGS... replacing the spec's args.
    /// As Docker parses: options come before IMAGE (an unknown one is an
    /// error naming it, never an image name); everything after IMAGE,
    /// flags too, is the command's.
    #[arg(trailing_var_arg = true)]
    rest: Vec<String>,
}

/// The signals `amphi run` passes on to the container.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn run(rt: &Runtime, root: &Path, mut args: RunArgs) -> Result<u8> {
    let timeout = args
        .timeout
        .as_deref()
        .map(units::parse_duration)
        .transpose()?;
    let id = match &args.name {
        Some(n) => n.clone(),
        None => random_id()?,
    };
    let from_image = args.bundle.is_none();
    let dir = match args.bundle.clone() {
        Some(dir) => dir,
        None => {
            if args.rest.is_empty() {
                bail!("give an IMAGE or --bundle DIR");
            }
            let image = args.rest.remove(0);
            // --entrypoint replaces the image's Entrypoint and drops its Cmd.
            let cmd: Vec<String> = match &args.entrypoint {
                Some(e) => std::iter::once(e.clone())
                    .chain(args.rest.drain(..))
                    .collect(),
                None => std::mem::take(&mut args.rest),
            };
            let dir = image_container::prepare(root, &id, &image, &cmd)?;
            // The image's command (with any CMD override) is in the spec;
            // with --entrypoint, the spec's args are ours alone.
            if args.entrypoint.is_some() {
                args.rest = cmd;
            }
            dir
        }
    };
    if args.detach {
        if args.tty || args.interactive {
            bail!("-d with -i or -t is not supported yet");
        }
        return detach(rt, root, &dir, &id, &args, timeout);
    }
    let stdio = if args.interactive || args.tty {
        Stdio::default()
    } else {
        // As Docker: without -i the container reads nothing of ours.
        let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
        Stdio {
            stdin: Some(null.into()),
            ..Stdio::default()
        }
    };
    let result = run_bundle(rt, &dir, &id, &args, timeout, stdio, None);
    if from_image && (args.rm || result.is_err()) {
        image_container::remove(root, &id)?;
    }
    result
}

/// `run -d`: a monitor process (in its own session) creates the container
/// with its output going to the log, stays its parent to record the exit,
/// and removes it at the end under `--rm`. The command returns once the
/// container started, printing its id.
fn detach(
    rt: &Runtime,
    root: &Path,
    dir: &Path,
    id: &str,
    args: &RunArgs,
    timeout: Option<Duration>,
) -> Result<u8> {
    let cdir = image_container::dir(root, id);
    std::fs::create_dir_all(&cdir).with_context(|| format!("creating {}", cdir.display()))?;
    let log = cdir.join("log");
    // Close-on-exec: the container must not hold the report pipe open.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: amphi is single-threaded here.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Ok(null) = &null {
                for fd in 0..3 {
                    // SAFETY: dup2 onto our own standard descriptors.
                    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(null), fd) };
                }
            }
            let mut report = std::fs::File::from(w);
            let code = (|| -> Result<u8> {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?;
                let stdio = Stdio {
                    stdin: None,
                    stdout: Some(out.try_clone()?.into()),
                    stderr: Some(out.into()),
                };
                run_bundle(rt, dir, id, args, timeout, stdio, Some(&mut report))
            })();
            if let Err(e) = &code {
                let _ = writeln!(report, "error: {}", format!("{e:#}").replace('\n', " "));
            }
            if args.rm || code.is_err() {
                let _ = image_container::remove(root, id);
            }
            std::process::exit(code.map(i32::from).unwrap_or(125));
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            // One line: "ok" once started, or the error. The monitor keeps
            // the pipe open while it supervises, so read no further.
            let mut reply = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(std::fs::File::from(r)),
                &mut reply,
            )
            .ok();
            let first = reply.trim_end();
            if first == "ok" {
                println!("{id}");
                return Ok(0);
            }
            bail!(
                "{}",
                first
                    .strip_prefix("error: ")
                    .unwrap_or("the container monitor exited during start")
            )
        }
    }
}

fn run_bundle(
    rt: &Runtime,
    dir: &Path,
    id: &str,
    args: &RunArgs,
    timeout: Option<Duration>,
    stdio: Stdio,
    started: Option<&mut std::fs::File>,
) -> Result<u8> {
    let bundle = Bundle::load(dir)?;
    let bundle = apply_flags(bundle, args)?;
    // Block the signals we forward (and SIGCHLD) before the container
    // exists, so none is lost; the init unblocks its own mask.
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block().context("blocking signals")?;
    let opts = CreateOptions {
        stdio,
        ..CreateOptions::default()
    };
    let mut container = rt.create_from(id, bundle, opts)?;
    // -t: the console the init allocated, relayed to our terminal (raw
    // while the container runs; restored when `raw` drops, on every path).
    let console = container.take_console();
    let mut raw = None;
    let mut relay = None;
    if let Some(master) = &console {
        crate::tty::copy_window_size(master.as_fd());
        raw = crate::tty::RawMode::enter();
        match crate::tty::Relay::start(master, args.interactive) {
            Ok(r) => relay = Some(r),
            Err(e) => {
                drop(raw);
                let _ = container.delete(true);
                return Err(e).context("relaying the container's terminal");
            }
        }
    }
    if let Err(e) = container.start() {
        drop(raw);
        let _ = container.delete(true);
        return Err(e.into());
    }
    if let Some(w) = started {
        // The monitor's parent returns now; it must not see our later output.
        let _ = writeln!(w, "ok");
    }
    let result = supervise(&mut container, &set, timeout, console.as_ref());
    if let Some(r) = relay {
        r.finish();
    }
    drop(raw);
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let _ = container.delete(true);
            return Err(e);
        }
    };
    if args.rm {
        container
            .delete(true)
            .with_context(|| format!("removing container {id}"))?;
    }
    Ok(code)
}

/// Waits for the container, forwarding signals and enforcing the timeout;
/// a resize of our terminal (SIGWINCH) resizes the container's `console`.
fn supervise(
    container: &mut Container,
    set: &SigSet,
    timeout: Option<Duration>,
    console: Option<&OwnedFd>,
) -> Result<u8> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut killed = false;
    loop {
        if let Some(status) = container.try_wait()? {
            return Ok(status.code.clamp(0, 255) as u8);
        }
        let wait = match deadline {
            Some(d) if !killed => d.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(3600),
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; a null siginfo is allowed.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if sig < 0 {
            let err = nix::errno::Errno::last();
            if err == nix::errno::Errno::EAGAIN
                && deadline.is_some()
                && !killed
                && Instant::now() >= deadline.unwrap()
            {
                container.kill(Signal::SIGKILL, true)?;
                killed = true;
            }
            continue;
        }
        if sig == libc::SIGCHLD {
            continue;
        }
        if sig == libc::SIGWINCH {
            if let Some(master) = console {
                crate::tty::copy_window_size(master.as_fd());
            }
            continue;
        }
        if let Ok(s) = Signal::try_from(sig) {
            let _ = container.kill(s, false);
        }
    }
}

/// Capabilities, no_new_privileges and seccomp: an image run gets
/// Docker's default profile for its capabilities; a bundle keeps its own
/// unless `--security-opt seccomp=...` says otherwise.
fn apply_security(v: &mut Value, a: &RunArgs) -> Result<()> {
    use crate::seccomp_profile::{default_profile, to_spec};
    use crate::security::{capabilities, parse_security_opts, Seccomp};
    let sec = parse_security_opts(&a.security_opt)?;
    if a.privileged {
        crate::security::make_privileged(v)?;
    }
    for d in &a.devices {
        crate::security::add_device(v, d)?;
    }
    let strings =
        |v: &Value| -> Vec<String> { serde_json::from_value(v.clone()).unwrap_or_default() };
    let mut caps = strings(&v["process"]["capabilities"]["bounding"]);
    if !a.cap_add.is_empty() || !a.cap_drop.is_empty() {
        caps = capabilities(&caps, &a.cap_add, &a.cap_drop)?;
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set] = json!(caps);
        }
    }
    if sec.no_new_privileges {
        v["process"]["noNewPrivileges"] = json!(true);
    }
    let profile = match &sec.seccomp {
        Seccomp::Unconfined => None,
        Seccomp::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seccomp profile {}", path.display()))?;
            let p: Value = serde_json::from_str(&text)
                .with_context(|| format!("seccomp profile {}", path.display()))?;
            Some(
                to_spec(&p, &caps)
                    .with_context(|| format!("seccomp profile {}", path.display()))?,
            )
        }
        // Docker runs privileged containers unconfined.
        Seccomp::Default if a.privileged => None,
        Seccomp::Default if a.bundle.is_none() => Some(to_spec(&default_profile(), &caps)?),
        Seccomp::Default => return Ok(()),
    };
    match profile {
        Some(p) => v["linux"]["seccomp"] = p,
        None => {
            if let Some(l) = v["linux"].as_object_mut() {
                l.remove("seccomp");
            }
        }
    }
    Ok(())
}

/// Applies the command-line flags over the bundle's spec.
fn apply_flags(bundle: Bundle, a: &RunArgs) -> Result<Bundle> {
    let mut v = serde_json::to_value(&bundle.spec)?;
    let obj = |v: &mut Value, key: &str| -> () {
        if !v.get(key).is_some_and(Value::is_object) {
            v[key] = json!({});
        }
    };
    if !a.rest.is_empty() {
        v["process"]["args"] = json!(a.rest);
    }
    // Without -t the container shares amphi's own stdio (a terminal
    // included); with it, a console of its own that amphi relays.
    v["process"]["terminal"] = json!(a.tty);
    if !a.env.is_empty() {
        let mut env: Vec<String> =
            serde_json::from_value(v["process"]["env"].take()).unwrap_or_default();
        for kv in &a.env {
            let Some((k, _)) = kv.split_once('=') else {
                bail!("bad -e {kv:?}: use KEY=VALUE")
            };
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
            env.push(kv.clone());
        }
        v["process"]["env"] = json!(env);
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("bad -w {w:?}: must be an absolute path");
        }
        v["process"]["cwd"] = json!(w);
    }
    if let Some(h) = &a.hostname {
        v["hostname"] = json!(h);
    }
    apply_security(&mut v, a)?;
    crate::process_opts::apply(
        &mut v,
        &bundle.rootfs,
        a.user.as_deref(),
        &a.group_add,
        &a.ulimits,
    )?;
    if a.read_only {
        v["root"]["readonly"] = json!(true);
    }
    obj(&mut v, "linux");
    obj(&mut v["linux"], "resources");
    let res = &mut v["linux"]["resources"];
    if let Some(m) = &a.memory {
        let bytes = units::parse_bytes(m)?;
        obj(res, "memory");
        // No swap on top, so the limit is the limit.
        res["memory"]["limit"] = json!(bytes);
        res["memory"]["swap"] = json!(bytes);
    }
    if let Some(c) = &a.cpus {
        let (quota, period) = units::parse_cpus(c)?;
        obj(res, "cpu");
        res["cpu"]["quota"] = json!(quota);
        res["cpu"]["period"] = json!(period);
    }
    if let Some(p) = a.pids_limit {
        if p <= 0 {
            bail!("bad --pids-limit {p}: must be positive");
        }
        res["pids"] = json!({ "limit": p });
    }
    if let Some(net) = &a.network {
        let mut ns: Vec<Value> =
            serde_json::from_value(v["linux"]["namespaces"].take()).unwrap_or_default();
        ns.retain(|n| n["type"] != "network");
        match net.as_str() {
            "host" => {}
            "none" => ns.push(json!({"type": "network"})),
            other => bail!("bad --network {other:?}: use host or none"),
        }
        v["linux"]["namespaces"] = json!(ns);
    }
    for vol in &a.volumes {
        let parts: Vec<&str> = vol.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("bad -v {vol:?}: use SRC:DST[:ro]"),
        };
        let src =
            std::fs::canonicalize(src).with_context(|| format!("bad -v {vol:?}: source {src}"))?;
        if !dst.starts_with('/') {
            bail!("bad -v {vol:?}: destination must be absolute");
        }
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        if ro {
            opts.push("ro");
        }
        let mounts = v["mounts"].as_array_mut();
        let m = json!({"destination": dst, "type": "bind", "source": src, "options": opts});
        match mounts {
            Some(list) => list.push(m),
            None => v["mounts"] = json!([m]),
        }
    }
    let spec: Spec = serde_json::from_value(v).context("applying flags to the spec")?;
    Ok(Bundle::from_spec(bundle.dir, spec)?)
}

/// 32 random hex digits, like Docker's ids but shorter.
fn random_id() -> Result<String> {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
