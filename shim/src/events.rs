//! Publishing task events to containerd, in order, off the request path.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

/// A queue drained by one thread, so events reach containerd in the order
/// they were raised and a slow containerd never blocks an RPC.
pub struct Events {
    tx: Mutex<Sender<(&'static str, Box<dyn MessageDyn>)>>,
}

impl Events {
    /// Starts the publishing thread.
    pub fn new(namespace: String, publisher: RemotePublisher) -> Events {
        let (tx, rx) = channel::<(&'static str, Box<dyn MessageDyn>)>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    if let Err(e) = publisher.publish(Context::default(), topic, &namespace, event)
                    {
                        log::warn!("publishing {topic}: {e}");
                    }
                }
            })
            .expect("spawn events thread");
        Events { tx: Mutex::new(tx) }
    }

    /// Queues an event for `topic`.
    pub fn send(&self, topic: &'static str, event: impl MessageDyn + 'static) {
        let _ = self.tx.lock().unwrap().send((topic, Box::new(event)));
    }
}
