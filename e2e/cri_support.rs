//! A private Kubernetes node's container side, for the CRI suite: a
//! containerd with its CRI plugin (own socket, root, state, pod log dir,
//! CNI config and bridge), the `amphi` handler (and `runc`), the images a
//! pod needs imported into `k8s.io`, and a CRI v1 client (`k8s-cri` over
//! tonic on the Unix socket) as kubelet has. Everything is torn down on
//! drop, also when a test fails.

#![allow(dead_code)] // shared by the CRI tests and the CRI benchmark

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use amphi_examples::Kind;
use amphi_images::layer::LayerBuilder;
use amphi_testkit::unique_id;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

pub const PAUSE: &str = "docker.io/library/amphi-pause:3.9";
pub const BUSYBOX: &str = "docker.io/library/amphi-busybox:latest";
/// The examples' Wasm modules as the Wasm ecosystem ships them: platform
/// `wasip1/wasm`, the module as Entrypoint.
pub const WASM: &str = "docker.io/library/amphi-wasm:latest";
/// The same modules in an image of the node's platform (how crun's and
/// WasmEdge's Kubernetes images ship: `linux/amd64`, detected by the
/// module's magic).
pub const WASM_LINUX: &str = "docker.io/library/amphi-wasm-linux:latest";

/// The bridge subnets the suite uses: 10.213.N.0/24, N a slot held by one
/// node at a time (a lock file), so parallel tests never share a bridge.
const SUBNET_PREFIX: &str = "10.213";
const SLOT_DIR: &str = "/run/amphi-e2e-cni-slots";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it holds; panics naming `what` after ~`secs` s.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    for _ in 0..secs * 50 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// One node: containerd + CRI, clients, and what the tests made on it.
pub struct Node {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub rt: tokio::runtime::Runtime,
    pub rs: RuntimeServiceClient<Channel>,
    pub is: ImageServiceClient<Channel>,
    slot: u32,
    /// The cgroupfs parent of every pod of this node (`/amphi-cri-N`).
    pub cgroup_root: String,
    pods: Vec<String>,
}

