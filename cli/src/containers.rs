//! The container commands other than `run`: lifecycle verbs, `ps`,
//! `inspect`, `top`, `cp`, `commit`, `logs`, `attach`, `exec`, `export`
//! and `stats`, each a call into the engine and Docker's output.

use std::path::Path;
use std::time::{Duration, SystemTime};

use amphi_engine::commit::CommitOptions;
use amphi_engine::inspect::rfc3339;
use amphi_engine::{units, Engine, Record, Status};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::Command;

/// `amphi ps` flags.
#[derive(Args)]
pub struct PsArgs {
    /// All containers (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    no_trunc: bool,
    /// KEY=VALUE: status, name, id, label (KEY or KEY=VALUE), exited, ancestor.
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// Go-template-like format, e.g. 'table {{.ID}}\t{{.Names}}'.
    #[arg(long)]
    format: Option<String>,
}

fn secs(t: Option<i64>) -> Option<Duration> {
    t.map(|s| Duration::from_secs(s.max(0) as u64))
}

pub fn run(engine: &Engine, command: Command) -> Result<u8> {
    match command {
        Command::Start {
            attach,
            interactive,
            all_restartable,
            ids,
        } => {
            if all_restartable {
                for id in engine.start_all_restartable()? {
                    println!("{id}");
                }
                return Ok(0);
            }
            if attach || interactive {
                let [id] = ids.as_slice() else {
                    bail!("start -a takes one container");
                };
                let id = engine.resolve(id)?;
                return crate::run::attached(engine, &id, interactive);
            }
            each(&ids, |q| {
                engine.start(q)?;
                println!("{q}");
                Ok(())
            })
        }
        Command::Stop { time, ids } => each(&ids, |q| {
            engine.stop(q, secs(time))?;
            println!("{q}");
            Ok(())
        }),
        Command::Restart { time, ids } => each(&ids, |q| {
            engine.restart(q, secs(time))?;
            println!("{q}");
            Ok(())
        }),
        Command::Kill { signal, ids } => {
            let sig = units::parse_signal(&signal)?;
            each(&ids, |q| {
                engine.kill(q, sig)?;
                println!("{q}");
                Ok(())
            })
        }
        Command::Rm {
            force,
            volumes,
            ids,
        } => each(&ids, |q| {
            engine.remove(q, force, volumes)?;
            println!("{q}");
            Ok(())
        }),
        Command::Wait { ids } => each(&ids, |q| {
            println!("{}", engine.wait(q)?);
            Ok(())
        }),
        Command::Ps(args) => ps(engine, &args),
        Command::Inspect {
            format,
            kind,
            names,
        } => inspect(engine, format.as_deref(), kind.as_deref(), &names),
        Command::Top { id, ps_args } => {
            let (header, rows) = engine.top(&id, &ps_args)?;
            println!("{header}");
            for r in rows {
                println!("{r}");
            }
            Ok(0)
        }
        Command::Cp { src, dst } => {
            match (split_container(&src), split_container(&dst)) {
                (Some((c, p)), None) => engine.copy_out(c, p, Path::new(&dst))?,
                (None, Some((c, p))) => engine.copy_in(Path::new(&src), c, p)?,
                (Some(_), Some(_)) => bail!("copying between containers is not supported"),
                (None, None) => bail!("one of SRC and DST must be CONTAINER:PATH"),
            };
            Ok(0)
        }
        Command::Commit {
            message,
            author,
            id,
            reference,
        } => {
            let ids = engine.commit(
                &id,
                reference.as_deref(),
                &CommitOptions { message, author },
            )?;
            println!("{}", ids.config);
            Ok(0)
        }
        Command::Logs { follow, id } => {
            engine.copy_log(&id, follow, 0, &mut std::io::stdout())?;
            Ok(0)
        }
        Command::Attach { id } => attach(engine, &id),
        Command::Exec { id, cmd } => exec(engine, &id, cmd),
        Command::Export { output, id } => export(engine, &id, &output),
        Command::Stats { id } => {
            let rec = engine.container(&id)?;
            let stats = engine.runtime().load(&rec.id)?.stats()?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(0)
        }
        Command::Run(_)
        | Command::Pull { .. }
        | Command::Push { .. }
        | Command::Login { .. }
        | Command::Logout { .. }
        | Command::Tag { .. }
        | Command::Create(_)
        | Command::Image { .. }
        | Command::System { .. }
        | Command::Network { .. }
        | Command::Volume { .. }
        | Command::ContainerWatch { .. } => unreachable!("dispatched in main"),
    }
}

