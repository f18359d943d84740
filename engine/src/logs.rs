//! `logs` (with `-f`), `attach` and `top`: a detached container's output
//! as its watcher appends it to its log, and its processes as `ps` shows
//! them.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::record::{self, Status};
use crate::Engine;

impl Engine {
    /// Copies `query`'s log to `out` from byte `from` (0: the start; see
    /// [`Engine::log_len`] for "from now on"); with `follow`, until the
    /// container stops for good (not while it waits to restart).
    pub fn copy_log(
        &self,
        query: &str,
        follow: bool,
        from: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let rec = self.container(query)?;
        let path = self.log_path(&rec.id);
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
        f.seek(SeekFrom::Start(from))
            .map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n > 0 {
                out.write_all(&buf[..n]).context("writing the log out")?;
                let _ = out.flush();
                continue;
            }
            if !follow {
                return Ok(());
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
                let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
                if n > 0 {
                    out.write_all(&buf[..n]).context("writing the log out")?;
                    continue;
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
