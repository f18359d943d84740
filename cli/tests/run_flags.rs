//! Docker's `run` flags for a container's environment, its share of the
//! host's kernel and its resources, through real containers of the busybox
//! image: `--env-file` and `-e KEY` (the caller's value), `--pid`/`--ipc`/
//! `--uts host`, `--pid`/`--ipc container:NAME`, `--sysctl`, `--shm-size`, `--oom-score-adj`,
//! `--cpu-shares`, `--cpuset-cpus`, `--memory-reservation` and
//! `--memory-swap`, `logs --tail`, and health checks (`--health-*`); bad
//! values are one line and leave nothing behind.

mod common;

use amphi_testkit::unique_id;
use common::{amphi_cmd, succeeded, text, Bb};

/// `amphi run --rm ARGS` on `bb`'s store with `env` added to amphi's own
/// environment; its stdout.
fn run_with_env(bb: &Bb, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut v = vec!["run", "--rm"];
    v.extend(args);
    let mut cmd = amphi_cmd(&bb.dirs, &v);
    for (k, val) in env {
        cmd.env(k, val);
    }
    cmd.env_remove("AMPHI_TEST_UNSET");
    succeeded(&v, cmd.output().unwrap())
}

/// Removes the named containers when dropped: a failing assert leaks
/// nothing.
struct Rm<'a>(&'a Bb, Vec<String>);

impl Drop for Rm<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = self.0.amphi(&["rm", "-f", n]);
        }
    }
}

fn no_containers_left(bb: &Bb) {
    let left = bb.ok(&["ps", "-aq"]);
    assert!(left.trim().is_empty(), "containers left: {left}");
    assert!(common::container_dirs(&bb.dirs).is_empty());
}

