//! A process's stdio: the FIFOs (or files) containerd names, handed to the
//! container directly, or a pseudo-terminal the shim copies to and from.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use amphi_runtime::Stdio;

/// The shim's end of a container's terminal.
pub struct Console {
    master: File,
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Console {
    /// Sets the terminal's window size.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid fd and struct.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits (bounded) until the output copy has drained, so the exit
    /// event never overtakes the last output.
    pub fn wait_drained(&self, limit: Duration) {
        let (lock, cvar) = &*self.done;
        let guard = lock.lock().unwrap();
        let _ = cvar.wait_timeout_while(guard, limit, |done| !*done);
    }
}

/// Opens what the container's fds 0, 1, 2 become. With a terminal the
/// init replaces them with its console; see [`attach_console`].
pub fn open(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> std::io::Result<Stdio> {
    if terminal {
        return Ok(Stdio {
            stdin: Some(null(false)?),
            stdout: Some(null(true)?),
            stderr: Some(null(true)?),
        });
    }
    Ok(Stdio {
        stdin: Some(if stdin.is_empty() {
            null(false)?
        } else {
            open_reader(stdin)?
        }),
        stdout: Some(open_writer(stdout)?),
        stderr: Some(open_writer(stderr)?),
    })
}

fn null(write: bool) -> std::io::Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?
        .into())
}

fn strip_scheme(path: &str) -> std::io::Result<&str> {
    if let Some(p) = path.strip_prefix("file://") {
        return Ok(p);
    }
    if path.contains("://") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("unsupported stdio URI {path}"),
        ));
    }
    Ok(path)
}

fn open_reader(path: &str) -> std::io::Result<OwnedFd> {
    let path = strip_scheme(path)?;
    // Non-blocking open never waits for a writer; reads then block again.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    set_blocking(&f)?;
    Ok(f.into())
}

fn open_writer(path: &str) -> std::io::Result<OwnedFd> {
    if path.is_empty() {
        return null(true);
    }
    let path = strip_scheme(path)?;
    let is_fifo = std::fs::metadata(path).map(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    });
    let f = match is_fifo {
        Ok(true) => {
            // containerd opens the read side first; if it has not, keep a
            // reader ourselves (O_RDWR) so the open does not block.
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    OpenOptions::new().read(true).write(true).open(path)?
                }
                Err(e) => return Err(e),
            }
        }
        _ => OpenOptions::new().append(true).create(true).open(path)?,
    };
    set_blocking(&f)?;
    Ok(f.into())
}

fn set_blocking(f: &File) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(f, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(f, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Relays a container's console (the master side the init sent back)
/// to and from containerd's FIFOs.
pub fn attach_console(master: OwnedFd, stdin: &str, stdout: &str) -> std::io::Result<Console> {
    let master = File::from(master);
    if !stdin.is_empty() {
        let mut input = File::from(open_reader(stdin)?);
        let mut to_master = master.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut input, &mut to_master);
        });
    }
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    if stdout.is_empty() {
        *done.0.lock().unwrap() = true;
    } else {
        let mut out = File::from(open_writer(stdout)?);
        let mut from_master = master.try_clone()?;
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once the last holder of the slave side is gone.
            while let Ok(n) = from_master.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            *done.0.lock().unwrap() = true;
            done.1.notify_all();
        });
    }
    Ok(Console { master, done })
}
