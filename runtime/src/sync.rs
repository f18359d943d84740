//! The line protocol on the socketpair between a container's creator and
//! its init: newline-terminated replies, one of which may carry a file
//! descriptor (the console's master side) as SCM_RIGHTS.
//!
//! Replies are read one byte per `recvmsg`, never through a buffered
//! reader: a plain read of the bytes a descriptor rides on would drop it.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// The line a Wasm init sends once its compiled module is in the cache
/// (compiled there, on a miss): from then on it may be moved into the
/// container's cgroup.
pub(crate) const PREPARED: &str = "prepared";

/// The byte the creator sends once the container's cgroup exists, after
/// the init's config: the init sets up what needs no cgroup (its config
/// parsed, lo up, its module mapped) while the creator makes it.
pub(crate) const CGROUP_READY: u8 = b'\n';

/// Sends the init its config, framed (a little-endian u32 length first),
/// so the socket stays open for [`CGROUP_READY`] after it.
pub(crate) fn send_config(mut sock: impl std::io::Write, json: &[u8]) -> std::io::Result<()> {
    let len =
        u32::try_from(json.len()).map_err(|_| std::io::Error::other("init config too large"))?;
    let mut framed = Vec::with_capacity(4 + json.len());
    framed.extend_from_slice(&len.to_le_bytes());
    framed.extend_from_slice(json);
    sock.write_all(&framed)
}

/// Reads the config [`send_config`] framed.
pub(crate) fn read_config(sock: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    sock.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads one reply line (without the newline; empty at EOF) and any
/// descriptor sent with it.
pub(crate) fn read_line(sock: &impl AsRawFd) -> std::io::Result<(String, Option<OwnedFd>)> {
    let mut line = Vec::new();
    let mut fd = None;
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        if msg.bytes == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok((String::from_utf8_lossy(&line).into_owned(), fd))
}

/// Sends `line` (a newline is added) with `fd` attached.
pub(crate) fn send_fd(sock: &impl AsRawFd, line: &str, fd: RawFd) -> std::io::Result<()> {
    let data = format!("{line}\n");
    let iov = [std::io::IoSlice::new(data.as_bytes())];
    let fds = [fd];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}
