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