impl Node {
    /// Starts a node whose default handler is `amphi`.
    pub fn start() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("amphi-cri-")
            .tempdir()
            .unwrap();
        let slot = take_slot(dir.path());
        let p = dir.path().to_path_buf();
        std::fs::create_dir_all(p.join("cni")).unwrap();
        std::fs::create_dir_all(p.join("pods")).unwrap();
        std::fs::write(p.join("cni/10-amphi.conflist"), cni_config(slot, &p)).unwrap();
        std::fs::write(p.join("config.toml"), containerd_config(&p)).unwrap();
        // The `amphi-systemd` handler's options (ConfigPath: containerd
        // 1.6 knows no ConfigBody), with a key amphi does not know.
        std::fs::write(
            p.join("amphi-systemd.toml"),
            "SystemdCgroup = true\nNotAmphis = 1\n",
        )
        .unwrap();
        let child = super::support::spawn_containerd(&p);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A lazy channel (it dials, and redials, at each call): the node
        // exists, and is cleaned up on drop, before anything can fail.
        let channel = {
            let _enter = rt.enter();
            connect(&p.join("c.sock"))
        };
        let mut node = Node {
            rs: RuntimeServiceClient::new(channel.clone()),
            is: ImageServiceClient::new(channel),
            rt,
            dir,
            child: Some(child),
            slot,
            cgroup_root: format!("/amphi-cri-{slot}"),
            pods: Vec::new(),
        };
        wait_for("the CRI plugin to answer", 30, || {
            let rs = node.rs.clone();
            node.rt
                .block_on(async move { rs.clone().version(VersionRequest::default()).await })
                .is_ok()
        });
        node.import_images();
        node
    }

    fn import_images(&mut self) {
        let p = self.dir.path();
        let pause = p.join("pause.tar");
        let mut layer = LayerBuilder::new();
        layer.file("pause", 0o755, native("pause")).unwrap();
        amphi_examples::write_archive(
            &pause,
            &[layer.build().unwrap()],
            serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Entrypoint": ["/pause"]},
            }),
            PAUSE,
        )
        .unwrap();
        let busybox = p.join("busybox.tar");
        write_busybox(&busybox);
        let wasm = p.join("wasm.tar");
        amphi_examples::write_image(&wasm, Kind::Wasm, WASM).unwrap();
        let wasm_linux = p.join("wasm-linux.tar");
        write_wasm_linux(&wasm_linux);
        for (tar, extra) in [
            (&pause, None),
            (&busybox, None),
            (&wasm, Some("--all-platforms")),
            (&wasm_linux, None),
        ] {
            let mut cmd = self.ctr(&["-n", "k8s.io", "images", "import"]);
            cmd.args(extra).arg(tar);
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "import: {}", text(&out.stderr));
        }
        // The CRI plugin learns of imports through events: wait until it
        // resolves them (or a run would try to pull).
        for image in [PAUSE, BUSYBOX, WASM_LINUX] {
            wait_for(&format!("CRI to see {image}"), 20, || {
                self.image_status(image).is_some()
            });
        }
    }

    /// `ctr --address <ours>` with `args`.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn image_status(&self, image: &str) -> Option<Image> {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let mut is = self.is.clone();
        self.rt
            .block_on(is.image_status(req))
            .ok()?
            .into_inner()
            .image
    }

    /// A pod config: its own uid, log dir and cgroup (cgroupfs form under
    /// this node's root); host network unless the test says otherwise
    /// (see [`Node::pod_network`]).
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = unique_id("uid");
        let log_dir = self.dir.path().join("pods").join(&uid);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "amphi-e2e".into(),
                attempt: 0,
            }),
            // kubelet names no hostname for a host-network pod (a runtime
            // cannot set one without a UTS namespace of its own).
            hostname: String::new(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{uid}", self.cgroup_root),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Puts a pod config on the pod network (CNI), with a hostname.
    pub fn pod_network(cfg: &mut PodSandboxConfig, hostname: &str) {
        cfg.hostname = hostname.into();
        pod_namespaces(cfg).network = NamespaceMode::Pod as i32;
    }

    /// RunPodSandbox with the `amphi` handler (or `handler`).
    pub fn run_pod_with(
        &mut self,
        cfg: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let req = RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: handler.into(),
        };
        let mut rs = self.rs.clone();
        let id = self
            .rt
            .block_on(rs.run_pod_sandbox(req))?
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        Ok(id)
    }

    pub fn run_pod(&mut self, cfg: &PodSandboxConfig) -> String {
        self.run_pod_with(cfg, "amphi")
            .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()))
    }

    pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    pub fn create(
        &self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: &ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(cfg.clone()),
            sandbox_config: Some(pod_cfg.clone()),
        };
        let mut rs = self.rs.clone();
        Ok(self
            .rt
            .block_on(rs.create_container(req))?
            .into_inner()
            .container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        let mut rs = self.rs.clone();
        self.rt.block_on(rs.start_container(StartContainerRequest {
            container_id: id.into(),
        }))?;
        Ok(())
    }

    /// Create + Start that must succeed; the container id.
    pub fn run_container(
        &self,
        pod: &str,
        pod_cfg: &PodSandboxConfig,
        cfg: &ContainerConfig,
    ) -> String {
        let name = cfg
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = self
            .create(pod, pod_cfg, cfg)
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {}", e.message()));
        self.start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name}: {}", e.message()));
        id
    }

    pub fn status(&self, id: &str) -> ContainerStatus {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {}", e.message()))
            .into_inner()
            .status
            .unwrap()
    }

    /// Waits until the container has exited; its status.
    pub fn wait_exited(&self, id: &str) -> ContainerStatus {
        let mut last = None;
        wait_for(&format!("container {id} to exit"), 30, || {
            let s = self.status(id);
            let done = s.state == ContainerState::ContainerExited as i32;
            last = Some(s);
            done
        });
        last.unwrap()
    }

    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse, tonic::Status> {
        let mut rs = self.rs.clone();
        Ok(self
            .rt
            .block_on(rs.exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            }))?
            .into_inner())
    }

    /// ExecSync that must succeed with exit 0: its stdout.
    pub fn sh(&self, id: &str, script: &str) -> String {
        let r = self
            .exec_sync(id, &["sh", "-c", script], 20)
            .unwrap_or_else(|e| panic!("ExecSync {script:?}: {}", e.message()));
        assert_eq!(
            r.exit_code,
            0,
            "{script:?}: stdout {:?} stderr {:?}",
            text(&r.stdout),
            text(&r.stderr)
        );
        text(&r.stdout)
    }

    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        let mut rs = self.rs.clone();
        self.rt.block_on(rs.stop_container(StopContainerRequest {
            container_id: id.into(),
            timeout,
        }))?;
        Ok(())
    }

    pub fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.remove_container(RemoveContainerRequest {
                container_id: id.into(),
            }))?;
        Ok(())
    }

    pub fn pod_status(&self, pod: &str) -> PodSandboxStatusResponse {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: true,
            }))
            .unwrap_or_else(|e| panic!("PodSandboxStatus {pod}: {}", e.message()))
            .into_inner()
    }

    /// What containerd's verbose PodSandboxStatus says of the sandbox
    /// (`info`: its pid, runtime spec, netns path).
    pub fn pod_info(&self, pod: &str) -> serde_json::Value {
        let resp = self.pod_status(pod);
        serde_json::from_str(resp.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap()
    }

    pub fn stop_pod(&self, pod: &str) -> Result<(), tonic::Status> {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }))?;
        Ok(())
    }

    pub fn remove_pod(&mut self, pod: &str) -> Result<(), tonic::Status> {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }))?;
        self.pods.retain(|p| p != pod);
        Ok(())
    }

    /// Stops and removes `pod`, then asserts nothing of it is left: no
    /// mount, cgroup, process, shim, netns or shim socket.
    pub fn remove_pod_clean(&mut self, pod: &str, cfg: &PodSandboxConfig) {
        let info = self.pod_info(pod);
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .map(PathBuf::from);
        self.stop_pod(pod)
            .unwrap_or_else(|e| panic!("StopPodSandbox: {}", e.message()));
        self.remove_pod(pod)
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {}", e.message()));
        let root = self.dir.path().to_string_lossy().into_owned();
        wait_for("the pod's mounts to go", 10, || {
            !mounts_under(&root).iter().any(|m| m.contains(pod))
        });
        let parent = &cfg.linux.as_ref().unwrap().cgroup_parent;
        wait_for("the pod's cgroups to be empty", 10, || {
            cgroup_children(parent).is_empty()
        });
        wait_for("the pod's shim to exit", 10, || {
            !shim_pids(self.dir.path())
                .iter()
                .any(|(_, c)| c.contains(pod))
        });
        if let Some(ns) = netns {
            assert!(!ns.exists(), "the pod's netns {} is left", ns.display());
        }
        remove_cgroup(parent);
    }

    pub fn log_path(cfg: &PodSandboxConfig, name: &str) -> PathBuf {
        Path::new(&cfg.log_directory).join(format!("{name}.log"))
    }

    fn clear(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            let _ = self.stop_pod(&pod);
            let _ = self.remove_pod(&pod);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.clear();
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        kill_shims(self.dir.path());
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut mounts = mounts_under(&root);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in &mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        kill_and_remove_cgroup(&self.cgroup_root);
        let _ = Command::new("ip")
            .args(["link", "del", &bridge(self.slot)])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(Path::new(SLOT_DIR).join(self.slot.to_string()));
        if !mounts.is_empty() && !std::thread::panicking() {
            panic!("mounts leaked: {mounts:?}");
        }
    }
}

