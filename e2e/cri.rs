//! amphi under Kubernetes' container runtime interface: each test starts a
//! private containerd with its CRI plugin (`cri_support.rs`) and acts as
//! kubelet does, through the CRI v1 gRPC API, with `amphi` as the pods'
//! runtime handler: native and Wasm app containers beside the native pause
//! container.

#[path = "cri_support.rs"]
mod cri_support;
#[path = "support.rs"]
mod support;

use cri_support::*;
use k8s_cri::v1::*;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn pods_of_native_and_of_wasm_containers_exit_codes_reasons_and_logs() {
    let mut node = Node::start();
    let cfg = node.pod_config("life");
    let pod = node.run_pod(&cfg);
    let st = node.pod_status(&pod).status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);

    let mut c = Node::container_config(
        "out",
        BUSYBOX,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    c.log_path = "out.log".into();
    let out = node.run_container(&pod, &cfg, &c);
    let s = node.wait_exited(&out);
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let log = read(&Node::log_path(&cfg, "out"));
    // CRI log format: <RFC 3339 time> <stream> <F|P> <text>
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    assert!(
        lines
            .iter()
            .any(|f| f[1] == "stdout" && f[2] == "F" && f[3] == "to-stdout"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|f| f[1] == "stderr" && f[2] == "F" && f[3] == "to-stderr"),
        "{log}"
    );

    let ok = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("ok", BUSYBOX, &["true"]),
    );
    let s = node.wait_exited(&ok);
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    node.remove_pod_clean(&pod, &cfg);

    // A pod whose app containers are all Wasm (the sandbox stays native).
    let cfg = node.pod_config("wasm");
    let pod = node.run_pod(&cfg);
    for image in [WASM_LINUX, WASM] {
        let name = format!("wasm{}", if image == WASM { "p1" } else { "linux" });
        let mut w = Node::container_config(&name, image, &[]);
        w.log_path = format!("{name}.log");
        let id = node.run_container(&pod, &cfg, &w);
        let s = node.wait_exited(&id);
        assert_eq!(
            (s.exit_code, s.reason.as_str()),
            (0, "Completed"),
            "{image}"
        );
        let log = read(&Node::log_path(&cfg, &name));
        assert!(log.contains(" stdout F Hello from Wasm!"), "{image}: {log}");
    }
    let w = Node::container_config("wasm42", WASM_LINUX, &["/exit42.wasm"]);
    let id = node.run_container(&pod, &cfg, &w);
    let s = node.wait_exited(&id);
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"));
    // WASI 0.2 command components: output, a file of the rootfs, an exit code.
    for (name, args, code, stdout) in [
        (
            "comp",
            &["/c/hello.wasm"][..],
            0,
            "Hello from Wasm!\n".to_string(),
        ),
        (
            "compcat",
            &["/c/cat.wasm", "/etc/message"],
            0,
            amphi_examples::MESSAGE.to_string(),
        ),
        ("comp42", &["/c/cli-exit42.wasm"], 42, String::new()),
    ] {
        let c = Node::container_config(name, WASM_LINUX, args);
        assert_eq!(run_to_exit(&node, &pod, &cfg, &c), (code, stdout), "{name}");
    }
    node.remove_pod_clean(&pod, &cfg);
}

/// The host pid of a container's process, from containerd's verbose status.
fn container_pid(node: &Node, id: &str) -> i32 {
    let mut rs = node.rs.clone();
    let resp = node
        .rt
        .block_on(rs.container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        }))
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    info["pid"].as_i64().unwrap() as i32
}

fn ns_of(pid: i32, ns: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
}

