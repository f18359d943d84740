//! `logs` (with `-f`), `attach` and `top`: a detached container's output
//! as its watcher appends it to its log, and its processes as `ps` shows
//! them.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::logfmt::{self, Stream};
use crate::record::{self, Status};
use crate::Engine;

/// What of a log [`Engine::copy_log`] gives, and how.
#[derive(Debug, Default, Clone)]
pub struct LogOptions {
    /// Keep reading as the container writes, until it stops.
    pub follow: bool,
    /// The byte of the log to start at.
    pub from: u64,
    /// Each line with its time in front (`logs -t`).
    pub timestamps: bool,
    /// Only what was written at or after this time.
    pub since: Option<SystemTime>,
    /// Only what was written before this time.
    pub until: Option<SystemTime>,
}

impl LogOptions {
    /// Writes the whole lines of `bytes` out; how many bytes they took.
    fn write_lines(&self, bytes: &[u8], out: &mut dyn Write, err: &mut dyn Write) -> Result<usize> {
        let mut used = 0;
        while let Some(nl) = bytes[used..].iter().position(|b| *b == b'\n') {
            let line = &bytes[used..used + nl];
            used += nl + 1;
            let Some(e) = logfmt::parse(line) else {
                out.write_all(line)
                    .and_then(|()| out.write_all(b"\n"))
                    .context("writing the log out")?;
                continue;
            };
            if self.since.is_some() || self.until.is_some() {
                let t = crate::inspect::parse_rfc3339(e.time);
                if self.since.is_some_and(|s| t.is_some_and(|t| t < s))
                    || self.until.is_some_and(|u| t.is_some_and(|t| t >= u))
                {
                    continue;
                }
            }
            let to: &mut dyn Write = match e.stream {
                Stream::Stdout => out,
                Stream::Stderr => err,
            };
            if self.timestamps {
                to.write_all(e.time.as_bytes())
                    .and_then(|()| to.write_all(b" "))
                    .context("writing the log out")?;
            }
            to.write_all(&e.content).context("writing the log out")?;
        }
        let _ = out.flush();
        let _ = err.flush();
        Ok(used)
    }
}

