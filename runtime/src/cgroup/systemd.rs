//! The systemd cgroup driver: a container's cgroup is a transient scope unit
//! that systemd makes (`StartTransientUnit` with `Delegate=yes`), in the
//! slice a `slice:prefix:name` cgroups path names, as runc's systemd driver
//! does. Limits are set both as unit properties (so systemd keeps them on a
//! daemon-reload) and in the scope's v2 files (which hold what systemd has
//! no property for).
//!
//! systemd is reached on the system bus, as runc reaches it. Not on
//! systemd's private socket: its replies there name the sender by its
//! well-known name, which zbus refuses (it wants a unique name).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::v2::CgroupV2;
use crate::{Error, Result};

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// A `slice:prefix:name` cgroups path, resolved to its unit and cgroup.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The slice the scope goes in, e.g. `kubepods-besteffort-pod1.slice`.
    pub slice: String,
    /// The scope's unit name, e.g. `cri-containerd-abc.scope`.
    pub unit: String,
    pub(super) v2: CgroupV2,
}

/// Whether `path` has systemd's `slice:prefix:name` form.
pub fn is_systemd_path(path: &str) -> bool {
    path.split(':').count() == 3 && !path.contains('/')
}

impl Scope {
    /// Parses `slice:prefix:name` (an empty slice is `system.slice`, a
    /// `name` ending in `.slice` names a slice, not a scope, as runc reads
    /// it).
    pub fn parse(path: &str) -> Result<Scope> {
        let bad = |why: &str| Error::Spec(format!("systemd cgroups path {path:?}: {why}"));
        let [slice, prefix, name]: [&str; 3] = path
            .split(':')
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| bad("not of the form slice:prefix:name"))?;
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if name.is_empty() || name.contains('/') || prefix.contains('/') {
            return Err(bad("bad unit name"));
        }
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        let dir = expand_slice(slice).map_err(|e| bad(&e))?;
        let rel = if dir.is_empty() {
            unit.clone()
        } else {
            format!("{dir}/{unit}")
        };
        Ok(Scope {
            slice: slice.to_string(),
            unit,
            v2: CgroupV2::new(&rel),
        })
    }

    /// The scope's cgroup relative to the unified root.
    pub fn relative_path(&self) -> &str {
        self.v2.path()
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Cgroup {
            path: PathBuf::from(format!("{} ({})", self.unit, self.v2.dir().display())),
            msg: msg.into(),
        }
    }

    /// Whether the system bus answers (the driver's precondition): a socket
    /// connect, not a whole D-Bus session, which `start` opens anyway.
    pub(super) fn check_reachable(&self) -> Result<()> {
        bus_reachable().map_err(|e| self.err(e))
    }

    /// Starts the scope with `pid` in it and waits until systemd has moved
    /// the process into the scope's cgroup.
    pub(super) fn start(&self, pid: i32, res: Option<&LinuxResources>) -> Result<()> {
        if self.unit.ends_with(".slice") {
            return Err(self.err("a container's cgroup must be a scope, not a slice"));
        }
        let bus = connect().map_err(|e| self.err(e))?;
        if !super::host_is_v2() {
            // systemd on a v1 host splits a scope over every hierarchy;
            // this driver places it in the unified one only.
            return Err(
                self.err("the systemd cgroup driver needs the unified hierarchy (cgroup v2)")
            );
        }
        let mut props: Vec<(&str, Value)> = vec![
            (
                "Description",
                Value::from(format!("amphi container {}", self.unit)),
            ),
            ("Slice", Value::from(self.slice.as_str())),
            ("PIDs", Value::from(vec![pid as u32])),
            ("Delegate", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            ("IOAccounting", Value::from(true)),
            ("TasksAccounting", Value::from(true)),
            // The kernel's OOM killer picks a victim, as with cgroupfs;
            // systemd must not stop the whole scope on the first kill.
            ("OOMPolicy", Value::from("continue")),
        ];
        if let Some(res) = res {
            props.extend(properties(res));
        }
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        bus.call_method(
            Some(DEST),
            PATH,
            Some(MANAGER),
            "StartTransientUnit",
            &(self.unit.as_str(), "replace", props, aux),
        )
        .map_err(|e| self.err(format!("StartTransientUnit: {}", dbus_msg(&e))))?;
        // The job runs asynchronously: done when the pid is in the scope.
        let want = format!("0::/{}", self.v2.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if now.lines().any(|l| l == want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.stop();
                return Err(self.err(format!(
                    "systemd did not move pid {pid} into the scope (it is in {:?})",
                    now.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sets the unit properties that match `res` (the files are written by
    /// the v2 layer).
    pub(super) fn set_properties(&self, res: &LinuxResources) -> Result<()> {
        let props = properties(res);
        if props.is_empty() {
            return Ok(());
        }
        let bus = connect().map_err(|e| self.err(e))?;
        bus.call_method(
            Some(DEST),
            PATH,
            Some(MANAGER),
            "SetUnitProperties",
            &(self.unit.as_str(), true, props),
        )
        .map_err(|e| self.err(format!("SetUnitProperties: {}", dbus_msg(&e))))?;
        Ok(())
    }

    /// Stops the unit (systemd kills what is left and removes its cgroup)
    /// and forgets a failed state. A unit already gone is fine.
    pub(super) fn stop(&self) -> Result<()> {
        let bus = match connect() {
            Ok(b) => b,
            // Without systemd there is no unit to stop; the caller removes
            // any directory left.
            Err(_) if !self.v2.dir().exists() => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        let r: std::result::Result<OwnedObjectPath, _> = bus
            .call_method(
                Some(DEST),
                PATH,
                Some(MANAGER),
                "StopUnit",
                &(self.unit.as_str(), "replace"),
            )
            .and_then(|m| m.body().deserialize());
        if let Err(e) = r {
            if !is_no_such_unit(&e) {
                return Err(self.err(format!("StopUnit: {}", dbus_msg(&e))));
            }
        }
        let _ = bus.call_method(
            Some(DEST),
            PATH,
            Some(MANAGER),
            "ResetFailedUnit",
            &(self.unit.as_str(),),
        );
        // Stopping is a job too: its end is the cgroup's removal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.v2.dir().exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

/// The unit properties runc sets for these limits.
fn properties(res: &LinuxResources) -> Vec<(&'static str, Value<'static>)> {
    let mut p = Vec::new();
    if let Some(l) = res.memory().as_ref().and_then(|m| m.limit()) {
        p.push((
            "MemoryMax",
            Value::from(if l < 0 { u64::MAX } else { l as u64 }),
        ));
    }
    if let Some(cpu) = res.cpu() {
        if let Some(s) = cpu.shares().filter(|s| *s > 0) {
            let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
            p.push(("CPUWeight", Value::from(weight)));
        }
        if let Some(q) = cpu.quota().filter(|q| *q > 0) {
            let period = cpu.period().filter(|p| *p > 0).unwrap_or(100_000);
            // systemd takes the quota per second, rounded up to 10 ms as runc does.
            let per_sec = (q as u64 * 1_000_000).div_ceil(period);
            let per_sec = per_sec.div_ceil(10_000) * 10_000;
            p.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
            p.push(("CPUQuotaPeriodUSec", Value::from(period)));
        }
    }
    if let Some(pids) = res.pids() {
        let max = if pids.limit() > 0 {
            pids.limit() as u64
        } else {
            u64::MAX
        };
        p.push(("TasksMax", Value::from(max)));
    }
    p
}

fn bus_reachable() -> std::result::Result<(), String> {
    match std::os::unix::net::UnixStream::connect(SYSTEM_BUS) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "systemd is not reachable (no D-Bus system bus at {SYSTEM_BUS}): \
             the systemd cgroup driver needs systemd and its bus"
        )),
    }
}

/// A connection to systemd, on the system bus.
fn connect() -> std::result::Result<zbus::blocking::Connection, String> {
    bus_reachable()?;
    zbus::blocking::connection::Builder::system()
        // A systemd that stops answering is an error, not a hang.
        .and_then(|b| b.method_timeout(Duration::from_secs(30)).build())
        .map_err(|e| format!("{SYSTEM_BUS}: {e}"))
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit")
}

fn dbus_msg(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        other => other.to_string(),
    }
}

/// `a-b-c.slice` -> `a.slice/a-b.slice/a-b-c.slice` (systemd's nesting);
/// `-.slice` is the root.
pub fn expand_slice(slice: &str) -> std::result::Result<String, String> {
    let bad = || format!("invalid systemd slice name {slice:?}");
    if slice == "-.slice" {
        return Ok(String::new());
    }
    let base = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if base.is_empty()
        || base.contains('/')
        || base.starts_with('-')
        || base.ends_with('-')
        || base.contains("--")
    {
        return Err(bad());
    }
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    Ok(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_as_runc_does() {
        let s = Scope::parse("kubepods-besteffort-pod1.slice:cri-containerd:abc").unwrap();
        assert_eq!(s.unit, "cri-containerd-abc.scope");
        assert_eq!(
            s.relative_path(),
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"
        );
        let s = Scope::parse(":amphi:x").unwrap();
        assert_eq!(s.slice, "system.slice");
        assert_eq!(s.relative_path(), "system.slice/amphi-x.scope");
        assert_eq!(
            Scope::parse("-.slice::x").unwrap().relative_path(),
            "x.scope"
        );
        assert!(Scope::parse("a--b.slice:p:x").is_err());
        assert!(Scope::parse("nota-slice:p:x").is_err());
        assert!(is_systemd_path("a.slice:p:x"));
        assert!(!is_systemd_path("/kubepods/pod1/abc"));
    }
}