#[test]
fn pod_network_shared_pids_loopback_exec_sync_and_wasm_in_the_pod() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("net");
    Node::pod_network(&mut cfg, "netpod");
    pod_namespaces(&mut cfg).pid = NamespaceMode::Pod as i32;
    let pod = node.run_pod(&cfg);
    let ip = node.pod_status(&pod).status.unwrap().network.unwrap().ip;
    assert!(ip.starts_with("10.213."), "pod ip {ip}");

    let server = Node::container_config(
        "server",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    let server = node.run_container(&pod, &cfg, &server);
    let client = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("client", BUSYBOX, &["sleep", "3600"]),
    );
    // The pod's loopback and address are shared by its containers.
    let mut got = String::new();
    wait_for_ok(|| {
        got = node
            .exec_sync(&client, &["wget", "-qO-", "http://127.0.0.1:8080/"], 5)
            .map(|r| String::from_utf8_lossy(&r.stdout).into_owned())
            .unwrap_or_default();
        got == "pong\n"
    });
    assert_eq!(got, "pong\n");
    assert!(node
        .sh(&client, "ip -4 addr show eth0")
        .contains(&format!("inet {ip}/")));
    assert_eq!(node.sh(&client, "hostname"), "netpod\n");
    // A shared pid namespace: the pause container is pid 1, the server's
    // httpd is seen from the client.
    assert_eq!(node.sh(&client, "cat /proc/1/cmdline"), "/pause\0");
    assert!(node.sh(&client, "ps -o args").contains("httpd -f -p 8080"));
    assert!(node.sh(&server, "ps -o args").contains("sleep 3600"));

    // ExecSync: stdout, stderr and exit code apart; a timeout is honoured.
    let r = node
        .exec_sync(&client, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .unwrap();
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (7, &b"out\n"[..], &b"err\n"[..])
    );
    let e = node.exec_sync(&client, &["sleep", "30"], 1).unwrap_err();
    assert!(e.message().contains("timeout"), "{}", e.message());

    // A Wasm container of the pod is in the pod's network namespace, and
    // SIGTERM (StopContainer) ends its busy loop.
    let busy = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("busy", WASM_LINUX, &["/busy.wasm"]),
    );
    let pause = node.pod_info(&pod)["pid"].as_i64().unwrap() as i32;
    let busy_pid = container_pid(&node, &busy);
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns_of(busy_pid, ns),
            ns_of(pause, ns),
            "{ns} namespace of the Wasm container"
        );
    }
    // ExecSync into the Wasm container runs a module there.
    let r = node.exec_sync(&busy, &["/hello.wasm"], 10).unwrap();
    assert_eq!(
        (r.exit_code, &r.stdout[..]),
        (0, &b"Hello from Wasm!\n"[..]),
        "{:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = node.exec_sync(&busy, &["/exit42.wasm"], 10).unwrap();
    assert_eq!(r.exit_code, 42);
    node.stop_container(&busy, 30).unwrap();
    let s = node.status(&busy);
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 128 + 15, "{s:?}");

    // A wasi:http component serves on the pod's address (8081: the
    // busybox httpd has 8080), reached by the pod's other containers and
    // by the node through the pod IP; a busy command component stops on
    // SIGTERM.
    let mut web = Node::container_config("web", WASM_LINUX, &["/c/http-hello.wasm"]);
    web.envs = vec![KeyValue {
        key: "WASMTIME_HTTP_PROXY_SOCKET_ADDR".into(),
        value: "0.0.0.0:8081".into(),
    }];
    let web = node.run_container(&pod, &cfg, &web);
    let want = "Hello from a wasi:http component! You asked for /cri\n";
    wait_for_ok(|| {
        got = node
            .exec_sync(&client, &["wget", "-qO-", "http://127.0.0.1:8081/cri"], 5)
            .map(|r| String::from_utf8_lossy(&r.stdout).into_owned())
            .unwrap_or_default();
        got == want
    });
    assert_eq!(got, want);
    let answer = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("http://{ip}:8081/cri")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout),
        want,
        "through the pod IP"
    );
    let busy = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("cbusy", WASM_LINUX, &["/c/busy.wasm"]),
    );
    for c in [&web, &busy] {
        node.stop_container(c, 30).unwrap();
        let s = node.status(c);
        assert_eq!(s.exit_code, 128 + 15, "{s:?}");
    }
    node.remove_pod_clean(&pod, &cfg);
}

fn wait_for_ok(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs a container to its exit: (exit code, its stdout lines joined).
fn run_to_exit(
    node: &Node,
    pod: &str,
    cfg: &PodSandboxConfig,
    c: &ContainerConfig,
) -> (i32, String) {
    let id = node.run_container(pod, cfg, c);
    let s = node.wait_exited(&id);
    let name = &c.metadata.as_ref().unwrap().name;
    let log = std::fs::read_to_string(Node::log_path(cfg, name)).unwrap_or_default();
    let out: String = log
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            (f.len() == 4 && f[1] == "stdout").then(|| format!("{}\n", f[3]))
        })
        .collect();
    (s.exit_code, out)
}

