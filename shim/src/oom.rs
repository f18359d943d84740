//! Live OOM events: one thread waits (epoll) on every container's OOM
//! notifier, so `/tasks/oom` reaches containerd when the kernel OOM-kills
//! in a container's cgroup, also when the victim is not the init. The
//! init-exit path reports through the same count, so each kill is
//! published once.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use amphi_runtime::cgroup::{drain_notifier, Cgroup};
use containerd_shim::protos::events::task::TaskOOM;
use containerd_shim::protos::topics::TASK_OOM_EVENT_TOPIC;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::events::Events;

struct Watched {
    id: String,
    fd: OwnedFd,
    cgroup: Cgroup,
}

/// The watched containers and what was published for each.
pub struct OomWatch {
    epoll: Epoll,
    watched: Mutex<HashMap<u64, Watched>>,
    /// OOM kills already published, by container.
    published: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
}

impl OomWatch {
    /// An empty watch.
    pub fn new() -> nix::Result<OomWatch> {
        Ok(OomWatch {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            watched: Mutex::new(HashMap::new()),
            published: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Starts watching container `id`'s cgroup.
    pub fn watch(&self, id: &str, cgroup: &Cgroup) -> amphi_runtime::Result<()> {
        let fd = cgroup.oom_notifier()?;
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.epoll
            .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|e| amphi_runtime::Error::Cgroup {
                path: "epoll".into(),
                msg: e.to_string(),
            })?;
        // A new container of this id starts from no kills.
        self.published.lock().unwrap().insert(id.to_string(), 0);
        self.watched.lock().unwrap().insert(
            token,
            Watched {
                id: id.to_string(),
                fd,
                cgroup: cgroup.clone(),
            },
        );
        Ok(())
    }

    /// Stops watching container `id` and forgets it.
    pub fn unwatch(&self, id: &str) {
        let mut watched = self.watched.lock().unwrap();
        let tokens: Vec<u64> = watched
            .iter()
            .filter(|(_, w)| w.id == id)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(w) = watched.remove(&t) {
                let _ = self.epoll.delete(&w.fd);
            }
        }
        // A tombstone, not a removal: a watcher thread woken just before
        // (still waiting for the count in `report_woken`) must not publish
        // the deleted container's kill a second time.
        self.published
            .lock()
            .unwrap()
            .insert(id.to_string(), u64::MAX);
    }

    /// Publishes `/tasks/oom` for `id` if its cgroup counts an OOM kill
    /// that was not published yet; returns whether it did.
    pub fn report(&self, id: &str, cgroup: &Cgroup, events: &Events) -> bool {
        let mut published = self.published.lock().unwrap();
        let kills = cgroup.oom_kills();
        let seen = published.entry(id.to_string()).or_insert(0);
        if kills <= *seen {
            return false;
        }
        *seen = kills;
        let mut ev = TaskOOM::new();
        ev.container_id = id.to_string();
        events.send(TASK_OOM_EVENT_TOPIC, ev);
        true
    }

    /// [`OomWatch::report`] after a notifier fired. The kernel signals
    /// when the cgroup goes out of memory, a moment before the OOM killer
    /// has picked and counted its victim: wait a little for the count.
    pub fn report_woken(&self, id: &str, cgroup: &Cgroup, events: &Events) {
        for _ in 0..40 {
            if self.report(id, cgroup, events) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Blocks until some notifiers fire; returns their containers.
    pub fn wait(&self) -> Vec<(String, Cgroup)> {
        let mut ready = [EpollEvent::empty(); 16];
        let n = match self.epoll.wait(&mut ready, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(_) => return Vec::new(),
        };
        let watched = self.watched.lock().unwrap();
        ready[..n]
            .iter()
            .filter_map(|ev| watched.get(&ev.data()))
            .map(|w| {
                drain_notifier(&w.fd);
                (w.id.clone(), w.cgroup.clone())
            })
            .collect()
    }
}
