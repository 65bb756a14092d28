//! The process's byte rate caps: one [`RateCap`] that every byte we send to peers (TCP, uTP
//! and WebRTC writers) and to web seed clients (`shoal serve`) waits on (`--max-upload-rate`),
//! and one that every byte we read from peers and web seeds waits on (`--max-download-rate`).
//! A session always has both, uncapped unless told, so that a cap can be set, changed or
//! lifted while it runs (the server's API, Transmission RPC's `session-set`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use shoal_proto::rate::RateLimit;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use crate::clock::Clock;

/// Bytes that may leave at once after a quiet spell: a tenth of a second's worth, at least a
/// block and its header, so the cap is smooth at the scale a player or a peer notices.
fn burst_for(rate: u64) -> u64 {
    (rate / 10).max(16 * 1024 + 13)
}

fn limit_of(rate: u64) -> RateLimit {
    let rate = rate.max(MIN_RATE);
    RateLimit::new(rate, burst_for(rate))
}

/// The caps a peer connection waits on: its writer on `upload`, its reader on `download`.
#[derive(Clone, Debug, Default)]
pub struct LinkCaps {
    pub upload: Option<RateCap>,
    pub download: Option<RateCap>,
}

/// The lowest cap: below it a single block would wait for seconds, and reads and writes
/// already scheduled at such a rate would outlive any change of mind.
pub const MIN_RATE: u64 = 16 * 1024;

/// A shared byte rate cap, changeable while it is used; cloning shares it.
#[derive(Clone, Debug)]
pub struct RateCap {
    /// `None`: no cap (bytes never wait).
    limit: Arc<Mutex<Option<RateLimit>>>,
    /// Wakes the waiting when the cap changes: they take their turn again under the new one.
    changed: Arc<tokio::sync::Notify>,
    clock: Clock,
}

impl RateCap {
    /// At most `rate` bytes per second (at least [`MIN_RATE`]), all users together; `None`
    /// for no cap.
    pub fn new(rate: Option<u64>) -> RateCap {
        RateCap {
            limit: Arc::new(Mutex::new(rate.map(limit_of))),
            changed: Arc::new(tokio::sync::Notify::new()),
            clock: Clock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RateLimit>> {
        self.limit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cap in bytes per second; `None` when there is none.
    pub fn rate(&self) -> Option<u64> {
        self.lock().as_ref().map(RateLimit::rate)
    }

    /// Sets, changes or (with `None`) lifts the cap (at least [`MIN_RATE`]). Bytes waiting
    /// take their turn again under the new one.
    pub fn set_rate(&self, rate: Option<u64>) {
        *self.lock() = rate.map(limit_of);
        self.changed.notify_waiters();
    }

    /// Waits until `bytes` may be sent (they are counted from now on, so others wait for them).
    pub async fn acquire(&self, bytes: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Some(at) = self.reserve(bytes) else { return };
            tokio::select! {
                () = tokio::time::sleep_until(at) => return,
                // A new cap (or none): the old schedule is gone, take a turn in the new one.
                () = changed => {}
            }
        }
    }

    /// Counts `bytes` as sent; `Some(when)` if they should have waited until then.
    fn reserve(&self, bytes: usize) -> Option<tokio::time::Instant> {
        let now = self.clock.now();
        let at = self.lock().as_mut()?.reserve(now, bytes as u64);
        (at > now).then(|| self.clock.tokio_instant(at))
    }

    /// `reader`, read no faster than the cap allows (for bodies sent over HTTP).
    pub fn reader<R: AsyncRead + Unpin>(&self, reader: R) -> LimitedRead<R> {
        LimitedRead { inner: reader, limit: self.clone(), wait: None }
    }
}

/// A reader under a [`RateCap`]: each read is counted, and the next one waits for the
/// time the previous one should have taken, so a body runs at most one read (the caller's
/// buffer) ahead of the cap.
pub struct LimitedRead<R> {
    inner: R,
    limit: RateCap,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for LimitedRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(wait) = &mut self.wait {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            let n = buf.filled().len() - before;
            if let Some(at) = self.limit.reserve(n) {
                self.wait = Some(Box::pin(tokio::time::sleep_until(at)));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A correctness bound, not a speed one: the cap may never be exceeded.
    #[tokio::test]
    async fn senders_together_stay_under_the_cap() {
        let limit = RateCap::new(Some(1 << 20));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                tokio::spawn(async move {
                    for _ in 0..16 {
                        limit.acquire(16 * 1024).await; // 256 KiB per task
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("sender task");
        }
        // 1 MiB at 1 MiB/s: all but the first burst (a tenth of a second) waits its turn.
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.85, "1 MiB left in {took}s under a 1 MiB/s cap");
    }

    /// A cap set while it is used applies to the next bytes; lifted, nothing waits.
    #[tokio::test]
    async fn a_cap_can_be_set_and_lifted_while_in_use() {
        let cap = RateCap::new(None);
        assert_eq!(cap.rate(), None);
        assert!(cap.reserve(10 << 20).is_none(), "no cap: nothing waits");
        cap.set_rate(Some(1 << 20));
        assert_eq!(cap.rate(), Some(1 << 20));
        let _ = cap.reserve(1 << 20);
        assert!(cap.reserve(1).is_some(), "a second's worth reserved: the next byte waits");
        cap.set_rate(None);
        assert!(cap.reserve(10 << 20).is_none(), "lifted: nothing waits");
    }

    /// Bytes waiting on a low cap go as soon as the cap is lifted, not at their old turn.
    #[tokio::test]
    async fn lifting_the_cap_wakes_what_waits_on_it() {
        let cap = RateCap::new(Some(MIN_RATE));
        // Ten seconds' worth goes now (a turn is its start); whatever comes next waits for it.
        cap.acquire(10 * MIN_RATE as usize).await;
        let waiting = tokio::spawn({
            let cap = cap.clone();
            async move { cap.acquire(1024).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the next bytes wait their turn");
        cap.set_rate(None);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the lift")
            .expect("the waiting task");
    }
}
