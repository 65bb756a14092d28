//! Message stream encryption (MSE, also called protocol encryption or PE): the handshake that
//! BitTorrent clients put in front of the peer wire protocol so that neither the handshake nor,
//! once RC4 is chosen, the stream looks like BitTorrent on the wire.
//!
//! The exchange, A connecting to B (`S` the Diffie-Hellman secret, `SKEY` the info hash,
//! `ENCRYPT` RC4 keyed from both, `HASH` SHA-1):
//!
//! 1. A → B: `Ya`, `PadA`
//! 2. B → A: `Yb`, `PadB`
//! 3. A → B: `HASH('req1', S)`, `HASH('req2', SKEY) xor HASH('req3', S)`,
//!    `ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA))`, `ENCRYPT(IA)`
//! 4. B → A: `ENCRYPT(VC, crypto_select, len(PadD), PadD)`, then the stream
//! 5. A → B: the stream, encrypted or not as `crypto_select` says
//!
//! Pads are 0-512 bytes, so each side finds its place in the other's bytes by a marker: B
//! looks for `HASH('req1', S)` after `PadA`, A for the encrypted `VC` after `PadB`. The
//! initial payload `IA` (we send our BitTorrent handshake there) is always RC4-encrypted, as
//! A sends it before it knows B's choice.
//!
//! Sans IO, in the style of the rest of the core: [`Initiator`] and [`Responder`] take the
//! bytes the peer sent ([`Initiator::feed`], [`Responder::feed`]), leave what to send in
//! [`Initiator::take_transmit`] / [`Responder::take_transmit`], and end in an
//! [`Established`] connection. The driver brings the randomness (the private key and the
//! pad) and the deadline. What each side accepts comes from one [`EncryptionPolicy`].

use num_bigint::BigUint;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::types::InfoHash;

/// Length of a public key on the wire (768 bits, big-endian).
pub const KEY_LEN: usize = 96;
/// The longest pad either side may send.
pub const MAX_PAD: usize = 512;
/// Length of a private key we make (the specification's recommendation: 160 bits).
pub const SECRET_LEN: usize = 20;
const VC_LEN: usize = 8;
const HASH_LEN: usize = 20;
/// RC4's first keystream bytes leak the key; both sides throw this many away.
const RC4_DISCARD: usize = 1024;

/// The 768-bit safe prime both sides compute in (generator 2).
const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

/// How the stream goes on after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Only the handshake was obfuscated; the peer protocol follows in the clear.
    Plaintext,
    /// Everything that follows is RC4-encrypted, each direction with its own key.
    Rc4,
}

impl Method {
    fn bit(self) -> u32 {
        match self {
            Method::Plaintext => 0x01,
            Method::Rc4 => 0x02,
        }
    }
}

/// A set of [`Method`]s, as `crypto_provide` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Methods(u32);

impl Methods {
    pub const PLAINTEXT: Methods = Methods(0x01);
    pub const RC4: Methods = Methods(0x02);
    pub const BOTH: Methods = Methods(0x03);

    pub fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

/// What the user chose (`--encryption`): the one place that says which connections are made
/// and accepted, for every transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncryptionPolicy {
    /// As libtorrent's and qBittorrent's default: connect with the MSE handshake offering
    /// both methods, and dial again with the plain handshake when the peer hangs up on it;
    /// accept both. Offered both, a responder picks plaintext: the handshake, which is what
    /// throttling equipment recognises, is hidden, and the stream then costs no cipher
    /// (RC4 here runs at a third of the plaintext rate). Encrypted first because a peer that
    /// requires encryption drops a plain handshake without a word, as a plaintext-only peer
    /// drops ours: either way one attempt is lost, and this way nothing recognisable goes on
    /// the wire first.
    #[default]
    Prefer,
    /// RC4 both ways, nothing else: plain handshakes and MSE offering only the plaintext
    /// method are refused.
    Require,
    /// The plain BitTorrent handshake only, both ways.
    Disable,
}