fn connect(sock: &Path) -> Channel {
    let sock = sock.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
}

fn containerd_config(p: &Path) -> String {
    // restrict_oom_score_adj: this host grants no CAP_SYS_RESOURCE to
    // lower a score. The CRI section given here replaces the default
    // whole, so everything a pod needs is spelled out.
    format!(
        r#"version = 2
root = "{r}/root"
state = "{r}/state"
[grpc]
  address = "{r}/c.sock"
[ttrpc]
  address = "{r}/c.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "amphi"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.amphi]
      runtime_type = "io.containerd.amphi.v1"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.amphi-systemd]
      runtime_type = "io.containerd.amphi.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.amphi-systemd.options]
        ConfigPath = "{r}/amphi-systemd.toml"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{r}/cni"
"#,
        r = p.display()
    )
}

fn bridge(slot: u32) -> String {
    format!("amphicri{slot}")
}

fn cni_config(slot: u32, p: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("amphi-cri-{slot}"),
        "plugins": [{
            "type": "bridge",
            "bridge": bridge(slot),
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{SUBNET_PREFIX}.{slot}.0/24")}]],
                "dataDir": p.join("ipam"),
            }
        }]
    })
    .to_string()
}

/// A bridge/subnet slot no other live node holds, recorded with the
/// node's dir (`<pid> <dir>`), so that a node whose test process was
/// killed (no drop ran) is cleaned up by the next one to take its slot.
fn take_slot(dir: &Path) -> u32 {
    std::fs::create_dir_all(SLOT_DIR).unwrap();
    for _ in 0..500 {
        for n in 1..250u32 {
            let f = Path::new(SLOT_DIR).join(n.to_string());
            if let Ok(mut file) = OpenOptions::new().write(true).create_new(true).open(&f) {
                use std::io::Write;
                let _ = write!(file, "{} {}", std::process::id(), dir.display());
                return n;
            }
            let holder = std::fs::read_to_string(&f).unwrap_or_default();
            let mut words = holder.split_whitespace();
            let pid = words.next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                if let Some(old) = words.next() {
                    clean_dead_node(Path::new(old));
                }
                let _ = Command::new("ip")
                    .args(["link", "del", &bridge(n)])
                    .stderr(Stdio::null())
                    .status();
                kill_and_remove_cgroup(&format!("/amphi-cri-{n}"));
                let _ = std::fs::remove_file(&f);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no free CNI slot in {SLOT_DIR}");
}

/// SIGKILLs the shims (amphi's and runc's) of the containerd in `dir`
/// and removes their sockets.
fn kill_shims(dir: &Path) {
    super::support::kill_shims(&dir.join("c.sock"), "containerd-shim");
}

/// What a killed node left: its containerd and shims, mounts, temp dir.
fn clean_dead_node(dir: &Path) {
    kill_shims(dir);
    let sock = dir.join("c.sock").to_string_lossy().into_owned();
    for pid in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let c = text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
        if c.contains(&sock) || c.contains(&format!("{}/config.toml", dir.display())) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let mut mounts = mounts_under(&dir.to_string_lossy());
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn write_busybox(out: &Path) {
    amphi_examples::write_busybox_image(out, BUSYBOX).unwrap();
}

fn write_wasm_linux(out: &Path) {
    let mut layer = LayerBuilder::new();
    for (n, b) in amphi_examples::WASM {
        layer.file(&format!("{n}.wasm"), 0o755, b).unwrap();
    }
    // The WASI 0.2 components, under /c.
    for (n, b) in amphi_examples::COMPONENT {
        layer.file(&format!("c/{n}.wasm"), 0o755, b).unwrap();
    }
    layer
        .file("etc/message", 0o644, amphi_examples::MESSAGE.as_bytes())
        .unwrap();
    amphi_examples::write_archive(
        out,
        &[layer.build().unwrap()],
        serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/hello.wasm"]},
        }),
        WASM_LINUX,
    )
    .unwrap();
}

/// The pod-level security context of a config made by [`Node::pod_config`].
pub fn pod_security(cfg: &mut PodSandboxConfig) -> &mut LinuxSandboxSecurityContext {
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .get_or_insert_with(Default::default)
}

/// The pod's namespace modes (network, pid, ipc).
pub fn pod_namespaces(cfg: &mut PodSandboxConfig) -> &mut NamespaceOption {
    pod_security(cfg)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// Mount points whose path starts with `root`.
pub fn mounts_under(root: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(root))
        .collect()
}

/// Shim processes serving the containerd in `dir`, with their command lines.
pub fn shim_pids(dir: &Path) -> Vec<(i32, String)> {
    // Both handlers' shims (amphi's and runc's).
    super::support::shim_processes(&dir.join("c.sock"), "containerd-shim")
}

/// The cgroup directories below `parent` in every hierarchy.
pub fn cgroup_children(parent: &str) -> Vec<PathBuf> {
    cgroup_dirs(parent)
        .into_iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// `path` under each hierarchy of /sys/fs/cgroup where it exists.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    );
    roots
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|p| p.is_dir() && p.join("cgroup.procs").exists())
        .collect()
}