fn sec(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The effective capability set of the container's process, from its status.
fn cap_eff(out: &str) -> u64 {
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {out:?}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn security_contexts_users_caps_readonly_paths_sysctls_and_seccomp() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("sec");
    cfg.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    let pod = node.run_pod(&cfg);
    let mut n = 0;
    let mut run = |f: &dyn Fn(&mut ContainerConfig), script: &str| {
        n += 1;
        let mut c = Node::container_config(&format!("c{n}"), BUSYBOX, &["sh", "-c", script]);
        f(&mut c);
        run_to_exit(&node, &pod, &cfg, &c)
    };
    // Users and groups.
    let (code, out) = run(
        &|c| {
            let s = sec(c);
            s.run_as_user = Some(Int64Value { value: 1234 });
            s.run_as_group = Some(Int64Value { value: 5678 });
            s.supplemental_groups = vec![4000];
        },
        "id -u; id -g; id -G",
    );
    assert_eq!((code, out.as_str()), (0, "1234\n5678\n5678 4000\n"));
    let (_, out) = run(&|c| sec(c).run_as_username = "nobody".into(), "id -u");
    assert_eq!(out, "65534\n");
    // Read-only rootfs, masked and read-only paths.
    let (code, _) = run(&|c| sec(c).readonly_rootfs = true, "touch /probe");
    assert_ne!(code, 0, "a read-only rootfs took a write");
    let (code, out) = run(
        &|c| {
            let s = sec(c);
            s.masked_paths = vec!["/etc/group".into()];
            s.readonly_paths = vec!["/tmp".into()];
        },
        "wc -c < /etc/group; touch /tmp/probe || echo refused",
    );
    assert_eq!((code, out.as_str()), (0, "0\nrefused\n"));
    // kubelet's default masked paths (it sends them; containerd adds none).
    let (_, out) = run(
        &|c| {
            sec(c).masked_paths = vec![
                "/proc/keys".into(),
                "/proc/timer_list".into(),
                "/sys/firmware".into(),
            ]
        },
        "wc -c < /proc/timer_list; wc -c < /proc/keys; ls /sys/firmware | wc -l",
    );
    assert_eq!(out, "0\n0\n0\n");
    // Capabilities: add, drop, drop all; no_new_privs.
    let (_, out) = run(
        &|c| {
            sec(c).capabilities = Some(Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            })
        },
        "cat /proc/self/status",
    );
    let eff = cap_eff(&out);
    assert_eq!(eff & 1, 0, "CAP_CHOWN was not dropped: {eff:x}");
    assert_ne!(eff & (1 << 12), 0, "CAP_NET_ADMIN was not added: {eff:x}");
    let (_, out) = run(
        &|c| {
            let s = sec(c);
            s.capabilities = Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            });
            s.no_new_privs = true;
        },
        "cat /proc/self/status",
    );
    assert_eq!(cap_eff(&out), 0);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // A host device under another name (CRI Devices).
    let (_, out) = run(
        &|c| {
            c.devices = vec![Device {
                container_path: "/dev/myzero".into(),
                host_path: "/dev/zero".into(),
                permissions: "rwm".into(),
            }]
        },
        "head -c 5 /dev/myzero | wc -c",
    );
    assert_eq!(out, "5\n");
    // A sysctl of the pod.
    let (_, out) = run(&|_| {}, "cat /proc/sys/kernel/shm_rmid_forced");
    assert_eq!(out, "1\n");
    // Seccomp: RuntimeDefault refuses the kernel keyring (EPERM); without
    // a filter the call reaches the kernel, which faults on its null
    // argument; a Localhost profile of our own refuses mkdir.
    let add_key = format!("/examples/syscall {}", libc::SYS_add_key);
    let profile = |t: security_profile::ProfileType, r: &str| SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.into(),
    };
    let (_, out) = run(
        &|c| sec(c).seccomp = Some(profile(security_profile::ProfileType::RuntimeDefault, "")),
        &add_key,
    );
    assert_eq!(out, "errno 1 (Operation not permitted)\n");
    let (_, out) = run(
        &|c| sec(c).seccomp = Some(profile(security_profile::ProfileType::Unconfined, "")),
        &add_key,
    );
    assert_eq!(out, "errno 14 (Bad address)\n");
    let local = node.dir.path().join("deny-mkdir.json");
    std::fs::write(
        &local,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let local = local.to_string_lossy().into_owned();
    let (_, out) = run(
        &|c| sec(c).seccomp = Some(profile(security_profile::ProfileType::Localhost, &local)),
        "mkdir /tmp/d || echo refused",
    );
    assert_eq!(out, "refused\n");
    // Wasm under RuntimeDefault.
    let mut w = Node::container_config("wasm", WASM_LINUX, &[]);
    sec(&mut w).seccomp = Some(profile(security_profile::ProfileType::RuntimeDefault, ""));
    let (code, out) = run_to_exit(&node, &pod, &cfg, &w);
    assert_eq!((code, out.as_str()), (0, "Hello from Wasm!\n"));
    node.remove_pod_clean(&pod, &cfg);
}

