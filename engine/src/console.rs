//! The standard streams of a detached container: stdout and stderr are
//! pipes the watcher reads, appending each line to its log as a record of
//! its stream and time (`logfmt`); with `-i`, input from a FIFO in its
//! directory (`stdin`, kept open by the watcher, so the container never
//! sees end-of-file while it is detached) that `attach` writes to; with
//! `-t`, the terminal the init allocated, relayed by the watcher (output
//! to the log, the FIFO to its input) and resized from the size `attach`
//! writes to `winsize`. (A container dies with its watcher, so nothing is
//! lost by the watcher holding the other ends.)

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amphi_runtime::Stdio;

use crate::error::{Error, Result};
use crate::logfmt::{self, Stream};
use crate::options::RunOptions;

/// The FIFO a detached `-i` container reads.
pub fn stdin_path(dir: &Path) -> PathBuf {
    dir.join("stdin")
}

/// Where `attach` leaves its terminal's size ("ROWS COLS") for the watcher.
pub fn winsize_path(dir: &Path) -> PathBuf {
    dir.join("winsize")
}

nix::ioctl_write_ptr_bad!(
    /// Sets a terminal's window size (TIOCSWINSZ).
    set_winsize,
    libc::TIOCSWINSZ,
    libc::winsize
);

/// A watcher's side of a detached container's streams.
pub(crate) struct DetachedIo {
    dir: PathBuf,
    log: logfmt::Log,
    tty: bool,
    /// The FIFO, open for reading and writing (so it never ends).
    stdin: Option<File>,
    /// The current run's terminal, for the input pump and resizes.
    master: Arc<Mutex<Option<File>>>,
    /// Each ends when the current run's output on one stream (or its
    /// terminal) is all in the log.
    out_done: Vec<std::sync::mpsc::Receiver<()>>,
}

impl DetachedIo {
    /// Opens the log (and, for `-i`, the FIFO) of the container in `dir`.
    pub(crate) fn open(dir: &Path, opts: &RunOptions) -> Result<DetachedIo> {
        let log_path = dir.join("log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let stdin = if opts.interactive {
            let fifo = stdin_path(dir);
            match nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(Error::io(&fifo, e.into())),
            }
            Some(
                File::options()
                    .read(true)
                    .write(true)
                    .open(&fifo)
                    .map_err(|e| Error::io(&fifo, e))?,
            )
        } else {
            None
        };
        let io = DetachedIo {
            dir: dir.to_path_buf(),
            log: Arc::new(Mutex::new(log)),
            tty: opts.tty,
            stdin,
            master: Arc::new(Mutex::new(None)),
            out_done: Vec::new(),
        };
        if io.tty {
            if let Some(fifo) = &io.stdin {
                // One pump for the watcher's life: FIFO -> current terminal.
                let mut fifo = fifo.try_clone().map_err(|e| Error::io(&io.dir, e))?;
                let master = io.master.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = fifo.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(m) = master.lock().unwrap().as_mut() {
                            let _ = m.write_all(&buf[..n]);
                        }
                    }
                });
            }
        }
        Ok(io)
    }

    /// The stdio of one run: pipes into the log (a `-t` run's output is
    /// its terminal's instead).
    pub(crate) fn stdio(&mut self) -> Result<Stdio> {
        let stdin = match (&self.stdin, self.tty) {
            (Some(f), false) => f.try_clone().map_err(|e| Error::io(&self.dir, e))?.into(),
            _ => File::open("/dev/null")
                .map_err(|e| Error::io("/dev/null", e))?
                .into(),
        };
        if self.tty {
            // Replaced by the terminal in the container; never written.
            let log = || -> Result<OwnedFd> {
                let f = self.log.lock().unwrap().try_clone();
                Ok(f.map_err(|e| Error::io(&self.dir, e))?.into())
            };
            return Ok(Stdio {
                stdin: Some(stdin),
                stdout: Some(log()?),
                stderr: Some(log()?),
            });
        }
        let stdout = self.pipe_to_log(Stream::Stdout)?;
        let stderr = self.pipe_to_log(Stream::Stderr)?;
        Ok(Stdio {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        })
    }

    /// A pipe whose output a thread of ours logs as `stream`; its write
    /// end, for the container.
    fn pipe_to_log(&mut self, stream: Stream) -> Result<OwnedFd> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("pipe2", e.into()))?;
        self.pump(File::from(r), stream);
        Ok(w)
    }

    fn pump(&mut self, from: File, stream: Stream) {
        let log = self.log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Ends at end-of-file, or EIO once a terminal's last slave
            // closes: the run is over.
            logfmt::pump(from, stream, &log);
            let _ = tx.send(());
        });
        self.out_done.push(rx);
    }

    /// Relays a `-t` run's terminal: its output to the log, the FIFO's
    /// input to it; sized as the last `attach` asked.
    pub(crate) fn relay(&mut self, master: OwnedFd) -> Result<()> {
        let out = File::from(master);
        let reader = out.try_clone().map_err(|e| Error::io(&self.dir, e))?;
        self.pump(reader, Stream::Stdout);
        *self.master.lock().unwrap() = Some(out);
        self.resize();
        Ok(())
    }

    /// Applies the size in `winsize` to the current terminal.
    pub(crate) fn resize(&self) {
        let Ok(text) = std::fs::read_to_string(winsize_path(&self.dir)) else {
            return;
        };
        let mut it = text
            .split_whitespace()
            .filter_map(|n| n.parse::<u16>().ok());
        let (Some(rows), Some(cols)) = (it.next(), it.next()) else {
            return;
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        if let Some(m) = self.master.lock().unwrap().as_ref() {
            // SAFETY: TIOCSWINSZ reads the winsize we pass.
            let _ = unsafe { set_winsize(m.as_raw_fd(), &ws) };
        }
    }

    /// After a run: its last terminal output is in the log (bounded wait).
    pub(crate) fn run_ended(&mut self) {
        // Bounded: a process the container left behind may still hold a
        // stream open.
        let until = std::time::Instant::now() + Duration::from_secs(2);
        for rx in self.out_done.drain(..) {
            let _ = rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now()));
        }
        *self.master.lock().unwrap() = None;
    }
}

