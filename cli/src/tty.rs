//! `amphi run -t`: the container's terminal (allocated inside it, its
//! master handed back by the runtime) relayed to ours, as `docker run -it`
//! does: our terminal in raw mode while the container runs (so Ctrl-C is
//! a byte for the container's line discipline, which signals its
//! foreground process), its window size set at start and on SIGWINCH, and
//! our modes restored on every way out (the guard's drop).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};

/// Our terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode; `None` when stdin is no terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Our terminal's size (rows, cols), from stdout, else stdin.
pub fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ fills the winsize we pass.
        if unsafe { get_winsize(fd, &mut ws) }.is_ok() && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Gives the container's terminal our window size.
pub fn copy_window_size(master: BorrowedFd) {
    if let Some((rows, cols)) = window_size() {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        let _ = unsafe { set_winsize(master.as_raw_fd(), &ws) };
    }
}

/// The relay threads of one container terminal.
pub struct Relay {
    out_done: mpsc::Receiver<()>,
}

impl Relay {
    /// Copies the master's output to our stdout and, with `stdin`, our
    /// input to the master (threads: a blocked read of our stdin must not
    /// hold up the exit).
    pub fn start(master: &OwnedFd, stdin: bool) -> std::io::Result<Relay> {
        let mut out_side = std::fs::File::from(master.try_clone()?);
        let (tx, out_done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdout = std::io::stdout();
            // EIO once every slave fd is closed: the container is gone.
            while let Ok(n) = out_side.read(&mut buf) {
                if n == 0
                    || stdout
                        .write_all(&buf[..n])
                        .and_then(|()| stdout.flush())
                        .is_err()
                {
                    break;
                }
            }
            let _ = tx.send(());
        });
        if stdin {
            let mut in_side = std::fs::File::from(master.try_clone()?);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut stdin = std::io::stdin();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 {
                        // End of our input: the terminal's end-of-file.
                        let _ = in_side.write_all(&[4]);
                        break;
                    }
                    if in_side.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Relay { out_done })
    }

    /// Waits (a bounded time) until the container's last output is out.
    pub fn finish(self) {
        let _ = self.out_done.recv_timeout(Duration::from_secs(2));
    }
}