#[test]
fn privileged_pod_mounts_and_sees_devices() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("priv");
    pod_security(&mut cfg).privileged = true;
    let pod = node.run_pod(&cfg);
    let mut c = Node::container_config(
        "priv",
        BUSYBOX,
        &["sh", "-c", "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted; ls -l /dev/ptmx; cat /proc/self/status"],
    );
    sec(&mut c).privileged = true;
    let (code, out) = run_to_exit(&node, &pod, &cfg, &c);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("mounted\n"), "{out}");
    assert!(out.contains("/dev/ptmx -> pts/ptmx"), "{out}");
    // Every capability the host has (its bounding set).
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap();
    assert_eq!(
        cap_eff(&out),
        u64::from_str_radix(bnd.trim(), 16).unwrap(),
        "{out}"
    );
    node.remove_pod_clean(&pod, &cfg);
}

/// A v1 or v2 cgroup file of container `id` in pod config `cfg`.
fn cgroup_file(cfg: &PodSandboxConfig, id: &str, v1: (&str, &str), v2: &str) -> String {
    let path = format!("{}/{id}", cfg.linux.as_ref().unwrap().cgroup_parent);
    let rel = path.trim_start_matches('/');
    let v1p = std::path::Path::new("/sys/fs/cgroup")
        .join(v1.0)
        .join(rel)
        .join(v1.1);
    let v2p = std::path::Path::new("/sys/fs/cgroup").join(rel).join(v2);
    std::fs::read_to_string(&v1p)
        .or_else(|_| std::fs::read_to_string(&v2p))
        .unwrap_or_else(|e| panic!("{} / {}: {e}", v1p.display(), v2p.display()))
        .trim()
        .to_string()
}

