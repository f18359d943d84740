//! Publishing task events to containerd, in order, off the request path.
//!
//! One thread drains a queue and calls containerd's `Events.Forward` over
//! one connection, a request at a time, framed by hand: ttrpc's client
//! would add a reader and a writer thread to every shim for a call that
//! is strictly one-after-another, and `containerd_shim`'s publisher names
//! each event's type through protobuf reflection, which builds descriptor
//! pools that would then stay resident in every idle shim. The type URL is
//! the event's full protobuf name (`containerd.events.TaskExit`), what
//! containerd's typeurl expects.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::Duration;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::proto::{
    MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_REQUEST, MESSAGE_TYPE_RESPONSE,
};
use containerd_shim::protos::ttrpc::{Code, MessageHeader, Request, Response};

/// The protobuf package of containerd's task events.
const EVENTS_PACKAGE: &str = "containerd.events";
/// containerd's ttrpc events service and its one method.
const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const METHOD: &str = "Forward";

/// What the publishing thread is handed.
enum Queued {
    /// An event ready to forward: its topic and its packed message.
    Event(&'static str, Any),
    /// Answer once every event queued before has been forwarded.
    Barrier(Sender<()>),
}

/// A queue drained by one thread, so events reach containerd in the order
/// they were raised and a slow containerd never blocks an RPC.
pub struct Events {
    tx: Mutex<Sender<Queued>>,
}

impl Events {
    /// Connects to containerd's ttrpc address and starts the publishing
    /// thread.
    pub fn new(namespace: String, ttrpc_address: &str) -> std::io::Result<Events> {
        let mut forwarder = Forwarder::connect(ttrpc_address)?;
        let (tx, rx) = channel::<Queued>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for item in rx {
                    let (topic, event) = match item {
                        Queued::Event(topic, event) => (topic, event),
                        Queued::Barrier(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    let mut envelope = Envelope::new();
                    envelope.topic = topic.to_string();
                    envelope.namespace = namespace.clone();
                    envelope.timestamp = crate::service::ts(std::time::SystemTime::now());
                    envelope.event = Some(event).into();
                    let mut req = ForwardRequest::new();
                    req.envelope = Some(envelope).into();
                    if let Err(e) = forwarder.forward(&req) {
                        log::warn!("publishing {topic}: {e}");
                    }
                }
            })?;
        Ok(Events { tx: Mutex::new(tx) })
    }

    /// Queues an event for `topic`.
    pub fn send<E: Message>(&self, topic: &'static str, event: E) {
        let mut any = Any::new();
        any.type_url = format!("{EVENTS_PACKAGE}.{}", E::NAME);
        match event.write_to_bytes() {
            Ok(bytes) => any.value = bytes,
            Err(e) => {
                log::warn!("encoding {topic}: {e}");
                return;
            }
        }
        let _ = self.tx.lock().unwrap().send(Queued::Event(topic, any));
    }

    /// Waits (at most `timeout`) until every event queued so far has been
    /// forwarded: the shim exits right after, and the last of them
    /// (`/tasks/delete`) must not die in the queue.
    pub fn flush(&self, timeout: Duration) {
        let (done, flushed) = channel();
        if self.tx.lock().unwrap().send(Queued::Barrier(done)).is_ok() {
            let _ = flushed.recv_timeout(timeout);
        }
    }
}

/// A ttrpc connection to containerd that makes one `Forward` call at a
/// time, reconnecting once when containerd went away (it restarts while
/// containers run).
struct Forwarder {
    address: String,
    conn: Option<UnixStream>,
    /// Client-initiated ttrpc streams have odd ids.
    next_stream: u32,
}

impl Forwarder {
    fn connect(address: &str) -> std::io::Result<Forwarder> {
        let mut f = Forwarder {
            address: address.to_string(),
            conn: None,
            next_stream: 1,
        };
        f.conn = Some(f.dial()?);
        Ok(f)
    }

    fn dial(&self) -> std::io::Result<UnixStream> {
        let path = self
            .address
            .strip_prefix("unix://")
            .unwrap_or(&self.address);
        UnixStream::connect(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.address)))
    }

    fn forward(&mut self, req: &ForwardRequest) -> std::io::Result<()> {
        let mut call = Request::new();
        call.service = SERVICE.to_string();
        call.method = METHOD.to_string();
        call.payload = req.write_to_bytes().map_err(std::io::Error::other)?;
        let body = call.write_to_bytes().map_err(std::io::Error::other)?;
        match self.call(&body) {
            Err(e) if e.kind() != std::io::ErrorKind::InvalidData => {
                // A broken connection: containerd restarted. Once more on a
                // new one; an event must not be lost to a restart.
                self.conn = Some(self.dial()?);
                self.call(&body)
            }
            r => r,
        }
    }

    /// One request and its response on the current connection.
    fn call(&mut self, body: &[u8]) -> std::io::Result<()> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(self.dial()?),
        };
        let stream_id = self.next_stream;
        self.next_stream = self.next_stream.wrapping_add(2);
        let header: Vec<u8> = MessageHeader {
            length: body.len() as u32,
            stream_id,
            type_: MESSAGE_TYPE_REQUEST,
            flags: 0,
        }
        .into();
        let sent = conn.write_all(&header).and_then(|()| conn.write_all(body));
        let received = sent.and_then(|()| read_response(conn, stream_id));
        if received.is_err() {
            self.conn = None;
        }
        let resp = received?;
        match resp.status.as_ref() {
            Some(s) if s.code != Code::OK.into() => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("containerd answered {:?}: {}", s.code, s.message),
            )),
            _ => Ok(()),
        }
    }
}

/// Reads messages until the response to `stream_id`.
fn read_response(conn: &mut UnixStream, stream_id: u32) -> std::io::Result<Response> {
    loop {
        let mut header = [0u8; MESSAGE_HEADER_LENGTH];
        conn.read_exact(&mut header)?;
        let header = MessageHeader::from(header);
        if header.length as usize > MESSAGE_LENGTH_MAX {
            return Err(std::io::Error::other(format!(
                "ttrpc message of {} bytes",
                header.length
            )));
        }
        let mut body = vec![0u8; header.length as usize];
        conn.read_exact(&mut body)?;
        if header.type_ == MESSAGE_TYPE_RESPONSE && header.stream_id == stream_id {
            return Response::parse_from_bytes(&body).map_err(std::io::Error::other);
        }
    }
}
