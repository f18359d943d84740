//! The Task RPCs.

use std::time::SystemTime;

use amphi_runtime::nix_signal::Signal;
use amphi_runtime::oci_spec::runtime::{LinuxResources, Process};
use containerd_shim::api::*;
use containerd_shim::protos::events::task::*;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics::*;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::{Task, TtrpcContext, TtrpcResult};

use crate::shim::state_root;

use super::exits::exit_event;
use super::rootfs::*;
use super::*;

impl Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        log::info!("create {} bundle {}", req.id, req.bundle);
        if !req.checkpoint.is_empty() {
            return Err(err(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported",
            ));
        }
        let pid = self.create_task(&req)?;
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
        let pid = if req.exec_id.is_empty() {
            task.container.start().map_err(rt_err)?;
            task.init.status = Status::RUNNING;
            let mut ev = TaskStart::new();
            ev.container_id = req.id.clone();
            ev.pid = task.init.pid as u32;
            inner.events.send(TASK_START_EVENT_TOPIC, ev);
            task.init.pid
        } else {
            let exec = task
                .execs
                .get_mut(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if exec.proc_.status != Status::CREATED {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} was started already", req.exec_id),
                ));
            }
            let p = &exec.proc_;
            let stdio = crate::io::open(&p.stdin, &p.stdout, &p.stderr, p.terminal)
                .map_err(|e| err(Code::INVALID_ARGUMENT, format!("opening stdio: {e}")))?;
            let started = task
                .container
                .exec(runtime_for(&task.bundle).config(), &exec.spec, stdio)
                .map_err(rt_err)?;
            let pid = started.pid;
            let console = relay_console(started.console, &p.stdin, &p.stdout)?;
            exec.proc_.pid = pid;
            exec.proc_.console = console;
            exec.proc_.status = Status::RUNNING;
            let mut ev = TaskExecStarted::new();
            ev.container_id = req.id.clone();
            ev.exec_id = req.exec_id.clone();
            ev.pid = pid as u32;
            inner.events.send(TASK_EXEC_STARTED_EVENT_TOPIC, ev);
            if let Some((code, at)) = inner.take_early_exit(pid) {
                exec.proc_.exit = Some((code, at));
                exec.proc_.status = Status::STOPPED;
                inner.events.send(
                    TASK_EXIT_EVENT_TOPIC,
                    exit_event(&req.id, &req.exec_id, pid, code, at),
                );
            }
            pid
        };
        drop(tasks);
        release_free_memory();
        let mut resp = StartResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let p = task.process(&req.exec_id)?;
        let mut resp = StateResponse::new();
        resp.id = if req.exec_id.is_empty() {
            req.id.clone()
        } else {
            req.exec_id.clone()
        };
        resp.exec_id = req.exec_id.clone();
        resp.bundle = task.bundle.to_string_lossy().into_owned();
        resp.pid = p.pid as u32;
        resp.status = p.status.into();
        resp.stdin = p.stdin.clone();
        resp.stdout = p.stdout.clone();
        resp.stderr = p.stderr.clone();
        resp.terminal = p.terminal;
        if let Some((code, at)) = p.exit {
            resp.exit_status = code as u32;
            resp.exited_at = ts(at);
        }
        Ok(resp)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        loop {
            let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            let exit = if req.exec_id.is_empty() {
                // Reported only once the init's exit event could be sent.
                task.init.exit.filter(|_| !task.init_exit_pending)
            } else {
                task.process(&req.exec_id)?.exit
            };
            if let Some((code, at)) = exit {
                let mut resp = WaitResponse::new();
                resp.exit_status = code as u32;
                resp.exited_at = ts(at);
                return Ok(resp);
            }
            tasks = inner.changed.wait(tasks).unwrap();
        }
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let sig = Signal::try_from(req.signal as i32)
            .map_err(|_| err(Code::INVALID_ARGUMENT, format!("bad signal {}", req.signal)))?;
        if req.exec_id.is_empty() {
            if task.init.exit.is_some() && !req.all {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", req.id),
                ));
            }
            task.container.kill(sig, req.all).map_err(|e| match e {
                amphi_runtime::Error::BadStatus { .. } => err(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", req.id),
                ),
                e => rt_err(e),
            })?;
        } else {
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.pid == 0 || e.proc_.exit.is_some() {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("exec {}: process already finished", req.exec_id),
                ));
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(e.proc_.pid), sig)
                .map_err(|e| err(Code::INTERNAL, format!("kill: {e}")))?;
        }
        Ok(Empty::new())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let inner = &self.inner;
        let mut tasks = inner.lock();
        let mut resp = DeleteResponse::new();
        if !req.exec_id.is_empty() {
            let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let e = task
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if e.proc_.pid != 0 && e.proc_.exit.is_none() {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            let e = task.execs.remove(&req.exec_id).unwrap();
            resp.pid = e.proc_.pid as u32;
            if let Some((code, at)) = e.proc_.exit {
                resp.exit_status = code as u32;
                resp.exited_at = ts(at);
            }
            return Ok(resp);
        }
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let alive = task.init.status == Status::RUNNING || task.init.status == Status::PAUSED;
        if alive && task.init.exit.is_none() {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("container {} is running: kill it first", req.id),
            ));
        }
        let task = tasks.remove(&req.id).unwrap();
        let (code, at) = task
            .init
            .exit
            .unwrap_or((128 + libc::SIGKILL, SystemTime::now()));
        let pid = task.init.pid;
        let bundle = task.bundle.clone();
        let mounted = task.rootfs_mounted;
        drop(tasks);
        inner.oom.unwatch(&req.id);
        task.container.delete(true).map_err(rt_err)?;
        if mounted {
            unmount_rootfs(&bundle);
        }
        let _ = std::fs::remove_dir_all(state_root(&bundle));
        let mut ev = TaskDelete::new();
        ev.container_id = req.id.clone();
        ev.pid = pid as u32;
        ev.exit_status = code as u32;
        ev.exited_at = ts(at);
        inner.events.send(TASK_DELETE_EVENT_TOPIC, ev);
        resp.pid = pid as u32;
        resp.exit_status = code as u32;
        resp.exited_at = ts(at);
        inner.changed.notify_all();
        Ok(resp)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let mut resp = PidsResponse::new();
        for pid in task.container.pids().map_err(rt_err)? {
            let mut info = containerd_shim::protos::api::ProcessInfo::new();
            info.pid = pid as u32;
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.set_paused(&req.id, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.set_paused(&req.id, false)
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        Err(err(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by amphi",
        ))
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let mut tasks = self.inner.lock();
        let task = tasks.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
        if task.execs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        if task.init.exit.is_some() || task.init.status != Status::RUNNING {
            return Err(err(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        let spec: Process = any_json(req.spec.get_or_default(), "exec process spec")?;
        let proc_ = Proc::new(
            req.stdin.clone(),
            req.stdout.clone(),
            req.stderr.clone(),
            req.terminal,
        );
        task.execs
            .insert(req.exec_id.clone(), ExecProc { proc_, spec });
        let mut ev = TaskExecAdded::new();
        ev.container_id = req.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.inner.events.send(TASK_EXEC_ADDED_EVENT_TOPIC, ev);
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let p = task.process(&req.exec_id)?;
        let console = p
            .console
            .as_ref()
            .ok_or_else(|| err(Code::FAILED_PRECONDITION, "the process has no terminal"))?;
        console
            .resize(req.width, req.height)
            .map_err(|e| err(Code::INTERNAL, format!("resize: {e}")))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        // Stdin FIFOs go to the container directly: closing containerd's
        // write side is what delivers EOF; nothing of ours holds it open.
        let tasks = self.inner.lock();
        tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let res: LinuxResources = any_json(req.resources.get_or_default(), "resources")?;
        task.container.update(&res).map_err(rt_err)?;
        Ok(Empty::new())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let tasks = self.inner.lock();
        let task = tasks.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let stats = task.container.stats().map_err(rt_err)?;
        let any = crate::metrics::to_any(&stats).map_err(|e| err(Code::INTERNAL, e))?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(any);
        Ok(resp)
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let tasks = self.inner.lock();
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        if let Some(task) = tasks.get(&req.id) {
            resp.task_pid = task.init.pid as u32;
        }
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        // A grouped shim stays while any of its containers does.
        if self.inner.lock().is_empty() {
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }
}
