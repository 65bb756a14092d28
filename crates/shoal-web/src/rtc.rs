//! WebRTC with the browser's `RTCPeerConnection`, the way WebTorrent peers expect it: one
//! ordered, reliable data channel, and offers and answers carrying their ICE candidates (no
//! trickle), so each needs one trip through the tracker.
//!
//! Two waits dominate how soon a pasted magnet reaches its first peer, and both are cut here
//! (measured in a fresh Chromium 156 page, five offers at once, no STUN): the first
//! connection of a page generates its DTLS certificate (~85 ms before the first offer), and
//! ICE gathering reports "complete" ~120 ms after the host candidates, which arrive ~10 ms
//! after `setLocalDescription`. So the page makes one certificate for all its connections
//! ([`prepare_certificate`]; `shoal.js` starts it at import, beside the engine's download,
//! and hands it over with [`adopt_certificate`]), and an SDP is sent once the candidates worth
//! sending are in ([`gathered_sdp`]) rather than when gathering is complete.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcIceGatheringState, RtcPeerConnection,
    RtcSdpType, RtcSessionDescriptionInit,
};

use crate::budget::{ConnectionBudget, Slot};

/// How long we wait for ICE gathering before sending what we have (STUN servers that do not
/// answer must not hold an announce up forever).
const GATHER_TIMEOUT_MS: i32 = 5_000;
/// After the first candidate worth sending, how long its siblings get: the same kind on the
/// page's other interfaces and address families. Measured in Chromium 156 on a host with an
/// IPv4 and an IPv6 address, with and without mDNS names: the second host candidate came
/// 0.1-0.9 ms after the first, so 5 ms leaves a wide margin and every announce waits less.
const SETTLE_MS: i32 = 5;

thread_local! {
    /// The page's DTLS certificate, shared by all its connections: generating one per
    /// connection costs the first offer ~85 ms. (The page has one peer id for all its
    /// connections already, so one certificate tells a remote nothing more.)
    static CERTIFICATE: RefCell<Certificate> = const { RefCell::new(Certificate::NotStarted) };
}

enum Certificate {
    NotStarted,
    Pending(Promise),
    Ready(JsValue),
    /// The browser would not make one: every connection makes its own, as by default.
    Unavailable,
}

/// Takes the certificate `shoal.js` started generating when it was imported, so that it is
/// made while the engine downloads and compiles, not after: a promise of an `RTCCertificate`
/// (or of `null` when the browser refused). Ignored once the page has one.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = adoptCertificate)]
pub fn adopt_certificate(pending: Promise) {
    CERTIFICATE.with(|c| {
        let mut c = c.borrow_mut();
        if matches!(*c, Certificate::NotStarted) {
            *c = Certificate::Pending(pending);
        }
    });
}

/// Generates the page's certificate if nobody has yet and waits for it; connections made
/// before it is ready make their own.
pub async fn prepare_certificate() {
    let pending = CERTIFICATE.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Certificate::NotStarted => match generate_certificate() {
                Ok(promise) => {
                    *c = Certificate::Pending(promise.clone());
                    Some(promise)
                }
                Err(e) => {
                    crate::log(&format!("no shared DTLS certificate: {e:?}"));
                    *c = Certificate::Unavailable;
                    None
                }
            },
            Certificate::Pending(promise) => Some(promise.clone()),
            Certificate::Ready(_) | Certificate::Unavailable => None,
        }
    });
    let Some(promise) = pending else { return };
    let result = JsFuture::from(promise).await;
    CERTIFICATE.with(|c| {
        let mut c = c.borrow_mut();
        if matches!(*c, Certificate::Pending(_)) {
            *c = match result {
                Ok(certificate) if certificate.is_object() => Certificate::Ready(certificate),
                Ok(_) => Certificate::Unavailable,
                Err(e) => {
                    crate::log(&format!("no shared DTLS certificate: {e:?}"));
                    Certificate::Unavailable
                }
            };
        }
    });
}

/// `RTCPeerConnection.generateCertificate` with ECDSA P-256, what browsers use by default.
fn generate_certificate() -> Result<Promise, JsValue> {
    let class = Reflect::get(&js_sys::global(), &"RTCPeerConnection".into())?;
    let generate: Function = Reflect::get(&class, &"generateCertificate".into())?.dyn_into()?;
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"ECDSA".into())?;
    Reflect::set(&algorithm, &"namedCurve".into(), &"P-256".into())?;
    generate.call1(&class, &algorithm)?.dyn_into()
}

/// A new connection with the ICE servers given (`urls` strings such as `stun:host:port`),
/// counted against `budget`: fails when the client holds as many as it may.
pub fn peer_connection(
    ice_servers: &[String],
    budget: &Rc<ConnectionBudget>,
) -> Result<(RtcPeerConnection, Slot), JsValue> {
    let Some(slot) = budget.claim() else {
        return Err(JsValue::from_str(&format!(
            "the client holds {} connections, its most",
            budget.max()
        )));
    };
    let config = RtcConfiguration::new();
    let servers = Array::new();
    for url in ice_servers {
        let server = Object::new();
        Reflect::set(&server, &"urls".into(), &url.into())?;
        servers.push(&server);
    }
    config.set_ice_servers(&servers);
    CERTIFICATE.with(|c| match &*c.borrow() {
        Certificate::Ready(certificate) => {
            Reflect::set(&config, &"certificates".into(), &Array::of1(certificate)).map(|_| ())
        }
        _ => Ok(()),
    })?;
    Ok((RtcPeerConnection::new_with_configuration(&config)?, slot))
}

