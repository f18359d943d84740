//! The spec's seccomp profile (`linux.seccomp`), compiled to the classic
//! BPF program the kernel runs on every system call of the container.
//!
//! The creator compiles it, so a bad profile fails `create` before any
//! process exists; the init installs it as its last privileged step (see
//! `init::setup`). Semantics follow runc's (libseccomp's):
//! - the first entry of `syscalls` that names the call and whose argument
//!   conditions hold decides; otherwise `defaultAction`;
//! - conditions of one entry must all hold, except when two of them test
//!   the same argument: then each is a rule of its own (runc does the same);
//! - comparisons are unsigned and 64-bit;
//! - names this kernel's table does not know are skipped (profiles list
//!   calls of newer kernels).
//!
//! Only the native architecture's table is known: a call made through
//! another ABI (i386 `int 0x80`, x32) gets the default action when that
//! denies, and kills the process when the default allows, so a foreign ABI
//! can never slip past a deny list. runc would apply the rules for the
//! listed foreign architectures; here 32-bit programs in a container with
//! a profile fail instead.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7;
/// x32 calls arrive with the x86-64 arch and this bit set in the number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const fn data_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn data_arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// The kernel's limit on a filter's length.
const MAX_INSNS: usize = 4096;

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// One `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// A compiled profile, ready for [`Program::install`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Program {
    /// Each instruction packed as `code | jt << 16 | jf << 24 | k << 32`.
    insns: Vec<u64>,
    /// `SECCOMP_FILTER_FLAG_*` to install with.
    flags: u32,
}

impl Program {
    /// Installs the filter on every thread of this process. Needs
    /// no_new_privs or CAP_SYS_ADMIN.
    pub(crate) fn install(&self) -> Result<()> {
        install(&self.filters(), self.flags)
    }

    fn filters(&self) -> Vec<SockFilter> {
        self.insns
            .iter()
            .map(|&w| SockFilter {
                code: w as u16,
                jt: (w >> 16) as u8,
                jf: (w >> 24) as u8,
                k: (w >> 32) as u32,
            })
            .collect()
    }

    /// The program as bytes: the flags, then each instruction, little-endian.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.insns.len());
        out.extend_from_slice(&self.flags.to_le_bytes());
        for w in &self.insns {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads what [`Program::to_bytes`] wrote.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Program> {
        let (flags, insns) = bytes.split_first_chunk::<4>()?;
        if insns.is_empty() || insns.len() % 8 != 0 {
            return None;
        }
        Some(Program {
            flags: u32::from_le_bytes(*flags),
            insns: insns
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }

    /// Number of instructions.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.insns.len()
    }
}

/// Installs `insns`; allocates nothing (callable in a forked child).
fn install(insns: &[SockFilter], flags: u32) -> Result<()> {
    let prog = SockFprog {
        len: insns.len() as u16,
        filter: insns.as_ptr(),
    };
    // SAFETY: `prog` points at `insns`, alive for the call; the kernel
    // copies the program.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const SockFprog,
        )
    };
    match ret {
        0 => Ok(()),
        r if r > 0 => Err(Error::Spec(format!(
            "seccomp: thread {r} could not take the filter"
        ))),
        _ => Err(Error::sys(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            nix::Error::last(),
        )),
    }
}

/// What a matching rule (or no rule) makes the kernel do.
fn action(act: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let data = |default: u32| errno.unwrap_or(default) & libc::SECCOMP_RET_DATA;
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(libc::EPERM as u32),
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(libc::EPERM as u32),
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Spec(
                "seccomp: SCMP_ACT_NOTIFY (a user-space listener) is not supported".into(),
            ))
        }
    })
}

/// Whether the kernel lets the call run under `ret`.
fn lets_through(ret: u32) -> bool {
    matches!(
        ret & libc::SECCOMP_RET_ACTION_FULL,
        libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG | libc::SECCOMP_RET_TRACE
    )
}

/// One rule: all `conds` hold → `ret`.
struct Rule {
    conds: Vec<LinuxSeccompArg>,
    ret: u32,
}

