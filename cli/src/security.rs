//! Docker's security defaults for `amphi run`: its default capability set
//! edited by `--cap-add`/`--cap-drop`, its default seccomp profile
//! (`--security-opt seccomp=unconfined|PROFILE.json`) and
//! `--security-opt no-new-privileges`.
//!
//! The default profile follows moby's `profiles/seccomp/default.json`: an
//! allow list (every other call fails with EPERM), namespace flags of
//! `clone` refused, `clone3` answered ENOSYS so libcs fall back to
//! `clone`, and calls that need a capability allowed only when the
//! container has it (so `--cap-add SYS_ADMIN` also allows `mount`). A
//! profile file may be in Docker's format (with `includes`/`excludes` by
//! capability) or in the OCI runtime spec's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Which seccomp profile a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default (image runs) or the bundle's own (`--bundle`).
    Default,
    /// No filter.
    Unconfined,
    /// A profile file, Docker's format or the OCI spec's.
    File(PathBuf),
}

/// What `--security-opt` said.
#[derive(Debug, Clone)]
pub struct SecurityOpts {
    /// The seccomp choice.
    pub seccomp: Seccomp,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
}

/// Parses `--security-opt` values (`seccomp=...`, `no-new-privileges`).
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut s = SecurityOpts {
        seccomp: Seccomp::Default,
        no_new_privileges: false,
    };
    for o in opts {
        match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => s.seccomp = Seccomp::Unconfined,
            Some(("seccomp", file)) if !file.is_empty() => s.seccomp = Seccomp::File(file.into()),
            Some(("no-new-privileges", v)) => {
                s.no_new_privileges = match v {
                    "true" => true,
                    "false" => false,
                    _ => bail!("bad --security-opt {o:?}: no-new-privileges takes true or false"),
                }
            }
            None if o == "no-new-privileges" => s.no_new_privileges = true,
            _ => bail!("unknown --security-opt {o:?} (seccomp=unconfined|FILE, no-new-privileges)"),
        }
    }
    Ok(s)
}

/// A capability name as the spec writes it (`net_admin` -> `CAP_NET_ADMIN`).
fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after Docker's rules: drops first (`ALL` empties
/// it), then adds (`ALL` gives every capability).
pub fn capabilities(base: &[String], add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    let check = |c: &str| -> Result<String> {
        let n = cap_name(c);
        if n == "CAP_ALL" || known.contains(&n) {
            Ok(n)
        } else {
            bail!("unknown capability {c:?}")
        }
    };
    let mut set: Vec<String> = base.to_vec();
    for d in drop {
        match check(d)?.as_str() {
            "CAP_ALL" => set.clear(),
            n => set.retain(|c| c != n),
        }
    }
    for a in add {
        match check(a)?.as_str() {
            "CAP_ALL" => set = held_capabilities()?,
            n if !set.iter().any(|c| c == n) => set.push(n.to_string()),
            _ => {}
        }
    }
    set.sort();
    Ok(set)
}

/// "Every capability", as we can grant it: our bounding set (a host's
/// root may lack some the kernel knows, and capset would refuse them).
fn held_capabilities() -> Result<Vec<String>> {
    let mut all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .context("reading our capability bounding set")?
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    all.sort();
    Ok(all)
}

/// Calls moby's default profile allows to everyone.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    "arch_prctl",
    "modify_ldt",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Calls allowed only with a capability, as moby's profile has them.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// clone(2) flags that make namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET: moby's mask), refused without
/// CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// socket(2)'s AF_VSOCK, refused (a way out of the container to its host).
const AF_VSOCK: u64 = 40;

