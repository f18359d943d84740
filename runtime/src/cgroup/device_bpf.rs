//! Device rules on cgroup v2: there is no `devices` controller, so the rules
//! become an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to
//! the container's cgroup, which the kernel asks on every open and mknod of
//! a device node (as runc and crun do).
//!
//! The rules are first reduced to what v1's controller would hold after
//! them in order: a default (allow or deny every device) and exceptions to
//! it. The program tests the exceptions in turn and returns the opposite
//! of the default on the first that matches.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::DeviceRule;
use crate::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `bpf_cgroup_dev_ctx`: `access_type` (access << 16 | type), major, minor.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Opcodes (64-bit ALU, 32-bit loads).
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND_K: u8 = 0x57;
const RSH_K: u8 = 0x77;
const MOV_K: u8 = 0xb7;
const MOV_X: u8 = 0xbf;
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JEQ_K: u8 = 0x15;
const EXIT: u8 = 0x95;

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

/// One exception: a device class and the accesses it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exception {
    kind: char,
    major: Option<i64>,
    minor: Option<i64>,
    access: i32,
}

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// What the rules leave, as v1's controller would: whether every device is
/// allowed by default, and the exceptions to that default, in order.
fn reduce(rules: &[DeviceRule]) -> (bool, Vec<Exception>) {
    let mut allow_all = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    for r in rules {
        if r.kind == 'a' {
            allow_all = r.allow;
            exceptions.clear();
            continue;
        }
        let ex = Exception {
            kind: r.kind,
            major: r.major,
            minor: r.minor,
            access: access_bits(&r.access),
        };
        if r.allow == allow_all {
            // Back to the default for these accesses: drop them from an
            // identical exception, as the kernel does.
            exceptions.retain_mut(|e| {
                if (e.kind, e.major, e.minor) == (ex.kind, ex.major, ex.minor) {
                    e.access &= !ex.access;
                }
                e.access != 0
            });
        } else {
            exceptions.push(ex);
        }
    }
    (allow_all, exceptions)
}

/// The program for `rules`.
fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let (allow_all, exceptions) = reduce(rules);
    let (on_match, otherwise) = if allow_all { (0, 1) } else { (1, 0) };
    let mut p = vec![
        insn(LDX_W, 2, 1, CTX_ACCESS_TYPE, 0),
        insn(AND_K, 2, 0, 0, 0xffff), // r2: type
        insn(LDX_W, 3, 1, CTX_ACCESS_TYPE, 0),
        insn(RSH_K, 3, 0, 0, 16), // r3: access
        insn(LDX_W, 4, 1, CTX_MAJOR, 0),
        insn(LDX_W, 5, 1, CTX_MINOR, 0),
    ];
    for e in &exceptions {
        // Each test jumps past the rest of the block when it fails.
        let mut tests: Vec<(u8, u8, i32)> = Vec::new(); // (op, dst, imm) before the jump
        let kind = if e.kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
        tests.push((JNE_K, 2, kind));
        if let Some(m) = e.major {
            tests.push((JNE_K, 4, m as i32));
        }
        if let Some(m) = e.minor {
            tests.push((JNE_K, 5, m as i32));
        }
        // An allowed request must ask for nothing outside the exception's
        // accesses (r3 & !access == 0); a denied one for anything inside
        // them (r3 & access != 0), as the v1 controller matches.
        let (mask, skip) = if allow_all {
            (e.access, JEQ_K)
        } else {
            (!e.access & 0xffff, JNE_K)
        };
        let block_len = tests.len() as i16 + 3 + 2;
        let mut at = 0i16;
        for (op, dst, imm) in tests {
            at += 1;
            p.push(insn(op, dst, 0, block_len - at, imm));
        }
        p.push(insn(MOV_X, 6, 3, 0, 0));
        p.push(insn(AND_K, 6, 0, 0, mask));
        at += 3;
        p.push(insn(skip, 6, 0, block_len - at, 0));
        p.push(insn(MOV_K, 0, 0, 0, on_match));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV_K, 0, 0, 0, otherwise));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::result::Result<i64, nix::Error> {
    // SAFETY: `attr` is the `union bpf_attr` member for `cmd`, zero-padded,
    // alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(nix::Error::last())
    } else {
        Ok(r)
    }
}

