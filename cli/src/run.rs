//! `amphi run` and `start -a`: a container in the foreground, this
//! command its watcher: signals passed on, a `-t` container's terminal
//! relayed to ours, its exit status returned. A restart policy that
//! wants it again hands it to a detached watcher as we exit.

use std::os::fd::AsFd;

use amphi_engine::restart::next_delay;
use amphi_engine::watch::{block_signals, supervise, Supervision};
use amphi_engine::{units, Engine, Finished, RunOptions};
use amphi_runtime::Stdio;
use anyhow::{Context, Result};

/// `amphi run`.
pub fn run(engine: &Engine, opts: RunOptions) -> Result<u8> {
    let rec = engine.create_to_run(&opts)?;
    if opts.detach {
        if let Err(e) = engine.spawn_watcher(&rec.id, None) {
            let _ = engine.remove(&rec.id, true, true);
            return Err(e.into());
        }
        println!("{}", rec.id);
        return Ok(0);
    }
    let result = attached(engine, &rec.id, opts.interactive);
    // amphi failed (not the container): nothing half-made stays.
    if result.is_err() {
        let _ = engine.remove(&rec.id, true, true);
    }
    result
}

/// Runs container `id` once in the foreground with our stdio (stdin only
/// with `interactive` or a terminal), as its watcher.
pub fn attached(engine: &Engine, id: &str, interactive: bool) -> Result<u8> {
    let rec = engine.container(id)?;
    let tty = rec.options.tty;
    let keep_stdin = interactive || rec.options.interactive || tty;
    let stdin = if keep_stdin {
        None
    } else {
        // As Docker: without -i the container reads nothing of ours.
        let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
        Some(null.into())
    };
    // Its output is ours and also in its log, as Docker logs every
    // container; but a --rm one's log would go with it, and a -t one's
    // output is its terminal's: those get ours directly.
    let (stdio, log) = if rec.options.rm || tty {
        (
            Stdio {
                stdin,
                ..Stdio::default()
            },
            None,
        )
    } else {
        let dir = amphi_engine::record::dir(engine.root(), id);
        let (stdio, log) = amphi_engine::console::ForegroundLog::stdio(&dir, stdin)?;
        (stdio, Some(log))
    };
    let timeout = rec
        .options
        .timeout
        .as_deref()
        .map(units::parse_duration)
        .transpose()?;
    let set = block_signals()?;
    let Some(mut task) = engine.prepare_task(id, stdio, true)? else {
        anyhow::bail!("container {} was stopped meanwhile", rec.name);
    };
    // -t: the console the init allocated, relayed to our terminal (raw
    // while the container runs; restored when `raw` drops, on every path).
    let console = task.console.take();
    let mut raw = None;
    let mut relay = None;
    if let Some(master) = &console {
        crate::tty::copy_window_size(master.as_fd());
        raw = crate::tty::RawMode::enter();
        match crate::tty::Relay::start(master, keep_stdin) {
            Ok(r) => relay = Some(r),
            Err(e) => {
                drop(raw);
                let _ = engine.abandon_task(task, &e.to_string());
                return Err(e).context("relaying the container's terminal");
            }
        }
    }
    if let Err(e) = engine.start_task(&mut task) {
        drop(raw);
        return Err(e.into());
    }
    let mut resize = || {
        if let Some(master) = &console {
            crate::tty::copy_window_size(master.as_fd());
        }
    };
    let status = supervise(
        &mut task.container,
        &set,
        Supervision {
            timeout,
            forward: true,
            on_resize: Some(&mut resize),
        },
    );
    if let Some(r) = relay {
        r.finish();
    }
    if let Some(log) = log {
        log.finish();
    }
    drop(raw);
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = engine.abandon_task(task, &e.to_string());
            return Err(e.into());
        }
    };
    if let Finished::Restart(_, ran_for) = engine.finish_task(task, status)? {
        engine.spawn_watcher(id, Some(next_delay(None, ran_for)))?;
    }
    Ok(status.code.clamp(0, 255) as u8)
}
