//! The Docker workflow of the standalone engine, driven as a person would:
//! stop/start/restart/kill/rm -f/wait, restart policies and the boot
//! command after a simulated reboot, a foreground `amphi run` killed with
//! SIGKILL, inspect, ps filters, top, cp, commit, logs -f, attach,
//! system df/prune, --init, pause/unpause, rename and port. Each test has its own store and state roots
//! and ends with no container, watcher, cgroup, mount or state left.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use amphi_testkit::{assert_no_leaks, cgroup_dirs_named, unique_id};
use common::{amphi, amphi_cmd, text};
use serde_json::Value;

/// A test's store with the busybox image `bb:1`; on drop every container
/// is removed and every watcher of this store killed, pass or fail.
use common::Bb as Box_;

impl Box_ {
    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    /// Waits (bounded) until `f` holds.
    fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..1500 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    fn status(&self, name: &str) -> String {
        self.get(name, "{{.State.Status}}")
    }

    /// Every container's id (for the leak check after they are gone).
    fn ids(&self) -> Vec<String> {
        self.ok(&["ps", "-aq", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }

    /// Removes every container, then checks nothing of `ids` is left.
    fn assert_clean(&self, ids: &[String]) {
        for id in self.ids() {
            self.ok(&["rm", "-f", &id]);
        }
        self.wait_for("the watchers to end", || self.watchers().is_empty());
        for id in ids {
            assert_no_leaks(id, &self.dirs.state, &self.dirs.store);
        }
        let net = amphi_testkit::net::network_leaks(&self.dirs.store, &self.dirs.state, ids);
        assert!(net.is_empty(), "network leaks:\n{}", net.join("\n"));
        let left = common::container_dirs(&self.dirs);
        assert!(left.is_empty(), "container dirs left: {left:?}");
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        for pid in self.watchers() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(out) = amphi_cmd(&self.dirs, &["ps", "-aq", "--no-trunc"]).output() {
            for id in text(&out.stdout).lines() {
                let _ = amphi(&self.dirs, &["rm", "-f", id]);
            }
        }
    }
}

#[test]
fn stop_start_keeps_the_writable_layer_and_stop_honours_the_grace_period() {
    let b = Box_::new();
    let n = unique_id("keep");
    let id = b
        .ok(&[
            "run",
            "-d",
            "--name",
            &n,
            "bb:1",
            "sh",
            "-c",
            "echo run >> /runs; cat /runs | wc -l; exec sleep 600",
        ])
        .trim()
        .to_string();
    b.wait_for("the first run's output", || {
        b.ok(&["logs", &n]).contains('1')
    });
    // sleep as pid 1 has no handler for SIGTERM: the grace period ends in
    // SIGKILL, exit 137.
    b.ok(&["stop", "-t", "1", &n]);
    assert_eq!(b.status(&n), "exited");
    assert_eq!(b.get(&n, "{{.State.ExitCode}}"), "137");
    b.ok(&["start", &n]);
    assert_eq!(b.status(&n), "running");
    // Same id, name and upper dir: the file written by the first run is there.
    assert_eq!(b.get(&n, "{{.Id}}"), id);
    b.wait_for("the second run's output", || {
        b.ok(&["logs", &n]).lines().any(|l| l.trim() == "2")
    });
    let exec = b.amphi(&["exec", &n, "cat", "/runs"]);
    assert_eq!(text(&exec.stdout), "run\nrun\n");

    // A container that catches TERM and ignores it: told first, killed
    // after the grace period.
    let stubborn = unique_id("stubborn");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &stubborn,
        "bb:1",
        "sh",
        "-c",
        "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    b.wait_for("the trap", || b.ok(&["logs", &stubborn]).contains("ready"));
    b.ok(&["stop", "-t", "2", &stubborn]);
    assert_eq!(b.get(&stubborn, "{{.State.ExitCode}}"), "137");
    assert!(b.ok(&["logs", &stubborn]).contains("got-term"));
    // One that ends on TERM exits with its own status, and `wait` says so.
    let polite = unique_id("polite");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &polite,
        "--stop-signal",
        "USR1",
        "bb:1",
        "sh",
        "-c",
        "trap 'exit 7' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    b.wait_for("the trap", || b.ok(&["logs", &polite]).contains("ready"));
    assert_eq!(b.get(&polite, "{{.Config.StopSignal}}"), "USR1");
    b.ok(&["stop", &polite]);
    assert_eq!(b.ok(&["wait", &polite]).trim(), "7");
    // `wait` on a `--rm` container reads its exit before it is removed.
    let brief = b
        .ok(&[
            "run",
            "-d",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.05; done; exit 3",
        ])
        .trim()
        .to_string();
    let waiter = amphi_cmd(&b.dirs, &["wait", &brief])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    b.wait_for("wait to hold the container", || {
        std::fs::read_dir(format!("/proc/{}/fd", waiter.id()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|t| t.to_string_lossy().ends_with("attach.lock"))
            })
    });
    b.ok(&["exec", &brief, "touch", "/go"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "3");
    b.wait_for("the removal", || !b.ids().contains(&brief));
    b.wait_for("its watcher to end", || {
        nothing_left(
            &brief,
            &b.dirs.state,
            &b.dirs.store.join("containers").join(&brief),
        )
    });
    // restart: stopped and started again, by name or unique id prefix.
    b.ok(&["restart", "-t", "1", &id[..10]]);
    assert_eq!(b.status(&n), "running");
    let ids = b.ids();
    b.assert_clean(&ids);
}

#[test]
fn restart_policies_and_the_boot_command_after_a_reboot() {
    let b = Box_::new();
    // on-failure:3 restarts a failing container 3 times, the delays growing
    // from 100 ms (each run prints the uptime it started at).
    let f = unique_id("fail");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &f,
        "--restart",
        "on-failure:3",
        "bb:1",
        "sh",
        "-c",
        "cut -d' ' -f1 /proc/uptime; exit 3",
    ]);
    b.wait_for("three restarts", || {
        b.get(&f, "{{.RestartCount}} {{.State.Status}}") == "3 exited"
    });
    assert_eq!(b.get(&f, "{{.State.ExitCode}}"), "3");
    let starts: Vec<f64> = b
        .ok(&["logs", &f])
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 4, "{starts:?}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 100, 200 and 400 ms: the last gap is clearly the longest.
    assert!(gaps[2] > gaps[0], "delays do not grow: {gaps:?}");
    assert_eq!(
        b.get(
            &f,
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:3"
    );
    // Conflicting and bad policies are one-line errors.
    let out = b.amphi(&["run", "--rm", "--restart", "always", "bb:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("--restart and --rm"));
    let out = b.amphi(&["run", "--restart", "sometimes", "bb:1", "true"]);
    assert!(
        text(&out.stderr).contains("bad --restart"),
        "{}",
        text(&out.stderr)
    );

    let always = unique_id("always");
    let stopped = unique_id("stopped");
    let unless = unique_id("unless");
    let plain = unique_id("plain");
    for (name, policy) in [
        (&always, "always"),
        (&stopped, "always"),
        (&unless, "unless-stopped"),
        (&plain, "no"),
    ] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "bb:1",
            "sh",
            "-c",
            "echo up >> /ups; exec sleep 600",
        ]);
    }
    b.ok(&["stop", "-t", "0", &stopped]);
    // `always` comes back after its process dies, and a kill by the user
    // does not bring it back.
    let pid = b.get(&always, "{{.State.Pid}}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    b.wait_for("the restart", || {
        b.get(&always, "{{.RestartCount}} {{.State.Status}}") == "1 running"
    });

    // A reboot: every watcher and container process dies, mounts and the
    // runtime state under /run go, and with them the netns, the bridge
    // and the iptables rules (the IPAM leases on disk stay).
    let ids = b.ids();
    let mut needles = ids.clone();
    needles.extend(
        ids.iter()
            .map(|id| b.get(id, "{{.NetworkSettings.IPAddress}}"))
            .filter(|ip| !ip.is_empty()),
    );
    for w in b.watchers() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    b.wait_for("the watchers to die", || b.watchers().is_empty());
    // The containers died with their watchers.
    b.wait_for("the containers to die", || {
        ids.iter().all(|id| no_process_left(id))
    });
    unmount_under(&b.dirs.store);
    unmount_under(&b.dirs.state);
    amphi_testkit::net::drop_rules_naming(&needles);
    amphi_testkit::net::drop_bridges(&b.dirs.store);
    for e in std::fs::read_dir(&b.dirs.state).unwrap().flatten() {
        std::fs::remove_dir_all(e.path()).unwrap();
    }
    let back = b.ok(&["start", "--all-restartable"]);
    assert_eq!(back.lines().count(), 2, "{back}");
    assert_eq!(b.status(&always), "running");
    assert_eq!(b.status(&unless), "running");
    assert_eq!(
        b.status(&stopped),
        "exited",
        "a stopped container came back"
    );
    assert_eq!(b.status(&plain), "exited");
    // It kept its writable layer across the reboot.
    assert_eq!(
        text(&b.amphi(&["exec", &always, "cat", "/ups"]).stdout),
        "up\nup\nup\n"
    );
    // Running twice starts nothing twice.
    assert_eq!(b.ok(&["start", "--all-restartable"]).trim(), "");
    b.assert_clean(&ids);
}