#[test]
fn resources_update_stats_stop_grace_restart_and_oom() {
    let mut node = Node::start();
    let cfg = node.pod_config("res");
    let pod = node.run_pod(&cfg);
    let mut c = Node::container_config(
        "limited",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    c.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        ..Default::default()
    });
    let limited = node.run_container(&pod, &cfg, &c);
    let mem = || {
        cgroup_file(
            &cfg,
            &limited,
            ("memory", "memory.limit_in_bytes"),
            "memory.max",
        )
    };
    let quota = || cgroup_file(&cfg, &limited, ("cpu", "cpu.cfs_quota_us"), "cpu.max");
    assert_eq!(mem(), (64u64 << 20).to_string());
    assert!(quota().starts_with("50000"), "{}", quota());
    let mut rs = node.rs.clone();
    node.rt
        .block_on(
            rs.update_container_resources(UpdateContainerResourcesRequest {
                container_id: limited.clone(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 96 << 20,
                    cpu_period: 100_000,
                    cpu_quota: 20_000,
                    cpu_shares: 256,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {}", e.message()));
    assert_eq!(mem(), (96u64 << 20).to_string());
    assert!(quota().starts_with("20000"), "{}", quota());
    let status = node.status(&limited);
    let res = status
        .resources
        .and_then(|r| r.linux)
        .expect("status reports the resources");
    assert_eq!(res.memory_limit_in_bytes, 96 << 20);

    // Stats of the container and of the pod: CPU and memory.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stats = node
        .rt
        .block_on(rs.list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: limited.clone(),
                ..Default::default()
            }),
        }))
        .unwrap()
        .into_inner()
        .stats;
    let s = &stats[0];
    assert!(
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds)
            .unwrap()
            .value
            > 0,
        "{s:?}"
    );
    assert!(
        s.memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .unwrap()
            .value
            > 0,
        "{s:?}"
    );
    let pstats = node
        .rt
        .block_on(rs.list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        }))
        .unwrap_or_else(|e| panic!("ListPodSandboxStats: {}", e.message()))
        .into_inner()
        .stats;
    let linux = pstats[0].linux.as_ref().unwrap();
    assert!(
        linux
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds)
            .unwrap()
            .value
            > 0
    );
    assert!(
        linux
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .unwrap()
            .value
            > 0
    );

    // StopContainer: SIGTERM, which this one handles (exit 0) ...
    node.stop_container(&limited, 10).unwrap();
    assert_eq!(node.status(&limited).exit_code, 0);
    // ... and SIGKILL after the grace period for one that ignores it.
    let stubborn = Node::container_config(
        "stubborn",
        BUSYBOX,
        &["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
    );
    let stubborn = node.run_container(&pod, &cfg, &stubborn);
    node.stop_container(&stubborn, 1).unwrap();
    let s = node.status(&stubborn);
    assert_eq!(
        (s.exit_code, s.state),
        (137, ContainerState::ContainerExited as i32)
    );

    // kubelet's restart: the same name, the next attempt, the same sandbox.
    let mut again = Node::container_config("again", BUSYBOX, &["sh", "-c", "echo run"]);
    let first = node.run_container(&pod, &cfg, &again);
    node.wait_exited(&first);
    again.metadata.as_mut().unwrap().attempt = 1;
    again.log_path = "again-1.log".into();
    let second = node.run_container(&pod, &cfg, &again);
    let s = node.wait_exited(&second);
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    node.remove_container(&first).unwrap();

    // OOM: the kernel kills it at its limit, and the reason says so.
    let mut hog = Node::container_config("hog", BUSYBOX, &["/examples/memhog"]);
    hog.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let hog = node.run_container(&pod, &cfg, &hog);
    let s = node.wait_exited(&hog);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "OOMKilled"));
    let mut wasm_hog = Node::container_config("wasmhog", WASM_LINUX, &["/grow.wasm"]);
    wasm_hog.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    // The Wasm engine refuses growth past the cgroup's limit (no OOM kill).
    let (code, out) = run_to_exit(&node, &pod, &cfg, &wasm_hog);
    let pages: u64 = out
        .strip_prefix("memory.grow refused at ")
        .and_then(|r| r.strip_suffix(" pages\n"))
        .unwrap_or_else(|| panic!("{code}: {out:?}"))
        .parse()
        .unwrap();
    assert!(code == 0 && pages * 65536 <= 32 << 20, "{code}: {out}");
    // The same for a component.
    wasm_hog.metadata.as_mut().unwrap().name = "comphog".into();
    wasm_hog.log_path = "comphog.log".into();
    wasm_hog.command = vec!["/c/grow.wasm".into()];
    let (code, out) = run_to_exit(&node, &pod, &cfg, &wasm_hog);
    assert!(
        code == 0 && out.starts_with("memory.grow refused at "),
        "{code}: {out}"
    );
    node.remove_pod_clean(&pod, &cfg);
}

/// A host directory that is a shared mount of its own (as kubelet's pod
/// volume dirs are), unmounted on drop with whatever was mounted below.
struct SharedDir(std::path::PathBuf);