impl Engine {
    /// Copies `query`'s log from byte `o.from` (0: the start; see
    /// [`Engine::log_len`] for "from now on"): each record's output to
    /// `out` or `err` by its stream, as Docker's `logs` splits them, with
    /// its time in front for `o.timestamps`, only those within `o.since`
    /// and `o.until`; with `o.follow`, until the container stops for good
    /// (not while it waits to restart) or `o.until` has passed. A line
    /// that is no record (an older amphi's raw log) goes to `out` as it is.
    pub fn copy_log(
        &self,
        query: &str,
        o: &LogOptions,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        let rec = self.container(query)?;
        let path = self.log_path(&rec.id);
        let follow = o.follow;
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
                bail!(
                    "container {} has no log: its output went to the terminal of the amphi that ran it",
                    rec.name
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
                std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        f.seek(SeekFrom::Start(o.from))
            .map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; 64 << 10];
        let mut pending: Vec<u8> = Vec::new();
        let mut read_more = |pending: &mut Vec<u8>| -> Result<bool> {
            let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            pending.extend_from_slice(&buf[..n]);
            Ok(n > 0)
        };
        let passed_until = || o.until.is_some_and(|u| SystemTime::now() > u);
        loop {
            if read_more(&mut pending)? {
                let used = o.write_lines(&pending, out, err)?;
                pending.drain(..used);
                continue;
            }
            if !follow || passed_until() {
                break;
            }
            // EOF: done once it has stopped for good and all is read.
            let done = match record::load(self.root(), &rec.id) {
                Ok(r) => match self.reconcile(r)? {
                    Some(r) => !r.is_active() && r.state.status != Status::Created,
                    None => true,
                },
                Err(Error::NoSuchContainer(_)) => true,
                Err(e) => return Err(e),
            };
            if done {
                // What was written just before the exit.
                while read_more(&mut pending)? {
                    let used = o.write_lines(&pending, out, err)?;
                    pending.drain(..used);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A last line without its newline (only a raw log has one).
        if !pending.is_empty() {
            pending.push(b'\n');
            o.write_lines(&pending, out, err)?;
        }
        Ok(())
    }

    /// Where the last `lines` lines of `query`'s log begin (`logs --tail`):
    /// a final newline ends the last line, it does not start another.
    pub fn log_tail_offset(&self, query: &str, lines: u64) -> Result<u64> {
        let rec = self.container(query)?;
        let path = self.log_path(&rec.id);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        if lines == 0 {
            return Ok(len);
        }
        // Backwards, a block at a time: a log may be large.
        let mut pos = len;
        let mut seen = 0;
        let mut buf = vec![0u8; 64 << 10];
        while pos > 0 {
            let n = buf.len().min(pos as usize);
            pos -= n as u64;
            f.seek(SeekFrom::Start(pos))
                .and_then(|_| f.read_exact(&mut buf[..n]))
                .map_err(|e| Error::io(&path, e))?;
            for i in (0..n).rev() {
                let at = pos + i as u64;
                if buf[i] == b'\n' && at + 1 != len {
                    seen += 1;
                    if seen == lines {
                        return Ok(at + 1);
                    }
                }
            }
        }
        Ok(0)
    }

    /// Holds off the removal of a `--rm` container while an `attach` is
    /// on it, so the attach can read how it exited: a shared lock its
    /// watcher takes exclusively before removing it.
    pub fn hold_for_attach(&self, id: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let path = record::dir(self.root(), id).join("attach.lock");
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared)
            .map_err(|(_, e)| Error::io(path, e.into()))
    }

    /// Waits until no attach holds `id` (see [`Engine::hold_for_attach`]).
    pub(crate) fn wait_for_attaches(&self, id: &str) -> Option<nix::fcntl::Flock<std::fs::File>> {
        self.attach_lock(id, nix::fcntl::FlockArg::LockExclusive)
    }

    /// The attach lock of `id`, held exclusively, if no attach or wait
    /// holds it now.
    pub(crate) fn unobserved(&self, id: &str) -> Option<nix::fcntl::Flock<std::fs::File>> {
        self.attach_lock(id, nix::fcntl::FlockArg::LockExclusiveNonblock)
    }

    fn attach_lock(
        &self,
        id: &str,
        how: nix::fcntl::FlockArg,
    ) -> Option<nix::fcntl::Flock<std::fs::File>> {
        let path = record::dir(self.root(), id).join("attach.lock");
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        nix::fcntl::Flock::lock(f, how).ok()
    }

    /// How long `query`'s log is now.
    pub fn log_len(&self, query: &str) -> Result<u64> {
        let id = self.resolve(query)?;
        Ok(std::fs::metadata(self.log_path(&id)).map_or(0, |m| m.len()))
    }

    /// The host pids of `query`'s processes (its cgroup's).
    pub fn pids(&self, query: &str) -> Result<Vec<i32>> {
        let rec = self.container(query)?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.name));
        }
        Ok(self.runtime().load(&rec.id)?.pids()?)
    }

    /// `top`: the host's `ps` with `ps_args` (default `-ef`), its rows cut
    /// to the container's processes, as Docker's `top` does. Returns the
    /// header and the rows.
    pub fn top(&self, query: &str, ps_args: &[String]) -> Result<(String, Vec<String>)> {
        let pids = self.pids(query)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .context("running ps (procps)")?;
        if !out.status.success() {
            bail!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
            bail!("ps {}: its output has no PID column", args.join(" "));
        };
        let rows = lines
            .filter(|l| {
                l.split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
            })
            .map(String::from)
            .collect();
        Ok((header, rows))
    }
}
