//! What other connections hand to a WebSocket peer (relayed offers and answers): a short
//! bounded queue and a wake-up. An idle connection's outbox allocates nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<String>>,
    notify: Notify,
    closed: AtomicBool,
    cap: usize,
}

impl Outbox {
    pub fn new(cap: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            cap,
        })
    }

    /// Queues a message; `false` (and the message dropped) when the peer is gone or too slow
    /// to keep up. Signalling is best effort: the offerer times out and tries other peers.
    pub fn push(&self, msg: String) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() >= self.cap {
                return false;
            }
            q.push_back(msg);
        }
        self.notify.notify_one();
        true
    }

    /// Everything queued so far, leaving the queue without allocation.
    pub fn take_all(&self) -> VecDeque<String> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub async fn wait(&self) {
        self.notify.notified().await
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.take_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_closable() {
        let o = Outbox::new(2);
        assert!(o.push("a".into()) && o.push("b".into()));
        assert!(!o.push("c".into()));
        assert_eq!(o.take_all(), ["a", "b"]);
        assert!(o.push("d".into()));
        o.close();
        assert!(!o.push("e".into()));
        assert!(o.take_all().is_empty());
    }
}
