//! WebSocket trackers from the page: one browser `WebSocket` per tracker URL, shared by
//! every torrent of the client, each driving the sans-IO
//! [`WsClient`](shoal_tracker_proto::ws::client::WsClient) that both drivers use. This
//! module only moves frames and routes the client's events to torrents.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

use shoal_proto::{InfoHash, Instant};
use shoal_tracker_proto::types::AnnounceRequest;
use shoal_tracker_proto::ws::client::{
    AnnounceTicket, OfferDrop, OfferId, Reconnect, WsClient, WsClientConfig, WsEvent,
};
use shoal_tracker_proto::ws::MAX_MESSAGE_LEN;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{MessageEvent, WebSocket};

use crate::clock::Clock;
use crate::log;
use crate::offer_pool::OfferPool;
use crate::torrent::TorrentDriver;

/// Offers from other peers being answered at once, over all sockets: each is a new
/// `RTCPeerConnection` gathering candidates.
const MAX_CONCURRENT_ANSWERS: usize = 32;

struct Socket {
    client: WsClient,
    ws: Option<WebSocket>,
    reconnect: Reconnect,
    /// When to try connecting again after a failure.
    retry_at: Option<Instant>,
    handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

/// Why a torrent announces: the announcer's schedule, or to send offers that its scheduled
/// announce went without (which must not move the schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceKind {
    Scheduled,
    MoreOffers,
}

/// The client's tracker sockets and the torrents they carry.
pub struct Hub {
    me: Weak<RefCell<Hub>>,
    clock: Clock,
    peer_id: shoal_proto::PeerId,
    sockets: HashMap<String, Socket>,
    torrents: HashMap<InfoHash, Weak<RefCell<TorrentDriver>>>,
    answering: usize,
    offers: Rc<RefCell<OfferPool>>,
    /// Announces of [`AnnounceKind::MoreOffers`] not answered yet.
    more_offers: HashSet<AnnounceTicket>,
}

impl Hub {
    /// `offers`: the pool announces draw their offers from.
    pub fn new(
        clock: Clock,
        peer_id: shoal_proto::PeerId,
        offers: Rc<RefCell<OfferPool>>,
    ) -> Rc<RefCell<Hub>> {
        Rc::new_cyclic(|me| {
            RefCell::new(Hub {
                me: me.clone(),
                clock,
                peer_id,
                sockets: HashMap::new(),
                torrents: HashMap::new(),
                answering: 0,
                offers,
                more_offers: HashSet::new(),
            })
        })
    }

    /// The pool that announces draw their offers from.
    pub fn offer_pool(&self) -> Rc<RefCell<OfferPool>> {
        self.offers.clone()
    }

    pub fn add_torrent(&mut self, info_hash: InfoHash, torrent: Weak<RefCell<TorrentDriver>>) {
        self.torrents.insert(info_hash, torrent);
    }

    pub fn remove_torrent(&mut self, info_hash: &InfoHash) {
        self.torrents.remove(info_hash);
    }