/// Runs `f` on each item (container, network, volume); errors are printed and the command fails
/// at the end (as Docker's multi-container verbs do).
pub(crate) fn each(ids: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = false;
    for q in ids {
        if let Err(e) = f(q) {
            eprintln!("amphi: {}", format!("{e:#}").replace('\n', " "));
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `NAME:PATH` → (NAME, PATH); a path with a `/` before the colon (or
/// none) is the host's.
fn split_container(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// "5 seconds", "About a minute", "3 hours", as Docker's HumanDuration.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        _ => format!("{} months", s / 2_592_000),
    }
}

fn ago(t: Option<SystemTime>) -> String {
    let d = t
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    format!("{} ago", human(d))
}

/// Docker's STATUS column.
fn status_text(r: &Record) -> String {
    let st = &r.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = st
                .started_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            format!("Up {}", human(up))
        }
        Status::Restarting => format!("Restarting ({}) {}", st.exit_code, ago(st.finished_at)),
        Status::Exited => format!("Exited ({}) {}", st.exit_code, ago(st.finished_at)),
    }
}

/// A container as `ps --format` sees it.
fn ps_row(root: &Path, r: &Record, no_trunc: bool) -> Value {
    let ports = amphi_engine::network::attachment(root, &r.id)
        .map(|a| {
            a.ports
                .iter()
                .map(|p| p.display())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let id = if no_trunc { &r.id[..] } else { &r.id[..12] };
    let mut cmd = r.args.join(" ");
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let labels = r.labels();
    json!({
        "ID": id,
        "Image": r.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": rfc3339(Some(r.created)),
        "RunningFor": ago(Some(r.created)),
        "Ports": ports,
        "State": r.state.status.to_string(),
        "Status": status_text(r),
        "Size": "",
        "Names": r.name,
        "Labels": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "LabelMap": labels.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<String, Value>>(),
        "Mounts": r.mounts.iter().map(|m| match &m.source {
            amphi_engine::mounts::Source::Volume { name, .. } => name.clone(),
            amphi_engine::mounts::Source::Bind { path } => path.clone(),
            amphi_engine::mounts::Source::Tmpfs { .. } => m.destination.clone(),
        }).collect::<Vec<_>>().join(","),
        "Networks": match r.network_mode() { "" => "default", m => m },
    })
}

/// Whether `r` passes every filter kind (values of one kind are alternatives).
fn matches(r: &Record, filters: &[(String, String)]) -> Result<bool> {
    let mut kinds: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    kinds.dedup();
    for kind in kinds {
        let mut any = false;
        for (_, v) in filters.iter().filter(|(k, _)| k == kind) {
            any |= match kind {
                "status" => r.state.status.to_string() == *v,
                "name" => r.name.contains(v.trim_start_matches('/')),
                "id" => r.id.starts_with(v.as_str()),
                "label" => {
                    let (k, want) = v
                        .split_once('=')
                        .map_or((v.as_str(), None), |(k, x)| (k, Some(x)));
                    r.labels()
                        .iter()
                        .any(|(lk, lv)| lk == k && want.is_none_or(|w| w == lv))
                }
                "exited" => r.state.status == Status::Exited && v.parse() == Ok(r.state.exit_code),
                "ancestor" => r.image == *v || r.image_id.as_deref() == Some(v.as_str()),
                other => {
                    bail!("bad --filter {other:?}: use status, name, id, label, exited or ancestor")
                }
            };
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ps(engine: &Engine, a: &PsArgs) -> Result<u8> {
    let (containers, broken) = engine.containers_and_broken()?;
    // A container whose record is damaged is said, not hidden.
    for (id, why) in broken {
        eprintln!("amphi: container {id} cannot be listed: {why} (`amphi rm -f {id}` removes it)");
    }
    let filters: Vec<(String, String)> = a
        .filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("bad --filter {f:?}: use KEY=VALUE"))
        })
        .collect::<Result<_>>()?;
    let status_filtered = filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut recs = Vec::new();
    // As Docker's: without -a, the running and the restarting.
    for r in containers.into_iter().rev() {
        if (a.all || status_filtered || r.is_active()) && matches(&r, &filters)? {
            recs.push(r);
        }
    }
    if a.quiet {
        for r in &recs {
            println!("{}", if a.no_trunc { &r.id[..] } else { &r.id[..12] });
        }
        return Ok(0);
    }
    let default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
    let template = a.format.as_deref().unwrap_or(default);
    let (table, body) = match template.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, template),
    };
    let mut lines = Vec::new();
    if table {
        let header = body
            .replace("{{.ID}}", "CONTAINER ID")
            .replace("{{.RunningFor}}", "CREATED")
            .replace("{{.CreatedAt}}", "CREATED AT");
        let header = header_of(&header);
        lines.push(header);
    }
    for r in &recs {
        lines.push(crate::format::render(
            body,
            &ps_row(engine.root(), r, a.no_trunc),
        )?);
    }
    if table {
        print!("{}", align(&lines));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(0)
}

/// A table header from a template: each `{{.Field}}` becomes FIELD.
fn header_of(t: &str) -> String {
    let mut out = String::new();
    let mut rest = t.replace("\\t", "\t");
    while let Some(s) = rest.find("{{") {
        out.push_str(&rest[..s]);
        let after = rest[s + 2..].to_string();
        let e = after.find("}}").unwrap_or(after.len());
        let word = after[..e]
            .trim()
            .trim_start_matches('.')
            .to_ascii_uppercase();
        out.push_str(&word);
        rest = after[(e + 2).min(after.len())..].to_string();
    }
    out.push_str(&rest);
    out
}

/// Tab-separated rows as aligned columns, three spaces apart (Docker's
/// tabwriter settings).
fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn inspect(
    engine: &Engine,
    format: Option<&str>,
    kind: Option<&str>,
    names: &[String],
) -> Result<u8> {
    let mut out = Vec::new();
    let mut failed = false;
    for n in names {
        let v = match kind {
            Some("container") => engine.inspect(n).map_err(anyhow::Error::from),
            Some("image") => engine.inspect_image(n).map_err(anyhow::Error::from),
            Some(other) => bail!("bad --type {other:?}: use container or image"),
            None => engine
                .inspect(n)
                .or_else(|_| engine.inspect_image(n))
                .map_err(|_| anyhow::anyhow!("no such container or image: {n}")),
        };
        match v {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("amphi: {}", format!("{e:#}").replace('\n', " "));
                failed = true;
            }
        }
    }
    match format {
        Some(f) => {
            for v in &out {
                println!("{}", crate::format::render(f, v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
    }
    Ok(if failed { 1 } else { 0 })
}

/// `attach`: the detached container's output from now on; with `-i` our
/// input to it (Ctrl-P Ctrl-Q detaches, as Docker's); with `-t` our
/// terminal raw and its size passed on; without `-t` our signals passed
/// on. Exits with the container's status.
fn attach(engine: &Engine, query: &str) -> Result<u8> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let rec = engine.container(query)?;
    if rec.state.status != Status::Running && rec.state.status != Status::Restarting {
        bail!("container {} is not running: start it first", rec.name);
    }
    let dir = amphi_engine::record::dir(engine.root(), &rec.id);
    // A --rm container stays until we have read how it exited.
    let hold = engine.hold_for_attach(&rec.id)?;
    let tty = rec.options.tty;
    let set = amphi_engine::watch::block_signals()?;
    let watcher = rec.state.watcher.map(|w| w.pid);
    let send_size = || {
        if let Some(ws) = crate::tty::window_size() {
            let _ = std::fs::write(
                amphi_engine::console::winsize_path(&dir),
                format!("{} {}\n", ws.0, ws.1),
            );
            if let Some(pid) = watcher {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGWINCH,
                );
            }
        }
    };
    // From now on: what comes after this, our input's echo included.
    let from = engine.log_len(&rec.id)?;
    let raw = if tty {
        crate::tty::RawMode::enter()
    } else {
        None
    };
    if tty {
        send_size();
    }
    let detached = Arc::new(AtomicBool::new(false));
    if rec.options.interactive {
        let fifo = amphi_engine::console::stdin_path(&dir);
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .with_context(|| format!("opening {}", fifo.display()))?;
        let detached = detached.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut last = 0u8;
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // Ctrl-P Ctrl-Q: leave it running, as Docker's detach keys.
                let data = &buf[..n];
                if let Some(p) = data.iter().enumerate().position(|(i, b)| {
                    *b == 0x11 && (if i == 0 { last } else { data[i - 1] }) == 0x10
                }) {
                    let _ = to.write_all(&data[..p.saturating_sub(1)]);
                    detached.store(true, Ordering::SeqCst);
                    break;
                }
                last = data[n - 1];
                if to.write_all(data).is_err() {
                    break;
                }
            }
        });
    }
    let follower = {
        let engine = engine.clone();
        let id = rec.id.clone();
        std::thread::spawn(move || engine.copy_log(&id, true, from, &mut std::io::stdout()))
    };
    while !follower.is_finished() && !detached.load(Ordering::SeqCst) {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: valid set and timespec.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if sig == libc::SIGWINCH && tty {
            send_size();
        } else if sig > 0
            && !tty
            && amphi_engine::watch::FORWARDED
                .iter()
                .any(|s| *s as i32 == sig)
        {
            if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                let _ = engine.kill(&rec.id, s);
            }
        }
    }
    drop(raw);
    if detached.load(Ordering::SeqCst) {
        println!();
        return Ok(0);
    }
    follower.join().expect("log follower")?;
    let code = engine.wait(&rec.id)?;
    drop(hold);
    Ok(code.clamp(0, 255) as u8)
}