/// Compiles `profile` for this architecture.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Program> {
    if profile.listener_path().is_some() {
        return Err(Error::Spec(
            "seccomp: listenerPath (a user-space listener) is not supported".into(),
        ));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let foreign = if lets_through(default) {
        libc::SECCOMP_RET_KILL_PROCESS
    } else {
        default
    };
    let mut by_nr: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for sc in profile.syscalls().iter().flatten() {
        let ret = action(sc.action(), sc.errno_ret())?;
        let args = sc.args().clone().unwrap_or_default();
        for a in &args {
            if a.index() > 5 {
                return Err(Error::Spec(format!(
                    "seccomp: argument index {} of {:?} is past the sixth",
                    a.index(),
                    sc.names()
                )));
            }
        }
        let same_index_twice = args
            .iter()
            .enumerate()
            .any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
        let rules: Vec<Vec<LinuxSeccompArg>> = if same_index_twice {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args]
        };
        for name in sc.names() {
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                tracing::debug!(syscall = name, "seccomp: unknown system call skipped");
                continue;
            };
            let list = by_nr.entry(sysno.id() as u32).or_default();
            for conds in &rules {
                list.push(Rule {
                    conds: conds.clone(),
                    ret,
                });
            }
        }
    }
    let mut flags = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
    for f in profile.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                flags |= libc::SECCOMP_FILTER_FLAG_LOG as u32
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32
            }
            _ => {}
        }
    }

    let mut a = Asm::default();
    a.stmt(LD_ABS, DATA_ARCH);
    a.jump(JEQ, AUDIT_ARCH_NATIVE, 1, 0);
    a.ret(foreign);
    a.stmt(LD_ABS, DATA_NR);
    #[cfg(target_arch = "x86_64")]
    {
        a.jump(JGE, X32_SYSCALL_BIT, 0, 1);
        a.ret(foreign);
    }
    let nrs: Vec<u32> = by_nr.keys().copied().collect();
    let default_label = a.label();
    let blocks: Vec<usize> = nrs.iter().map(|_| a.label()).collect();
    dispatch(&mut a, &nrs, &blocks, default_label);
    a.place(default_label);
    a.ret(default);
    for (nr, block) in nrs.iter().zip(&blocks) {
        a.place(*block);
        for rule in &by_nr[nr] {
            if rule.conds.is_empty() {
                a.ret(rule.ret);
                break;
            }
            let next = a.label();
            for c in &rule.conds {
                condition(&mut a, c, next);
            }
            a.ret(rule.ret);
            a.place(next);
        }
        a.ret(default);
    }
    let insns = a.finish()?;
    Ok(Program { insns, flags })
}

/// Emits a binary search over `nrs` (sorted), jumping to each one's block;
/// A holds the call number.
fn dispatch(a: &mut Asm, nrs: &[u32], blocks: &[usize], default: usize) {
    if nrs.len() <= 4 {
        for (nr, block) in nrs.iter().zip(blocks) {
            a.jump(JEQ, *nr, 0, 1);
            a.ja(*block);
        }
        a.ja(default);
        return;
    }
    let mid = nrs.len() / 2;
    let right = a.label();
    a.jump(JGE, nrs[mid], 0, 1);
    a.ja(right);
    dispatch(a, &nrs[..mid], &blocks[..mid], default);
    a.place(right);
    dispatch(a, &nrs[mid..], &blocks[mid..], default);
}

/// Emits a test of one argument condition that falls through when it holds
/// and jumps to `fail` when it does not.
fn condition(a: &mut Asm, c: &LinuxSeccompArg, fail: usize) {
    let i = c.index() as u32;
    let (v_hi, v_lo) = ((c.value() >> 32) as u32, c.value() as u32);
    match c.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            a.stmt(LD_ABS, data_arg_hi(i));
            a.jump(JEQ, v_hi, 1, 0);
            a.ja(fail);
            a.stmt(LD_ABS, data_arg_lo(i));
            a.jump(JEQ, v_lo, 1, 0);
            a.ja(fail);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            a.stmt(LD_ABS, data_arg_hi(i));
            a.jump(JEQ, v_hi, 0, 3);
            a.stmt(LD_ABS, data_arg_lo(i));
            a.jump(JEQ, v_lo, 0, 1);
            a.ja(fail);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            // (arg & value) == valueTwo; Go's encoder omits a zero valueTwo
            // (containerd's default profile masks clone's flags so).
            let t = c.value_two().unwrap_or(0);
            a.stmt(LD_ABS, data_arg_hi(i));
            a.stmt(AND_K, v_hi);
            a.jump(JEQ, (t >> 32) as u32, 1, 0);
            a.ja(fail);
            a.stmt(LD_ABS, data_arg_lo(i));
            a.stmt(AND_K, v_lo);
            a.jump(JEQ, t as u32, 1, 0);
            a.ja(fail);
        }
        LinuxSeccompOperator::ScmpCmpGt => ordered(a, i, (v_hi, v_lo), true, false, fail),
        LinuxSeccompOperator::ScmpCmpGe => ordered(a, i, (v_hi, v_lo), false, false, fail),
        // arg < v is not arg >= v; arg <= v is not arg > v.
        LinuxSeccompOperator::ScmpCmpLt => ordered(a, i, (v_hi, v_lo), false, true, fail),
        LinuxSeccompOperator::ScmpCmpLe => ordered(a, i, (v_hi, v_lo), true, true, fail),
    }
}

