//! amphi under Kubernetes' container runtime interface: each test starts a
//! private containerd with its CRI plugin (`cri_support.rs`) and acts as
//! kubelet does, through the CRI v1 gRPC API, with `amphi` as the pods'
//! runtime handler: native and Wasm app containers beside the native pause
//! container.

#[path = "support.rs"]
mod support;
#[path = "cri_support.rs"]
mod cri_support;

use cri_support::*;
use k8s_cri::v1::*;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn pod_lifecycle_native_and_wasm_exit_codes_reasons_and_logs() {
    let mut node = Node::start();
    let cfg = node.pod_config("life");
    let pod = node.run_pod(&cfg);
    let st = node.pod_status(&pod).status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);

    let mut c = Node::container_config("out", BUSYBOX, &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
    c.log_path = "out.log".into();
    let out = node.run_container(&pod, &cfg, &c);
    let s = node.wait_exited(&out);
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let log = read(&Node::log_path(&cfg, "out"));
    // CRI log format: <RFC 3339 time> <stream> <F|P> <text>
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    assert!(lines.iter().any(|f| f[1] == "stdout" && f[2] == "F" && f[3] == "to-stdout"), "{log}");
    assert!(lines.iter().any(|f| f[1] == "stderr" && f[2] == "F" && f[3] == "to-stderr"), "{log}");

    let ok = node.run_container(&pod, &cfg, &Node::container_config("ok", BUSYBOX, &["true"]));
    let s = node.wait_exited(&ok);
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));

    for image in [WASM_LINUX, WASM] {
        let name = format!("wasm{}", if image == WASM { "p1" } else { "linux" });
        let mut w = Node::container_config(&name, image, &[]);
        w.log_path = format!("{name}.log");
        let id = node.run_container(&pod, &cfg, &w);
        let s = node.wait_exited(&id);
        assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{image}");
        let log = read(&Node::log_path(&cfg, &name));
        assert!(log.contains(" stdout F Hello from Wasm!"), "{image}: {log}");
    }
    let w = Node::container_config("wasm42", WASM_LINUX, &["/exit42.wasm"]);
    let id = node.run_container(&pod, &cfg, &w);
    let s = node.wait_exited(&id);
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"));
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
    let opts = cfg.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    opts.namespace_options.as_mut().unwrap().pid = NamespaceMode::Pod as i32;
    let pod = node.run_pod(&cfg);
    let ip = node.pod_status(&pod).status.unwrap().network.unwrap().ip;
    assert!(ip.starts_with("10.213."), "pod ip {ip}");

    let server = Node::container_config(
        "server",
        BUSYBOX,
        &["sh", "-c", "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www"],
    );
    let server = node.run_container(&pod, &cfg, &server);
    let client = node.run_container(&pod, &cfg, &Node::container_config("client", BUSYBOX, &["sleep", "3600"]));
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
    assert!(node.sh(&client, "ip -4 addr show eth0").contains(&format!("inet {ip}/")));
    assert_eq!(node.sh(&client, "hostname"), "netpod\n");
    // A shared pid namespace: the pause container is pid 1, the server's
    // httpd is seen from the client.
    assert_eq!(node.sh(&client, "cat /proc/1/cmdline"), "/pause\0");
    assert!(node.sh(&client, "ps -o args").contains("httpd -f -p 8080"));
    assert!(node.sh(&server, "ps -o args").contains("sleep 3600"));

    // ExecSync: stdout, stderr and exit code apart; a timeout is honoured.
    let r = node.exec_sync(&client, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10).unwrap();
    assert_eq!((r.exit_code, &r.stdout[..], &r.stderr[..]), (7, &b"out\n"[..], &b"err\n"[..]));
    let e = node.exec_sync(&client, &["sleep", "30"], 1).unwrap_err();
    assert!(e.message().contains("timeout"), "{}", e.message());

    // A Wasm container of the pod is in the pod's network namespace, and
    // SIGTERM (StopContainer) ends its busy loop.
    let busy = node.run_container(&pod, &cfg, &Node::container_config("busy", WASM_LINUX, &["/busy.wasm"]));
    let pause = node.pod_info(&pod)["pid"].as_i64().unwrap() as i32;
    let busy_pid = container_pid(&node, &busy);
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_eq!(ns_of(busy_pid, ns), ns_of(pause, ns), "{ns} namespace of the Wasm container");
    }
    node.stop_container(&busy, 30).unwrap();
    let s = node.status(&busy);
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 128 + 15, "{s:?}");
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
