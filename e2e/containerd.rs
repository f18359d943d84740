//! amphi under a real containerd: each test starts a private containerd
//! (own socket, root and state in a temp dir), imports the example images
//! and drives the shim through `ctr`. See e2e/README.md.

#[path = "support.rs"]
mod support;

use std::process::{Command, Stdio};

use amphi_examples::Kind;
use amphi_testkit::{cgroup_dirs_named, host_block_device, unique_id};
use support::*;

#[test]
fn native_and_wasm_output_and_exit_codes() {
    let mut cd = Containerd::start();
    let cases: [(Kind, &[&str], i32, &str); 5] = [
        (Kind::Native, &[], 0, "Hello from native!\n"),
        (Kind::Wasm, &[], 0, "Hello from Wasm!\n"),
        (Kind::Native, &["/bin/exit42"], 42, ""),
        (Kind::Wasm, &["/exit42.wasm"], 42, ""),
        (Kind::Wasm, &["/trap.wasm"], 134, "about to trap\n"),
    ];
    for (kind, args, code, stdout) in cases {
        let id = cd.new_id("out");
        let out = cd.run(kind, &["--rm"], &id, args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{kind:?} {args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), stdout);
        cd.assert_clean(&id);
    }
    // ctr's spec grants CAP_MKNOD: a node for the host's disk can be made,
    // but the devices cgroup keeps it from being opened.
    let (major, minor) = host_block_device();
    let dev_id = cd.new_id("dev");
    let args = ["/bin/devices", "/dev/probe", "b", &major, &minor];
    let out = cd.run(Kind::Native, &["--rm"], &dev_id, &args);
    assert_stdout(&out, "mknod: ok\nopen: Operation not permitted\nnull: ok\n");
    cd.assert_clean(&dev_id);
    // `--seccomp` gives containerd's default profile, which refuses the
    // kernel keyring (add_key) with EPERM; without it the call reaches the
    // kernel, which faults on the null type.
    let add_key = libc::SYS_add_key.to_string();
    for (flags, want) in [
        (
            &["--rm", "--seccomp"][..],
            "errno 1 (Operation not permitted)\n",
        ),
        (&["--rm"][..], "errno 14 (Bad address)\n"),
    ] {
        let id = cd.new_id("sec");
        let out = cd.run(Kind::Native, flags, &id, &["/bin/syscall", &add_key]);
        assert_eq!(text(&out.stdout), want, "{flags:?}: {}", text(&out.stderr));
        cd.assert_clean(&id);
    }
    // wasmtime runs under that profile too.
    let id = cd.new_id("sec");
    let out = cd.run(Kind::Wasm, &["--rm", "--seccomp"], &id, &[]);
    assert_stdout(&out, "Hello from Wasm!\n");
    cd.assert_clean(&id);
    // What the shim logs reaches containerd's log through the log FIFO.
    let log = std::fs::read_to_string(cd.dir.path().join("containerd.log")).unwrap();
    assert!(
        log.contains(&format!("create {dev_id} bundle")),
        "the shim's log line is not in containerd's log"
    );
}

#[test]
fn detached_task_exec_pause_metrics_kill_delete() {
    let mut cd = Containerd::start();
    let id = cd.new_id("det");
    cd.run_ok(Kind::Native, &["-d"], &id, &["/bin/sleep", "1000"]);
    assert_eq!(cd.task_status(&id).as_deref(), Some("RUNNING"));
    let out = cd.ctr_ok(&["task", "exec", "--exec-id", "e1", &id, "/bin/id"]);
    assert!(out.contains("uid=0"), "{out}");
    cd.ctr_ok(&["task", "pause", &id]);
    assert_eq!(cd.task_status(&id).as_deref(), Some("PAUSED"));
    cd.ctr_ok(&["task", "resume", &id]);
    assert_eq!(cd.task_status(&id).as_deref(), Some("RUNNING"));
    let metrics = cd.ctr_ok(&["task", "metrics", &id]);
    assert!(
        // cgroup v1's names, or v2's (containerd's cgroups v2 Metrics).
        metrics.contains("pids.current")
            && (metrics.contains("memory.usage_in_bytes") || metrics.contains("memory.usage ")),
        "{metrics}"
    );
    let pids = cd.ctr_ok(&["task", "ps", &id]);
    assert!(pids.lines().count() >= 2, "{pids}");
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    let rm = cd.ctr(&["task", "rm", &id]);
    assert!(rm.status.success());
    assert!(text(&rm.stderr).contains("137"), "{}", text(&rm.stderr));
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
    wait_until("the shim to exit", || cd.shims().is_empty());
}