/// Emits a test of `arg > v` (`strict`) or `arg >= v`, or of its opposite
/// (`negate`): the high words decide unless they are equal, then the low
/// words do. Falls through when the test holds, else jumps to `fail`.
fn ordered(a: &mut Asm, i: u32, (v_hi, v_lo): (u32, u32), strict: bool, negate: bool, fail: usize) {
    // Layout: [0] ld hi; [1] jgt v_hi; [2] jeq v_hi; [3] ld lo; [4] j(g)t/ge
    // v_lo; [5] ja fail; [6] holds. "Above" and "below" are decided at [1]
    // and [2]; each goes to [6] or [5] depending on `negate`.
    let (above, below) = if negate { (3, 3) } else { (4, 2) };
    let (low_jt, low_jf) = if negate { (0, 1) } else { (1, 0) };
    a.stmt(LD_ABS, data_arg_hi(i));
    a.jump(JGT, v_hi, above, 0);
    a.jump(JEQ, v_hi, 0, below);
    a.stmt(LD_ABS, data_arg_lo(i));
    a.jump(if strict { JGT } else { JGE }, v_lo, low_jt, low_jf);
    a.ja(fail);
}

/// A tiny assembler: conditional jumps only ever skip a few instructions
/// (their offsets are 8-bit), and every far jump is a `ja` to a label.
#[derive(Default)]
struct Asm {
    insns: Vec<SockFilter>,
    /// Where each label was placed.
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of each `ja` to patch.
    fixups: Vec<(usize, usize)>,
}