fn exec(engine: &Engine, query: &str, cmd: Vec<String>) -> Result<u8> {
    let rec = engine.container(query)?;
    let container = engine.runtime().load(&rec.id)?;
    let config = container.state().bundle.join("config.json");
    let spec: Value = serde_json::from_slice(
        &std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?,
    )?;
    let mut process = spec["process"].clone();
    process["args"] = json!(cmd);
    process["terminal"] = json!(false);
    let process = serde_json::from_value(process).context("the container's process spec")?;
    // The exec'd process is a grandchild: adopt it to reap it.
    nix::sys::prctl::set_child_subreaper(true)?;
    let started = container.exec(
        engine.runtime().config(),
        &process,
        amphi_runtime::Stdio::default(),
    )?;
    let code = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(started.pid), None)? {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => 125,
    };
    Ok(code.clamp(0, 255) as u8)
}

fn export(engine: &Engine, query: &str, output: &Path) -> Result<u8> {
    let rec = engine.container(query)?;
    amphi_engine::bundle::ensure_mounted(
        engine.root(),
        &rec.id,
        rec.image_digest.as_deref(),
        &rec.image,
    )?;
    let rootfs = amphi_engine::bundle::rootfs_path(
        engine.root(),
        &rec.id,
        rec.image_digest.as_deref(),
        &rec.image,
    );
    let tmp = output.with_extension("amphi-partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(e) = amphi_images::layer::tar_tree(&rootfs, std::io::BufWriter::new(file)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(0)
}
