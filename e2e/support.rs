//! A private containerd for tests and benchmarks: own socket, root and
//! state in a temp dir, the example images imported, stopped and cleaned
//! up on drop (also when a test fails).

#![allow(dead_code)] // shared by the e2e tests and the shim benchmark

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use amphi_examples::Kind;
use amphi_testkit::{cgroup_dirs_named, unique_id};

pub const RUNTIME: &str = "io.containerd.amphi.v1";
pub const NATIVE: &str = "docker.io/library/amphi-native:latest";
pub const WASM: &str = "docker.io/library/amphi-wasm:latest";
/// The WASI 0.2 component examples (wasip2/wasm), imported on demand.
pub const COMPONENT: &str = "docker.io/library/amphi-component:latest";

pub fn shim_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_containerd-shim-amphi-v1"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Polls `f` until it holds; panics naming `what` after ~20 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a command printed exactly `want`; shows its stderr otherwise.
pub fn assert_stdout(out: &Output, want: &str) {
    assert_eq!(text(&out.stdout), want, "stderr: {}", text(&out.stderr));
}

/// Processes whose command line names `binary` and the containerd socket
/// `sock`, with their NUL-separated command lines (zombies have none).
pub fn shim_processes(sock: &Path, binary: &str) -> Vec<(i32, String)> {
    let sock = sock.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let c = text(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?);
            (c.contains(binary) && c.contains(&sock)).then_some((pid, c))
        })
        .collect()
}