#[test]
fn environment_from_files_and_the_callers() {
    let bb = Bb::new();
    let file = bb.dirs.tmp.path().join("app.env");
    std::fs::write(
        &file,
        "# settings\n\nA=from-file\n  B=\"kept as written\"\nAMPHI_TEST_CALLER\nAMPHI_TEST_UNSET\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let env = run_with_env(
        &bb,
        &[("AMPHI_TEST_CALLER", "yes"), ("AMPHI_TEST_FLAG", "also")],
        &[
            "--env-file",
            f,
            "-e",
            "A=from-flag",
            "-e",
            "AMPHI_TEST_FLAG",
            "-e",
            "AMPHI_TEST_UNSET",
            "bb:1",
            "env",
        ],
    );
    let lines: Vec<&str> = env.lines().collect();
    for want in [
        "A=from-flag",
        "B=\"kept as written\"",
        "AMPHI_TEST_CALLER=yes",
        "AMPHI_TEST_FLAG=also",
    ] {
        assert!(lines.contains(&want), "{want} not in:\n{env}");
    }
    assert!(!env.contains("AMPHI_TEST_UNSET"), "{env}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("A=")).count(), 1);
    // A file that is not there, or a line that is no variable: one line.
    let missing = bb.dirs.tmp.path().join("missing.env");
    let err = bb.fails(&[
        "run",
        "--rm",
        "--env-file",
        missing.to_str().unwrap(),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("missing.env"), "{err}");
    std::fs::write(&file, "GOOD=1\nNOT A NAME=2\n").unwrap();
    let err = bb.fails(&["run", "--rm", "--env-file", f, "bb:1", "true"]);
    assert!(
        err.contains("line 2") && err.contains("whitespace"),
        "{err}"
    );
    no_containers_left(&bb);
}

#[test]
fn host_namespaces_sysctls_shm_and_oom_score() {
    let bb = Bb::new();
    let own = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    let script = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; \
                  cat /proc/self/oom_score_adj /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; \
                  grep ' /dev/shm ' /proc/mounts";
    let shared = run_with_env(
        &bb,
        &[],
        &[
            "--network",
            "none",
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "--oom-score-adj",
            "500",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    let l: Vec<&str> = shared.lines().collect();
    assert_eq!(l[0], own("pid").to_str().unwrap(), "{shared}");
    assert_eq!(l[1], own("ipc").to_str().unwrap(), "{shared}");
    assert_eq!(l[2], own("uts").to_str().unwrap(), "{shared}");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(l[3], host_name.trim(), "{shared}");
    assert_eq!(l[4], "500");
    // Set in the container's own network namespace, not the host's.
    assert_eq!(l[5], "1");
    // The host's /dev/shm, as Docker's --ipc host gives.
    let size = |line: &str| {
        line.split([' ', ','])
            .find(|o| o.starts_with("size="))
            .map(String::from)
    };
    let host_shm = std::fs::read_to_string("/proc/mounts").unwrap();
    let host_shm = host_shm
        .lines()
        .find(|m| m.contains(" /dev/shm "))
        .map(size);
    if let Some(host_size) = host_shm {
        assert_eq!(size(l[7]), host_size, "{shared}");
    }
    // By default each is the container's own; --shm-size sizes its /dev/shm
    // and an IPC sysctl is set in its own IPC namespace.
    let own_ns = run_with_env(
        &bb,
        &[],
        &[
            "--network",
            "none",
            "--shm-size",
            "32m",
            "--sysctl",
            "kernel.shmmni=1000",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    let l: Vec<&str> = own_ns.lines().collect();
    assert_ne!(l[0], own("pid").to_str().unwrap(), "{own_ns}");
    assert_ne!(l[1], own("ipc").to_str().unwrap(), "{own_ns}");
    assert_ne!(l[2], own("uts").to_str().unwrap(), "{own_ns}");
    assert_eq!(l[6], "1000", "{own_ns}");
    assert!(l[7].contains("size=32768k"), "{own_ns}");
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(host_shmmni.trim(), "1000", "the host's own was changed");
    // What would reach the host, or is no flag value: one line, nothing made.
    for (args, says) in [
        (vec!["--sysctl", "kernel.hostname=x"], "not a namespaced"),
        (
            vec!["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
            "--network host",
        ),
        (
            vec!["--ipc", "host", "--sysctl", "kernel.shmmni=1"],
            "--ipc host",
        ),
        (vec!["--uts", "host", "--hostname", "x"], "conflicting"),
        (vec!["--pid", "sideways"], "bad --pid"),
        (vec!["--oom-score-adj", "-1001"], "-1000 and 1000"),
        (vec!["--shm-size", "lots"], "--shm-size"),
    ] {
        let mut v = vec!["run", "--rm"];
        v.extend(&args);
        v.extend(["bb:1", "true"]);
        let err = bb.fails(&v);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    no_containers_left(&bb);
}

#[test]
fn pid_and_ipc_namespaces_of_another_container() {
    let bb = Bb::new();
    let (donor, private) = (unique_id("donor"), unique_id("private"));
    let _rm = Rm(&bb, vec![donor.clone(), private.clone()]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &donor,
        "--network",
        "none",
        "--ipc",
        "shareable",
        "bb:1",
        "sh",
        "-c",
        "echo shared > /dev/shm/note; exec sleep 600",
    ]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &private,
        "--network",
        "none",
        "bb:1",
        "sleep",
        "600",
    ]);
    let ns_of =
        |name: &str, ns: &str| bb.ok(&["exec", name, "readlink", &format!("/proc/self/ns/{ns}")]);
    // The donor's note in /dev/shm is there once its shell has run.
    let mut tries = 0;
    while !bb.ok(&["exec", &donor, "ls", "/dev/shm"]).contains("note") {
        tries += 1;
        assert!(tries < 200, "the donor never wrote its note");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let joined = run_with_env(
        &bb,
        &[],
        &[
            "--network", "none", "--pid", &format!("container:{donor}"), "--ipc",
            &format!("container:{donor}"), "bb:1", "sh", "-c",
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; cat /dev/shm/note; ps -o pid,args",
        ],
    );
    let l: Vec<&str> = joined.lines().collect();
    assert_eq!(l[0], ns_of(&donor, "pid").trim(), "{joined}");
    assert_eq!(l[1], ns_of(&donor, "ipc").trim(), "{joined}");
    // Its /dev/shm too, and its processes: pid 1 is the donor's.
    assert_eq!(l[2], "shared", "{joined}");
    assert!(
        joined
            .lines()
            .any(|p| p.trim_start().starts_with("1 ") && p.contains("sleep 600")),
        "{joined}"
    );
    assert_ne!(l[0], ns_of(&private, "pid").trim());
    // Only a shareable container's IPC can be joined; a stopped one's not
    // at all; neither may change the joined network's sysctls: one line
    // each, nothing made.
    let err = bb.fails(&[
        "run",
        "--rm",
        "--ipc",
        &format!("container:{private}"),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("non-shareable IPC"), "{err}");
    let err = bb.fails(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{private}"),
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "bb:1",
        "true",
    ]);
    assert!(
        err.contains("not allowed with --network container:"),
        "{err}"
    );
    bb.ok(&["stop", "-t", "0", &private]);
    let err = bb.fails(&[
        "run",
        "--rm",
        "--pid",
        &format!("container:{private}"),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("is not running"), "{err}");
    bb.ok(&["rm", "-f", &donor, &private]);
    no_containers_left(&bb);
    // Nothing pinned or mounted for them is left in the state root.
    let ns = bb.dirs.state.join("ns");
    assert!(
        !ns.exists(),
        "{:?}",
        std::fs::read_dir(&ns).map(|d| d.count())
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(bb.dirs.state.to_str().unwrap()),
        "{mounts}"
    );
}

/// The container's cgroup directory of `controller` on the host (v1), or
/// its unified one (v2).
fn cgroup_dir(pid: &str, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if v2 {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            hit.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {text}"));
    let base = if v2 {
        "/sys/fs/cgroup".to_string()
    } else {
        format!("/sys/fs/cgroup/{controller}")
    };
    std::path::PathBuf::from(base + &path)
}

#[test]
fn cpu_shares_cpuset_and_memory_figures_reach_the_cgroup() {
    let bb = Bb::new();
    let name = unique_id("res");
    let _rm = Rm(&bb, vec![name.clone()]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "-m",
        "64m",
        "--memory-reservation",
        "32m",
        "bb:1",
        "sleep",
        "60",
    ]);
    let pid = bb.get(&name, "{{.State.Pid}}");
    let read = |c: &str, f: &str| {
        let p = cgroup_dir(&pid, c).join(f);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // 512 shares are weight 20 (runc's conversion).
        assert_eq!(read("cpu", "cpu.weight"), "20");
        assert_eq!(read("memory", "memory.low"), (32u64 << 20).to_string());
    } else {
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(
            read("memory", "memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
    }
    assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(bb.get(&name, "{{.HostConfig.CpuShares}}"), "512");
    assert_eq!(bb.get(&name, "{{.HostConfig.CpusetCpus}}"), "0");
    assert_eq!(
        bb.get(&name, "{{.HostConfig.MemoryReservation}}"),
        (32u64 << 20).to_string()
    );
    bb.ok(&["rm", "-f", &name]);
    for (args, says) in [
        (vec!["--memory-swap", "128m"], "needs --memory"),
        (
            vec!["-m", "64m", "--memory-swap", "32m"],
            "at least --memory",
        ),
        (
            vec!["-m", "64m", "--memory-reservation", "128m"],
            "at most --memory",
        ),
        (vec!["--cpuset-cpus", "0-x"], "bad --cpuset-cpus"),
        (vec!["--cpu-shares", "1"], "bad --cpu-shares"),
    ] {
        let mut v = vec!["run", "--rm"];
        v.extend(&args);
        v.extend(["bb:1", "true"]);
        let err = bb.fails(&v);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Unlimited swap on top of the limit is accepted.
    let out = bb.amphi(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "bb:1",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    no_containers_left(&bb);
}

#[test]
fn logs_tail_streams_timestamps_and_time_spans() {
    let bb = Bb::new();
    let name = unique_id("tail");
    let _rm = Rm(&bb, vec![name.clone()]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; sleep 60",
    ]);
    let t = std::time::Instant::now();
    while !bb.ok(&["logs", &name]).contains("line5") {
        assert!(t.elapsed().as_secs() < 20, "no output in the log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(bb.ok(&["logs", "--tail", "2", &name]), "line4\nline5\n");
    assert_eq!(
        bb.ok(&["logs", "-n", "9", &name]),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert_eq!(bb.ok(&["logs", "--tail", "0", &name]), "");
    assert_eq!(bb.ok(&["logs", "--tail", "all", &name]).lines().count(), 5);
    let err = bb.fails(&["logs", "--tail", "some", &name]);
    assert!(err.contains("--tail"), "{err}");
    // Each stream comes back on its own, byte for byte, as `docker logs`
    // splits them; -t puts each line's time in front; --since and --until
    // keep a span.
    let split = unique_id("split");
    let _rm2 = Rm(&bb, vec![split.clone()]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &split,
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2; printf 'no newline'; sleep 60",
    ]);
    let t = std::time::Instant::now();
    while !bb.ok(&["logs", &split]).contains("no newline") {
        assert!(t.elapsed().as_secs() < 20, "no output in the log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = bb.amphi(&["logs", &split]);
    assert_eq!(text(&out.stdout), "out\nno newline");
    assert_eq!(text(&out.stderr), "err\n");
    let stamped = bb.ok(&["logs", "-t", &split]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    for l in &lines {
        let (time, _) = l.split_once(' ').unwrap();
        assert_eq!(time.len(), 30, "{stamped}");
        assert!(
            amphi_engine::inspect::parse_rfc3339(time).is_some(),
            "{stamped}"
        );
    }
    assert!(
        lines[0].ends_with(" out") && lines[1].ends_with(" no newline"),
        "{stamped}"
    );
    let secs = |d: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now + d).to_string()
    };
    assert_eq!(bb.ok(&["logs", "--since", "1h", &split]), "out\nno newline");
    assert_eq!(bb.ok(&["logs", "--since", &secs(60), &split]), "");
    assert_eq!(
        bb.ok(&["logs", "--until", &secs(60), &split]),
        "out\nno newline"
    );
    assert_eq!(bb.ok(&["logs", "--until", "2000-01-01", &split]), "");
    let err = bb.fails(&["logs", "--since", "yesterday", &split]);
    assert!(err.contains("bad time"), "{err}");
    // A foreground run's output is the caller's, and in its log too, as
    // Docker logs every container; a --rm one's goes with it.
    let fg = unique_id("fg");
    let _rm3 = Rm(&bb, vec![fg.clone()]);
    let out = bb.amphi(&[
        "run",
        "--name",
        &fg,
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    let logs = bb.amphi(&["logs", &fg]);
    assert_eq!(
        (text(&logs.stdout), text(&logs.stderr)),
        ("out\n".into(), "err\n".into())
    );
}

#[test]
fn health_checks_go_starting_healthy_unhealthy() {
    let bb = Bb::new();
    let (name, slow) = (unique_id("health"), unique_id("slow"));
    let _rm = Rm(&bb, vec![name.clone(), slow.clone()]);
    let status = |n: &str| bb.get(n, "{{.State.Health.Status}}");
    let wait_for = |n: &str, want: &str| {
        let t = std::time::Instant::now();
        while status(n) != want {
            assert!(
                t.elapsed().as_secs() < 30,
                "{n} never {want}: {}",
                status(n)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "60s",
        "bb:1",
        "sleep",
        "120",
    ]);
    // Failing in its start period: still starting.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(status(&name), "starting");
    let ps = bb.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.contains(&format!("{name} Up")) && ps.contains("(health: starting)"),
        "{ps}"
    );
    bb.ok(&["exec", &name, "touch", "/tmp/ok"]);
    wait_for(&name, "healthy");
    let ps = bb.ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(ps.contains(&name) && ps.contains("(healthy)"), "{ps}");
    // Healthy once, the start period is over: two failures make it unhealthy.
    bb.ok(&["exec", &name, "rm", "/tmp/ok"]);
    wait_for(&name, "unhealthy");
    let streak: u32 = bb
        .get(&name, "{{.State.Health.FailingStreak}}")
        .parse()
        .unwrap();
    assert!(streak >= 2, "{streak}");
    let log = bb.ok(&["inspect", &name]);
    assert!(log.contains("\"ExitCode\": 1"), "{log}");
    // A check that outlives its timeout fails, and is killed.
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &slow,
        "--network",
        "none",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "120",
    ]);
    wait_for(&slow, "unhealthy");
    let log = bb.ok(&["inspect", &slow]);
    assert!(log.contains("exceeded timeout"), "{log}");
    let top = bb.ok(&["top", &slow]);
    assert!(
        top.matches("sleep 30").count() <= 1,
        "timed-out checks left running: {top}"
    );
    // Flags without a check, or against --no-healthcheck: one line.
    let err = bb.fails(&["run", "--rm", "--health-interval", "1s", "bb:1", "true"]);
    assert!(err.contains("no health check"), "{err}");
    let err = bb.fails(&[
        "run",
        "--rm",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "bb:1",
        "true",
    ]);
    assert!(err.contains("conflicting"), "{err}");
    bb.ok(&["rm", "-f", &name, &slow]);
    no_containers_left(&bb);
}

#[test]
fn update_changes_a_running_containers_limits_and_restart_policy() {
    let bb = Bb::new();
    let (name, once) = (unique_id("upd"), unique_id("once"));
    let _rm = Rm(&bb, vec![name.clone(), once.clone()]);
    bb.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "-m",
        "64m",
        "bb:1",
        "sleep",
        "120",
    ]);
    bb.ok(&[
        "update",
        "-m",
        "128m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "--restart",
        "always",
        &name,
    ]);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let read = |c: &str, f: &str| {
        let pid = bb.get(&name, "{{.State.Pid}}");
        let p = cgroup_dir(&pid, c).join(f);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    let check = || {
        let mib128 = (128u64 << 20).to_string();
        if v2 {
            assert_eq!(read("memory", "memory.max"), mib128);
            assert_eq!(read("cpu", "cpu.max"), "50000 100000");
        } else {
            assert_eq!(read("memory", "memory.limit_in_bytes"), mib128);
            assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        }
        assert_eq!(read("pids", "pids.max"), "20");
    };
    check();
    assert_eq!(
        bb.get(&name, "{{.HostConfig.Memory}}"),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        bb.get(&name, "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );
    // Kept for the next start.
    bb.ok(&["stop", "-t", "0", &name]);
    bb.ok(&["start", &name]);
    check();
    // A bad value changes nothing; a policy against --rm is refused.
    let err = bb.fails(&["update", "--cpus", "lots", &name]);
    assert!(err.contains("--cpus"), "{err}");
    assert_eq!(bb.get(&name, "{{.HostConfig.NanoCpus}}"), "500000000");
    bb.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        &once,
        "--network",
        "none",
        "bb:1",
        "sleep",
        "120",
    ]);
    let err = bb.fails(&["update", "--restart", "always", &once]);
    assert!(err.contains("conflicting"), "{err}");
    bb.ok(&["rm", "-f", &name, &once]);
    no_containers_left(&bb);
}

#[test]
fn label_files_and_exposed_ports() {
    let bb = Bb::new();
    let name = unique_id("lbl");
    let _rm = Rm(&bb, vec![name.clone()]);
    let file = bb.dirs.tmp.path().join("labels");
    std::fs::write(&file, "# team labels\ntier=web\nowner=ops\n\n").unwrap();
    bb.ok(&[
        "create",
        "--name",
        &name,
        "--network",
        "none",
        "--label-file",
        file.to_str().unwrap(),
        "--label",
        "owner=dev",
        "--expose",
        "8000-8001/udp",
        "--expose",
        "9000",
        "bb:1",
        "true",
    ]);
    assert_eq!(bb.get(&name, "{{index .Config.Labels \"tier\"}}"), "web");
    // --label is read last: it wins.
    assert_eq!(bb.get(&name, "{{index .Config.Labels \"owner\"}}"), "dev");
    let ps = bb.ok(&[
        "ps",
        "-a",
        "--filter",
        "label=tier=web",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(ps.trim(), name);
    let exposed = bb.ok(&["inspect", "-f", "{{json .Config.ExposedPorts}}", &name]);
    for p in ["8000/udp", "8001/udp", "9000/tcp"] {
        assert!(exposed.contains(p), "{p} not in {exposed}");
    }
    let err = bb.fails(&["run", "--rm", "--expose", "80/sctp", "bb:1", "true"]);
    assert!(err.contains("--expose"), "{err}");
    let missing = bb.dirs.tmp.path().join("nope");
    let err = bb.fails(&[
        "run",
        "--rm",
        "--label-file",
        missing.to_str().unwrap(),
        "bb:1",
        "true",
    ]);
    assert!(err.contains("nope"), "{err}");
    bb.ok(&["rm", &name]);
    no_containers_left(&bb);
}

#[test]
fn a_missing_workdir_is_made_and_an_empty_entrypoint_clears_the_images() {
    let bb = Bb::new();
    let out = run_with_env(
        &bb,
        &[],
        &[
            "--network",
            "none",
            "--read-only",
            "-u",
            "nobody",
            "-w",
            "/srv/new/dir",
            "bb:1",
            "sh",
            "-c",
            "pwd; stat -c '%U %a' .",
        ],
    );
    assert_eq!(out, "/srv/new/dir\nroot 755\n");
    // An image whose Entrypoint would swallow the command: `--entrypoint ""`
    // runs the command itself, or without one the image's Cmd.
    let id = bb
        .ok(&[
            "create",
            "--network",
            "none",
            "--entrypoint",
            "/bin/false",
            "bb:1",
            "echo",
            "from-cmd",
        ])
        .trim()
        .to_string();
    bb.ok(&["commit", &id, "bb:entry"]);
    bb.ok(&["rm", &id]);
    let img = bb.ok(&["image", "inspect", "bb:entry"]);
    assert!(img.contains("/bin/false"), "{img}");
    assert_eq!(
        run_with_env(
            &bb,
            &[],
            &[
                "--network",
                "none",
                "--entrypoint",
                "",
                "bb:entry",
                "echo",
                "given"
            ]
        ),
        "given\n"
    );
    assert_eq!(
        run_with_env(
            &bb,
            &[],
            &["--network", "none", "--entrypoint", "", "bb:entry"]
        ),
        "from-cmd\n"
    );
    let out = bb.amphi(&["run", "--rm", "--network", "none", "bb:entry"]);
    assert_eq!(out.status.code(), Some(1));
    bb.ok(&["rmi", "bb:entry"]);
    no_containers_left(&bb);
}