#[test]
fn wasm_exec_and_sigterm_stop_a_busy_module() {
    let mut cd = Containerd::start();
    let id = cd.new_id("wbusy");
    cd.run_ok(Kind::Wasm, &["-d"], &id, &["/busy.wasm"]);
    // Another module instance in the same sandbox, compiled modules shared.
    let out = cd.ctr_ok(&["task", "exec", "--exec-id", "hello", &id, "/hello.wasm"]);
    assert_eq!(out, "Hello from Wasm!\n");
    cd.ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    wait_until("the module to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    let rm = cd.ctr(&["task", "rm", &id]);
    assert!(text(&rm.stderr).contains("143"), "{}", text(&rm.stderr));
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
}

#[test]
fn components_print_read_exit_stop_grow_and_serve_http() {
    let mut cd = Containerd::start();
    cd.import_components();
    let cases: [(&[&str], i32, &str); 4] = [
        (&[], 0, "Hello from Wasm!\n"),
        (&["/cat.wasm", "/etc/message"], 0, amphi_examples::MESSAGE),
        (&["/cli-exit42.wasm"], 42, ""),
        (&["/trap.wasm"], 134, "about to trap\n"),
    ];
    for (args, code, stdout) in cases {
        let id = cd.new_id("comp");
        let out = cd.run(Kind::Component, &["--rm"], &id, args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), stdout, "{args:?}");
        cd.assert_clean(&id);
    }
    // Held to the memory limit by the engine, not the OOM killer.
    let id = cd.new_id("cgrow");
    let out = cd.run(
        Kind::Component,
        &["--rm", "--memory-limit", "33554432"],
        &id,
        &["/grow.wasm"],
    );
    assert!(
        out.status.success() && text(&out.stdout).starts_with("memory.grow refused at "),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    cd.assert_clean(&id);
    // SIGTERM stops a busy component.
    let id = cd.new_id("cbusy");
    cd.run_ok(Kind::Component, &["-d"], &id, &["/busy.wasm"]);
    cd.ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    wait_until("the component to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    let rm = cd.ctr(&["task", "rm", &id]);
    assert!(text(&rm.stderr).contains("143"), "{}", text(&rm.stderr));
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
    // A wasi:http component on the host's network, on a port of ours.
    let port = amphi_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let id = cd.new_id("chttp");
    let env = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR={addr}");
    cd.run_ok(
        Kind::Component,
        &["-d", "--net-host", "--env", &env],
        &id,
        &["/http-hello.wasm"],
    );
    let mut body = String::new();
    wait_until("the component to answer", || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{addr}/ctr")])
            .output()
            .unwrap();
        body = text(&out.stdout);
        !body.is_empty()
    });
    assert_eq!(
        body,
        "Hello from a wasi:http component! You asked for /ctr\n"
    );
    cd.ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    wait_until("the server to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    cd.ctr_ok(&["task", "rm", &id]);
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
}

#[test]
fn oom_kill_exits_137_and_publishes_oom_event() {
    let mut cd = Containerd::start();
    let mut events = cd.watch_events();
    let id = cd.new_id("oom");
    let out = cd.run(
        Kind::Native,
        &["--rm", "--memory-limit", "33554432"],
        &id,
        &["/bin/memhog"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(events.saw("/tasks/oom", &id), "no /tasks/oom for {id}");
    cd.assert_clean(&id);
    let first = id;

    // An OOM kill of another process is published live, while the init
    // (and so the container) survives it.
    let id = cd.new_id("oomexec");
    cd.run_ok(
        Kind::Native,
        &["-d", "--memory-limit", "33554432"],
        &id,
        &["/bin/sleep", "1000"],
    );
    let out = cd.ctr(&["task", "exec", "--exec-id", "hog", &id, "/bin/memhog"]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(events.saw("/tasks/oom", &id), "no live /tasks/oom for {id}");
    assert_eq!(cd.task_status(&id).as_deref(), Some("RUNNING"));
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    cd.remove(&id);
    let seen = events.stop();
    cd.assert_clean(&id);
    // The init's own OOM kill was reported by two paths (its exit and the
    // live watch) and published once.
    let ooms = seen
        .iter()
        .filter(|l| l.contains("/tasks/oom") && l.contains(&first))
        .count();
    assert_eq!(ooms, 1, "{first}: {ooms} /tasks/oom events");
}

#[test]
fn tty_run_gets_a_terminal() {
    let mut cd = Containerd::start();
    let id = cd.new_id("tty");
    let cmd = format!(
        "ctr --address {} run -t --rm --fifo-dir {} --runtime {RUNTIME} {NATIVE} {id} /bin/tty",
        cd.sock().display(),
        cd.dir.path().join("fifo").display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("tty: /dev/pts/"),
        "{stdout} {}",
        text(&out.stderr)
    );
    cd.assert_clean(&id);
}

#[test]
fn killed_shim_is_cleaned_up_by_containerd() {
    let mut cd = Containerd::start();
    let id = cd.new_id("shimkill");
    cd.run_ok(Kind::Native, &["-d"], &id, &["/bin/sleep", "1000"]);
    let shims = cd.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd runs `containerd-shim-amphi-v1 delete`, which kills the
    // container and unmounts its rootfs.
    wait_until("the container's cgroup to go", || {
        cgroup_dirs_named(&id).is_empty()
    });
    wait_until("the rootfs to be unmounted", || {
        cd.mounts().iter().all(|m| !m.contains(&id))
    });
    let _ = cd.ctr(&["task", "rm", "-f", &id]);
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
}

#[test]
fn containerd_restart_keeps_control_of_tasks() {
    let mut cd = Containerd::start();
    let id = cd.new_id("restart");
    cd.run_ok(Kind::Native, &["-d"], &id, &["/bin/sleep", "1000"]);
    cd.stop();
    cd.spawn();
    wait_until("the task to be listed again", || {
        cd.task_status(&id).as_deref() == Some("RUNNING")
    });
    // The shim's event connection died with the old containerd: its next
    // event must still arrive.
    let mut events = cd.watch_events();
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    assert!(
        events.saw("/tasks/exit", &id),
        "no /tasks/exit for {id} after the restart"
    );
    events.stop();
    cd.ctr_ok(&["task", "rm", &id]);
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
}

#[test]
fn sandbox_group_shares_one_shim() {
    let mut cd = Containerd::start();
    let group = unique_id("group");
    let ann = format!("io.kubernetes.cri.sandbox-id={group}");
    let (a, b, c) = (cd.new_id("ga"), cd.new_id("gb"), cd.new_id("gc"));
    for id in [&a, &b] {
        cd.run_ok(
            Kind::Native,
            &["-d", "--annotation", &ann],
            id,
            &["/bin/sleep", "1000"],
        );
    }
    assert_eq!(cd.shims().len(), 1, "a and b share a shim");
    cd.run_ok(Kind::Wasm, &["-d"], &c, &["/busy.wasm"]);
    assert_eq!(cd.shims().len(), 2, "c has its own shim");
    // Removing one of the group keeps the shared shim for the other.
    cd.remove(&a);
    assert_eq!(cd.task_status(&b).as_deref(), Some("RUNNING"));
    assert_eq!(cd.shims().len(), 2);
    cd.remove(&b);
    cd.remove(&c);
    wait_until("every shim to exit", || cd.shims().is_empty());
    for id in [&a, &b, &c] {
        cd.assert_clean(id);
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_shim_keeps_serving() {
    let mut cd = Containerd::start();
    let unknown = cd.ctr(&["task", "kill", "no-such-task"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("not found"),
        "{}",
        text(&unknown.stderr)
    );

    let group = unique_id("bad");
    let ann = format!("io.containerd.runc.v2.group={group}");
    let good = cd.new_id("good");
    cd.run_ok(
        Kind::Native,
        &["-d", "--annotation", &ann],
        &good,
        &["/bin/sleep", "1000"],
    );
    // A spec whose entrypoint is not in the rootfs: InvalidArgument, one line.
    let bad = cd.new_id("badentry");
    let out = cd.run(
        Kind::Native,
        &["--rm", "--annotation", &ann],
        &bad,
        &["/bin/nope"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/bin/nope: not found in rootfs"), "{err}");
    let _ = cd.ctr(&["containers", "rm", &bad]);
    // A non-wasm file named .wasm in a Wasm container.
    let fake = cd.new_id("fakewasm");
    let out = cd.run(
        Kind::Wasm,
        &["--rm", "--annotation", &ann],
        &fake,
        &["/etc/message"],
    );
    assert!(!out.status.success());
    let _ = cd.ctr(&["containers", "rm", &fake]);
    // Exec on a stopped task.
    let done = cd.new_id("done");
    cd.run_ok(
        Kind::Native,
        &["-d", "--annotation", &ann],
        &done,
        &["/bin/exit42"],
    );
    wait_until("the task to stop", || {
        cd.task_status(&done).as_deref() == Some("STOPPED")
    });
    let exec = cd.ctr(&["task", "exec", "--exec-id", "late", &done, "/bin/hello"]);
    assert!(!exec.status.success());
    assert!(
        text(&exec.stderr).contains("not running"),
        "{}",
        text(&exec.stderr)
    );
    // The shared shim still serves the good container.
    let out = cd.ctr_ok(&["task", "exec", "--exec-id", "still", &good, "/bin/hello"]);
    assert_eq!(out, "Hello from native!\n");
    // The group's shim (started for `good`) lives until all of them go.
    for id in [&good, &done, &bad, &fake] {
        cd.remove(id);
    }
    for id in [&good, &done, &bad, &fake] {
        cd.assert_clean(id);
    }
}

#[test]
fn packed_and_annotated_wasm_images_run() {
    let mut cd = Containerd::start();
    // What `amphi image pack --wasm` and `amphi image save` do.
    let store_dir = cd.dir.path().join("amphi-images");
    let store = amphi_images::Store::open(&store_dir).unwrap();
    let hello = amphi_examples::WASM
        .iter()
        .find(|(n, _)| *n == "hello")
        .unwrap()
        .1;
    amphi_images::pack::pack_wasm(&store, hello, "packed-hello:v1").unwrap();
    let tar = cd.dir.path().join("packed.tar");
    amphi_images::archive::save(
        &store,
        &["packed-hello:v1".to_string()],
        std::fs::File::create(&tar).unwrap(),
    )
    .unwrap();
    cd.ctr_ok(&["images", "import", "--all-platforms", tar.to_str().unwrap()]);
    let id = cd.new_id("packed");
    let out = cd.run_image(
        &["--rm", "--platform", "wasi/wasm"],
        "docker.io/library/packed-hello:v1",
        &id,
        &[],
    );
    assert_stdout(&out, "Hello from Wasm!\n");
    cd.assert_clean(&id);
    // crun-style annotations select the Wasm handler too.
    for ann in ["run.oci.handler=wasm", "module.wasm.image/variant=compat"] {
        let id = cd.new_id("ann");
        let out = cd.run(
            Kind::Wasm,
            &["--rm", "--annotation", ann],
            &id,
            &["/args_env.wasm", "via-annotation"],
        );
        assert!(
            text(&out.stdout).contains("via-annotation"),
            "{} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        cd.assert_clean(&id);
    }
}

/// Requests containerd would not send for a ctr-made container, straight
/// to a running shim over ttrpc: a rootfs mount that fails and a malformed
/// spec each get one clear error, leave nothing behind, and the shim keeps
/// serving the container it has.
#[test]
fn bad_mount_and_malformed_spec_sent_to_a_live_shim() {
    use containerd_shim::api::CreateTaskRequest;
    use containerd_shim::protos::ttrpc::{context, Client, Code, Error as TtrpcError};
    use containerd_shim::protos::types::mount::Mount;
    use containerd_shim::protos::TaskClient;

    let mut cd = Containerd::start();
    let good = cd.new_id("live");
    cd.run_ok(Kind::Native, &["-d"], &good, &["/bin/sleep", "1000"]);
    let task_dir = cd
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task/default")
        .join(&good);
    let address = std::fs::read_to_string(task_dir.join("address")).unwrap();
    let shim = TaskClient::new(Client::connect(address.trim()).unwrap());
    let create = |id: &str, bundle: &std::path::Path, rootfs: Vec<Mount>| {
        let mut req = CreateTaskRequest::new();
        req.id = id.to_string();
        req.bundle = bundle.to_string_lossy().into_owned();
        req.rootfs = rootfs;
        match shim.create(context::with_timeout(10_000_000_000), &req) {
            Ok(_) => panic!("create {id} succeeded"),
            Err(TtrpcError::RpcStatus(s)) => (s.code(), s.message().to_string()),
            Err(e) => panic!("create {id}: {e}"),
        }
    };
    let bundle = |name: &str, config: &[u8]| {
        let b = cd.dir.path().join(name);
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        std::fs::write(b.join("config.json"), config).unwrap();
        b
    };
    let config = std::fs::read(task_dir.join("config.json")).unwrap();

    // An overlay whose lower layer does not exist.
    let id = unique_id("badmount");
    let b = bundle("bundle-badmount", &config);
    let mut m = Mount::new();
    m.type_ = "overlay".into();
    m.source = "overlay".into();
    m.options = vec![
        "lowerdir=/nonexistent-amphi-layer".into(),
        format!("upperdir={}", cd.dir.path().join("upper").display()),
        format!("workdir={}", cd.dir.path().join("work").display()),
    ];
    let (code, msg) = create(&id, &b, vec![m]);
    assert_eq!(code, Code::INTERNAL, "{msg}");
    assert!(
        msg.starts_with("mounting rootfs (overlay from overlay):"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(!b.join("amphi-state").join(&id).exists());
    assert!(cd.mounts().iter().all(|m| !m.contains("bundle-badmount")));

    // A config.json that is not JSON.
    let id = unique_id("badspec");
    let b = bundle("bundle-badspec", b"{\"ociVersion\": ");
    let (code, msg) = create(&id, &b, Vec::new());
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(!b.join("amphi-state").join(&id).exists());

    // The shim still serves its container.
    let out = cd.ctr_ok(&["task", "exec", "--exec-id", "still", &good, "/bin/hello"]);
    assert_eq!(out, "Hello from native!\n");
    cd.remove(&good);
    cd.assert_clean(&good);
}

/// An image of 70 layers: containerd's lowerdir list is longer than a page,
/// so the shim mounts it through the shortening helper. A one-layer image's
/// rootfs gets the init layer beneath it and its upper dir stays empty of
/// mount points.
#[test]
fn deep_image_mounts_and_small_image_gets_the_init_layer() {
    let mut cd = Containerd::start();
    let mut layers = Vec::new();
    let mut base = amphi_images::layer::LayerBuilder::new();
    for (n, b) in amphi_examples::NATIVE {
        base.file(&format!("bin/{n}"), 0o755, b).unwrap();
    }
    layers.push(base.build().unwrap());
    for i in 1..70 {
        let mut l = amphi_images::layer::LayerBuilder::new();
        l.file(
            &format!("layer{i}"),
            0o644,
            format!("layer {i}\n").as_bytes(),
        )
        .unwrap();
        layers.push(l.build().unwrap());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/hello"]},
    });
    let tar = cd.dir.path().join("deep.tar");
    amphi_examples::write_archive(&tar, &layers, config, "docker.io/library/deep:v1").unwrap();
    cd.ctr_ok(&["images", "import", tar.to_str().unwrap()]);
    let id = cd.new_id("deep");
    let out = cd.run_image(
        &["--rm"],
        "docker.io/library/deep:v1",
        &id,
        &["/bin/cat", "/layer1"],
    );
    assert_stdout(&out, "layer 1\n");
    cd.assert_clean(&id);

    // The Wasm image has no /proc, /dev, /sys or /run of its own.
    let id = cd.new_id("init");
    cd.run_ok(Kind::Wasm, &["-d"], &id, &["/busy.wasm"]);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(&format!("/{id}/rootfs ")))
        .expect("the container's rootfs is mounted");
    let layer = cd.dir.path().join("store/init-layer");
    assert!(
        line.contains(&format!(":{}", layer.display())),
        "no init layer in {line}"
    );
    let upper = line
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .expect("an overlay upperdir");
    let made: Vec<String> = std::fs::read_dir(upper)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        made.is_empty(),
        "mount points made in the upper dir: {made:?}"
    );
    cd.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", || {
        cd.task_status(&id).as_deref() == Some("STOPPED")
    });
    cd.ctr_ok(&["task", "rm", &id]);
    cd.ctr_ok(&["containers", "rm", &id]);
    cd.assert_clean(&id);
}

/// Starts of one group racing each other (a driver that starts shims in
/// parallel, two at a time in the same bundle too): one shim serves, every
/// start prints its address, no temp file is left, and the shim goes at
/// Shutdown with its socket.
#[test]
fn concurrent_starts_of_one_group_share_one_shim() {
    use containerd_shim::protos::shim_sync::{Client, TaskClient};
    let cd = Containerd::start();
    let group = unique_id("grp");
    let shim = env!("CARGO_BIN_EXE_containerd-shim-amphi-v1");
    let sock = cd.sock().to_string_lossy().into_owned();
    let ttrpc = format!("{sock}.ttrpc");
    let n = 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let mut logs = Vec::new();
    let starts: Vec<_> = (0..n)
        .map(|i| {
            let bundle = cd.dir.path().join(format!("bundle-{}", i / 2));
            if i % 2 == 1 {
                let id = format!("{group}-{}", i / 2);
                let (barrier, sock, ttrpc) = (barrier.clone(), sock.clone(), ttrpc.clone());
                return std::thread::spawn(move || {
                    barrier.wait();
                    (
                        bundle.clone(),
                        start_shim(shim, &sock, &ttrpc, &id, &bundle),
                    )
                });
            }
            std::fs::create_dir(&bundle).unwrap();
            let config =
                serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": group}});
            std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
            // containerd makes the shim's log FIFO before `start`, and reads it.
            let log = bundle.join("log");
            nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            use std::os::unix::fs::OpenOptionsExt;
            logs.push(
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&log)
                    .unwrap(),
            );
            let (barrier, sock, ttrpc) = (barrier.clone(), sock.clone(), ttrpc.clone());
            let id = format!("{group}-{}", i / 2);
            std::thread::spawn(move || {
                barrier.wait();
                (
                    bundle.clone(),
                    start_shim(shim, &sock, &ttrpc, &id, &bundle),
                )
            })
        })
        .collect();
    // All of them done (two share each bundle) before any bundle is looked at.
    let done: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    let mut addresses = Vec::new();
    for (bundle, out) in done {
        assert!(out.status.success(), "start: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        assert_eq!(
            std::fs::read_to_string(bundle.join("address")).unwrap(),
            printed
        );
        let names: Vec<String> = std::fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| ["config.json", "address", "log"].contains(&n.as_str())),
            "{names:?}"
        );
        addresses.push(printed);
    }
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        1,
        "starts of one group printed {addresses:?}"
    );
    let serving = shim_processes(&cd.sock(), "containerd-shim-amphi-v1");
    assert_eq!(serving.len(), 1, "{serving:?}");
    let client = TaskClient::new(Client::connect(&addresses[0]).unwrap());
    // The shim exits right after Shutdown (as runc's does), so the reply
    // may be a reset connection; containerd takes either as done.
    let _ = client.shutdown(
        containerd_shim::protos::ttrpc::context::with_timeout(5_000_000_000),
        &containerd_shim::api::ShutdownRequest::new(),
    );
    let path = std::path::PathBuf::from(addresses[0].trim_start_matches("unix://"));
    wait_until("the shim's socket to go", || !path.exists());
    wait_until("the shim to exit", || {
        shim_processes(&cd.sock(), "containerd-shim-amphi-v1").is_empty()
    });
}

/// `containerd-shim-amphi-v1 ... start` as containerd runs it for `id`.
fn start_shim(
    shim: &str,
    sock: &str,
    ttrpc: &str,
    id: &str,
    bundle: &std::path::Path,
) -> std::process::Output {
    Command::new(shim)
        .args([
            "-namespace",
            "default",
            "-address",
            sock,
            "-publish-binary",
            "containerd",
        ])
        .args(["-id", id, "start"])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", ttrpc)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// containerd 2.x runs `-info` before a create: the answer is a
/// `RuntimeInfo` protobuf whose features are the OCI features document.
#[test]
fn info_answers_runtime_info_with_oci_features() {
    use containerd_shim::protos::protobuf::Message;
    use containerd_shim::protos::types::introspection::RuntimeInfo;
    let out = Command::new(env!("CARGO_BIN_EXE_containerd-shim-amphi-v1"))
        .arg("-info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(info.name, RUNTIME);
    assert!(!info.version.version.is_empty());
    assert_eq!(
        info.features.type_url,
        "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
    );
    let f: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rro"));
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "pid"));
}
