//! Publishing task events to containerd, in order, off the request path.
//!
//! Events go straight to containerd's `Events.Forward` over our own ttrpc
//! client rather than through `containerd_shim`'s `RemotePublisher`: that
//! one names each event's type through protobuf reflection, which builds
//! descriptor pools on first use — heap and code that would then stay
//! resident in every idle shim. The type URL is the event's full protobuf
//! name (`containerd.events.TaskExit`), what containerd's typeurl expects.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::{Client, EventsClient};
use containerd_shim::Context;

/// The protobuf package of containerd's task events.
const EVENTS_PACKAGE: &str = "containerd.events";

/// One event ready to forward: its topic and its packed message.
type Queued = (&'static str, Any);

/// A queue drained by one thread, so events reach containerd in the order
/// they were raised and a slow containerd never blocks an RPC.
pub struct Events {
    tx: Mutex<Sender<Queued>>,
}

impl Events {
    /// Connects to containerd's ttrpc address and starts the publishing
    /// thread.
    pub fn new(namespace: String, ttrpc_address: &str) -> std::io::Result<Events> {
        let failed =
            |e: &dyn std::fmt::Display| std::io::Error::other(format!("{ttrpc_address}: {e}"));
        let fd = containerd_shim::util::connect(ttrpc_address).map_err(|e| failed(&e))?;
        let client = EventsClient::new(Client::new(fd).map_err(|e| failed(&e))?);
        let (tx, rx) = channel::<Queued>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    let mut envelope = Envelope::new();
                    envelope.topic = topic.to_string();
                    envelope.namespace = namespace.clone();
                    envelope.timestamp = crate::service::ts(std::time::SystemTime::now());
                    envelope.event = Some(event).into();
                    let mut req = ForwardRequest::new();
                    req.envelope = Some(envelope).into();
                    if let Err(e) = client.forward(Context::default(), &req) {
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
        let _ = self.tx.lock().unwrap().send((topic, any));
    }
}
