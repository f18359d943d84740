//! The log of a detached container: one record per line, in the format
//! containerd's CRI plugin writes for kubelet, `TIME STREAM TAG CONTENT`:
//! TIME is RFC 3339 with nanoseconds in UTC, STREAM `stdout` or `stderr`,
//! TAG `F` for a full line (the newline that ended it is the record's own)
//! or `P` for a part of one (no newline follows it: a line longer than
//! [`MAX_LINE`], or the last output without a newline). So `logs` gives
//! each stream back on its own, byte for byte, with `-t`, `--since` and
//! `--until`, as Docker's json-file log lets it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A line longer than this is logged in parts, as Docker's log buffer
/// splits it.
pub const MAX_LINE: usize = 16 << 10;

/// Which of a container's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record, as [`parse`] reads it from a line of the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// When the output was read, as written (RFC 3339, nanoseconds).
    pub time: &'a str,
    /// Its stream.
    pub stream: Stream,
    /// The output, with the newline that ended it for a full line.
    pub content: Vec<u8>,
}

/// A log shared by the pumps of one container's streams: each record is
/// one `write` under the lock, so records never interleave.
pub type Log = Arc<Mutex<std::fs::File>>;

fn write_record(log: &Log, stream: Stream, part: &[u8], full: bool) -> std::io::Result<()> {
    let time = crate::inspect::rfc3339(Some(SystemTime::now()));
    let mut rec = Vec::with_capacity(part.len() + 48);
    rec.extend_from_slice(time.as_bytes());
    rec.push(b' ');
    rec.extend_from_slice(stream.name().as_bytes());
    rec.extend_from_slice(if full { b" F " } else { b" P " });
    rec.extend_from_slice(part);
    rec.push(b'\n');
    log.lock().unwrap().write_all(&rec)
}

/// How long a line's start waits for its end before it is logged as a
/// part: so a prompt without a newline reaches `logs` and `attach` at
/// once, yet a line written in pieces stays one record.
const PART_WAIT_MS: u16 = 50;

/// Copies `from` into `log` as records of `stream` until it ends (or the
/// log cannot be written): whole lines as they complete; a line longer
/// than [`MAX_LINE`], or whose end has not come within `PART_WAIT_MS`, in
/// parts; what is left at the end as a part.
pub fn pump(from: std::fs::File, stream: Stream, log: &Log) {
    pump_to(from, stream, log, None)
}

/// As [`pump`], each byte also copied to `also` as it arrives (a
/// foreground run's terminal): a log that cannot be written stops only
/// the log, a copy that cannot be written only the copy.
pub fn pump_to(
    mut from: std::fs::File,
    stream: Stream,
    log: &Log,
    mut also: Option<&mut dyn Write>,
) {
    use std::os::fd::AsFd;
    let mut logging = true;
    let record = |part: &[u8], full: bool, logging: &mut bool| {
        if *logging && write_record(log, stream, part, full).is_err() {
            *logging = false;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        if !pending.is_empty() {
            let mut fds = [nix::poll::PollFd::new(
                from.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(PART_WAIT_MS));
            if matches!(ready, Ok(0)) {
                record(&pending, false, &mut logging);
                pending.clear();
            }
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(w) = also.as_mut() {
            if w.write_all(&buf[..n]).and_then(|()| w.flush()).is_err() {
                also = None;
            }
        }
        if !logging {
            if also.is_none() {
                return;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            record(&pending[start..start + nl], true, &mut logging);
            start += nl + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            record(&pending[..MAX_LINE], false, &mut logging);
            pending.drain(..MAX_LINE);
        }
        if !logging {
            pending.clear();
        }
    }
    if !pending.is_empty() {
        record(&pending, false, &mut logging);
    }
}

/// Reads one line of the log (without its newline); `None` for a line
/// that is no record (the raw output an older amphi logged).
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut it = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?;
    crate::inspect::parse_rfc3339(time)?;
    let stream = match it.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match it.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let mut content = it.next().unwrap_or_default().to_vec();
    if full {
        content.push(b'\n');
    }
    Some(Entry {
        time,
        stream,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(input: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let (path, input_path) = (dir.path().join("log"), dir.path().join("input"));
        std::fs::write(&input_path, input).unwrap();
        let log: Log = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
        pump(
            std::fs::File::open(&input_path).unwrap(),
            Stream::Stderr,
            &log,
        );
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn a_lines_start_waits_briefly_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log: Log = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        let pumping = {
            let log = log.clone();
            std::thread::spawn(move || pump(std::fs::File::from(r), Stream::Stdout, &log))
        };
        w.write_all(b"prompt> ").unwrap();
        // Logged while the writer is still there, as a part.
        let t = std::time::Instant::now();
        while !std::fs::read(&path)
            .unwrap()
            .ends_with(b" stdout P prompt> \n")
        {
            assert!(t.elapsed().as_secs() < 10, "the prompt was never logged");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        w.write_all(b"answer\n").unwrap();
        drop(w);
        pumping.join().unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(text.ends_with(" stdout F answer\n"), "{text}");
    }

    #[test]
    fn output_comes_back_byte_for_byte() {
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        for input in [
            &b"one\ntwo\n"[..],
            b"no newline at the end",
            b"\n\n",
            &long,
            b"a b  c\n",
        ] {
            let log = logged(input);
            let mut back = Vec::new();
            for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let e = parse(line).unwrap();
                assert_eq!(e.stream, Stream::Stderr);
                back.extend(e.content);
            }
            assert_eq!(back, input, "{}", String::from_utf8_lossy(&log));
        }
        let log = logged(b"hi\n");
        assert!(
            log.ends_with(b" stderr F hi\n"),
            "{}",
            String::from_utf8_lossy(&log)
        );
    }

    #[test]
    fn raw_lines_are_no_records() {
        assert_eq!(parse(b"hello world"), None);
        assert_eq!(parse(b"2026-12-04T04:00:00.000000000Z stdin F x"), None);
        assert!(parse(b"2026-12-04T04:00:00.000000000Z stdout P").is_some());
    }
}
