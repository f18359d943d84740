//! Shim logs to containerd's `log` FIFO in the bundle, which containerd
//! copies into its own log.
//!
//! Like `containerd_shim::logger` (same logfmt line, same level rules:
//! `RUST_LOG`, else info; `-debug` raises it to debug), but each record
//! goes out in one `write` — atomic on a pipe, so lines of concurrent
//! threads never interleave, and one wake-up of containerd's reader rather
//! than eight — and ttrpc's own lifecycle notes ("server started",
//! "listener thread stopped", ...) are kept below warnings: they cost
//! containerd a log line each, on every container.

use std::fs::File;
use std::io::Write;
use std::str::FromStr;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct FifoLog {
    fifo: File,
}

impl Log for FifoLog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
            && (m.level() <= Level::Warn || !m.target().starts_with("ttrpc"))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let msg = record.args().to_string().replace('"', "\\\"");
        let line = format!(
            "time=\"{time}\" level={} msg=\"{msg}\"\n",
            record.level().as_str().to_lowercase()
        );
        // containerd may be restarting: a lost line is not worth failing for.
        let _ = (&self.fifo).write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Sends `log` records to the bundle's `log` FIFO (opened relative to the
/// current directory, the bundle).
pub fn init(debug: bool) -> std::io::Result<()> {
    let fifo = std::fs::OpenOptions::new().write(true).open("log")?;
    let mut level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| LevelFilter::from_str(&l).ok())
        .unwrap_or(LevelFilter::Info);
    if debug && level < LevelFilter::Debug {
        level = LevelFilter::Debug;
    }
    log::set_boxed_logger(Box::new(FifoLog { fifo })).map_err(std::io::Error::other)?;
    log::set_max_level(level);
    Ok(())
}
