//! One WebRTC connection to a peer: the `RTCPeerConnection`, its data channel, the byte
//! stream each way, and the browser event handlers that feed the torrent.

use std::cell::RefCell;
use std::rc::Weak;

use js_sys::{ArrayBuffer, Uint8Array};
use shoal_proto::{Instant, PeerKey};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{MessageEvent, RtcDataChannel, RtcDataChannelType, RtcPeerConnection};

use crate::budget::Slot;
use crate::framing::{StreamReader, StreamWriter};

/// Identifies a connection within its torrent, from the offer on.
pub type ConnId = u64;

/// Bytes the browser may hold unsent on a channel before we stop handing it more. Chromium
/// closes a channel whose buffer passes 16 MiB, so stay far below.
pub const HIGH_WATER: u32 = 1024 * 1024;
/// `bufferedamountlow` fires when the buffer drains to this: time to send more.
pub const LOW_WATER: u32 = 256 * 1024;

/// What the browser told us about a connection.
pub enum ConnEvent {
    ChannelOpen,
    Data(Vec<u8>),
    /// The channel drained below [`LOW_WATER`].
    Writable,
    Closed(String),
}

pub enum ConnState {
    /// Our offer is out; waiting for an answer through the tracker.
    Offered { offer_id: [u8; 20] },
    /// Answer applied (or we answered); ICE and DTLS are under way.
    Connecting,
    /// Channel open, handshakes exchanged or under way.
    Open,
}

pub struct Conn {
    pub pc: RtcPeerConnection,
    /// Its share of the client's connection budget, given back when the connection goes.
    _slot: Slot,
    pub channel: Option<RtcDataChannel>,
    pub state: ConnState,
    pub reader: StreamReader,
    pub writer: StreamWriter,
    /// The core's name for the peer, once its handshake is accepted.
    pub key: Option<PeerKey>,
    pub created: Instant,
    pub bytes_in: u64,
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

/// Where a connection's events go: the owning torrent, weakly (a connection never keeps its
/// torrent alive).
pub type Sink = Box<dyn Fn(ConnId, ConnEvent)>;

impl Conn {
    pub fn new(pc: RtcPeerConnection, slot: Slot, state: ConnState, now: Instant) -> Conn {
        Conn {
            pc,
            _slot: slot,
            channel: None,
            state,
            reader: StreamReader::default(),
            writer: StreamWriter::default(),
            key: None,
            created: now,
            bytes_in: 0,
            handlers: Vec::new(),
        }
    }

    /// Bytes waiting to go out: ours not yet handed over plus the browser's buffer.
    pub fn unsent(&self) -> usize {
        let buffered = self.channel.as_ref().map_or(0, |c| c.buffered_amount() as usize);
        self.writer.pending() + buffered
    }

    /// Hands the channel as much as it takes without passing [`HIGH_WATER`]. Returns an
    /// error text if the channel refused (it is then closing).
    pub fn flush(&mut self) -> Result<(), String> {
        let Some(channel) = &self.channel else { return Ok(()) };
        if !matches!(self.state, ConnState::Open) {
            return Ok(());
        }
        while channel.buffered_amount() < HIGH_WATER {
            let Some(chunk) = self.writer.next_chunk() else { break };
            channel.send_with_u8_array(&chunk).map_err(|e| format!("send failed: {e:?}"))?;
        }
        Ok(())
    }

    /// Wires the peer connection's state changes to `sink`.
    pub fn watch_connection(&mut self, id: ConnId, sink: std::rc::Rc<Sink>) {
        let pc = self.pc.clone();
        let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let state = pc.connection_state();
            use web_sys::RtcPeerConnectionState as S;
            if matches!(state, S::Failed | S::Closed) {
                sink(id, ConnEvent::Closed(format!("connection {state:?}")));
            }
        });
        self.pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        self.handlers.push(on_state);
    }

    /// Takes the data channel and wires its events to `sink`.
    pub fn attach_channel(&mut self, id: ConnId, channel: RtcDataChannel, sink: std::rc::Rc<Sink>) {
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(LOW_WATER);
        let handler = |sink: std::rc::Rc<Sink>, make: fn(JsValue) -> ConnEvent| {
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| sink(id, make(event)))
        };
        let on_open = handler(sink.clone(), |_| ConnEvent::ChannelOpen);
        let on_message = handler(sink.clone(), |event| {
            let data = event.dyn_into::<MessageEvent>().map(|e| e.data());
            match data {
                Ok(data) if data.is_instance_of::<ArrayBuffer>() => {
                    ConnEvent::Data(Uint8Array::new(&data).to_vec())
                }
                // Text messages are not part of the wire protocol.
                _ => ConnEvent::Closed("non-binary data-channel message".into()),
            }
        });
        let on_low = handler(sink.clone(), |_| ConnEvent::Writable);
        let on_close = handler(sink.clone(), |_| ConnEvent::Closed("data channel closed".into()));
        let on_error = handler(sink, |_| ConnEvent::Closed("data channel error".into()));
        channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        channel.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        channel.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        self.handlers.extend([on_open, on_message, on_low, on_close, on_error]);
        self.channel = Some(channel);
    }

    /// Keeps a handler alive as long as the connection.
    pub fn keep(&mut self, handler: Closure<dyn FnMut(JsValue)>) {
        self.handlers.push(handler);
    }

    /// Whether the channel is already open (an answerer's channel can arrive open).
    pub fn channel_is_open(&self) -> bool {
        self.channel.as_ref().is_some_and(|c| c.ready_state() == web_sys::RtcDataChannelState::Open)
    }

    /// Closes everything and unhooks the handlers. The handlers themselves are dropped on a
    /// later turn: this may run inside one of them.
    pub fn close(mut self) {
        if let Some(channel) = &self.channel {
            channel.set_onopen(None);
            channel.set_onmessage(None);
            channel.set_onbufferedamountlow(None);
            channel.set_onclose(None);
            channel.set_onerror(None);
            channel.close();
        }
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        self.pc.close();
        let handlers = std::mem::take(&mut self.handlers);
        wasm_bindgen_futures::spawn_local(async move { drop(handlers) });
    }
}

/// A sink that forwards to a torrent held weakly, through `deliver`.
pub fn sink_to<T: 'static>(
    target: Weak<RefCell<T>>,
    deliver: fn(&std::rc::Rc<RefCell<T>>, ConnId, ConnEvent),
) -> std::rc::Rc<Sink> {
    std::rc::Rc::new(Box::new(move |id, event| {
        if let Some(target) = target.upgrade() {
            deliver(&target, id, event);
        }
    }))
}