impl SharedDir {
    fn new(path: std::path::PathBuf) -> SharedDir {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(&path).unwrap();
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            &path,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        SharedDir(path)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let root = self.0.to_string_lossy().into_owned();
        let mut m = mounts_under(&root);
        m.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in m {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn host_path_mounts_with_each_propagation_mode() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("prop");
    pod_security(&mut cfg).privileged = true;
    let pod = node.run_pod(&cfg);
    let host = SharedDir::new(node.dir.path().join("hostpath"));
    std::fs::write(host.0.join("file"), "from the host\n").unwrap();
    let mut ids = Vec::new();
    for (name, mode) in [
        ("private", MountPropagation::PropagationPrivate),
        ("slave", MountPropagation::PropagationHostToContainer),
        ("shared", MountPropagation::PropagationBidirectional),
    ] {
        let mut c = Node::container_config(name, BUSYBOX, &["sleep", "3600"]);
        c.mounts = vec![Mount {
            container_path: "/hp".into(),
            host_path: host.0.to_string_lossy().into_owned(),
            propagation: mode as i32,
            ..Default::default()
        }];
        sec(&mut c).privileged = true;
        ids.push((name, node.run_container(&pod, &cfg, &c)));
    }
    for (_, id) in &ids {
        assert_eq!(node.sh(id, "cat /hp/file"), "from the host\n");
    }
    // A mount made on the host after the containers started.
    let late = host.0.join("late");
    std::fs::create_dir_all(&late).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &late,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(late.join("seen"), "yes\n").unwrap();
    let probe = "cat /hp/late/seen 2>/dev/null || echo no";
    assert_eq!(
        node.sh(ids[0].1.as_str(), probe),
        "no\n",
        "private saw a host mount"
    );
    assert_eq!(
        node.sh(ids[1].1.as_str(), probe),
        "yes\n",
        "rslave missed a host mount"
    );
    assert_eq!(
        node.sh(ids[2].1.as_str(), probe),
        "yes\n",
        "rshared missed a host mount"
    );
    // A mount made in the bidirectional container reaches the host.
    node.sh(
        &ids[2].1,
        "mkdir -p /hp/inner && mount -t tmpfs none /hp/inner && echo x > /hp/inner/from-ctr",
    );
    assert_eq!(
        std::fs::read_to_string(host.0.join("inner/from-ctr")).unwrap(),
        "x\n"
    );
    assert_eq!(
        node.sh(
            ids[0].1.as_str(),
            "cat /hp/inner/from-ctr 2>/dev/null || echo no"
        ),
        "no\n"
    );
    // Unmounted here before the pod goes (the container's side goes with it).
    let _ = nix::mount::umount2(&host.0.join("inner"), nix::mount::MntFlags::MNT_DETACH);
    node.remove_pod_clean(&pod, &cfg);
    drop(host);
}

#[test]
fn host_namespaces_pid_ipc_and_network() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("hostns");
    {
        let o = pod_namespaces(&mut cfg);
        o.pid = NamespaceMode::Node as i32;
        o.ipc = NamespaceMode::Node as i32;
        o.network = NamespaceMode::Node as i32;
    }
    let pod = node.run_pod(&cfg);
    let c = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("c", BUSYBOX, &["sleep", "3600"]),
    );
    let pid = container_pid(&node, &c);
    for ns in ["pid", "ipc", "net"] {
        assert_eq!(ns_of(pid, ns), ns_of(std::process::id() as i32, ns), "{ns}");
    }
    // The host's processes are seen, this test among them.
    let me = std::process::id();
    assert_eq!(
        node.sh(&c, &format!("test -d /proc/{me} && echo seen")),
        "seen\n"
    );
    // Exec in a hostPID container, and kill-all on stop, still find its processes.
    let r = node
        .exec_sync(
            &c,
            &["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
            10,
        )
        .unwrap();
    let bg: i32 = String::from_utf8_lossy(&r.stdout).trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{bg}")).exists());
    node.stop_container(&c, 2).unwrap();
    wait_for("the exec's child to be killed", 10, || {
        std::fs::read_to_string(format!("/proc/{bg}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    node.remove_pod_clean(&pod, &cfg);
}

#[test]
fn bad_input_is_a_clear_error_and_harms_no_other_container() {
    let mut node = Node::start();
    let cfg = node.pod_config("bad");
    let pod = node.run_pod(&cfg);
    let keeper = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("keeper", BUSYBOX, &["sleep", "3600"]),
    );
    let profile = |r: &str| SecurityProfile {
        profile_type: security_profile::ProfileType::Localhost as i32,
        localhost_ref: r.into(),
    };
    let bogus = node.dir.path().join("bogus.json");
    std::fs::write(&bogus, r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).unwrap();
    let bogus = bogus.to_string_lossy().into_owned();
    type Edit<'a> = Box<dyn Fn(&mut ContainerConfig) + 'a>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "missing image",
            Box::new(|c| c.image.as_mut().unwrap().image = "docker.io/library/amphi-nope:1".into()),
            "amphi-nope",
        ),
        (
            "missing seccomp profile",
            Box::new(|c| sec(c).seccomp = Some(profile("/nonexistent/profile.json"))),
            "/nonexistent/profile.json",
        ),
        (
            "seccomp profile with an unknown action",
            Box::new(|c| sec(c).seccomp = Some(profile(&bogus))),
            "SCMP_ACT_BOGUS",
        ),
        (
            "unknown user",
            Box::new(|c| sec(c).run_as_username = "nosuchuser".into()),
            // containerd's own words: it looks the user up itself.
            "no users found",
        ),
        (
            "missing entrypoint",
            Box::new(|c| c.command = vec!["/no/such/program".into()]),
            "/no/such/program",
        ),
    ];
    for (i, (what, edit, names)) in cases.iter().enumerate() {
        let mut c = Node::container_config(&format!("bad{i}"), BUSYBOX, &["true"]);
        edit(&mut c);
        let err = match node.create(&pod, &cfg, &c) {
            Err(e) => e,
            Ok(id) => node.start_container(&id).expect_err(what),
        };
        assert!(err.message().contains(names), "{what}: {}", err.message());
        // The pod's running container is unharmed.
        assert_eq!(node.sh(&keeper, "echo alive"), "alive\n", "after {what}");
    }
    // A container in a sandbox that is gone.
    let cfg2 = node.pod_config("gone");
    let gone = node.run_pod(&cfg2);
    node.stop_pod(&gone).unwrap();
    node.remove_pod(&gone).unwrap();
    let err = node
        .create(
            &gone,
            &cfg2,
            &Node::container_config("late", BUSYBOX, &["true"]),
        )
        .unwrap_err();
    assert!(
        err.message().contains(&gone[..12]) || err.message().contains("not found"),
        "{}",
        err.message()
    );
    cri_support::remove_cgroup(&cfg2.linux.as_ref().unwrap().cgroup_parent);
    assert_eq!(
        node.status(&keeper).state,
        ContainerState::ContainerRunning as i32
    );
    node.remove_pod_clean(&pod, &cfg);
}

#[test]
fn streaming_exec_with_and_without_tty_attach_and_log_reopen() {
    let mut node = Node::start();
    let cfg = node.pod_config("stream");
    let pod = node.run_pod(&cfg);
    let sleeper = node.run_container(
        &pod,
        &cfg,
        &Node::container_config("sleeper", BUSYBOX, &["sleep", "3600"]),
    );
    // exec -it: a terminal of the size the client sets, its exit code.
    let mut s = Stream::connect(&node.exec_url(&sleeper, &["sh"], true, true));
    s.resize(100, 30);
    s.stdin(b"tty; stty size; echo $((6*7)); exit 3\n");
    assert_eq!(s.exit_code(), Some(3), "status {:?}", s.status);
    let out = String::from_utf8_lossy(&s.stdout).replace('\r', "");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("30 100\n"), "{out:?}");
    assert!(out.contains("42\n"), "{out:?}");
    // exec without a terminal: stdout and stderr apart, stdin a pipe.
    let mut s = Stream::connect(&node.exec_url(
        &sleeper,
        &["sh", "-c", "read l; echo out $l; echo err >&2"],
        false,
        true,
    ));
    s.stdin(b"piped\n");
    assert_eq!(s.exit_code(), Some(0), "status {:?}", s.status);
    assert_eq!(
        (&s.stdout[..], &s.stderr[..]),
        (&b"out piped\n"[..], &b"err\n"[..])
    );

    // attach to a container's terminal, native and Wasm.
    let mut c = Node::container_config("shell", BUSYBOX, &["sh"]);
    c.tty = true;
    c.stdin = true;
    let shell = node.run_container(&pod, &cfg, &c);
    let mut s = Stream::connect(&node.attach_url(&shell, true));
    s.stdin(b"echo attached-$((40+2))\n");
    assert!(s.read_until(|s| String::from_utf8_lossy(&s.stdout).contains("attached-42")));
    s.stdin(b"exit 5\n");
    let st = node.wait_exited(&shell);
    assert_eq!(st.exit_code, 5);
    let mut w = Node::container_config("wasmecho", WASM_LINUX, &["/echo.wasm"]);
    w.stdin = true;
    w.stdin_once = true;
    let wasm = node.run_container(&pod, &cfg, &w);
    let mut s = Stream::connect(&node.attach_url(&wasm, false));
    s.stdin(b"through wasm\n");
    assert!(
        s.read_until(|s| s.stdout.ends_with(b"through wasm\n")),
        "{:?}",
        s.stdout
    );
    drop(s);
    let st = node.wait_exited(&wasm);
    assert_eq!(st.exit_code, 0);

    // ReopenContainerLog: after the log is moved away (log rotation), new
    // lines go to a new file at the log path.
    let talker = Node::container_config(
        "talker",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.05; done",
        ],
    );
    let talker = node.run_container(&pod, &cfg, &talker);
    let log = Node::log_path(&cfg, "talker");
    wait_for("the first log lines", 10, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("line1"))
    });
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    let mut rs = node.rs.clone();
    node.rt
        .block_on(rs.reopen_container_log(ReopenContainerLogRequest {
            container_id: talker.clone(),
        }))
        .unwrap_or_else(|e| panic!("ReopenContainerLog: {}", e.message()));
    wait_for("lines in the reopened log", 10, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" stdout F line"))
    });
    node.stop_container(&talker, 2).unwrap();
    node.remove_pod_clean(&pod, &cfg);
}