/// One way of opening an outgoing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The MSE handshake, offering these methods.
    Encrypted(Methods),
    /// The plain BitTorrent handshake.
    Plain,
}

impl EncryptionPolicy {
    /// The attempts to open an outgoing connection, in order; the next is tried when the peer
    /// closes or garbles the one before.
    pub fn attempts(self) -> &'static [Attempt] {
        match self {
            EncryptionPolicy::Prefer => &[Attempt::Encrypted(Methods::BOTH), Attempt::Plain],
            EncryptionPolicy::Require => &[Attempt::Encrypted(Methods::RC4)],
            EncryptionPolicy::Disable => &[Attempt::Plain],
        }
    }

    /// Whether an incoming plain BitTorrent handshake is served.
    pub fn accepts_plain(self) -> bool {
        self != EncryptionPolicy::Require
    }

    /// Whether an incoming MSE handshake is answered at all.
    pub fn accepts_encrypted(self) -> bool {
        self != EncryptionPolicy::Disable
    }

    /// What a responder picks from what the initiator provides: plaintext after the
    /// obfuscated handshake when offered and allowed (see [`EncryptionPolicy::Prefer`]), else
    /// RC4.
    pub fn select(self, provided: Methods) -> Option<Method> {
        match self {
            EncryptionPolicy::Disable => None,
            EncryptionPolicy::Prefer if provided.contains(Method::Plaintext) => {
                Some(Method::Plaintext)
            }
            _ if provided.contains(Method::Rc4) => Some(Method::Rc4),
            _ => None,
        }
    }
}

