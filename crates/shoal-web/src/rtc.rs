//! WebRTC with the browser's `RTCPeerConnection`, the way WebTorrent peers expect it: one
//! ordered, reliable data channel, and offers and answers carrying every ICE candidate (no
//! trickle), so each needs one trip through the tracker.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcIceGatheringState, RtcPeerConnection,
    RtcSdpType, RtcSessionDescriptionInit,
};

/// How long we wait for ICE gathering before sending what we have (STUN servers that do not
/// answer must not hold an announce up forever).
const GATHER_TIMEOUT_MS: i32 = 5_000;

/// A new connection with the ICE servers given (`urls` strings such as `stun:host:port`).
pub fn peer_connection(ice_servers: &[String]) -> Result<RtcPeerConnection, JsValue> {
    let config = RtcConfiguration::new();
    let servers = Array::new();
    for url in ice_servers {
        let server = Object::new();
        Reflect::set(&server, &"urls".into(), &url.into())?;
        servers.push(&server);
    }
    config.set_ice_servers(&servers);
    RtcPeerConnection::new_with_configuration(&config)
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

/// Waits for ICE gathering to finish (or the timeout) and returns the local SDP, which then
/// lists every candidate.
async fn gathered_sdp(pc: &RtcPeerConnection) -> Result<String, JsValue> {
    if pc.ice_gathering_state() != RtcIceGatheringState::Complete {
        // The executor runs synchronously, so `resolve` is set when `new` returns.
        let mut resolve = None;
        let done = js_sys::Promise::new(&mut |r, _| resolve = Some(r));
        let resolve = resolve.ok_or_else(|| JsValue::from_str("Promise executor did not run"))?;
        let on_change = Closure::<dyn FnMut()>::new({
            let (pc, resolve) = (pc.clone(), resolve.clone());
            move || {
                if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
                    let _ = resolve.call0(&JsValue::NULL);
                }
            }
        });
        pc.set_onicegatheringstatechange(Some(on_change.as_ref().unchecked_ref()));
        if let Some(window) = web_sys::window() {
            let _ = window
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, GATHER_TIMEOUT_MS);
        }
        JsFuture::from(done).await?;
        pc.set_onicegatheringstatechange(None);
        drop(on_change);
    }
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| JsValue::from_str("no local description after gathering"))
}
