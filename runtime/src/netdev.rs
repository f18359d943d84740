//! The one network device a fresh network namespace needs: its loopback,
//! which the kernel creates down. A container with its own (new) network
//! namespace gets `lo` up, as Docker's `--network none` and a CNI
//! `loopback` plugin give it, so 127.0.0.1 works inside.

use std::io;

/// Brings `lo` of the calling thread's network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes a new network namespace with `lo` up, on the calling thread
/// (`unshare` moves only this thread into it), and returns a handle on
/// it: the namespace lives while the handle is open. Meant for a thread
/// of its own, which then ends.
pub(crate) fn new_namespace() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain unshare(2) of this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    loopback_up()?;
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}