/// Whether the first bytes of an incoming connection are a plain BitTorrent handshake
/// (`\x13BitTorrent protocol`) rather than an MSE public key. `None` until enough bytes are in
/// to tell; an MSE key could only look like it by a 2^-160 chance.
pub fn looks_plain(first: &[u8]) -> Option<bool> {
    const PSTR: &[u8] = b"\x13BitTorrent protocol";
    let n = first.len().min(PSTR.len());
    if first[..n] != PSTR[..n] {
        Some(false)
    } else if n == PSTR.len() {
        Some(true)
    } else {
        None
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MseError {
    #[error("the peer's public key is out of range")]
    BadPublicKey,
    #[error("no handshake marker within {MAX_PAD} bytes of padding")]
    NoMarker,
    #[error("no torrent of ours matches the peer's obfuscated info hash")]
    UnknownTorrent,
    #[error("wrong verification constant (a different key or info hash)")]
    BadVerification,
    #[error("padding of {0} bytes (at most {MAX_PAD})")]
    PadTooLong(usize),
    #[error("the peer offers no method we accept (crypto_provide {0:#x})")]
    NoCommonMethod(u32),
    #[error("the peer selected crypto method {0:#x}, which was not offered")]
    BadSelection(u32),
    #[error("the handshake already failed")]
    Failed,
}

/// An RC4 keystream, one direction of an encrypted connection.
pub struct Rc4Stream(Rc4);

impl Rc4Stream {
    fn new(key: &[u8; HASH_LEN]) -> Self {
        // 20 bytes is within RC4's 1-256 byte key range.
        let mut rc4 = match Rc4::new_from_slice(key) {
            Ok(rc4) => rc4,
            Err(_) => unreachable!("a 20-byte key is a valid RC4 key"),
        };
        rc4.apply_keystream(&mut [0u8; RC4_DISCARD]);
        Rc4Stream(rc4)
    }

    /// Encrypts or decrypts `data` in place (RC4 is its own inverse).
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

impl std::fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4Stream")
    }
}

/// Both directions' keystreams of an RC4 connection.
#[derive(Debug)]
pub struct Ciphers {
    /// Applied to what we send.
    pub encrypt: Rc4Stream,
    /// Applied to what we receive.
    pub decrypt: Rc4Stream,
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    pub method: Method,
    /// The torrent the connection is for (the initiator's `SKEY`).
    pub info_hash: InfoHash,
    /// `Some` when the stream is RC4-encrypted.
    pub ciphers: Option<Ciphers>,
    /// The initiator's initial payload, decrypted (a responder's; empty for an initiator).
    pub initial_payload: Vec<u8>,
    /// Bytes of the stream that arrived with the handshake's last ones, already decrypted.
    pub rest: Vec<u8>,
}

/// The random inputs of one side of a handshake. The driver fills them from a secure source.
pub struct Randomness {
    pub secret: [u8; SECRET_LEN],
    /// `PadA` or `PadB`: random bytes, at most [`MAX_PAD`] (longer is cut).
    pub pad: Vec<u8>,
}

struct KeyPair {
    secret: BigUint,
    public: [u8; KEY_LEN],
}

fn prime() -> BigUint {
    // A constant string of hex digits: parsing cannot fail.
    BigUint::parse_bytes(PRIME_HEX, 16).unwrap_or_default()
}

impl KeyPair {
    fn new(secret: &[u8; SECRET_LEN]) -> KeyPair {
        let secret = BigUint::from_bytes_be(secret);
        let public = BigUint::from(2u32).modpow(&secret, &prime());
        KeyPair { public: to_key_bytes(&public), secret }
    }

    /// `S`, from the peer's public key; keys 0, 1 and P-1 (and anything ≥ P) are refused, as
    /// they force a secret an observer can guess.
    fn shared_secret(&self, remote: &[u8]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(remote);
        if y <= BigUint::from(1u32) || y >= &p - 1u32 {
            return Err(MseError::BadPublicKey);
        }
        Ok(to_key_bytes(&y.modpow(&self.secret, &p)))
    }
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // Every value is below the 96-byte prime.
    out[KEY_LEN.saturating_sub(bytes.len())..]
        .copy_from_slice(&bytes[bytes.len().saturating_sub(KEY_LEN)..]);
    out
}

fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Sha1::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// `HASH('req2', SKEY)`: what a responder compares an initiator's obfuscated info hash with.
pub fn obfuscated_info_hash(info_hash: &InfoHash) -> [u8; HASH_LEN] {
    hash(&[b"req2", &info_hash.0])
}

fn xor(a: &[u8; HASH_LEN], b: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The keystreams for the initiator (`keyA` out, `keyB` in) or the responder (the reverse).
fn ciphers(secret: &[u8; KEY_LEN], info_hash: &InfoHash, initiator: bool) -> Ciphers {
    let a = Rc4Stream::new(&hash(&[b"keyA", secret, &info_hash.0]));
    let b = Rc4Stream::new(&hash(&[b"keyB", secret, &info_hash.0]));
    if initiator {
        Ciphers { encrypt: a, decrypt: b }
    } else {
        Ciphers { encrypt: b, decrypt: a }
    }
}

fn read_u16(bytes: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn pad_len(bytes: &[u8]) -> Result<usize, MseError> {
    let len = read_u16(bytes);
    if len > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(len)
}

/// Received bytes not yet consumed. The states below never let it grow past what the step
/// they wait for needs (at most a key, a pad and a marker, or a 64 KiB initial payload).
#[derive(Default)]
struct Inbox(Vec<u8>);

impl Inbox {
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.0.len() >= n).then(|| self.0.drain(..n).collect())
    }

    /// Finds `marker` starting at most `MAX_PAD` bytes in and drops everything before it (the
    /// pad). `Ok(false)`: not yet, more bytes may bring it.
    fn skip_to(&mut self, marker: &[u8]) -> Result<bool, MseError> {
        let window = &self.0[..self.0.len().min(MAX_PAD + marker.len())];
        match window.windows(marker.len()).position(|w| w == marker) {
            Some(at) => {
                self.0.drain(..at);
                Ok(true)
            }
            None if self.0.len() >= MAX_PAD + marker.len() => Err(MseError::NoMarker),
            None => Ok(false),
        }
    }
}

enum InitiatorState {
    /// Waiting for `Yb`.
    PeerKey,
    /// Waiting for the encrypted `VC` after `PadB`.
    Marker {
        marker: [u8; VC_LEN],
        ciphers: Ciphers,
    },
    /// Waiting for `crypto_select` and `len(PadD)`.
    Selection {
        ciphers: Ciphers,
    },
    /// Waiting for `PadD`.
    PadD {
        method: Method,
        len: usize,
        ciphers: Ciphers,
    },
    Failed,
}

/// The connecting side.
pub struct Initiator {
    info_hash: InfoHash,
    provide: Methods,
    keys: KeyPair,
    initial_payload: Vec<u8>,
    state: InitiatorState,
    inbox: Inbox,
    transmit: Vec<u8>,
}

impl Initiator {
    /// Starts a handshake for `info_hash` offering `provide`; `initial_payload` (our
    /// BitTorrent handshake, typically; at most 64 KiB) travels encrypted with step 3, saving
    /// a round trip.
    pub fn new(
        info_hash: InfoHash,
        provide: Methods,
        initial_payload: Vec<u8>,
        random: Randomness,
    ) -> Initiator {
        let keys = KeyPair::new(&random.secret);
        let mut transmit = keys.public.to_vec();
        transmit.extend_from_slice(&random.pad[..random.pad.len().min(MAX_PAD)]);
        let mut initial_payload = initial_payload;
        initial_payload.truncate(usize::from(u16::MAX));
        Initiator {
            info_hash,
            provide,
            keys,
            initial_payload,
            state: InitiatorState::PeerKey,
            inbox: Inbox::default(),
            transmit,
        }
    }

    /// Bytes to send now.
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transmit)
    }

    /// Takes bytes from the peer; `Some` once the handshake is done (send what
    /// [`Self::take_transmit`] holds first). After an error the handshake is over.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Established>, MseError> {
        self.inbox.0.extend_from_slice(data);
        let result = self.advance();
        if result.is_err() {
            self.state = InitiatorState::Failed;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<Established>, MseError> {
        loop {
            let state = std::mem::replace(&mut self.state, InitiatorState::Failed);
            self.state = match state {
                InitiatorState::PeerKey => {
                    let Some(yb) = self.inbox.take(KEY_LEN) else {
                        self.state = InitiatorState::PeerKey;
                        return Ok(None);
                    };
                    let secret = self.keys.shared_secret(&yb)?;
                    let mut ciphers = ciphers(&secret, &self.info_hash, true);
                    self.send_step3(&secret, &mut ciphers);
                    // What B's keystream makes of VC, from a second copy of that keystream
                    // (RC4 state cannot be cloned), so the real one is not used up.
                    let mut marker = [0u8; VC_LEN];
                    Rc4Stream::new(&hash(&[b"keyB", &secret, &self.info_hash.0]))
                        .apply(&mut marker);
                    InitiatorState::Marker { marker, ciphers }
                }
                InitiatorState::Marker { marker, mut ciphers } => {
                    if !self.inbox.skip_to(&marker)? {
                        self.state = InitiatorState::Marker { marker, ciphers };
                        return Ok(None);
                    }
                    let mut vc = self.inbox.take(VC_LEN).unwrap_or_default();
                    ciphers.decrypt.apply(&mut vc);
                    InitiatorState::Selection { ciphers }
                }
                InitiatorState::Selection { mut ciphers } => {
                    let Some(mut fields) = self.inbox.take(6) else {
                        self.state = InitiatorState::Selection { ciphers };
                        return Ok(None);
                    };
                    ciphers.decrypt.apply(&mut fields);
                    let select = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
                    let method = [Method::Rc4, Method::Plaintext]
                        .into_iter()
                        .find(|m| m.bit() == select && self.provide.contains(*m))
                        .ok_or(MseError::BadSelection(select))?;
                    InitiatorState::PadD { method, len: pad_len(&fields[4..])?, ciphers }
                }
                InitiatorState::PadD { method, len, mut ciphers } => {
                    let Some(mut pad) = self.inbox.take(len) else {
                        self.state = InitiatorState::PadD { method, len, ciphers };
                        return Ok(None);
                    };
                    ciphers.decrypt.apply(&mut pad);
                    return Ok(Some(finish(
                        method,
                        self.info_hash,
                        ciphers,
                        Vec::new(),
                        &mut self.inbox,
                    )));
                }
                InitiatorState::Failed => return Err(MseError::Failed),
            };
        }
    }

    fn send_step3(&mut self, secret: &[u8; KEY_LEN], ciphers: &mut Ciphers) {
        self.transmit.extend_from_slice(&hash(&[b"req1", secret]));
        let req3 = hash(&[b"req3", secret]);
        self.transmit.extend_from_slice(&xor(&obfuscated_info_hash(&self.info_hash), &req3));
        let start = self.transmit.len();
        self.transmit.extend_from_slice(&[0u8; VC_LEN]);
        self.transmit.extend_from_slice(&self.provide.bits().to_be_bytes());
        self.transmit.extend_from_slice(&0u16.to_be_bytes()); // no PadC: it is encrypted anyway
        let ia_len = u16::try_from(self.initial_payload.len()).unwrap_or(u16::MAX);
        self.transmit.extend_from_slice(&ia_len.to_be_bytes());
        self.transmit.append(&mut self.initial_payload);
        ciphers.encrypt.apply(&mut self.transmit[start..]);
    }
}

