//! `setTimeout` / `setInterval` as owned values: dropping one clears it.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

/// A repeating timer; cleared when dropped.
pub struct Interval {
    id: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Interval {
    pub fn new(period_ms: i32, callback: impl FnMut() + 'static) -> Option<Interval> {
        let callback = Closure::<dyn FnMut()>::new(callback);
        let window = web_sys::window()?;
        let id = window
            .set_interval_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                period_ms,
            )
            .ok()?;
        Some(Interval { id, _callback: callback })
    }
}

impl Drop for Interval {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            window.clear_interval_with_handle(self.id);
        }
    }
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Lets the page's other tasks (timers, input, rendering) run, then resumes. A chain of
/// awaited SubtleCrypto digests alone starves them: in Chromium 156 not one 5 ms interval
/// fired while 64 MiB were hashed piece by piece. The task is posted through a
/// `MessageChannel`, which browsers do not clamp the way they clamp nested timeouts.
pub async fn yield_to_page() {
    let Ok(channel) = web_sys::MessageChannel::new() else { return sleep(0).await };
    let port = channel.port1();
    let promise = js_sys::Promise::new(&mut |resolve, _| port.set_onmessage(Some(&resolve)));
    if channel.port2().post_message(&wasm_bindgen::JsValue::NULL).is_err() {
        return sleep(0).await;
    }
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    port.set_onmessage(None);
    port.close();
    channel.port2().close();
}

/// Long work in slices: the page gets a turn ([`yield_to_page`]) whenever `slice` has passed
/// since its last one.
pub struct PageTurns {
    clock: crate::clock::Clock,
    slice: std::time::Duration,
    since: shoal_proto::Instant,
}

impl PageTurns {
    pub fn new(clock: crate::clock::Clock, slice: std::time::Duration) -> PageTurns {
        PageTurns { clock, slice, since: clock.now() }
    }

    pub async fn take_if_due(&mut self) {
        if self.clock.now().saturating_since(self.since) >= self.slice {
            yield_to_page().await;
            self.since = self.clock.now();
        }
    }
}