/// Whether container `id` left nothing behind (yet).
fn nothing_left(id: &str, state: &Path, store: &Path) -> bool {
    amphi_testkit::leaks(id, state, store).is_empty()
}

/// Whether no process is left in the cgroups of container `id`.
fn no_process_left(id: &str) -> bool {
    cgroup_dirs_named(id)
        .iter()
        .all(|d| std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty()))
}

fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(prefix.as_ref()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_foreground_run_killed_with_sigkill_takes_its_container_along() {
    let b = Box_::new();
    for rm in [false, true] {
        let n = unique_id("fg");
        let cidf = common::cidfile(&b.dirs);
        let mut args = vec!["run", "--name", &n, "--cidfile"];
        let cidf_s = cidf.to_string_lossy().into_owned();
        args.push(&cidf_s);
        if rm {
            args.push("--rm");
        }
        args.extend(["bb:1", "sh", "-c", "echo started; exec sleep 600"]);
        let mut child = amphi_cmd(&b.dirs, &args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 8];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        let id = common::cid(&cidf);
        child.kill().unwrap();
        child.wait().unwrap();
        // The container died with it (no unwatched container runs on)...
        b.wait_for("the container to die", || no_process_left(&id));
        // ...and the next command cleans up: exited 137, or gone with --rm.
        if rm {
            assert_eq!(b.ok(&["ps", "-aq"]).trim(), "", "a --rm container stayed");
        } else {
            assert_eq!(
                b.get(&n, "{{.State.Status}} {{.State.ExitCode}}"),
                "exited 137"
            );
            assert!(b.get(&n, "{{.State.Error}}").contains("watcher died"));
        }
        assert_no_leaks(&id, &b.dirs.state, &b.dirs.state);
        b.assert_clean(&[id]);
    }
}

#[test]
fn inspect_ps_filters_and_formats_as_docker() {
    let b = Box_::new();
    let web = unique_id("web");
    let host = b.dirs.tmp.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    let vol = format!("{}:/shared:ro", host.display());
    b.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--label",
        "tier=web",
        "--label",
        "team=edge",
        "-v",
        &vol,
        "-e",
        "MODE=prod",
        "--restart",
        "unless-stopped",
        "bb:1",
        "sleep",
        "600",
    ]);
    let done = unique_id("done");
    let out = b.amphi(&[
        "run",
        "--name",
        &done,
        "--label",
        "tier=batch",
        "bb:1",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    let v = b.inspect(&web);
    assert_eq!(v["Name"], format!("/{web}"));
    assert_eq!(v["Id"].as_str().unwrap().len(), 64);
    let st = &v["State"];
    assert_eq!(st["Status"], "running");
    assert_eq!(st["Running"], true);
    assert!(st["Pid"].as_i64().unwrap() > 0);
    assert_eq!(st["ExitCode"], 0);
    assert_eq!(st["OOMKilled"], false);
    assert!(st["StartedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(st["FinishedAt"], "0001-01-01T00:00:00Z");
    assert!(v["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["Path"], "sleep");
    assert_eq!(v["Args"], serde_json::json!(["600"]));
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["sleep", "600"]));
    assert_eq!(v["Config"]["Image"], "bb:1");
    assert_eq!(v["Config"]["Labels"]["tier"], "web");
    assert!(v["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&"MODE=prod".into()));
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(v["RestartCount"], 0);
    let m = &v["Mounts"][0];
    assert_eq!(
        (
            m["Type"].as_str(),
            m["Destination"].as_str(),
            m["RW"].as_bool()
        ),
        (Some("bind"), Some("/shared"), Some(false))
    );
    let gd = &v["GraphDriver"];
    assert_eq!(gd["Name"], "overlay2");
    for k in ["LowerDir", "UpperDir", "WorkDir", "MergedDir"] {
        let dir = gd["Data"][k].as_str().unwrap();
        assert!(dir.split(':').all(|d| Path::new(d).is_dir()), "{k} {dir}");
    }
    let d = b.inspect(&done);
    assert_eq!(d["State"]["Status"], "exited");
    assert_eq!(d["State"]["ExitCode"], 4);
    assert!(d["State"]["FinishedAt"].as_str().unwrap() > d["State"]["StartedAt"].as_str().unwrap());
    // An image inspects too, and a name that is neither is one line.
    assert_eq!(b.get("bb:1", "{{json .RepoTags}}"), "[\"bb:1\"]");
    let out = b.amphi(&["inspect", "nothing-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such container or image: nothing-here"));

    // ps: running only by default; -a, filters, formats.
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend(args);
        b.ok(&a).lines().map(String::from).collect()
    };
    assert_eq!(names(&[]), vec![web.clone()]);
    assert_eq!(names(&["-a"]).len(), 2);
    assert_eq!(names(&["-f", "status=exited"]), vec![done.clone()]);
    assert_eq!(names(&["-f", "label=tier=batch"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "-f", "label=tier=batch"]), vec![done.clone()]);
    assert_eq!(names(&["-a", "-f", "label=team"]), vec![web.clone()]);
    // A name filter matches part of a name (both names hold our pid).
    assert_eq!(
        names(&["-a", "-f", &format!("name=-{}-", std::process::id())]).len(),
        2
    );
    assert_eq!(
        names(&["-a", "-f", &format!("name={web}")]),
        vec![web.clone()]
    );
    assert_eq!(names(&["-a", "-f", "exited=4"]), vec![done.clone()]);
    let table = b.ok(&[
        "ps",
        "-a",
        "--format",
        "table {{.Names}}\t{{.Status}}\t{{.Label \"tier\"}}",
    ]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAMES"), "{table}");
    assert!(
        table.contains("Exited (4)") && table.contains("Up "),
        "{table}"
    );
    let out = b.amphi(&["ps", "-f", "colour=red"]);
    assert!(
        text(&out.stderr).contains("bad --filter"),
        "{}",
        text(&out.stderr)
    );

    // top: the host's ps, cut to the container's processes.
    let top = b.ok(&["top", &web]);
    assert!(top.starts_with("UID") && top.contains("sleep 600"), "{top}");
    let ids = b.ids();
    b.assert_clean(&ids);
}

#[test]
fn cp_commit_and_the_new_image_runs_with_the_changes() {
    let b = Box_::new();
    let n = unique_id("dev");
    b.ok(&[
        "run", "-d", "--name", &n, "bb:1", "sh", "-c",
        "rm /etc/group; mkdir -p /srv/app; echo made-inside > /srv/app/note; touch /ready; exec sleep 600",
    ]);
    b.wait_for("the changes", || {
        b.amphi(&["exec", &n, "test", "-e", "/ready"])
            .status
            .success()
    });
    // cp both ways, into a directory and as a new name.
    let host_file = b.dirs.tmp.path().join("config.txt");
    std::fs::write(&host_file, "from-the-host\n").unwrap();
    b.ok(&["cp", host_file.to_str().unwrap(), &format!("{n}:/srv/app/")]);
    let out_dir = b.dirs.tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    b.ok(&["cp", &format!("{n}:/srv/app"), out_dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("app/note")).unwrap(),
        "made-inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("app/config.txt")).unwrap(),
        "from-the-host\n"
    );
    // A symlink in the container cannot send a copy out to the host.
    b.ok(&["exec", &n, "ln", "-s", "/", "/srv/escape"]);
    let victim = b.dirs.tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let target = format!("{n}:/srv/escape{}", victim.display());
    let _ = b.amphi(&["cp", host_file.to_str().unwrap(), &target]);
    assert!(
        !victim.join("config.txt").exists(),
        "cp wrote through a container's symlink"
    );
    // `-`: a tar stream out on stdout and in from stdin, as docker cp.
    let out = b.amphi(&["cp", &format!("{n}:/srv/app"), "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["app/", "app/config.txt", "app/note"]);
    let stream_in = |bytes: Vec<u8>| {
        let mut cmd = amphi_cmd(&b.dirs, &["cp", "-", &format!("{n}:/srv")]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let mut tar_in = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(9);
    h.set_mode(0o640);
    h.set_uid(0);
    h.set_gid(0);
    tar_in
        .append_data(&mut h, "drop/in.txt", &b"streamed\n"[..])
        .unwrap();
    let out = stream_in(tar_in.into_inner().unwrap());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(b.ok(&["exec", &n, "cat", "/srv/drop/in.txt"]), "streamed\n");
    assert_eq!(
        b.ok(&["exec", &n, "stat", "-c", "%a", "/srv/drop/in.txt"])
            .trim(),
        "640"
    );
    // A link in the stream that would lead a later entry out of the
    // container: the stream is refused in one line, nothing lands outside.
    let mut tar_in = tar::Builder::new(Vec::new());
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    tar_in
        .append_link(&mut l, "out", victim.to_str().unwrap())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_uid(0);
    h.set_gid(0);
    let _ = tar_in.append_data(&mut h, "out/evil", &b"x\n"[..]);
    let out = stream_in(tar_in.into_inner().unwrap());
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(
        !victim.join("evil").exists(),
        "a streamed link led a file out"
    );
    let out = b.amphi(&["cp", "-", &format!("{n}:/srv/app/note")]);
    assert!(
        text(&out.stderr).contains("must be a directory"),
        "{}",
        text(&out.stderr)
    );
    let out = b.amphi(&["cp", &format!("{n}:/no/such"), out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );

    // A file capability set in the container's upper dir (as `setcap`
    // inside would) goes into the committed layer.
    let upper = b.inspect(&n)["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .map(std::path::PathBuf::from)
        .unwrap();
    let cap = cap_net_raw();
    amphi_images::xattr::set(
        &upper.join("srv/app/config.txt"),
        "security.capability",
        &cap,
    )
    .unwrap();

    let image_id = b
        .ok(&[
            "commit",
            "-m",
            "add the app",
            "-a",
            "Edge Ops <ops@example.com>",
            &n,
            "bb:app",
        ])
        .trim()
        .to_string();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    let img: Value = serde_json::from_str(&b.ok(&["image", "inspect", "bb:app"])).unwrap();
    assert_eq!(img[0]["Id"], image_id);
    assert_eq!(img[0]["Comment"], "add the app");
    assert_eq!(img[0]["Author"], "Edge Ops <ops@example.com>");
    assert_eq!(img[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    // `docker history`: the commit's step first (the image's id, its
    // comment, its layer), the base's layer after it, one row per layer.
    let hist = b.ok(&[
        "history",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Comment}}|{{.Size}}",
        "bb:app",
    ]);
    let rows: Vec<Vec<&str>> = hist.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "{hist}");
    assert_eq!(format!("sha256:{}", rows[0][0]).len(), 19, "{hist}");
    assert!(image_id.contains(rows[0][0]), "{hist}");
    assert_eq!(rows[0][2], "add the app", "{hist}");
    assert_eq!(rows[1][0], "<missing>", "{hist}");
    assert!(rows.iter().all(|r| r[3] != "0B"), "{hist}");
    let full = b.ok(&["image", "history", "-q", "--no-trunc", "bb:app"]);
    assert_eq!(full.lines().next(), Some(image_id.as_str()), "{full}");
    let out = b.amphi(&["history", "bb:nothing"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    // The new image sees the changes; the deleted file stays deleted; the
    // container's own /etc files (hostname, hosts) are no part of it.
    let run = |cmd: &str| {
        let out = b.amphi(&["run", "--rm", "--entrypoint", "sh", "bb:app", "-c", cmd]);
        (out.status.code(), text(&out.stdout))
    };
    assert_eq!(
        run("cat /srv/app/note /srv/app/config.txt"),
        (Some(0), "made-inside\nfrom-the-host\n".into())
    );
    assert_eq!(run("test -e /etc/group || echo gone").1, "gone\n");
    let capped = unique_id("capped");
    b.ok(&["run", "-d", "--name", &capped, "bb:app", "sleep", "600"]);
    let merged = b.inspect(&capped)["GraphDriver"]["Data"]["MergedDir"]
        .as_str()
        .map(std::path::PathBuf::from)
        .unwrap();
    assert!(
        amphi_images::xattr::read(&merged.join("srv/app/config.txt"))
            .unwrap()
            .contains(&("security.capability".to_string(), cap)),
        "the committed file lost its capability"
    );
    b.ok(&["rm", "-f", &capped]);
    assert_eq!(run("test -e /etc/passwd && echo kept").1, "kept\n");
    let ids = b.ids();
    b.assert_clean(&ids);
    // system df and prune: the committed image is reclaimable once
    // unused, and prune -a removes it and its blobs.
    let df = b.ok(&["system", "df"]);
    assert!(
        df.starts_with("TYPE") && df.contains("Images") && df.contains("Containers"),
        "{df}"
    );
    let stopped = unique_id("stopped");
    b.ok(&["run", "--name", &stopped, "bb:app", "true"]);
    // Docker's narrower prunes: a stopped container, then images.
    let gone = unique_id("gone");
    b.ok(&["run", "--name", &gone, "bb:1", "true"]);
    let running = unique_id("running");
    b.ok(&["run", "-d", "--name", &running, "bb:1", "sleep", "60"]);
    let pruned = b.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    let running_id = b.get(&running, "{{.Id}}");
    assert!(!pruned.contains(&running_id), "{pruned}");
    assert!(!b.amphi(&["inspect", &gone]).status.success(), "{pruned}");
    assert_eq!(b.status(&running), "running");
    let kept = b.ok(&["image", "prune", "-f"]);
    assert!(kept.contains("Total reclaimed space"), "{kept}");
    assert!(
        b.ok(&["images", "-q"]).lines().count() >= 2,
        "image prune without -a removed images"
    );
    b.ok(&["rm", "-f", &running]);
    b.ok(&["run", "--name", &stopped, "bb:app", "true"]);
    let pruned = b.ok(&["system", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("Deleted Containers:") && pruned.contains("untagged: bb:app"),
        "{pruned}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]).trim(), "");
    assert!(b.ok(&["image", "ls"]).lines().count() <= 1);
}

#[test]
fn logs_follow_attach_init_and_wasm_containers() {
    let b = Box_::new();
    // logs -f prints until the container exits.
    let n = unique_id("talk");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line-$i; sleep 0.2; done",
    ]);
    let follow = b.ok(&["logs", "-f", &n]);
    assert_eq!(follow, "line-1\nline-2\nline-3\n");
    // attach: output from now on, our SIGTERM passed on, its status ours.
    let a = unique_id("attach");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "bb:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 5' TERM; while true; do echo tick; sleep 0.2; done",
    ]);
    let mut att = amphi_cmd(&b.dirs, &["attach", &a])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tick = [0u8; 5];
    std::io::Read::read_exact(att.stdout.as_mut().unwrap(), &mut tick).unwrap();
    assert_eq!(&tick, b"tick\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(att.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = att.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stdout).contains("bye"));
    // --init: a reaper is pid 1; orphans do not stay zombies; the
    // payload's status is the container's.
    let out = b.amphi(&[
        "run",
        "--rm",
        "--init",
        "bb:1",
        "sh",
        "-c",
        "(sleep 0.1 &) ; sleep 0.3; ps -o pid,stat,comm | grep -c ' Z ' ; cat /proc/1/comm; exit 6",
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\namphi-init\n");
    // Without a command, `docker run IMAGE` habits: a Wasm container runs
    // detached, stops promptly (epoch interruption) and restarts too.
    let wasm = b.dirs.tmp.path().join("wasm.tar");
    amphi_examples::write_image(&wasm, amphi_examples::Kind::Wasm, "amphi-wasm:latest").unwrap();
    b.ok(&["image", "load", "-i", wasm.to_str().unwrap()]);
    let w = unique_id("wasm");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &w,
        "--entrypoint",
        "/busy.wasm",
        "amphi-wasm",
    ]);
    b.wait_for("the module to spin", || {
        b.ok(&["logs", &w]).contains("spinning")
    });
    assert_eq!(b.get(&w, "{{.Amphi.Payload}}"), "wasm");
    b.ok(&["stop", "-t", "5", &w]);
    let code = b.get(&w, "{{.State.ExitCode}}");
    assert!(code == "143" || code == "137", "{code}");
    b.ok(&["start", &w]);
    assert_eq!(b.status(&w), "running");
    let ids = b.ids();
    b.assert_clean(&ids);
}

/// `--cgroup-parent`: a cgroupfs path holds the container as `<path>/<id>`;
/// a slice makes it the systemd scope `amphi-<id>.scope` there (with
/// systemd on a system bus), or fails in one line without one.
#[test]
fn cgroup_parent_places_the_container_as_asked() {
    let b = Box_::new();
    let parent = unique_id("amphi-cgp");
    let name = unique_id("cgp");
    // A detached sleeper with `extra` flags: its id and its init's cgroup.
    let sleeper = |extra: &[&str]| -> (String, String) {
        let mut args = vec!["run", "-d", "--network", "none", "--name", &name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb:1", "sleep", "600"]);
        b.ok(&args);
        let pid = b.get(&name, "{{.State.Pid}}");
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        (b.get(&name, "{{.Id}}"), own)
    };
    let (id, own) = sleeper(&["--cgroup-parent", &parent]);
    assert!(own.contains(&format!(":/{parent}/{id}\n")), "{own}");
    b.ok(&["rm", "-f", &name]);
    assert!(cgroup_dirs_named(&id).is_empty());
    // The parent is the user's to remove, as with Docker.
    for d in cgroup_dirs_named(&parent) {
        let _ = std::fs::remove_dir(d);
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&parent));
    assert!(cgroup_dirs_named(&parent).is_empty());
    assert!(!Path::new("/sys/fs/cgroup").join(&parent).exists());
    let slice = "amphiclitest.slice";
    if !amphi_testkit::systemd_runs() {
        let err = b.fails(&["run", "--rm", "--cgroup-parent", slice, "bb:1", "true"]);
        assert!(err.contains("systemd is not reachable"), "{err}");
        assert_eq!(b.ok(&["ps", "-aq"]).trim(), "");
        return;
    }
    let (id, own) = sleeper(&["--cgroup-parent", slice, "--pids-limit", "40"]);
    assert_eq!(own.trim(), format!("0::/{slice}/amphi-{id}.scope"));
    let scope = Path::new("/sys/fs/cgroup")
        .join(slice)
        .join(format!("amphi-{id}.scope"));
    assert_eq!(
        std::fs::read_to_string(scope.join("pids.max"))
            .unwrap()
            .trim(),
        "40"
    );
    b.ok(&["rm", "-f", &name]);
    assert!(!scope.exists());
    let _ = std::process::Command::new("systemctl")
        .args(["stop", slice])
        .status();
}

#[test]
fn a_damaged_record_hides_only_its_container_and_rm_f_removes_it() {
    let b = Box_::new();
    let (good, bad) = (unique_id("good"), unique_id("bad"));
    b.ok(&["create", "--name", &good, "bb:1", "true"]);
    let vol = unique_id("vol");
    let mount = format!("{vol}:/data");
    let bad_id = b.ok(&[
        "run", "-d", "--name", &bad, "-v", &mount, "bb:1", "sleep", "600",
    ]);
    let bad_id = bad_id.trim().to_string();
    let ids = b.ids();
    // A power cut or a hand edit leaves the record unreadable.
    let record = b
        .dirs
        .store
        .join("containers")
        .join(&bad_id)
        .join("record.json");
    std::fs::write(&record, b"{\"id\": tru").unwrap();
    // The other container is still listed and works; the damaged one is said.
    let out = amphi(&b.dirs, &["ps", "-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&good), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&bad_id) && err.contains("rm -f"), "{err}");
    b.ok(&["start", "-a", &good]);
    // Its volume may be its own: nothing removes it meanwhile.
    let err = b.fails(&["volume", "rm", &vol]);
    assert!(err.contains("cannot be read"), "{err}");
    // Without -f: a refusal naming the fault; with it, all of it goes,
    // its process and cgroup too.
    let err = b.fails(&["rm", &bad_id[..12]]);
    assert!(err.contains("corrupt record"), "{err}");
    b.ok(&["rm", "-f", &bad_id[..12]]);
    assert!(cgroup_dirs_named(&bad_id).is_empty());
    b.wait_for("the watchers to end", || b.watchers().is_empty());
    b.ok(&["volume", "rm", &vol]);
    b.assert_clean(&ids);
}

/// cap_net_raw+ep as the kernel stores it (vfs_cap_data, revision 2).
fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v
}

#[test]
fn docker_container_verbs_are_amphis() {
    let b = Box_::new();
    let n = unique_id("verbs");
    let id = b.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        &n,
        "bb:1",
        "sleep",
        "600",
    ]);
    let ls = b.ok(&["container", "ls"]);
    assert!(ls.starts_with("CONTAINER ID") && ls.contains(&n), "{ls}");
    assert_eq!(b.ok(&["container", "ps", "-q"]).trim(), &id.trim()[..12]);
    assert_eq!(b.ok(&["container", "exec", &n, "echo", "in"]), "in\n");
    let v: Value = serde_json::from_str(&b.ok(&["container", "inspect", &n])).unwrap();
    assert_eq!(v[0]["State"]["Running"], true);
    b.ok(&["container", "rm", "-f", &n]);
    // A verb Docker has and amphi does not is clap's one-line error.
    let out = b.amphi(&["container", "frobnicate"]);
    assert_eq!(out.status.code(), Some(125));
    let ids = b.ids();
    b.assert_clean(&ids);
}

#[test]
fn pause_unpause_rename_and_port() {
    let b = Box_::new();
    let n = unique_id("pz");
    b.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ]);
    let merged = b.inspect(&n)["GraphDriver"]["Data"]["MergedDir"]
        .as_str()
        .unwrap()
        .to_string();
    let count =
        || std::fs::read_to_string(Path::new(&merged).join("tmp/count")).unwrap_or_default();
    b.wait_for("the counter", || !count().is_empty());
    // Paused: every process frozen, and said so.
    b.ok(&["pause", &n]);
    assert_eq!(b.status(&n), "paused");
    assert_eq!(b.get(&n, "{{.State.Paused}}"), "true");
    let ps = b.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains(&n) && ps.contains("(Paused)"), "{ps}");
    let frozen = count();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(), frozen, "a paused container ran on");
    let err = b.fails(&["pause", &n]);
    assert!(err.contains("already paused"), "{err}");
    b.ok(&["container", "unpause", &n]);
    assert_eq!(b.status(&n), "running");
    b.wait_for("the counter again", || count() != frozen);
    let err = b.fails(&["unpause", &n]);
    assert!(err.contains("not paused"), "{err}");
    // A paused container stops (thawed to take the signal).
    b.ok(&["pause", &n]);
    b.ok(&["stop", "-t", "1", &n]);
    assert_eq!(b.status(&n), "exited");
    // Renamed: found by the new name only; a taken name is refused.
    let m = unique_id("renamed");
    b.ok(&["rename", &n, &m]);
    assert_eq!(b.get(&m, "{{.Name}}"), format!("/{m}"));
    assert!(!b.amphi(&["inspect", &n]).status.success());
    let other = unique_id("other");
    b.ok(&[
        "create",
        "--name",
        &other,
        "--network",
        "none",
        "bb:1",
        "true",
    ]);
    let err = b.fails(&["rename", &m, &other]);
    assert!(err.contains("already in use"), "{err}");
    let err = b.fails(&["rename", &m, "bad name"]);
    assert!(err.contains("bad container name"), "{err}");
    // Its published ports, as `docker port` lists them.
    let web = unique_id("port");
    let host_port = amphi_testkit::free_port();
    b.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "-p",
        &format!("127.0.0.1:{host_port}:80"),
        "bb:1",
        "sleep",
        "60",
    ]);
    assert_eq!(
        b.ok(&["port", &web]),
        format!("80/tcp -> 127.0.0.1:{host_port}\n")
    );
    assert_eq!(
        b.ok(&["port", &web, "80"]),
        format!("127.0.0.1:{host_port}\n")
    );
    let err = b.fails(&["port", &web, "81/udp"]);
    assert!(err.contains("no public port"), "{err}");
    let ids: Vec<String> = [&m, &other, &web]
        .iter()
        .map(|n| b.get(n, "{{.Id}}"))
        .collect();
    b.assert_clean(&ids);
}

#[test]
fn stats_shows_cpu_memory_and_pids_as_docker_stats() {
    let b = Box_::new();
    let (busy, idle) = (unique_id("busy"), unique_id("idle"));
    b.ok(&[
        "run",
        "-d",
        "--name",
        &busy,
        "--network",
        "none",
        "-m",
        "64m",
        "bb:1",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        &idle,
        "--network",
        "none",
        "bb:1",
        "sleep",
        "60",
    ]);
    let row = |n: &str| -> Value {
        serde_json::from_str(&b.ok(&["stats", "--no-stream", "--format", "json", n])).unwrap()
    };
    let pct = |v: &Value, k: &str| -> f64 {
        v[k].as_str()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap()
    };
    let hot = row(&busy);
    assert!(pct(&hot, "CPUPerc") > 1.0, "{hot}");
    assert!(
        hot["MemUsage"].as_str().unwrap().ends_with("/ 64MiB"),
        "{hot}"
    );
    assert_eq!(hot["PIDs"], "1");
    assert_eq!(hot["Name"], busy.as_str());
    let cold = row(&idle);
    assert!(
        pct(&cold, "CPUPerc") < pct(&hot, "CPUPerc"),
        "{cold} vs {hot}"
    );
    // The table of every running container, and the raw cgroup figures.
    let table = b.ok(&["stats", "--no-stream"]);
    assert!(
        table.starts_with("CONTAINER ID") && table.contains("MEM USAGE / LIMIT"),
        "{table}"
    );
    assert!(table.contains(&busy) && table.contains(&idle), "{table}");
    let raw: Value = serde_json::from_str(&b.ok(&["stats", "--raw", &idle])).unwrap();
    assert!(
        raw["hierarchy"].is_u64() && raw["pids"]["current"] == 1,
        "{raw}"
    );
    b.ok(&["stop", "-t", "0", &idle]);
    assert_eq!(row(&idle)["CPUPerc"], "--");
    let ids: Vec<String> = [&busy, &idle].iter().map(|n| b.get(n, "{{.Id}}")).collect();
    b.assert_clean(&ids);
}

#[test]
fn diff_lists_added_changed_and_deleted_paths() {
    let b = Box_::new();
    let n = unique_id("diff");
    b.ok(&[
        "run",
        "--name",
        &n,
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /srv/new && echo x > /srv/new/file && echo more >> /etc/passwd && rm /etc/group",
    ]);
    let diff = b.ok(&["diff", &n]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "A /srv/new",
        "A /srv/new/file",
        "C /etc",
        "C /etc/passwd",
        "D /etc/group",
    ] {
        assert!(lines.contains(&want), "{want} not in:\n{diff}");
    }
    // What amphi mounted is no change of the container's.
    assert!(
        !diff.contains("/etc/hosts") && !diff.contains("/etc/resolv.conf"),
        "{diff}"
    );
    let id = b.get(&n, "{{.Id}}");
    b.assert_clean(&[id]);
}

#[test]
fn version_and_info_describe_the_box() {
    let b = Box_::new();
    assert_eq!(
        b.ok(&["version", "--format", "{{.Version}}"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(b.ok(&["version"]).contains("Client: amphi"));
    let n = unique_id("info");
    b.ok(&["create", "--name", &n, "--network", "none", "bb:1", "true"]);
    let info: Value = serde_json::from_str(&b.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Containers"], 1, "{info}");
    assert_eq!(info["ContainersStopped"], 1, "{info}");
    assert_eq!(info["Images"], 1, "{info}");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(info["CgroupVersion"], if v2 { "2" } else { "1" });
    assert!(b.ok(&["info"]).contains("Storage Driver: overlay2"));
    let id = b.get(&n, "{{.Id}}");
    b.assert_clean(&[id]);
}