/// Loads `insns`; on failure, loads them again with the verifier's log
/// to say why (its last line).
fn load(insns: &[Insn]) -> std::result::Result<OwnedFd, String> {
    let license = c"Apache";
    let mut name = [0u8; 16];
    name[..5].copy_from_slice(b"amphi");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let err = match bpf(BPF_PROG_LOAD, &attr) {
        // SAFETY: a new fd the kernel returned, ours alone.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => e,
    };
    let mut log = vec![0u8; 1 << 16];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let _ = bpf(BPF_PROG_LOAD, &attr).map(|fd| {
        // SAFETY: as above; closed at once.
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    });
    let log = String::from_utf8_lossy(&log);
    let last = log
        .trim_end_matches('\0')
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("{err} {last}").trim().to_string())
}

/// Loads the program for `rules` and attaches it to the cgroup at `dir`.
/// It stays attached for the cgroup's life; other programs (systemd's)
/// still run beside it.
pub(super) fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let insns = program(rules);
    let prog = load(&insns).map_err(|msg| Error::Cgroup {
        path: dir.to_path_buf(),
        msg: format!("loading the device filter: {msg}"),
    })?;
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &attr).map_err(|e| Error::Cgroup {
        path: dir.to_path_buf(),
        msg: format!("attaching the device filter: {e}"),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::devices::rules;
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    #[test]
    fn rules_reduce_as_the_v1_controller_would() {
        let (allow_all, ex) = reduce(&rules(&[], &[]));
        assert!(!allow_all);
        assert!(ex.iter().any(|e| e
            == &Exception {
                kind: 'c',
                major: Some(1),
                minor: Some(3),
                access: ACC_MKNOD | ACC_READ | ACC_WRITE
            }));
        // A privileged container: everything, then nothing to except.
        let privileged = reduce(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'a', None, None, "rwm"),
        ]);
        assert_eq!(privileged, (true, vec![]));
        // A later deny takes accesses back from an allow.
        let (_, ex) = reduce(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ]);
        assert_eq!(ex[0].access, ACC_MKNOD | ACC_READ);
    }

    /// The unified hierarchy, where a program can be attached even when
    /// the controllers are on v1 (as on this host).
    fn cgroup2_root() -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].into())
        })
    }

    /// In a child moved into a cgroup with the default rules attached:
    /// /dev/null opens, /dev/zero is refused (it is allowed too, so
    /// take it out), a made node of the host's disk cannot be opened.
    #[test]
    fn attached_program_refuses_what_the_rules_do_not_allow() {
        let Some(root) = cgroup2_root() else {
            eprintln!("no cgroup2 mount: skipped");
            return;
        };
        let dir = root.join(format!("amphi-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let mut r = rules(&[], &[]);
        r.push(rule(false, 'c', Some(1), Some(5), "rwm"));
        if let Err(e) = attach(&dir, &r) {
            std::fs::remove_dir(&dir).unwrap();
            panic!("{e}");
        }
        let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        let (null, zero) = (c"/dev/null", c"/dev/zero");
        // SAFETY: the child makes system calls only, then exits.
        let code = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                let null_ok = libc::open(null.as_ptr(), libc::O_RDWR) >= 0;
                let zero_refused = libc::open(zero.as_ptr(), libc::O_RDONLY) < 0
                    && *libc::__errno_location() == libc::EPERM;
                libc::_exit(if !ok {
                    3
                } else if !null_ok {
                    4
                } else if !zero_refused {
                    5
                } else {
                    0
                })
            },
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, c) => c,
                    other => panic!("{other:?}"),
                }
            }
        };
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            code, 0,
            "3: could not join, 4: /dev/null refused, 5: /dev/zero allowed"
        );
    }
}
