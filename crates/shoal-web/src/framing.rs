//! The BitTorrent byte stream over a data channel, both directions.
//!
//! A data channel delivers messages, but the wire protocol is a byte stream: a BitTorrent
//! message may span several channel messages and one channel message may carry several. The
//! first 68 bytes each way are the handshake.

use bytes::{BufMut, BytesMut};
use shoal_proto::wire::{FrameDecoder, Handshake, Message, WireError, HANDSHAKE_LEN};

/// Largest data-channel message we send: what every browser accepts without fragmenting
/// trouble (WebTorrent uses 16 KiB too).
pub const CHANNEL_MESSAGE: usize = 16 * 1024;

/// What the remote side said.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Handshake(Handshake),
    Message(Message),
}

/// Reads the remote side's stream.
pub struct StreamReader {
    buf: BytesMut,
    handshake_seen: bool,
    decoder: FrameDecoder,
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader::new(shoal_proto::wire::DEFAULT_MAX_FRAME)
    }
}

impl StreamReader {
    pub fn new(max_frame: u32) -> Self {
        StreamReader {
            buf: BytesMut::new(),
            handshake_seen: false,
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// Raises the frame limit once the torrent's piece count is known (bitfields grow).
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.decoder.set_max_len(max_frame);
    }

    /// Appends one channel message and returns everything now complete. After an error the
    /// stream is unusable: the connection must close.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Inbound>, WireError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        if !self.handshake_seen {
            match Handshake::parse(&self.buf)? {
                None => return Ok(out),
                Some(handshake) => {
                    let _ = self.buf.split_to(HANDSHAKE_LEN);
                    self.handshake_seen = true;
                    out.push(Inbound::Handshake(handshake));
                }
            }
        }
        while let Some(message) = self.decoder.decode(&mut self.buf)? {
            out.push(Inbound::Message(message));
        }
        Ok(out)
    }

    /// Bytes buffered of a frame that is not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Cuts what we send into channel messages.
#[derive(Default)]
pub struct StreamWriter {
    pending: BytesMut,
}

impl StreamWriter {
    pub fn handshake(&mut self, handshake: &Handshake) {
        self.pending.put_slice(&handshake.encode());
    }

    pub fn message(&mut self, message: &Message) {
        message.encode(&mut self.pending);
    }

    /// Bytes not yet taken by [`Self::next_chunk`].
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The next channel message to send, at most [`CHANNEL_MESSAGE`] bytes.
    pub fn next_chunk(&mut self) -> Option<BytesMut> {
        if self.pending.is_empty() {
            return None;
        }
        let len = self.pending.len().min(CHANNEL_MESSAGE);
        Some(self.pending.split_to(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shoal_proto::{InfoHash, PeerId};

    fn handshake() -> Handshake {
        Handshake::new(InfoHash([7; 20]), PeerId([9; 20]))
    }

    #[test]
    fn messages_spanning_and_sharing_channel_messages() {
        let mut writer = StreamWriter::default();
        writer.handshake(&handshake());
        writer.message(&Message::Interested);
        let piece = Message::Piece { piece: 3, offset: 0, data: Bytes::from(vec![5u8; 40_000]) };
        writer.message(&piece);
        writer.message(&Message::Have(9));
        let mut chunks = Vec::new();
        while let Some(chunk) = writer.next_chunk() {
            assert!(chunk.len() <= CHANNEL_MESSAGE);
            chunks.push(chunk);
        }
        assert!(chunks.len() >= 3, "40 KB of piece spans channel messages");

        let mut reader = StreamReader::default();
        let mut got = Vec::new();
        for chunk in &chunks {
            // and split again, unevenly, as a hostile or odd peer might
            let (a, b) = chunk.split_at(chunk.len() / 3);
            got.extend(reader.feed(a).expect("valid"));
            got.extend(reader.feed(b).expect("valid"));
        }
        assert_eq!(
            got,
            vec![
                Inbound::Handshake(handshake()),
                Inbound::Message(Message::Interested),
                Inbound::Message(piece),
                Inbound::Message(Message::Have(9)),
            ]
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let mut reader = StreamReader::default();
        let garbage = [0xffu8; 100];
        assert!(reader.feed(&garbage).is_err(), "not a handshake");

        let mut reader = StreamReader::new(1024);
        reader.feed(&handshake().encode()).expect("handshake");
        // a length prefix over the limit is refused as soon as it arrives
        assert!(reader.feed(&[0, 1, 0, 0]).is_err());
    }
}
