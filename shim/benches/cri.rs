//! Pods through containerd's CRI plugin, side by side in one run on one
//! private containerd with the `runc` (io.containerd.runc.v2) and `amphi`
//! handlers, as kubelet drives them:
//!
//! - pod start: RunPodSandbox + CreateContainer + StartContainer of one
//!   container, until ContainerStatus says running;
//! - pod lifecycle: the same with a container that exits at once, until
//!   it has exited and the pod is stopped and removed;
//! - 100 pods through that lifecycle, 10 at a time (pods/s).
//!
//! Native app containers under both handlers; Wasm ones (the hello
//! module) under amphi. Cases are interleaved, each round starting at
//! another one. `cargo bench -p containerd-shim-amphi --bench cri` (root,
//! after `scripts/install-deps`); `AMPHI_BENCH_RUNS=N` sets the rounds (20).

#[path = "../../e2e/cri_support.rs"]
mod cri_support;
#[path = "../../e2e/support.rs"]
mod support;

use std::time::Instant;

use cri_support::*;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    handler: &'static str,
    image: &'static str,
    /// The long-running command (pod start) and the one that exits (lifecycle).
    run: &'static [&'static str],
    exit: &'static [&'static str],
}

const CASES: [Case; 3] = [
    Case {
        name: "runc   native",
        handler: "runc",
        image: BUSYBOX,
        run: &["sleep", "3600"],
        exit: &["true"],
    },
    Case {
        name: "amphi  native",
        handler: "amphi",
        image: BUSYBOX,
        run: &["sleep", "3600"],
        exit: &["true"],
    },
    Case {
        name: "amphi  wasm  ",
        handler: "amphi",
        image: WASM_LINUX,
        run: &["/busy.wasm"],
        exit: &["/hello.wasm"],
    },
];

/// One pod as kubelet makes it: config, sandbox, one container; with
/// `wait_exit`, until the container has exited and the pod is removed.
async fn pod(
    rs: &mut RuntimeServiceClient<Channel>,
    cfg: PodSandboxConfig,
    case: Case,
    full: bool,
) -> String {
    let pod = rs
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: case.handler.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let cmd = if full { case.exit } else { case.run };
    let c = Node::container_config("app", case.image, cmd);
    let id = rs
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(cfg),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rs.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let want = if full {
        ContainerState::ContainerExited
    } else {
        ContainerState::ContainerRunning
    };
    loop {
        let st = rs
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if st.state == want as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    if full {
        remove(rs, &pod).await;
    }
    pod
}

async fn remove(rs: &mut RuntimeServiceClient<Channel>, pod: &str) {
    rs.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap();
    rs.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let Some(runs) = support::bench_runs(20) else {
        return;
    };
    let node = Node::start();
    let mut rs = node.rs.clone();
    // Warm every path once (the Wasm module's compile among them).
    for case in CASES {
        node.rt
            .block_on(pod(&mut rs, node.pod_config("warm"), case, true));
    }
    let mut start = vec![Vec::new(); CASES.len()];
    let mut life = vec![Vec::new(); CASES.len()];
    for round in 0..runs {
        for k in 0..CASES.len() {
            let i = (round + k) % CASES.len();
            let case = CASES[i];
            let t = Instant::now();
            let p = node
                .rt
                .block_on(pod(&mut rs, node.pod_config("start"), case, false));
            start[i].push(t.elapsed().as_secs_f64() * 1e3);
            node.rt.block_on(remove(&mut rs, &p));
            let t = Instant::now();
            node.rt
                .block_on(pod(&mut rs, node.pod_config("life"), case, true));
            life[i].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!("{runs} rounds, medians (ms):");
    let base_start = median(&mut start[0]);
    let base_life = median(&mut life[0]);
    for (i, case) in CASES.iter().enumerate() {
        let s = median(&mut start[i]);
        let l = median(&mut life[i]);
        println!(
            "  {}  pod start {s:7.1} ({:.2} of runc)   pod lifecycle {l:7.1} ({:.2} of runc)",
            case.name,
            s / base_start,
            l / base_life
        );
    }
    // Throughput: 100 pods, 10 workers with a connection each.
    let rounds = 3;
    let mut rates = vec![Vec::new(); CASES.len()];
    for round in 0..rounds {
        for k in 0..CASES.len() {
            let i = (round + k) % CASES.len();
            let case = CASES[i];
            let cfgs: Vec<Vec<PodSandboxConfig>> = (0..10)
                .map(|_| (0..10).map(|_| node.pod_config("many")).collect())
                .collect();
            let t = Instant::now();
            node.rt.block_on(async {
                let mut tasks = Vec::new();
                for batch in cfgs {
                    let mut rs = node.rs.clone();
                    tasks.push(tokio::spawn(async move {
                        for cfg in batch {
                            pod(&mut rs, cfg, case, true).await;
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
            rates[i].push(100.0 / t.elapsed().as_secs_f64());
        }
    }
    println!("100 pods, 10 at a time, median of {rounds} (pods/s):");
    let base = median(&mut rates[0]);
    for (i, case) in CASES.iter().enumerate() {
        let r = median(&mut rates[i]);
        println!("  {}  {r:6.1}  ({:.2}x runc)", case.name, r / base);
    }
    remove_cgroup(&node.cgroup_root);
}