/// moby's default profile, in Docker's format.
pub fn default_profile() -> Value {
    let mut syscalls = vec![json!({"names": ALLOWED, "action": "SCMP_ACT_ALLOW"})];
    syscalls.push(json!({
        "names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
    }));
    for persona in [0x8u64, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}],
        }));
    }
    syscalls.push(json!({
        "names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
    }));
    for (cap, names) in BY_CAPABILITY {
        syscalls
            .push(json!({"names": names, "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}));
    }
    syscalls.push(json!({
        "names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "excludes": {"caps": ["CAP_SYS_ADMIN"]},
    }));
    syscalls.push(json!({
        "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS,
        "excludes": {"caps": ["CAP_SYS_ADMIN"]},
    }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "syscalls": syscalls,
    })
}

/// A profile (Docker's format or the OCI spec's) as the spec's
/// `linux.seccomp` for a container with capabilities `caps`: entries
/// whose `includes.caps` the container lacks, or whose `excludes.caps` it
/// has, are left out; Docker's other keys (archMap, minKernel, comment)
/// mean nothing to the spec.
pub fn to_spec(profile: &Value, caps: &[String]) -> Result<Value> {
    let has = |list: &Value| {
        list.as_array().is_some_and(|l| {
            l.iter().any(|c| {
                c.as_str()
                    .is_some_and(|c| caps.iter().any(|h| *h == cap_name(c)))
            })
        })
    };
    let all = |list: &Value| {
        list.as_array().is_none_or(|l| {
            l.iter().all(|c| {
                c.as_str()
                    .is_some_and(|c| caps.iter().any(|h| *h == cap_name(c)))
            })
        })
    };
    let default = profile["defaultAction"]
        .as_str()
        .context("seccomp profile: no defaultAction")?;
    let mut out = json!({"defaultAction": default});
    if let Some(e) = profile.get("defaultErrnoRet") {
        out["defaultErrnoRet"] = e.clone();
    }
    if let Some(a) = profile.get("architectures") {
        out["architectures"] = a.clone();
    }
    if let Some(f) = profile.get("flags") {
        out["flags"] = f.clone();
    }
    let mut syscalls = Vec::new();
    for sc in profile["syscalls"].as_array().into_iter().flatten() {
        let inc = &sc["includes"]["caps"];
        let exc = &sc["excludes"]["caps"];
        if (!inc.is_null() && !all(inc)) || (!exc.is_null() && has(exc)) {
            continue;
        }
        let names: Vec<Value> = match (&sc["names"], &sc["name"]) {
            (Value::Array(n), _) => n.clone(),
            (_, Value::String(n)) => vec![json!(n)],
            _ => bail!("seccomp profile: an entry without names: {sc}"),
        };
        let mut e = json!({"names": names, "action": sc["action"]});
        for key in ["args", "errnoRet"] {
            if let Some(v) = sc.get(key).filter(|v| !v.is_null()) {
                e[key] = v.clone();
            }
        }
        syscalls.push(e);
    }
    out["syscalls"] = json!(syscalls);
    Ok(out)
}

/// A host device as `linux.devices` and `linux.resources.devices` want it.
fn device_entry(host: &Path, inside: &str, access: &str) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(host).with_context(|| format!("device {}", host.display()))?;
    let typ = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        bail!("{} is not a device", host.display());
    };
    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
    let node = json!({
        "path": inside, "type": typ, "major": major, "minor": minor,
        "fileMode": m.mode() & 0o777, "uid": m.uid(), "gid": m.gid(),
    });
    let rule =
        json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
    Ok((node, rule))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` (permissions of `rwm`).
pub fn add_device(v: &mut Value, spec: &str) -> Result<()> {
    let parts: Vec<&str> = spec.split(':').collect();
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, inside, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if perms(p) => (*h, *c, *p),
        _ => bail!("bad --device {spec:?}: use HOST[:CONTAINER][:rwm]"),
    };
    if !inside.starts_with("/dev/") {
        bail!("bad --device {spec:?}: {inside} is not under /dev");
    }
    let (node, rule) = device_entry(Path::new(host), inside, access)?;
    push(&mut v["linux"]["devices"], node);
    push(&mut v["linux"]["resources"]["devices"], rule);
    Ok(())
}

fn push(list: &mut Value, item: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().unwrap().push(item);
}

/// `--privileged`, as Docker: every capability (of ours), no seccomp filter, no
/// masked or read-only paths, /sys writable, every device allowed and
/// the host's device nodes in the container's /dev.
pub fn make_privileged(v: &mut Value) -> Result<()> {
    let all = held_capabilities()?;
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set] = json!(all);
    }
    v["linux"]["maskedPaths"] = json!([]);
    v["linux"]["readonlyPaths"] = json!([]);
    for m in v["mounts"].as_array_mut().into_iter().flatten() {
        if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "ro");
            }
        }
    }
    v["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let mut nodes = Vec::new();
    host_devices(Path::new("/dev"), &mut nodes);
    v["linux"]["devices"] = json!(nodes);
    Ok(())
}

/// The character and block devices under `dir` (not the per-container
/// pts, shm and mqueue mounts, nor /dev/ptmx: the container has its own).
fn host_devices(dir: &Path, out: &mut Vec<Value>) {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !["pts", "shm", "mqueue", "fd"].contains(&e.file_name().to_str().unwrap_or("")) {
                host_devices(&path, out);
            }
        } else if (ft.is_char_device() || ft.is_block_device()) && path != Path::new("/dev/ptmx") {
            if let Ok((node, _)) = device_entry(&path, &path.to_string_lossy(), "rwm") {
                out.push(node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_edits_follow_docker() {
        let base = strings(&DEFAULT_CAPS);
        let c = capabilities(&base, &strings(&["net_admin"]), &strings(&["CHOWN"])).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && !c.contains(&"CAP_CHOWN".into()));
        assert!(capabilities(&base, &[], &strings(&["ALL"]))
            .unwrap()
            .is_empty());
        let c = capabilities(&base, &strings(&["SYS_ADMIN"]), &strings(&["ALL"])).unwrap();
        assert_eq!(c, ["CAP_SYS_ADMIN"]);
        assert!(capabilities(&base, &strings(&["BOGUS"]), &[])
            .unwrap_err()
            .to_string()
            .contains("BOGUS"));
    }

    #[test]
    fn default_profile_depends_on_capabilities() {
        let p = default_profile();
        let names = |spec: &Value| -> Vec<String> {
            spec["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
                .flat_map(|s| {
                    s["names"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap().to_string())
                })
                .collect()
        };
        let plain = names(&to_spec(&p, &strings(&DEFAULT_CAPS)).unwrap());
        assert!(plain.contains(&"read".into()) && plain.contains(&"chroot".into()));
        assert!(!plain.contains(&"mount".into()) && !plain.contains(&"unshare".into()));
        let admin = names(&to_spec(&p, &strings(&["CAP_SYS_ADMIN"])).unwrap());
        assert!(admin.contains(&"mount".into()) && admin.contains(&"clone".into()));
        // The parsed profile is what the runtime takes.
        let spec: amphi_runtime::oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(to_spec(&p, &strings(&DEFAULT_CAPS)).unwrap()).unwrap();
        assert!(!spec.syscalls().as_ref().unwrap().is_empty());
    }

    #[test]
    fn security_opts() {
        let s =
            parse_security_opts(&strings(&["seccomp=unconfined", "no-new-privileges"])).unwrap();
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        assert!(s.no_new_privileges);
        let s = parse_security_opts(&strings(&["seccomp=/p.json"])).unwrap();
        assert_eq!(s.seccomp, Seccomp::File("/p.json".into()));
        assert!(parse_security_opts(&strings(&["apparmor=x"])).is_err());
    }
}