/// Removes the cgroup `path` and everything below it (kubelet removes a
/// pod's cgroup once its containers are gone).
pub fn remove_cgroup(path: &str) {
    for dir in cgroup_dirs(path) {
        let mut all: Vec<PathBuf> = walk(&dir);
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in all {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Kills whatever is left in the cgroup `path` (and below), then removes
/// it: what a test that failed halfway, or was killed, left behind.
pub fn kill_and_remove_cgroup(path: &str) {
    for _ in 0..100 {
        let mut alive = false;
        for dir in cgroup_dirs(path) {
            for d in walk(&dir) {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    alive = true;
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_cgroup(path);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// The bytes of native example `name`.
pub fn native(name: &str) -> &'static [u8] {
    amphi_examples::NATIVE
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no native example {name}"))
        .1
}

/// A streaming exec or attach session over WebSocket, as `kubectl exec`
/// speaks it to kubelet's streaming server (`v4.channel.k8s.io`: each
/// binary message starts with its channel: 0 stdin, 1 stdout, 2 stderr,
/// 3 the final status, 4 resize).
pub struct Stream {
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The status JSON of channel 3, once sent.
    pub status: Option<serde_json::Value>,
}

impl Stream {
    /// Connects to the URL an Exec or Attach call returned.
    pub fn connect(url: &str) -> Stream {
        use tungstenite::client::IntoClientRequest;
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut req = ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let tcp = std::net::TcpStream::connect(&host).unwrap();
        // A test that waits for output it never gets fails instead of hanging.
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (ws, _) =
            tungstenite::client(req, tcp).unwrap_or_else(|e| panic!("websocket {url}: {e}"));
        Stream {
            ws,
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: None,
        }
    }

    fn send(&mut self, channel: u8, data: &[u8]) {
        let mut msg = vec![channel];
        msg.extend_from_slice(data);
        self.ws
            .send(tungstenite::Message::Binary(msg.into()))
            .unwrap();
    }

    pub fn stdin(&mut self, data: &[u8]) {
        self.send(0, data);
    }

    pub fn resize(&mut self, width: u16, height: u16) {
        let size = serde_json::json!({"Width": width, "Height": height}).to_string();
        self.send(4, size.as_bytes());
    }

    /// Reads messages until `done` holds of what arrived, or the session
    /// ends (Ok false).
    pub fn read_until(&mut self, mut done: impl FnMut(&Stream) -> bool) -> bool {
        while !done(self) {
            match self.ws.read() {
                Ok(tungstenite::Message::Binary(b)) if !b.is_empty() => match b[0] {
                    1 => self.stdout.extend_from_slice(&b[1..]),
                    2 => self.stderr.extend_from_slice(&b[1..]),
                    3 if b.len() > 1 => self.status = serde_json::from_slice(&b[1..]).ok(),
                    _ => {}
                },
                Ok(tungstenite::Message::Close(_)) => return done(self),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return done(self)
                }
                Err(tungstenite::Error::Protocol(_)) => return done(self),
                Err(e) => panic!("stream: {e} (stdout so far {:?})", text(&self.stdout)),
            }
        }
        true
    }

    /// Reads to the end of the session; the exit code its status names
    /// (0 on Success).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.read_until(|s| s.status.is_some());
        let st = self.status.as_ref()?;
        if st["status"] == "Success" {
            return Some(0);
        }
        st["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Node {
    /// Exec's streaming URL.
    pub fn exec_url(&self, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> String {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.exec(ExecRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            }))
            .unwrap_or_else(|e| panic!("Exec: {}", e.message()))
            .into_inner()
            .url
    }

    /// Attach's streaming URL.
    pub fn attach_url(&self, id: &str, tty: bool) -> String {
        let mut rs = self.rs.clone();
        self.rt
            .block_on(rs.attach(AttachRequest {
                container_id: id.into(),
                stdin: true,
                tty,
                stdout: true,
                stderr: !tty,
            }))
            .unwrap_or_else(|e| panic!("Attach: {}", e.message()))
            .into_inner()
            .url
    }
}