/// The handshake's end: what is left in the inbox belongs to the stream.
fn finish(
    method: Method,
    info_hash: InfoHash,
    mut ciphers: Ciphers,
    initial_payload: Vec<u8>,
    inbox: &mut Inbox,
) -> Established {
    let mut rest = std::mem::take(&mut inbox.0);
    let ciphers = match method {
        Method::Rc4 => {
            ciphers.decrypt.apply(&mut rest);
            Some(ciphers)
        }
        Method::Plaintext => None,
    };
    Established { method, info_hash, ciphers, initial_payload, rest }
}

enum ResponderState {
    /// Waiting for `Ya`.
    PeerKey,
    /// Waiting for `HASH('req1', S)` after `PadA`.
    Marker {
        secret: [u8; KEY_LEN],
    },
    /// Waiting for the obfuscated info hash.
    Torrent {
        secret: [u8; KEY_LEN],
    },
    /// Waiting for `VC`, `crypto_provide` and `len(PadC)`.
    Offer {
        info_hash: InfoHash,
        ciphers: Ciphers,
    },
    /// Waiting for `PadC` and `len(IA)`.
    PadC {
        info_hash: InfoHash,
        method: Method,
        len: usize,
        ciphers: Ciphers,
    },
    /// Waiting for `IA`.
    Payload {
        info_hash: InfoHash,
        method: Method,
        len: usize,
        ciphers: Ciphers,
    },
    Failed,
}