/// Makes the offer side: the data channel and the offer's full SDP.
pub async fn make_offer(pc: &RtcPeerConnection) -> Result<(RtcDataChannel, String), JsValue> {
    let init = RtcDataChannelInit::new();
    init.set_ordered(true);
    let label = format!("{:016x}", js_sys::Math::random().to_bits());
    let channel = pc.create_data_channel_with_data_channel_dict(&label, &init);
    let offer = JsFuture::from(pc.create_offer()).await?;
    let description = description_from(&offer, RtcSdpType::Offer)?;
    JsFuture::from(pc.set_local_description(&description)).await?;
    let sdp = gathered_sdp(pc).await?;
    Ok((channel, sdp))
}

/// Answers a remote offer; the channel arrives through `ondatachannel`.
pub async fn make_answer(pc: &RtcPeerConnection, offer_sdp: &str) -> Result<String, JsValue> {
    let offer = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    offer.set_sdp(offer_sdp);
    JsFuture::from(pc.set_remote_description(&offer)).await?;
    let answer = JsFuture::from(pc.create_answer()).await?;
    let description = description_from(&answer, RtcSdpType::Answer)?;
    JsFuture::from(pc.set_local_description(&description)).await?;
    gathered_sdp(pc).await
}

/// Applies the remote answer to an offer we made.
pub async fn accept_answer(pc: &RtcPeerConnection, answer_sdp: &str) -> Result<(), JsValue> {
    let answer = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
    answer.set_sdp(answer_sdp);
    JsFuture::from(pc.set_remote_description(&answer)).await?;
    Ok(())
}

fn description_from(
    value: &JsValue,
    kind: RtcSdpType,
) -> Result<RtcSessionDescriptionInit, JsValue> {
    let sdp = Reflect::get(value, &"sdp".into())?
        .as_string()
        .ok_or_else(|| JsValue::from_str("the browser made a description without SDP"))?;
    let description = RtcSessionDescriptionInit::new(kind);
    description.set_sdp(&sdp);
    Ok(description)
}

/// Waits until the local SDP lists the candidates worth sending, and returns it: host
/// candidates when no ICE servers are configured (nothing else will come), a server-reflexive
/// or relay candidate when there are. Gathering complete, or [`GATHER_TIMEOUT_MS`], ends the
/// wait too.
async fn gathered_sdp(pc: &RtcPeerConnection) -> Result<String, JsValue> {
    let wanted: &'static [&'static str] =
        if has_ice_servers(pc) { &["srflx", "relay"] } else { &["host"] };
    let already = pc.local_description().is_some_and(|d| lists_candidate(&d.sdp(), wanted));
    if pc.ice_gathering_state() != RtcIceGatheringState::Complete {
        // The executor runs synchronously, so `resolve` is set when `new` returns.
        let mut resolve = None;
        let done = Promise::new(&mut |r, _| resolve = Some(r));
        let resolve = resolve.ok_or_else(|| JsValue::from_str("Promise executor did not run"))?;
        let window = web_sys::window();
        let settle = {
            let (resolve, window, armed) = (resolve.clone(), window.clone(), Cell::new(false));
            move || {
                if !armed.replace(true) {
                    if let Some(window) = &window {
                        let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
                            &resolve, SETTLE_MS,
                        );
                    }
                }
            }
        };
        if already {
            settle();
        }
        let on_change = Closure::<dyn FnMut()>::new({
            let (pc, resolve) = (pc.clone(), resolve.clone());
            move || {
                if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
        });
        let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let line = Reflect::get(&event, &"candidate".into())
                .and_then(|c| Reflect::get(&c, &"candidate".into()))
                .ok()
                .and_then(|line| line.as_string());
            if line.is_some_and(|line| candidate_type(&line).is_some_and(|t| wanted.contains(&t))) {
                settle();
            }
        });
        pc.set_onicegatheringstatechange(Some(on_change.as_ref().unchecked_ref()));
        pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        if let Some(window) = &window {
            let _ = window
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, GATHER_TIMEOUT_MS);
        }
        JsFuture::from(done).await?;
        pc.set_onicegatheringstatechange(None);
        pc.set_onicecandidate(None);
        drop((on_change, on_candidate));
    }
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| JsValue::from_str("no local description after gathering"))
}

fn has_ice_servers(pc: &RtcPeerConnection) -> bool {
    Reflect::get(&pc.get_configuration(), &"iceServers".into())
        .ok()
        .and_then(|servers| servers.dyn_into::<Array>().ok())
        .is_some_and(|servers| servers.length() > 0)
}

/// Whether an SDP has an `a=candidate` line of one of the `wanted` types.
fn lists_candidate(sdp: &str, wanted: &[&str]) -> bool {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a="))
        .filter_map(candidate_type)
        .any(|t| wanted.contains(&t))
}

/// The `typ` of a `candidate:...` attribute: `host`, `srflx`, `prflx` or `relay`.
fn candidate_type(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("candidate:")?;
    let mut fields = rest.split_ascii_whitespace();
    fields.find(|f| *f == "typ")?;
    fields.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_candidate_types() {
        let host = "candidate:1 1 udp 2122260223 198.18.0.1 59707 typ host generation 0";
        let srflx =
            "candidate:2 1 udp 1686052607 203.0.113.9 40000 typ srflx raddr 198.18.0.1 rport 59707";
        assert_eq!(candidate_type(host), Some("host"));
        assert_eq!(candidate_type(srflx), Some("srflx"));
        assert_eq!(candidate_type("candidate:3 1 udp 1 1.2.3.4 5"), None);
        assert_eq!(candidate_type("fingerprint:sha-256 AB"), None);
        let sdp = format!("v=0\r\na=ice-ufrag:x\r\na={host}\r\n");
        assert!(lists_candidate(&sdp, &["host"]));
        assert!(!lists_candidate(&sdp, &["srflx", "relay"]));
    }
}