/// A foreground run's output (`amphi run` without `-d`, `start -a`):
/// still the caller's, through pipes whose pumps copy it to the caller's
/// stdout and stderr as it comes, and the container's log as well, as
/// Docker keeps a log of every container, so `logs` works for it later.
pub struct ForegroundLog {
    out_done: Vec<std::sync::mpsc::Receiver<()>>,
}

impl ForegroundLog {
    /// The stdio of a foreground run of the container in `dir` (`stdin`
    /// as given) and the pumps behind it.
    pub fn stdio(dir: &Path, stdin: Option<OwnedFd>) -> Result<(Stdio, ForegroundLog)> {
        let path = dir.join("log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let log: logfmt::Log = Arc::new(Mutex::new(log));
        let mut out_done = Vec::new();
        let mut pipe = |stream: Stream, ours: std::os::fd::BorrowedFd<'_>| -> Result<OwnedFd> {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("pipe2", e.into()))?;
            // Our own fd, unbuffered, so the output shows as it comes (none
            // when ours is closed: the log still gets it).
            let copy = nix::unistd::dup(ours).ok().map(File::from);
            let (log, (tx, rx)) = (log.clone(), std::sync::mpsc::channel());
            std::thread::spawn(move || {
                let mut copy = copy;
                let also = copy.as_mut().map(|f| f as &mut dyn Write);
                logfmt::pump_to(File::from(r), stream, &log, also);
                let _ = tx.send(());
            });
            out_done.push(rx);
            Ok(w)
        };
        let stdout = pipe(Stream::Stdout, std::io::stdout().as_fd())?;
        let stderr = pipe(Stream::Stderr, std::io::stderr().as_fd())?;
        Ok((
            Stdio {
                stdin,
                stdout: Some(stdout),
                stderr: Some(stderr),
            },
            ForegroundLog { out_done },
        ))
    }

    /// After the run: its last output is out (bounded wait, as a process
    /// it left behind may hold a stream open).
    pub fn finish(self) {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        for rx in self.out_done {
            let _ = rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now()));
        }
    }
}