impl Asm {
    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }
    fn jump(&mut self, code: u16, k: u32, jt: u8, jf: u8) {
        self.insns.push(SockFilter { code, jt, jf, k });
    }
    fn ret(&mut self, k: u32) {
        self.stmt(RET_K, k);
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn ja(&mut self, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.stmt(JA, 0);
    }
    fn finish(mut self) -> Result<Vec<u64>> {
        if self.insns.len() > MAX_INSNS {
            return Err(Error::Spec(format!(
                "seccomp: the profile compiles to {} instructions, over the kernel's {MAX_INSNS}",
                self.insns.len()
            )));
        }
        for (at, label) in self.fixups {
            let target = self.labels[label].expect("every label is placed");
            self.insns[at].k = (target - at - 1) as u32;
        }
        Ok(self
            .insns
            .iter()
            .map(|i| i.code as u64 | (i.jt as u64) << 16 | (i.jf as u64) << 24 | (i.k as u64) << 32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    /// Runs `f` in a forked child with `prog` installed; returns its exit code.
    fn in_child(prog: &Program, f: impl FnOnce() -> i32) -> i32 {
        // Allocate before forking: other test threads may hold malloc's lock.
        let filters = prog.filters();
        // SAFETY: the child only makes system calls, then exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let _ = nix::sys::prctl::set_no_new_privs();
                let code = match install(&filters, prog.flags) {
                    Ok(()) => f(),
                    Err(_) => 99,
                };
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, c) => c,
                    nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// errno of a raw `syscall(nr, a0, a1)`, 0 on success.
    fn errno_of(nr: libc::c_long, a0: u64, a1: u64) -> i32 {
        // SAFETY: the calls tested take integer arguments only.
        let r = unsafe { libc::syscall(nr, a0, a1, 0u64) };
        if r < 0 {
            nix::Error::last() as i32
        } else {
            0
        }
    }

    #[test]
    fn default_deny_with_allow_list_and_per_call_errno() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["exit_group", "exit", "getpid", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        })))
        .unwrap();
        let code = in_child(&p, || {
            let allowed = errno_of(libc::SYS_getpid, 0, 0);
            let own_errno = errno_of(libc::SYS_getppid, 0, 0);
            let denied = errno_of(libc::SYS_getuid, 0, 0);
            if (allowed, own_errno, denied) == (0, libc::ENOSYS, libc::EPERM) {
                0
            } else {
                1
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn argument_conditions_compare_all_64_bits() {
        // Deny dup3 unless its flags (arg 2) are exactly O_CLOEXEC, and
        // deny fcntl cmd (arg 1) >= 1 << 33 only: a value that differs
        // from small ones in the high word alone.
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 2, "value": libc::O_CLOEXEC, "op": "SCMP_CMP_NE"}]},
                {"names": ["fcntl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 1u64 << 33, "op": "SCMP_CMP_GE"}]},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 0xff, "valueTwo": 0x0f, "op": "SCMP_CMP_MASKED_EQ"}]},
                // Ordered tests against 1 << 33, whose low word is zero.
                // The kernel sees these pids truncated to 0 (itself).
                {"names": ["sched_getscheduler"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 1u64 << 33, "op": "SCMP_CMP_LT"}]},
                {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 1u64 << 33, "op": "SCMP_CMP_LE"}]},
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 1u64 << 33, "op": "SCMP_CMP_GT"}]},
                // No valueTwo: Go leaves a zero out.
                {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 0, "value": 0xf0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })))
        .unwrap();
        let code = in_child(&p, || {
            let checks = [
                // dup3(0, 100, 0): flags != O_CLOEXEC → denied.
                (errno_of(libc::SYS_dup3, 0, 100), libc::EACCES),
                // fcntl(0, F_GETFD): small cmd → allowed.
                (errno_of(libc::SYS_fcntl, 0, libc::F_GETFD as u64), 0),
                // fcntl(0, 1 << 33 | F_GETFD) → denied by the high word.
                (
                    errno_of(libc::SYS_fcntl, 0, 1 << 33 | libc::F_GETFD as u64),
                    libc::EACCES,
                ),
                // getpriority(0x1f & 0xff == 0x1f != 0x0f) → allowed (EINVAL from the kernel).
                (errno_of(libc::SYS_getpriority, 0x1f, 0), libc::EINVAL),
                // getpriority(0x0f) → masked equal → denied.
                (errno_of(libc::SYS_getpriority, 0x0f, 0), libc::EACCES),
                (errno_of(libc::SYS_sched_getscheduler, 0, 0), libc::EACCES),
                (errno_of(libc::SYS_sched_getscheduler, 1 << 34, 0), 0),
                (errno_of(libc::SYS_getsid, 1 << 33, 0), libc::EACCES),
                (errno_of(libc::SYS_getsid, 1 << 34, 0), 0),
                (errno_of(libc::SYS_getpgid, 1 << 33, 0), 0),
                (errno_of(libc::SYS_getpgid, (1 << 33) + 1, 0), libc::EACCES),
                (errno_of(libc::SYS_umask, 0x12, 0), 0),
                (errno_of(libc::SYS_umask, 0x0f, 0), libc::EACCES),
            ];
            checks
                .iter()
                .position(|(got, want)| got != want)
                .map_or(0, |i| 10 + i as i32)
        });
        assert_eq!(code, 0, "check {} failed", code - 10);
    }

    #[test]
    fn kill_process_action_kills() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
        })))
        .unwrap();
        assert_eq!(
            in_child(&p, || errno_of(libc::SYS_getppid, 0, 0)),
            128 + libc::SIGSYS
        );
    }

    #[test]
    fn large_profiles_fit_and_bad_ones_are_refused() {
        // Every call this kernel knows, each with an argument test: the
        // far jumps must all resolve.
        let names: Vec<String> = syscalls::Sysno::iter()
            .map(|s| s.name().to_string())
            .collect();
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ALLOW"},
            ]
        })))
        .unwrap();
        assert!(p.len() < MAX_INSNS, "{}", p.len());
        assert_eq!(Program::from_bytes(&p.to_bytes()), Some(p.clone()));
        assert_eq!(Program::from_bytes(&[1, 2, 3, 4, 5]), None);
        // The kernel checks every jump when it loads the program.
        assert_eq!(in_child(&p, || errno_of(libc::SYS_getpid, 0, 0)), 0);
        for (json, want) in [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                "SCMP_ACT_NOTIFY",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
                "index 6",
            ),
        ] {
            let err = compile(&profile(json)).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
