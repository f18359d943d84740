//! The shim's process lifecycle: `start` (spawn or reuse the group's shim),
//! `delete` (clean up after a dead shim), and serving the task service.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, Shim, StartOpts};

use crate::service::TaskService;

/// Annotations whose value names a shim group: containers with the same
/// value share one shim process (the CRI sandbox, or runc's explicit group).
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];

/// The shim process.
pub struct AmphiShim {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
    /// Our listening socket (`unix:///run/containerd/s/...`).
    socket: String,
}

impl Shim for AmphiShim {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        AmphiShim {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = group_of(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let (_, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd runs `delete` in the bundle when the shim died: kill
        // what is left, unmount the rootfs, remove the state.
        let bundle = std::env::current_dir().unwrap_or_default();
        let pid = crate::service::cleanup_bundle(&self.id, &bundle);
        // The dead shim's socket: nobody listens on it any more.
        if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
            remove_dead_socket(address.trim());
        }
        let mut resp = DeleteResponse::new();
        resp.pid = pid.unwrap_or(0) as u32;
        resp.exit_status = 128 + libc::SIGKILL as u32;
        resp.exited_at = Some(containerd_shim::util::timestamp()?).into();
        Ok(resp)
    }

    fn wait(&mut self) {
        self.exit.wait();
        // The library removes the socket after this returns, but finds its
        // path in the bundle's `address` file, which containerd may have
        // deleted by then (it leaked ~1 socket in 10 under load): remove it
        // here, from the path we were started with.
        remove_socket(&self.socket);
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        // Events go out through our own client (see events.rs); the
        // library's publisher and its connection are not needed; containerd
        // names its ttrpc address in TTRPC_ADDRESS, as the library read it.
        drop(publisher);
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        TaskService::new(self.namespace.clone(), &address, self.exit.clone())
    }
}

fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Unlinks our socket file (the listener, if still open, keeps working).
fn remove_socket(address: &str) {
    use std::os::unix::fs::FileTypeExt;
    let path = socket_path(address);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Unlinks a socket that no process listens on any more.
fn remove_dead_socket(address: &str) {
    let refused = matches!(
        std::os::unix::net::UnixStream::connect(socket_path(address)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if refused {
        remove_socket(address);
    }
}

/// The group a bundle's container belongs to, from its annotations.
fn group_of(config: &Path) -> Option<String> {
    let bytes = std::fs::read(config).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    GROUP_ANNOTATIONS.iter().find_map(|a| {
        v["annotations"][a]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// Where the runtime keeps a container's state: inside its bundle, so
/// containerd's removal of the bundle takes it along and two containerd
/// instances never share it.
pub fn state_root(bundle: &Path) -> PathBuf {
    bundle.join("amphi-state")
}
