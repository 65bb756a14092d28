//! Protocol encryption on a socket: runs the core's MSE handshake ([`shoal_proto::mse`]) over
//! a TCP stream, and [`PeerStream`], what a connection is once its handshakes are done: the
//! socket, the RC4 keystreams when encrypted, and bytes read past the handshake.

use std::net::SocketAddr;

use bytes::BytesMut;
use rand::{Rng, RngCore};
use shoal_proto::mse::{
    self, Ciphers, EncryptionPolicy, Established, Initiator, Methods, MseError, Randomness,
    Responder,
};
use shoal_proto::wire::{Handshake, HANDSHAKE_LEN};
use shoal_proto::InfoHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peer_conn::{ConnError, HANDSHAKE_TIMEOUT};
use crate::transport::Socket;

/// A peer connection's byte stream once the handshakes are done.
pub struct PeerStream {
    pub(crate) socket: Socket,
    /// `Some` when the stream is RC4-encrypted (boxed: two RC4 states are half a kilobyte,
    /// carried in every connection's messages).
    pub(crate) ciphers: Option<Box<Ciphers>>,
    /// Stream bytes that arrived with the handshakes, already decrypted; the reader starts
    /// with them.
    pub(crate) read_ahead: BytesMut,
}

impl PeerStream {
    pub fn plain(socket: Socket) -> PeerStream {
        PeerStream { socket, ciphers: None, read_ahead: BytesMut::new() }
    }

    fn from_established(socket: Socket, established: Established) -> PeerStream {
        let mut read_ahead = BytesMut::from(&established.initial_payload[..]);
        read_ahead.extend_from_slice(&established.rest);
        PeerStream { socket, ciphers: established.ciphers.map(Box::new), read_ahead }
    }

    pub fn transport(&self) -> crate::torrent_task::Transport {
        self.socket.transport()
    }

    /// Whether what follows the handshake is RC4-encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.ciphers.is_some()
    }

    /// Reads the peer's BitTorrent handshake: from what came with the MSE handshake first,
    /// then from the socket. Nothing past it is consumed.
    pub async fn read_handshake(&mut self, addr: SocketAddr) -> Result<Handshake, ConnError> {
        while self.read_ahead.len() < HANDSHAKE_LEN {
            let need = HANDSHAKE_LEN - self.read_ahead.len();
            let mut chunk = vec![0u8; need];
            let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.socket.read_exact(&mut chunk));
            match read.await {
                Err(_) => return Err(ConnError::Timeout { addr }),
                Ok(Err(source)) => return Err(ConnError::Io { addr, source }),
                Ok(Ok(_)) => {}
            }
            if let Some(ciphers) = &mut self.ciphers {
                ciphers.decrypt.apply(&mut chunk);
            }
            self.read_ahead.extend_from_slice(&chunk);
        }
        let bytes = self.read_ahead.split_to(HANDSHAKE_LEN);
        match Handshake::parse(&bytes) {
            Ok(Some(hs)) => Ok(hs),
            Ok(None) => Err(ConnError::BadHandshake { addr, reason: "truncated".into() }),
            Err(e) => Err(ConnError::BadHandshake { addr, reason: e.to_string() }),
        }
    }
}

/// Fresh randomness for one side of a handshake: a 160-bit private key and a pad of random
/// length and content, from the operating system's generator.
fn randomness() -> Randomness {
    let mut rng = rand::rng();
    let mut secret = [0u8; mse::SECRET_LEN];
    rng.fill_bytes(&mut secret);
    let mut pad = vec![0u8; rng.random_range(0..=mse::MAX_PAD)];
    rng.fill_bytes(&mut pad);
    Randomness { secret, pad }
}

/// Where an MSE handshake failed.
fn failed(addr: SocketAddr, error: MseError) -> ConnError {
    ConnError::Encryption { addr, source: error }
}

/// Runs the handshake as the connecting side, sending `ours` (our BitTorrent handshake) as the
/// initial payload; then reads the peer's BitTorrent handshake.
pub async fn initiate(
    mut socket: Socket,
    addr: SocketAddr,
    provide: Methods,
    ours: &Handshake,
) -> Result<(PeerStream, Handshake), ConnError> {
    let mut initiator =
        Initiator::new(ours.info_hash, provide, ours.encode().to_vec(), randomness());
    let exchange = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let out = initiator.take_transmit();
            if !out.is_empty() {
                socket.write_all(&out).await.map_err(|source| ConnError::Io { addr, source })?;
            }
            let n = socket.read(&mut buf).await.map_err(|source| ConnError::Io { addr, source })?;
            if n == 0 {
                return Err(ConnError::Closed { addr });
            }
            if let Some(done) = initiator.feed(&buf[..n]).map_err(|e| failed(addr, e))? {
                return Ok(done);
            }
        }
    };
    let established = match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Err(_) => return Err(ConnError::Timeout { addr }),
        Ok(result) => result?,
    };
    let mut stream = PeerStream::from_established(socket, established);
    let theirs = stream.read_handshake(addr).await?;
    Ok((stream, theirs))
}

/// Answers an incoming MSE handshake whose first bytes (`first`, already read) were not a plain
/// BitTorrent handshake; `torrent` names the torrent of ours an obfuscated info hash stands
/// for. Then reads the peer's BitTorrent handshake.
pub async fn respond(
    mut socket: Socket,
    addr: SocketAddr,
    first: &[u8],
    policy: EncryptionPolicy,
    torrent: impl Fn(&[u8; 20]) -> Option<InfoHash>,
) -> Result<(PeerStream, Handshake), ConnError> {
    let mut responder = Responder::new(policy, randomness());
    let exchange = async {
        let mut buf = vec![0u8; 4096];
        let mut input = first.to_vec();
        loop {
            let done = responder.feed(&input, &torrent).map_err(|e| failed(addr, e))?;
            let out = responder.take_transmit();
            if !out.is_empty() {
                socket.write_all(&out).await.map_err(|source| ConnError::Io { addr, source })?;
            }
            if let Some(done) = done {
                return Ok(done);
            }
            let n = socket.read(&mut buf).await.map_err(|source| ConnError::Io { addr, source })?;
            if n == 0 {
                return Err(ConnError::Closed { addr });
            }
            input = buf[..n].to_vec();
        }
    };
    let established = match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Err(_) => return Err(ConnError::Timeout { addr }),
        Ok(result) => result?,
    };
    let info_hash = established.info_hash;
    let mut stream = PeerStream::from_established(socket, established);
    let theirs = stream.read_handshake(addr).await?;
    if theirs.info_hash != info_hash {
        return Err(ConnError::BadHandshake {
            addr,
            reason: "the handshake names another torrent than the encryption did".into(),
        });
    }
    Ok((stream, theirs))
}