/// The accepting side.
pub struct Responder {
    policy: EncryptionPolicy,
    keys: KeyPair,
    pad: Vec<u8>,
    state: ResponderState,
    inbox: Inbox,
    transmit: Vec<u8>,
}

impl Responder {
    pub fn new(policy: EncryptionPolicy, random: Randomness) -> Responder {
        let mut pad = random.pad;
        pad.truncate(MAX_PAD);
        Responder {
            policy,
            keys: KeyPair::new(&random.secret),
            pad,
            state: ResponderState::PeerKey,
            inbox: Inbox::default(),
            transmit: Vec::new(),
        }
    }

    /// Bytes to send now.
    pub fn take_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.transmit)
    }

    /// Takes bytes from the peer; `torrent` maps an [`obfuscated_info_hash`] to the torrent
    /// of ours it names. `Some` once the handshake is done (send what
    /// [`Self::take_transmit`] holds first). After an error the handshake is over.
    pub fn feed(
        &mut self,
        data: &[u8],
        torrent: impl Fn(&[u8; HASH_LEN]) -> Option<InfoHash>,
    ) -> Result<Option<Established>, MseError> {
        self.inbox.0.extend_from_slice(data);
        let result = self.advance(torrent);
        if result.is_err() {
            self.state = ResponderState::Failed;
        }
        result
    }

    fn advance(
        &mut self,
        torrent: impl Fn(&[u8; HASH_LEN]) -> Option<InfoHash>,
    ) -> Result<Option<Established>, MseError> {
        loop {
            let state = std::mem::replace(&mut self.state, ResponderState::Failed);
            self.state = match state {
                ResponderState::PeerKey => {
                    let Some(ya) = self.inbox.take(KEY_LEN) else {
                        self.state = ResponderState::PeerKey;
                        return Ok(None);
                    };
                    let secret = self.keys.shared_secret(&ya)?;
                    self.transmit.extend_from_slice(&self.keys.public);
                    self.transmit.append(&mut self.pad);
                    ResponderState::Marker { secret }
                }
                ResponderState::Marker { secret } => {
                    if !self.inbox.skip_to(&hash(&[b"req1", &secret]))? {
                        self.state = ResponderState::Marker { secret };
                        return Ok(None);
                    }
                    self.inbox.take(HASH_LEN);
                    ResponderState::Torrent { secret }
                }
                ResponderState::Torrent { secret } => {
                    let Some(field) = self.inbox.take(HASH_LEN) else {
                        self.state = ResponderState::Torrent { secret };
                        return Ok(None);
                    };
                    let mut obfuscated = [0u8; HASH_LEN];
                    obfuscated.copy_from_slice(&field);
                    let req2 = xor(&obfuscated, &hash(&[b"req3", &secret]));
                    let info_hash = torrent(&req2).ok_or(MseError::UnknownTorrent)?;
                    ResponderState::Offer {
                        info_hash,
                        ciphers: ciphers(&secret, &info_hash, false),
                    }
                }
                ResponderState::Offer { info_hash, mut ciphers } => {
                    let Some(mut fields) = self.inbox.take(VC_LEN + 6) else {
                        self.state = ResponderState::Offer { info_hash, ciphers };
                        return Ok(None);
                    };
                    ciphers.decrypt.apply(&mut fields);
                    if fields[..VC_LEN] != [0u8; VC_LEN] {
                        return Err(MseError::BadVerification);
                    }
                    let provide =
                        u32::from_be_bytes([fields[8], fields[9], fields[10], fields[11]]);
                    let method = self
                        .policy
                        .select(Methods(provide))
                        .ok_or(MseError::NoCommonMethod(provide))?;
                    let len = pad_len(&fields[12..])?;
                    ResponderState::PadC { info_hash, method, len, ciphers }
                }
                ResponderState::PadC { info_hash, method, len, mut ciphers } => {
                    let Some(mut fields) = self.inbox.take(len + 2) else {
                        self.state = ResponderState::PadC { info_hash, method, len, ciphers };
                        return Ok(None);
                    };
                    ciphers.decrypt.apply(&mut fields);
                    let len = read_u16(&fields[len..]);
                    ResponderState::Payload { info_hash, method, len, ciphers }
                }
                ResponderState::Payload { info_hash, method, len, mut ciphers } => {
                    let Some(mut payload) = self.inbox.take(len) else {
                        self.state = ResponderState::Payload { info_hash, method, len, ciphers };
                        return Ok(None);
                    };
                    ciphers.decrypt.apply(&mut payload);
                    let start = self.transmit.len();
                    self.transmit.extend_from_slice(&[0u8; VC_LEN]);
                    self.transmit.extend_from_slice(&method.bit().to_be_bytes());
                    self.transmit.extend_from_slice(&0u16.to_be_bytes()); // no PadD
                    ciphers.encrypt.apply(&mut self.transmit[start..]);
                    return Ok(Some(finish(method, info_hash, ciphers, payload, &mut self.inbox)));
                }
                ResponderState::Failed => return Err(MseError::Failed),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u64, pad: usize) -> Randomness {
        let mut rng = fastrand::Rng::with_seed(seed);
        Randomness {
            secret: std::array::from_fn(|_| rng.u8(..)),
            pad: (0..pad).map(|_| rng.u8(..)).collect(),
        }
    }

    const HASH: InfoHash = InfoHash([7u8; 20]);

    fn lookup(req2: &[u8; 20]) -> Option<InfoHash> {
        (*req2 == obfuscated_info_hash(&HASH)).then_some(HASH)
    }

    /// Runs a handshake with the bytes cut into `chunk`-sized pieces both ways.
    fn run(
        provide: Methods,
        policy: EncryptionPolicy,
        pads: (usize, usize),
        chunk: usize,
    ) -> Result<(Established, Established), MseError> {
        let mut a = Initiator::new(HASH, provide, b"hello from A".to_vec(), random(1, pads.0));
        let mut b = Responder::new(policy, random(2, pads.1));
        let (mut done_a, mut done_b) = (None, None);
        for _ in 0..10_000 {
            let to_b = a.take_transmit();
            for piece in to_b.chunks(chunk) {
                if let Some(e) = b.feed(piece, lookup)? {
                    done_b = Some(e);
                }
            }
            let to_a = b.take_transmit();
            for piece in to_a.chunks(chunk) {
                if let Some(e) = a.feed(piece)? {
                    done_a = Some(e);
                }
            }
            if let (Some(_), Some(_)) = (&done_a, &done_b) {
                break;
            }
        }
        Ok((done_a.expect("initiator done"), done_b.expect("responder done")))
    }

    #[test]
    fn both_sides_agree_on_rc4_whatever_the_pads_and_chunking() {
        for (pads, chunk) in [((0, 0), 4096), ((512, 512), 1), ((37, 300), 7), ((511, 1), 100)] {
            let (mut a, mut b) = run(Methods::RC4, EncryptionPolicy::Prefer, pads, chunk).unwrap();
            assert_eq!((a.method, b.method), (Method::Rc4, Method::Rc4));
            assert_eq!(b.info_hash, HASH);
            assert_eq!(b.initial_payload, b"hello from A");
            let (ca, cb) = (a.ciphers.as_mut().unwrap(), b.ciphers.as_mut().unwrap());
            let mut msg = b"stream bytes".to_vec();
            ca.encrypt.apply(&mut msg);
            assert_ne!(msg, b"stream bytes");
            cb.decrypt.apply(&mut msg);
            assert_eq!(msg, b"stream bytes");
            cb.encrypt.apply(&mut msg);
            ca.decrypt.apply(&mut msg);
            assert_eq!(msg, b"stream bytes");
        }
    }

    #[test]
    fn the_policy_decides_the_method() {
        let (a, b) = run(Methods::BOTH, EncryptionPolicy::Prefer, (5, 5), 64).unwrap();
        assert_eq!((a.method, b.method), (Method::Plaintext, Method::Plaintext));
        let (a, b) = run(Methods::BOTH, EncryptionPolicy::Require, (5, 5), 64).unwrap();
        assert_eq!((a.method, b.method), (Method::Rc4, Method::Rc4));
        let (a, b) = run(Methods::PLAINTEXT, EncryptionPolicy::Prefer, (5, 5), 64).unwrap();
        assert!(a.ciphers.is_none() && b.ciphers.is_none());
        assert_eq!(b.initial_payload, b"hello from A", "IA is encrypted whatever the choice");
        assert_eq!(
            run(Methods::PLAINTEXT, EncryptionPolicy::Require, (5, 5), 64).err(),
            Some(MseError::NoCommonMethod(1))
        );
        assert_eq!(
            run(Methods::RC4, EncryptionPolicy::Disable, (5, 5), 64).err(),
            Some(MseError::NoCommonMethod(2))
        );
    }

    #[test]
    fn bytes_after_the_handshake_are_handed_on_decrypted() {
        let mut a = Initiator::new(HASH, Methods::RC4, Vec::new(), random(3, 10));
        let mut b = Responder::new(EncryptionPolicy::Prefer, random(4, 10));
        assert!(b.feed(&a.take_transmit(), lookup).unwrap().is_none());
        assert!(a.feed(&b.take_transmit()).unwrap().is_none());
        let mut b_done = b.feed(&a.take_transmit(), lookup).unwrap().unwrap();
        // B sends step 4 and the first stream bytes in one write.
        let mut wire = b.take_transmit();
        let mut stream = b"bitfield".to_vec();
        b_done.ciphers.as_mut().unwrap().encrypt.apply(&mut stream);
        wire.extend_from_slice(&stream);
        let a_done = a.feed(&wire).unwrap().unwrap();
        assert_eq!(a_done.rest, b"bitfield");
    }

    #[test]
    fn unknown_torrents_wrong_keys_and_missing_markers_are_refused() {
        let mut a = Initiator::new(InfoHash([9; 20]), Methods::RC4, Vec::new(), random(5, 0));
        let mut b = Responder::new(EncryptionPolicy::Prefer, random(6, 0));
        b.feed(&a.take_transmit(), lookup).unwrap();
        a.feed(&b.take_transmit()).unwrap();
        assert_eq!(b.feed(&a.take_transmit(), lookup).err(), Some(MseError::UnknownTorrent));
        assert!(b.feed(b"more", lookup).is_err(), "a failed handshake stays failed");

        // A public key of 1 would make the secret 1.
        let mut one = [0u8; KEY_LEN];
        one[KEY_LEN - 1] = 1;
        let mut b = Responder::new(EncryptionPolicy::Prefer, random(7, 0));
        assert_eq!(b.feed(&one, lookup).err(), Some(MseError::BadPublicKey));
        assert_eq!(
            Responder::new(EncryptionPolicy::Prefer, random(7, 0))
                .feed(&[0xff; KEY_LEN], lookup)
                .err(),
            Some(MseError::BadPublicKey)
        );

        // A valid key followed by noise: the marker never comes.
        let mut a = Initiator::new(HASH, Methods::RC4, Vec::new(), random(8, 0));
        let mut b = Responder::new(EncryptionPolicy::Prefer, random(9, 0));
        let mut bytes = a.take_transmit();
        bytes.truncate(KEY_LEN);
        assert!(b.feed(&bytes, lookup).unwrap().is_none());
        assert!(b.feed(&[0x55; MAX_PAD], lookup).unwrap().is_none());
        assert_eq!(b.feed(&[0x55; 20], lookup).err(), Some(MseError::NoMarker));
    }

    #[test]
    fn a_plain_handshake_is_told_from_a_key() {
        assert_eq!(looks_plain(b"\x13BitTorrent protocol\0\0"), Some(true));
        assert_eq!(looks_plain(b"\x13BitTor"), None);
        assert_eq!(looks_plain(b"\x13BitTox"), Some(false));
        assert_eq!(looks_plain(&[0x42; 96]), Some(false));
    }

    #[test]
    fn keys_are_96_bytes_and_agree() {
        let a = KeyPair::new(&[1; SECRET_LEN]);
        let b = KeyPair::new(&[2; SECRET_LEN]);
        assert_eq!(a.shared_secret(&b.public), b.shared_secret(&a.public));
        // A small secret gives a short number: it is still sent as 96 bytes, zeros first.
        let small = KeyPair::new(&[0; SECRET_LEN]);
        assert_eq!(small.public[KEY_LEN - 1], 1);
    }
}
