//! `amphi run -i` and `-it` driven as a person would: under a real pty
//! (the test holds its master, amphi gets the slave as its controlling
//! terminal), a busybox shell inside.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_testkit::{unique_id, TestDirs};
use common::{amphi, amphi_cmd, assert_removed, cidfile, text};

/// Imports a busybox-static rootfs (sh, stty, sleep, cat) as `bb:1`.
fn import_busybox(dirs: &TestDirs) {
    let bin =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (scripts/install-deps)");
    let tar_path = dirs.tmp.path().join("bb.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "bin/", std::io::empty()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_size(bin.len() as u64);
    b.append_data(&mut h, "bin/busybox", bin.as_slice())
        .unwrap();
    for applet in ["sh", "stty", "sleep", "cat", "echo", "id", "pwd", "env"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap();
    let out = amphi(
        dirs,
        &["image", "import", tar_path.to_str().unwrap(), "bb:1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
}

/// What the terminal showed so far, and a way to wait for text in it.
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn wait_for(&self, what: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if String::from_utf8_lossy(&self.0.lock().unwrap()).contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{what:?} never showed; screen: {:?}",
            String::from_utf8_lossy(&self.0.lock().unwrap())
        );
    }
}

/// An `amphi run` that a failing test must not leave behind: on drop its
/// container is killed (`amphi kill`: a shell as pid 1 ignores SIGTERM)
/// and the run waited for, which then removes it (`--rm`).
struct Guard(std::process::Child, std::process::Command);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.1.output();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn run_it_gives_an_interactive_shell_on_a_real_terminal() {
    let dirs = TestDirs::new();
    import_busybox(&dirs);
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 30, 100);
    let before = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    let id = unique_id("it");
    let cidf = cidfile(&dirs);
    let cidf_s = cidf.to_string_lossy().into_owned();
    let (child, screen) = on_terminal(
        &dirs,
        &pty,
        &[
            "run",
            "--rm",
            "-it",
            "--name",
            &id,
            "--cidfile",
            &cidf_s,
            "bb:1",
            "sh",
        ],
    );
    let mut child = Guard(child, amphi_cmd(&dirs, &["kill", &id]));
    let mut keys = std::fs::File::from(pty.master.try_clone().unwrap());
    let mut type_line = |s: &str| keys.write_all(s.as_bytes()).unwrap();
    // The window size at start, and after a resize (SIGWINCH to amphi).
    type_line("stty size\r");
    screen.wait_for("30 100");
    set_size(&pty.master, 40, 120);
    std::thread::sleep(Duration::from_millis(200));
    type_line("stty size\r");
    screen.wait_for("40 120");
    // Ctrl-C interrupts the foreground command, not the shell.
    type_line("sleep 30; echo not-interrupted-$((1+1))\r");
    std::thread::sleep(Duration::from_millis(300));
    type_line("\x03");
    type_line("echo after-$((40+2))\r");
    screen.wait_for("after-42");
    assert!(!String::from_utf8_lossy(&screen.0.lock().unwrap()).contains("not-interrupted-2"));
    type_line("exit 3\r");
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    // The caller's terminal modes are as they were.
    let after = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
    assert_removed(&dirs, &cidf);
}

#[test]
fn run_i_takes_a_pipe_and_without_it_stdin_is_empty() {
    let dirs = TestDirs::new();
    import_busybox(&dirs);
    let run = |flags: &[&str]| {
        let id = unique_id("pipe");
        let mut v = vec!["run", "--rm", "--name", &id];
        v.extend(flags);
        v.extend(["bb:1", "cat"]);
        let mut child = amphi_cmd(&dirs, &v)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Without -i nobody reads it: a failed write is fine.
        let _ = stdin.write_all(b"hi through the pipe\n");
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        text(&out.stdout)
    };
    assert_eq!(run(&["-i"]), "hi through the pipe\n");
    assert_eq!(run(&[]), "");
}

#[test]
fn run_t_gives_a_wasm_module_a_terminal() {
    let dirs = TestDirs::new();
    let tar = dirs.tmp.path().join("wasm.tar");
    amphi_examples::write_image(&tar, amphi_examples::Kind::Wasm, "amphi-wasm:latest").unwrap();
    let out = amphi(&dirs, &["image", "load", "-i", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = unique_id("wt");
    let out = amphi(&dirs, &["run", "--rm", "-t", "--name", &id, "amphi-wasm"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Through the container's terminal (which writes \r\n).
    assert_eq!(text(&out.stdout), "Hello from Wasm!\r\n");
}

/// Starts `amphi ARGS` on the terminal `pty` (its controlling terminal)
/// and collects what the terminal shows.
fn on_terminal(
    dirs: &TestDirs,
    pty: &nix::pty::OpenptyResult,
    args: &[&str],
) -> (std::process::Child, Screen) {
    let slave = pty.slave.as_raw_fd();
    let mut cmd = amphi_cmd(dirs, args);
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let screen = Screen(Arc::new(Mutex::new(Vec::new())));
    let mut reader = std::fs::File::from(pty.master.try_clone().unwrap());
    let shown = screen.0.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (child, screen)
}

/// A command run when dropped (a failing test's clean-up).
struct OnDrop(std::process::Command);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.output();
    }
}

#[test]
fn run_dit_then_attach_detach_and_attach_again() {
    let dirs = TestDirs::new();
    import_busybox(&dirs);
    let name = unique_id("dit");
    // The container goes whatever happens.
    let _rm = OnDrop(amphi_cmd(&dirs, &["rm", "-f", &name]));
    let out = amphi(&dirs, &["run", "-dit", "--name", &name, "bb:1", "sh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    // Attach on a 30x100 terminal: our size reaches the container; typed
    // input runs; Ctrl-P Ctrl-Q detaches and leaves it running.
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 30, 100);
    let (mut attach, screen) = on_terminal(&dirs, &pty, &["attach", &name]);
    let mut input = std::fs::File::from(pty.master.try_clone().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    input
        .write_all(b"stty size; echo marker-$((6*7))\r")
        .unwrap();
    screen.wait_for("30 100");
    screen.wait_for("marker-42");
    input.write_all(b"\x10\x11").unwrap();
    assert_eq!(attach.wait().unwrap().code(), Some(0));
    let state = amphi(&dirs, &["inspect", "-f", "{{.State.Status}}", &name]);
    assert_eq!(text(&state.stdout).trim(), "running");
    // Again, on another size; `exit 3` ends it and attach with it.
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 20, 60);
    let (mut attach, screen) = on_terminal(&dirs, &pty, &["attach", &name]);
    let mut input = std::fs::File::from(pty.master.try_clone().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    input.write_all(b"stty size\r").unwrap();
    screen.wait_for("20 60");
    input.write_all(b"exit 3\r").unwrap();
    assert_eq!(attach.wait().unwrap().code(), Some(3));
    // Its terminal output is in its log too.
    let logs = text(&amphi(&dirs, &["logs", &name]).stdout);
    assert!(logs.contains("marker-42"), "{logs}");
    let rm = amphi(&dirs, &["rm", &name]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    amphi_testkit::assert_no_leaks(&id, &dirs.state, &dirs.store);
}

#[test]
fn run_di_reads_what_attach_sends() {
    let dirs = TestDirs::new();
    import_busybox(&dirs);
    let name = unique_id("di");
    let out = amphi(
        &dirs,
        &["run", "-di", "--rm", "--name", &name, "bb:1", "sh"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let mut attach = amphi_cmd(&dirs, &["attach", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    attach
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo from-attach-$((2+3)); exit 9\n")
        .unwrap();
    let out = attach.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(text(&out.stdout), "from-attach-5\n");
    // --rm: gone once it exited.
    for _ in 0..500 {
        if !dirs.store.join("containers").join(&id).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    amphi_testkit::assert_no_leaks(&id, &dirs.state, &dirs.store);
    assert!(!dirs.store.join("containers").join(&id).exists());
}

#[test]
fn exec_it_gives_a_shell_in_a_running_container_and_exec_takes_docker_flags() {
    let dirs = TestDirs::new();
    import_busybox(&dirs);
    let name = unique_id("ex");
    let _rm = OnDrop(amphi_cmd(&dirs, &["rm", "-f", &name]));
    let out = amphi(
        &dirs,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "bb:1",
            "sleep",
            "120",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // -it under a real terminal: its size, Ctrl-C, the exit code, our modes.
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 31, 101);
    let before = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    let (child, screen) = on_terminal(&dirs, &pty, &["exec", "-it", &name, "sh"]);
    let mut child = Guard(child, amphi_cmd(&dirs, &["kill", &name]));
    let mut keys = std::fs::File::from(pty.master.try_clone().unwrap());
    let mut type_line = |s: &str| keys.write_all(s.as_bytes()).unwrap();
    type_line("stty size\r");
    screen.wait_for("31 101");
    set_size(&pty.master, 41, 121);
    std::thread::sleep(Duration::from_millis(200));
    type_line("stty size\r");
    screen.wait_for("41 121");
    type_line("sleep 30; echo not-interrupted-$((1+1))\r");
    std::thread::sleep(Duration::from_millis(300));
    type_line("\x03");
    type_line("echo after-$((40+2))\r");
    screen.wait_for("after-42");
    type_line("exit 4\r");
    assert_eq!(child.0.wait().unwrap().code(), Some(4));
    let after = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    // Without a terminal: -i reads a pipe, -e/-w/-u shape the process, the
    // exit status is the command's, -d returns at once.
    let mut cmd = amphi_cmd(&dirs, &["exec", "-i", &name, "cat"]);
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"through the pipe\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through the pipe\n");
    let out = amphi(
        &dirs,
        &[
            "exec",
            "-e",
            "GREETING=hi",
            "-w",
            "/bin",
            "-u",
            "1234:5678",
            &name,
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; id -g; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n/bin\n1234\n5678\n");
    // After the container, flags are the command's, as Docker parses.
    let out = amphi(
        &dirs,
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "printf '%s|%s\\n' \"$0\" \"$1\"",
            "-e",
            "-w",
        ],
    );
    assert_eq!(text(&out.stdout), "-e|-w\n", "{}", text(&out.stderr));
    let out = amphi(&dirs, &["exec", "-d", &name, "sleep", "60"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out.stderr)
    );
    // A container that is not running: one line.
    let out = amphi(&dirs, &["exec", "no-such-container", "true"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}