/// The handler's unknown option was noted, not fatal (containerd copies
/// the shim's log FIFO to its own log as it comes).
fn noted_unknown_option(node: &Node) {
    let log = node.dir.path().join("containerd.log");
    wait_for(
        "a note of the unknown option in containerd's log",
        10,
        || {
            std::fs::read_to_string(&log).is_ok_and(|l| {
                l.lines()
                    .any(|l| l.contains("NotAmphis") && l.contains("mean nothing to amphi"))
            })
        },
    );
}

#[test]
fn systemd_cgroup_driver_makes_scope_units_in_the_pod_slice() {
    let mut node = Node::start();
    let mut cfg = node.pod_config("sd");
    // kubelet's systemd driver names the pod's slice; containerd then
    // writes cgroupsPath as `slice:cri-containerd:<id>`.
    let uid = cfg.metadata.as_ref().unwrap().uid.replace('-', "_");
    let top = format!(
        "amphicri{}",
        node.cgroup_root.trim_start_matches("/amphi-cri-")
    );
    let slice = format!("{top}-pod{uid}.slice");
    cfg.linux.as_mut().unwrap().cgroup_parent = slice.clone();
    if !amphi_testkit::systemd_runs() {
        // No systemd to make the units: one clear line, nothing made.
        let err = node.run_pod_with(&cfg, "amphi-systemd").unwrap_err();
        assert!(
            err.message().contains("systemd is not reachable"),
            "{}",
            err.message()
        );
        assert!(cgroup_dirs(&format!("/{top}.slice")).is_empty());
        noted_unknown_option(&node);
        return;
    }
    // The handler whose options say SystemdCgroup = true (ConfigBody).
    let pod = node
        .run_pod_with(&cfg, "amphi-systemd")
        .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()));
    let mut c = Node::container_config("app", BUSYBOX, &["sleep", "3600"]);
    c.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 48 << 20,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        ..Default::default()
    });
    let id = node.run_container(&pod, &cfg, &c);
    let unit = format!("cri-containerd-{id}.scope");
    // A transient scope of systemd's, delegated, in the pod's slice, with
    // the limits as unit properties and in the cgroup's files.
    assert_eq!(amphi_testkit::unit_property(&unit, "ActiveState"), "active");
    assert_eq!(amphi_testkit::unit_property(&unit, "Slice"), slice);
    assert_eq!(amphi_testkit::unit_property(&unit, "Delegate"), "yes");
    assert_eq!(
        amphi_testkit::unit_property(&unit, "MemoryMax"),
        (48u64 << 20).to_string()
    );
    let scope = format!("/{top}.slice/{slice}/{unit}");
    assert_eq!(amphi_testkit::unit_property(&unit, "ControlGroup"), scope);
    let dir = std::path::Path::new("/sys/fs/cgroup").join(scope.trim_start_matches('/'));
    assert_eq!(
        read(&dir.join("memory.max")).trim(),
        (48u64 << 20).to_string()
    );
    assert_eq!(read(&dir.join("cpu.max")).trim(), "50000 100000");
    let procs = read(&dir.join("cgroup.procs"));
    assert!(procs.contains(&container_pid(&node, &id).to_string()));
    // The pod's own (pause) container has its scope there too.
    // The pod's slice is a unit of systemd's too.
    assert_eq!(
        amphi_testkit::unit_property(&slice, "ActiveState"),
        "active"
    );
    let pause_unit = format!("cri-containerd-{pod}.scope");
    assert_eq!(
        amphi_testkit::unit_property(&pause_unit, "ActiveState"),
        "active"
    );
    node.stop_pod(&pod).unwrap();
    node.remove_pod(&pod).unwrap();
    // Deleted with their containers: no scope unit, no cgroup.
    wait_for("the scopes to be gone", 20, || {
        amphi_testkit::unit_property(&unit, "LoadState") == "not-found"
            && amphi_testkit::unit_property(&pause_unit, "LoadState") == "not-found"
            && !dir.exists()
    });
    // The slices were kubelet's to make (systemd made them on demand).
    let _ = std::process::Command::new("systemctl")
        .args(["stop", &format!("{top}.slice")])
        .status();
    wait_for("the pod slice to be gone", 20, || {
        cgroup_dirs(&format!("/{top}.slice")).is_empty()
    });
    noted_unknown_option(&node);
    // With SystemdCgroup, a cgroupfs parent is a clear error.
    let plain = node.pod_config("sdplain");
    let err = node.run_pod_with(&plain, "amphi-systemd").unwrap_err();
    assert!(err.message().contains("SystemdCgroup"), "{}", err.message());
    remove_cgroup(&plain.linux.as_ref().unwrap().cgroup_parent);
}
