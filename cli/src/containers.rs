//! The container commands other than `run` and `ps`: lifecycle verbs,
//! `inspect`, `top`, `cp`, `commit`, `logs`, `attach`, `exec`, `export`
//! and `stats`, each a call into the engine and Docker's output.

use std::path::Path;
use std::time::Duration;

use amphi_engine::commit::CommitOptions;
use amphi_engine::{units, Engine, Status};
use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::Command;

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
        Command::Pause { ids } => each(&ids, |q| {
            engine.pause(q)?;
            println!("{q}");
            Ok(())
        }),
        Command::Unpause { ids } => each(&ids, |q| {
            engine.unpause(q)?;
            println!("{q}");
            Ok(())
        }),
        Command::Diff { id } => {
            for c in engine.diff(&id)? {
                println!("{} {}", c.kind, c.path);
            }
            Ok(0)
        }
        Command::Update { opts, ids } => each(&ids, |q| {
            engine.update(q, &opts)?;
            println!("{q}");
            Ok(())
        }),
        Command::Rename { id, name } => {
            engine.rename(&id, &name)?;
            Ok(0)
        }
        Command::Port { id, port } => {
            let rec = engine.container(&id)?;
            let ports = amphi_engine::network::attachment(engine.root(), &rec.id)
                .map(|a| a.ports)
                .unwrap_or_default();
            let want = port.as_deref().map(|p| match p.split_once('/') {
                Some((n, proto)) => (n.to_string(), proto.to_string()),
                None => (p.to_string(), "tcp".to_string()),
            });
            let mut found = false;
            for p in &ports {
                let ip = if p.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    &p.host_ip
                };
                match &want {
                    Some((n, proto))
                        if *n == p.container_port.to_string() && *proto == p.protocol =>
                    {
                        println!("{ip}:{}", p.host_port)
                    }
                    Some(_) => continue,
                    None => println!(
                        "{}/{} -> {ip}:{}",
                        p.container_port, p.protocol, p.host_port
                    ),
                }
                found = true;
            }
            if let (Some(p), false) = (&port, found) {
                bail!("no public port {p} published for {}", rec.name);
            }
            Ok(0)
        }
        Command::Wait { ids } => each(&ids, |q| {
            println!("{}", engine.wait(q)?);
            Ok(())
        }),
        Command::Ps(args) => crate::ps::ps(engine, &args),
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
                // `-`: a tar stream on stdout or stdin, as docker cp.
                (Some((c, p)), None) if dst == "-" => {
                    engine.copy_out_tar(c, p, &mut std::io::stdout().lock())?;
                    0
                }
                (None, Some((c, p))) if src == "-" => {
                    engine.copy_in_tar(&mut std::io::stdin().lock(), c, p)?
                }
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
        Command::Logs {
            follow,
            tail,
            timestamps,
            since,
            until,
            details: _,
            id,
        } => {
            let time = |s: &Option<String>| {
                s.as_deref()
                    .map(amphi_engine::units::parse_time)
                    .transpose()
            };
            let (since, until) = (time(&since)?, time(&until)?);
            let from = match tail.as_str() {
                "all" => 0,
                n => {
                    let n: u64 = n
                        .parse()
                        .with_context(|| format!("bad --tail {n:?}: use a number or all"))?;
                    engine.log_tail_offset(&id, n)?
                }
            };
            let o = amphi_engine::LogOptions {
                follow,
                from,
                timestamps,
                since,
                until,
            };
            engine.copy_log(&id, &o, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(0)
        }
        Command::Attach { id } => attach(engine, &id),
        Command::Exec(a) => crate::exec::exec(engine, a),
        Command::Export { output, id } => export(engine, &id, &output),
        Command::Stats(a) => crate::stats::stats(engine, &a),
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
        | Command::ContainerPrune { .. }
        | Command::Version { .. }
        | Command::Info { .. }
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
        std::thread::spawn(move || {
            let o = amphi_engine::LogOptions {
                follow: true,
                from,
                ..Default::default()
            };
            engine.copy_log(&id, &o, &mut std::io::stdout(), &mut std::io::stderr())
        })
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
