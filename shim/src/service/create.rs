//! Create: a task from a bundle and its rootfs mounts.

use std::collections::HashMap;
use std::path::PathBuf;

use amphi_runtime::bundle::Bundle;
use amphi_runtime::CreateOptions;
use containerd_shim::api::*;
use containerd_shim::protos::events::task::*;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics::*;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::TtrpcResult;

use crate::shim::state_root;

use super::rootfs::*;
use super::*;

impl TaskService {
    pub(super) fn create_task(&self, req: &CreateTaskRequest) -> TtrpcResult<i32> {
        let inner = &self.inner;
        if inner.lock().contains_key(&req.id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        let mut mounted = false;
        for m in &req.rootfs {
            if !mounted {
                std::fs::create_dir_all(&rootfs)
                    .map_err(|e| err(Code::INTERNAL, format!("{}: {e}", rootfs.display())))?;
            }
            if let Err(e) = mount_rootfs(m, inner.init_layer.as_deref(), &rootfs) {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                return Err(err(
                    Code::INTERNAL,
                    format!("mounting rootfs ({} from {}): {e}", m.type_, m.source),
                ));
            }
            mounted = true;
        }
        let result = (|| {
            let loaded = Bundle::load(&bundle).map_err(rt_err)?;
            let options = crate::options::parse(req.options.as_ref())
                .map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
            let spec_cgroup = loaded
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_deref())
                .map(|p| p.to_string_lossy().into_owned());
            let cgroup = crate::options::cgroup_path(spec_cgroup.as_deref(), &options)
                .map_err(|e| err(Code::INVALID_ARGUMENT, e))?;
            let stdio = crate::io::open(&req.stdin, &req.stdout, &req.stderr, req.terminal)
                .map_err(|e| err(Code::INVALID_ARGUMENT, format!("opening stdio: {e}")))?;
            let mut container = runtime_for(&bundle)
                .create_from(
                    &req.id,
                    loaded,
                    CreateOptions {
                        stdio,
                        cgroup_path: cgroup,
                        ..CreateOptions::default()
                    },
                )
                .map_err(rt_err)?;
            let console = relay_console(container.take_console(), &req.stdin, &req.stdout)?;
            Ok::<_, ttrpc::Error>((container, console))
        })();
        let (container, console) = match result {
            Ok(r) => r,
            Err(e) => {
                if mounted {
                    unmount_rootfs(&bundle);
                }
                let _ = std::fs::remove_dir_all(state_root(&bundle));
                return Err(e);
            }
        };
        let pid = container.pid();
        let mut init = Proc::new(
            req.stdin.clone(),
            req.stdout.clone(),
            req.stderr.clone(),
            req.terminal,
        );
        init.pid = pid;
        init.console = console;
        let mut task = TaskEntry {
            bundle,
            container,
            rootfs_mounted: mounted,
            init,
            execs: HashMap::new(),
            init_exit_pending: false,
        };
        let mut ev = TaskCreate::new();
        ev.container_id = req.id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        ev.pid = pid as u32;
        ev.checkpoint = req.checkpoint.clone();
        let mut io = containerd_shim::protos::events::task::TaskIO::new();
        io.stdin = req.stdin.clone();
        io.stdout = req.stdout.clone();
        io.stderr = req.stderr.clone();
        io.terminal = req.terminal;
        ev.io = MessageField::some(io);
        inner.events.send(TASK_CREATE_EVENT_TOPIC, ev);
        if let Err(e) = inner.oom.watch(&req.id, task.container.cgroup()) {
            // OOM kills are then still reported when the init dies of one.
            log::warn!("container {}: no live OOM events: {e}", req.id);
        }
        let mut tasks = inner.lock();
        if let Some((code, at)) = inner.take_early_exit(pid) {
            inner.init_exited(&req.id, &mut task, code, at);
        }
        tasks.insert(req.id.clone(), task);
        Ok(pid)
    }
}