    /// Announces on `url`'s socket (opening it if need be) with `offers` made for it.
    pub fn announce(
        hub: &Rc<RefCell<Hub>>,
        url: &str,
        req: &AnnounceRequest,
        offers: Vec<(OfferId, String)>,
        kind: AnnounceKind,
    ) {
        let refused = {
            let Ok(mut h) = hub.try_borrow_mut() else {
                // Only reachable from inside a hub callback; try again on the next turn.
                let (hub, url, req) = (Rc::downgrade(hub), url.to_owned(), req.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(hub) = hub.upgrade() {
                        Hub::announce(&hub, &url, &req, offers, kind);
                    }
                });
                return;
            };
            let now = h.clock.now();
            let announcement = h.socket(url).client.announce(now, req, offers);
            if kind == AnnounceKind::MoreOffers {
                h.more_offers.insert(announcement.ticket);
            }
            h.connect_if_needed(url, now, false);
            h.pump(url)
                .into_iter()
                .chain(std::iter::once(Routed::Refused(req.info_hash, announcement.refused)))
                .collect::<Vec<_>>()
        };
        Hub::deliver(hub, url, refused);
    }

    /// Opens `url`'s socket ahead of the first announce, which then goes out the moment its
    /// offers are ready instead of waiting for the WebSocket handshake too.
    pub fn prepare(&mut self, url: &str) {
        let now = self.clock.now();
        self.socket(url);
        self.connect_if_needed(url, now, true);
    }

    fn socket(&mut self, url: &str) -> &mut Socket {
        let peer_id = self.peer_id;
        self.sockets.entry(url.to_owned()).or_insert_with(|| Socket {
            client: WsClient::new(peer_id, WsClientConfig::default()),
            ws: None,
            reconnect: Reconnect::new(),
            retry_at: None,
            handlers: Vec::new(),
        })
    }

    /// Called every ~100 ms: expiries, reconnects, and whatever they produce.
    pub fn tick(hub: &Rc<RefCell<Hub>>) {
        let routed: Vec<(String, Vec<Routed>)> = {
            let Ok(mut h) = hub.try_borrow_mut() else { return };
            if let Ok(mut offers) = h.offers.try_borrow_mut() {
                offers.tick();
            }
            let now = h.clock.now();
            let urls: Vec<String> = h.sockets.keys().cloned().collect();
            urls.into_iter()
                .map(|url| {
                    if let Some(socket) = h.sockets.get_mut(&url) {
                        if socket.client.poll_timeout().is_some_and(|t| t <= now) {
                            socket.client.handle_timeout(now);
                        }
                    }
                    h.connect_if_needed(&url, now, false);
                    let routed = h.pump(&url);
                    (url, routed)
                })
                .collect()
        };
        for (url, routed) in routed {
            Hub::deliver(hub, &url, routed);
        }
    }

    fn connect_if_needed(&mut self, url: &str, now: Instant, early: bool) {
        let me = self.me.clone();
        let Some(socket) = self.sockets.get_mut(url) else { return };
        if socket.ws.is_some() || !(early || socket.client.wants_connection()) {
            return;
        }
        if socket.retry_at.is_some_and(|t| t > now) {
            return;
        }
        socket.retry_at = None;
        let ws = match WebSocket::new(url) {
            Ok(ws) => ws,
            Err(e) => {
                let wait = socket.reconnect.failed(now);
                socket.retry_at = Some(now + wait);
                socket.client.disconnected(now, &format!("cannot open {url}: {e:?}"));
                return;
            }
        };
        let on = |me: Weak<RefCell<Hub>>, url: String, what: fn(JsValue) -> SocketEvent| {
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                if let Some(hub) = me.upgrade() {
                    Hub::on_socket_event(&hub, &url, what(event));
                }
            })
        };
        let on_open = on(me.clone(), url.to_owned(), |_| SocketEvent::Open);
        let on_message = on(me.clone(), url.to_owned(), |event| {
            match event.dyn_into::<MessageEvent>().ok().and_then(|m| m.data().as_string()) {
                Some(text) => SocketEvent::Text(text),
                None => SocketEvent::Binary,
            }
        });
        let on_close = on(me, url.to_owned(), |_| SocketEvent::Closed);
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        // An error is always followed by close, which does the work.
        socket.handlers = vec![on_open, on_message, on_close];
        socket.ws = Some(ws);
    }

    fn on_socket_event(hub: &Rc<RefCell<Hub>>, url: &str, event: SocketEvent) {
        let routed = {
            let Ok(mut h) = hub.try_borrow_mut() else {
                let (hub, url) = (Rc::downgrade(hub), url.to_owned());
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(hub) = hub.upgrade() {
                        Hub::on_socket_event(&hub, &url, event);
                    }
                });
                return;
            };
            let now = h.clock.now();
            let Some(socket) = h.sockets.get_mut(url) else { return };
            let mut rejoined = Vec::new();
            match event {
                SocketEvent::Open => {
                    socket.reconnect.connected(now);
                    rejoined = socket.client.rejoining();
                    socket.client.connected(now);
                }
                SocketEvent::Text(text) if text.len() <= MAX_MESSAGE_LEN => {
                    socket.client.handle_text(now, &text)
                }
                SocketEvent::Text(text) => log(&format!(
                    "{url}: dropped a {} byte message (limit {MAX_MESSAGE_LEN})",
                    text.len()
                )),
                SocketEvent::Binary => log(&format!("{url}: dropped a binary message")),
                SocketEvent::Closed => {
                    if let Some(ws) = socket.ws.take() {
                        ws.set_onopen(None);
                        ws.set_onmessage(None);
                        ws.set_onclose(None);
                    }
                    let handlers = std::mem::take(&mut socket.handlers);
                    wasm_bindgen_futures::spawn_local(async move { drop(handlers) });
                    let wait = socket.reconnect.failed(now);
                    socket.retry_at = Some(now + wait);
                    socket.client.disconnected(now, "the tracker closed the connection");
                }
            }
            let mut routed = h.pump(url);
            routed.extend(rejoined.into_iter().map(Routed::Rejoined));
            routed
        };
        Hub::deliver(hub, url, routed);
    }

    /// Sends what the client wants sent and collects its events for the torrents.
    fn pump(&mut self, url: &str) -> Vec<Routed> {
        let Some(socket) = self.sockets.get_mut(url) else { return Vec::new() };
        if let Some(ws) = socket.ws.as_ref().filter(|_| socket.client.is_connected()) {
            while let Some(text) = socket.client.poll_transmit() {
                if let Err(e) = ws.send_with_str(&text) {
                    log(&format!("{url}: send failed: {e:?}"));
                    break;
                }
            }
        }
        let mut routed = Vec::new();
        while let Some(event) = socket.client.poll_event() {
            routed.push(Routed::Event(event));
        }
        routed
    }

    fn torrent(&self, info_hash: &InfoHash) -> Option<Rc<RefCell<TorrentDriver>>> {
        self.torrents.get(info_hash).and_then(Weak::upgrade)
    }

    /// Hands events to torrents, with the hub no longer borrowed (torrents call back in).
    fn deliver(hub: &Rc<RefCell<Hub>>, url: &str, routed: Vec<Routed>) {
        for item in routed {
            match item {
                Routed::Refused(info_hash, ids) if !ids.is_empty() => {
                    let torrent = hub.borrow().torrent(&info_hash);
                    if let Some(t) = torrent {
                        TorrentDriver::dispatch(&t, move |d| d.drop_offers(&ids));
                    }
                }
                Routed::Refused(..) => {}
                Routed::Rejoined(info_hash) => {
                    let torrent = hub.borrow().torrent(&info_hash);
                    if let Some(t) = torrent {
                        let url = url.to_owned();
                        TorrentDriver::dispatch(&t, move |d| d.on_rejoined(&url));
                    }
                }
                Routed::Event(WsEvent::AnnounceDone { ticket, info_hash, result }) => {
                    let (torrent, more_offers) = {
                        let mut h = hub.borrow_mut();
                        (h.torrent(&info_hash), h.more_offers.remove(&ticket))
                    };
                    if let Some(t) = torrent {
                        let url = url.to_owned();
                        let result = result.map_err(|e| e.to_string());
                        TorrentDriver::dispatch(&t, move |d| match more_offers {
                            true => d.on_more_offers_announced(&url, result),
                            false => d.on_announced(&url, result),
                        });
                    }
                }
                Routed::Event(WsEvent::Answer { offer_id, info_hash, sdp, .. }) => {
                    let torrent = hub.borrow().torrent(&info_hash);
                    if let Some(t) = torrent {
                        TorrentDriver::dispatch(&t, move |d| d.on_answer(offer_id, sdp));
                    }
                }
                Routed::Event(WsEvent::Offer { info_hash, peer_id, offer_id, sdp }) => {
                    Hub::answer(hub, url, info_hash, peer_id, offer_id, sdp);
                }
                Routed::Event(WsEvent::OfferDropped { offer_id, reason }) => {
                    let torrents: Vec<_> =
                        hub.borrow().torrents.values().filter_map(Weak::upgrade).collect();
                    for t in torrents {
                        TorrentDriver::dispatch(&t, move |d| d.on_offer_dropped(offer_id, reason));
                    }
                }
                Routed::Event(WsEvent::Ignored(why)) => log(&format!("{url}: ignored: {why}")),
            }
        }
    }

    fn answer(
        hub: &Rc<RefCell<Hub>>,
        url: &str,
        info_hash: InfoHash,
        peer_id: shoal_proto::PeerId,
        offer_id: OfferId,
        sdp: String,
    ) {
        let torrent = {
            let mut h = hub.borrow_mut();
            if h.answering >= MAX_CONCURRENT_ANSWERS {
                log(&format!("{url}: too many answers under way, offer dropped"));
                return;
            }
            let Some(torrent) = h.torrent(&info_hash) else { return };
            h.answering += 1;
            torrent
        };
        let (weak_hub, url) = (Rc::downgrade(hub), url.to_owned());
        let weak_torrent = Rc::downgrade(&torrent);
        drop(torrent);
        wasm_bindgen_futures::spawn_local(async move {
            let answer = TorrentDriver::answer_offer(weak_torrent, sdp).await;
            let Some(hub) = weak_hub.upgrade() else { return };
            let routed = {
                let mut h = hub.borrow_mut();
                h.answering = h.answering.saturating_sub(1);
                let Some(answer) = answer else { return };
                let Some(socket) = h.sockets.get_mut(&url) else { return };
                if let Err(e) = socket.client.send_answer(info_hash, peer_id, offer_id, &answer) {
                    log(&format!("{url}: answer not sent: {e}"));
                }
                h.pump(&url)
            };
            Hub::deliver(&hub, &url, routed);
        });
    }

    /// Closes every socket.
    pub fn close(&mut self) {
        if let Ok(mut offers) = self.offers.try_borrow_mut() {
            offers.close();
        }
        for (_, socket) in self.sockets.drain() {
            if let Some(ws) = socket.ws {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
                let _ = ws.close();
            }
            let handlers = socket.handlers;
            wasm_bindgen_futures::spawn_local(async move { drop(handlers) });
        }
    }
}

enum SocketEvent {
    Open,
    Text(String),
    Binary,
    Closed,
}

enum Routed {
    Event(WsEvent),
    /// Offers an announce refused at once, to drop in the torrent that made them.
    Refused(InfoHash, Vec<(OfferId, OfferDrop)>),
    /// The socket reopened and rejoined this torrent (without offers: a browser makes them
    /// asynchronously), so the torrent follows with an announce that carries some.
    Rejoined(InfoHash),
}