/// Starts containerd with `dir/config.toml`, logging to
/// `dir/containerd.log`, with our shim on its PATH and its store
/// (`AMPHI_ROOT`) in `dir/store`.
pub fn spawn_containerd(dir: &Path) -> Child {
    let path = format!(
        "{}:{}",
        shim_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .unwrap();
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .env("AMPHI_ROOT", dir.join("store"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("containerd is installed (scripts/install-deps)")
}

/// A benchmark's rounds: `AMPHI_BENCH_RUNS`, else `default`; `None` when
/// cargo only lists or tests the bench targets.
pub fn bench_runs(default: usize) -> Option<usize> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return None;
    }
    Some(
        std::env::var("AMPHI_BENCH_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// SIGKILLs the shims [`shim_processes`] finds and removes their sockets
/// (a killed shim cannot), named in containerd's socket dir after the
/// namespace and the `-id` they started with (their group).
pub fn kill_shims(sock: &Path, binary: &str) {
    let sock_str = sock.to_string_lossy().into_owned();
    for (pid, cmdline) in shim_processes(sock, binary) {
        let announced = std::fs::read_to_string(format!("/proc/{pid}/cwd/address")).ok();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let args: Vec<&str> = cmdline.split('\0').collect();
        let arg = |flag: &str| {
            args.iter()
                .position(|a| *a == flag)
                .and_then(|i| args.get(i + 1))
        };
        // The address it announced is in its bundle (its cwd); a grouped
        // container's socket is named after the group, not its own id.
        let derived = match (arg("-namespace"), arg("-id")) {
            (Some(ns), Some(id)) => Some(containerd_shim::socket_address(&sock_str, ns, id)),
            _ => None,
        };
        for address in announced.into_iter().chain(derived) {
            let _ = std::fs::remove_file(address.trim().trim_start_matches("unix://"));
        }
    }
}

/// A private containerd, stopped and cleaned up on drop.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    ids: Vec<String>,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("amphi-e2e-")
            .tempdir()
            .unwrap();
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{r}/c.sock\"\n[ttrpc]\n  address = \"{r}/c.sock.ttrpc\"\n",
            r = p.display()
        );
        std::fs::write(p.join("config.toml"), config).unwrap();
        std::fs::create_dir(p.join("fifo")).unwrap();
        let mut cd = Containerd {
            dir,
            child: None,
            ids: Vec::new(),
        };
        cd.spawn();
        cd.import();
        cd
    }

    pub fn spawn(&mut self) {
        let child = spawn_containerd(self.dir.path());
        self.child = Some(child);
        wait_until("containerd to serve", || {
            self.ctr(&["version"]).status.success()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        // ctr makes a task's stdio FIFOs in /run/containerd/fifo and leaves
        // them when it cannot reattach (a killed shim): keep them in our
        // temp dir, removed with it.
        let fifo_dir = self.dir.path().join("fifo");
        let at = match args {
            ["run", ..] => Some(1),
            ["task", "exec", ..] => Some(2),
            _ => None,
        };
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(self.sock());
        match at {
            Some(n) => {
                cmd.args(&args[..n])
                    .arg("--fifo-dir")
                    .arg(&fifo_dir)
                    .args(&args[n..]);
            }
            None => {
                cmd.args(args);
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args).output().unwrap()
    }

    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn import(&self) {
        self.import_images(&[
            (Kind::Native, NATIVE, None),
            (Kind::Wasm, WASM, Some("--all-platforms")),
        ]);
    }

    /// Imports the component image too.
    pub fn import_components(&self) {
        self.import_images(&[(Kind::Component, COMPONENT, Some("--all-platforms"))]);
    }

    fn import_images(&self, images: &[(Kind, &str, Option<&str>)]) {
        for &(kind, name, extra) in images {
            let tar = self.dir.path().join(format!("{kind:?}.tar"));
            amphi_examples::write_image(&tar, kind, name).unwrap();
            let mut args = vec!["images", "import"];
            args.extend(extra);
            let tar = tar.to_string_lossy().into_owned();
            args.push(&tar);
            self.ctr_ok(&args);
        }
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        let id = unique_id(prefix);
        self.ids.push(id.clone());
        id
    }

    /// Starts `ctr events`; give containerd a moment to subscribe it.
    pub fn watch_events(&self) -> EventWatch {
        let mut child = self
            .ctr_cmd(&["events"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        EventWatch {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// `ctr run FLAGS --runtime amphi IMAGE ID ARGS...`
    pub fn run_args(kind: Kind, flags: &[&str], id: &str, args: &[&str]) -> Vec<String> {
        let mut flags = flags.to_vec();
        let image = match kind {
            Kind::Native => NATIVE,
            Kind::Wasm => {
                flags.extend(["--platform", "wasip1/wasm"]);
                WASM
            }
            Kind::Component => {
                flags.extend(["--platform", "wasip2/wasm"]);
                COMPONENT
            }
        };
        Self::run_image_args(&flags, image, id, args)
    }

    /// `ctr run FLAGS --runtime amphi IMAGE ID ARGS`.
    fn run_image_args(flags: &[&str], image: &str, id: &str, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into()];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.extend(["--runtime".into(), RUNTIME.into(), image.into(), id.into()]);
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// `ctr run` of any imported `image` through amphi.
    pub fn run_image(&self, flags: &[&str], image: &str, id: &str, args: &[&str]) -> Output {
        let v = Self::run_image_args(flags, image, id, args);
        self.ctr(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `ctr run` that must succeed; its stdout.
    pub fn run_ok(&self, kind: Kind, flags: &[&str], id: &str, args: &[&str]) -> String {
        let v = Self::run_args(kind, flags, id, args);
        self.ctr_ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn run(&self, kind: Kind, flags: &[&str], id: &str, args: &[&str]) -> Output {
        let v = Self::run_args(kind, flags, id, args);
        self.ctr(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = text(&self.ctr(&["task", "ls"]).stdout);
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Pids of shim processes serving this containerd.
    pub fn shims(&self) -> Vec<i32> {
        self.shim_cmdlines()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Our shim processes (zombies have no command line) with their
    /// NUL-separated command lines.
    fn shim_cmdlines(&self) -> Vec<(i32, String)> {
        shim_processes(&self.sock(), "containerd-shim-amphi-v1")
    }

    /// Mount points under this containerd's dirs.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    pub fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let _ = self.ctr(&["task", "rm", "-f", id]);
        let _ = self.ctr(&["containers", "rm", id]);
    }

    /// Nothing of container `id` is left: no cgroup, no rootfs mount.
    pub fn assert_clean(&self, id: &str) {
        assert!(
            cgroup_dirs_named(id).is_empty(),
            "cgroups of {id} remain: {:?}",
            cgroup_dirs_named(id)
        );
        let mounts: Vec<String> = self
            .mounts()
            .into_iter()
            .filter(|m| m.contains(id))
            .collect();
        assert!(mounts.is_empty(), "mounts of {id} remain: {mounts:?}");
        // The socket a shim started for `id` listened on (the shim exits
        // just after containerd's Shutdown, or was cleaned up by `delete`).
        let socket = containerd_shim::socket_address(&self.sock().to_string_lossy(), "default", id);
        let socket = PathBuf::from(socket.trim_start_matches("unix://"));
        wait_until("the shim's socket to be removed", || !socket.exists());
        // And the shim process started for it is gone (a shim that hangs
        // on its way out would hold on to memory and threads for ever).
        let started_for = format!("\0-id\0{id}\0");
        wait_until("the shim started for the container to exit", || {
            !self
                .shim_cmdlines()
                .iter()
                .any(|(_, c)| c.contains(&started_for))
        });
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            for id in self.ids.clone() {
                self.remove(&id);
            }
        }
        self.stop();
        kill_shims(&self.sock(), "containerd-shim-amphi-v1");
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // containerd names cgroups `/<namespace>/<id>`; drop the test
        // namespace's parent once empty (rmdir refuses otherwise).
        for root in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(root.path().join("default"));
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/default");
        let leaked = self.mounts();
        if !leaked.is_empty() && !std::thread::panicking() {
            panic!("mounts leaked: {leaked:?}");
        }
    }
}

/// A running `ctr events`: the lines it printed; killed on drop.
pub struct EventWatch {
    child: Child,
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl EventWatch {
    /// Whether an event on `topic` naming `id` arrives within ~10 s.
    pub fn saw(&mut self, topic: &str, id: &str) -> bool {
        (0..200).any(|_| {
            self.seen.extend(self.rx.try_iter());
            if self
                .seen
                .iter()
                .any(|l| l.contains(topic) && l.contains(id))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            false
        })
    }

    /// Stops `ctr events`; every line it printed.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.rx.try_iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
