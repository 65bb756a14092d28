//! A fixed-length set of piece indices, stored exactly as the `bitfield` message carries it.
//!
//! Bit 0 is the high bit of byte 0 (BEP 3). Keeping the wire layout means a peer's bitfield is
//! validated once and then used in place, and ours is sent without conversion. The number of
//! set bits is cached because the picker and the "is this peer a seed?" checks ask for it far
//! more often than bits change.
//!
//! Piece indices are `u32`, as on the wire. Out-of-range indices never panic: `get` answers
//! `false` and `set`/`clear` change nothing, so a `have` for a piece that does not exist cannot
//! corrupt the set (the state machine still treats it as a protocol violation).

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BitfieldError {
    #[error("bitfield: {got} bytes for {len} pieces, expected {expected}")]
    WrongLength { len: u32, expected: usize, got: usize },
    #[error("bitfield: spare bits after piece {len} are set")]
    SpareBitsSet { len: u32 },
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

/// Bytes needed for `len` bits.
pub fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

impl Bitfield {
    /// `len` bits, all clear.
    pub fn new(len: u32) -> Self {
        Bitfield { bytes: vec![0; byte_len(len)], len, ones: 0 }
    }

    /// `len` bits, all set (a seed's bitfield).
    pub fn full(len: u32) -> Self {
        let mut bytes = vec![0xff; byte_len(len)];
        if let Some(last) = bytes.last_mut() {
            *last &= last_byte_mask(len);
        }
        Bitfield { bytes, len, ones: len }
    }

    /// Validates a peer's `bitfield` payload: exactly `ceil(len / 8)` bytes, spare bits zero.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength { len, expected, got: bytes.len() });
        }
        if let Some(&last) = bytes.last() {
            if last & !last_byte_mask(len) != 0 {
                return Err(BitfieldError::SpareBitsSet { len });
            }
        }
        let ones = count_bits(bytes);
        Ok(Bitfield { bytes: bytes.to_vec(), len, ones })
    }

    /// Number of bits (pieces).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the bitfield has no bits at all (not when no bit is set: see `count_ones`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The wire form, ready to be sent as a `bitfield` message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    #[inline]
    pub fn get(&self, index: u32) -> bool {
        match self.bytes.get((index / 8) as usize) {
            Some(byte) if index < self.len => byte & bit_mask(index) != 0,
            _ => false,
        }
    }

    /// Sets a bit. Returns true when it was clear before (false if already set or out of range).
    #[inline]
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        match self.bytes.get_mut((index / 8) as usize) {
            Some(byte) if *byte & bit_mask(index) == 0 => {
                *byte |= bit_mask(index);
                self.ones += 1;
                true
            }
            _ => false,
        }
    }

    /// Clears a bit. Returns true when it was set before (false if already clear or out of range).
    #[inline]
    pub fn clear(&mut self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        match self.bytes.get_mut((index / 8) as usize) {
            Some(byte) if *byte & bit_mask(index) != 0 => {
                *byte &= !bit_mask(index);
                self.ones -= 1;
                true
            }
            _ => false,
        }
    }

    /// Sets every bit (a peer sent `have all`).
    pub fn set_all(&mut self) {
        *self = Bitfield::full(self.len);
    }

    /// Clears every bit.
    pub fn clear_all(&mut self) {
        self.bytes.fill(0);
        self.ones = 0;
    }

    /// Number of set bits, O(1).
    #[inline]
    pub fn count_ones(&self) -> u32 {
        self.ones
    }

    /// Number of clear bits, O(1).
    #[inline]
    pub fn count_zeros(&self) -> u32 {
        self.len - self.ones
    }

    /// Every bit set (for a torrent's bitfield: we are a seed).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// No bit set.
    #[inline]
    pub fn is_clear(&self) -> bool {
        self.ones == 0
    }

    /// True if some bit is set here and clear in `other`: "does this peer have a piece we
    /// lack?", the test behind `interested`. Bitfields of different lengths are compared over
    /// the shorter one.
    pub fn has_any_not_in(&self, other: &Bitfield) -> bool {
        self.bytes.iter().zip(&other.bytes).any(|(mine, theirs)| mine & !theirs != 0)
    }

    /// Indices of set bits, ascending.
    pub fn iter_ones(&self) -> BitIter<'_> {
        BitIter::new(&self.bytes, self.len, false)
    }

    /// Indices of clear bits, ascending.
    pub fn iter_zeros(&self) -> BitIter<'_> {
        BitIter::new(&self.bytes, self.len, true)
    }
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

/// Iterator over set (or clear) bit indices. Skips whole bytes with nothing to report, so a
/// sparse or nearly full bitfield costs one compare per 8 pieces.
pub struct BitIter<'a> {
    bytes: &'a [u8],
    /// Index of the byte `current` came from.
    byte_index: usize,
    /// Bits still to report from the current byte, already inverted and masked.
    current: u8,
    invert: bool,
    len: u32,
}

impl<'a> BitIter<'a> {
    fn new(bytes: &'a [u8], len: u32, invert: bool) -> Self {
        let mut iter = BitIter { bytes, byte_index: 0, current: 0, invert, len };
        iter.current = iter.load(0);
        iter
    }

    /// The byte at `index` as "bits to report": inverted for zeros, spare bits masked off.
    fn load(&self, index: usize) -> u8 {
        let Some(&raw) = self.bytes.get(index) else {
            return 0;
        };
        let bits = if self.invert { !raw } else { raw };
        if index + 1 == self.bytes.len() {
            bits & last_byte_mask(self.len)
        } else {
            bits
        }
    }
}

impl Iterator for BitIter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.current == 0 {
            self.byte_index += 1;
            if self.byte_index >= self.bytes.len() {
                return None;
            }
            self.current = self.load(self.byte_index);
        }
        let offset = self.current.leading_zeros();
        self.current &= !(0x80u8 >> offset);
        Some(self.byte_index as u32 * 8 + offset)
    }
}

#[inline]
fn bit_mask(index: u32) -> u8 {
    0x80 >> (index % 8)
}

/// Mask of the bits of the last byte that belong to the field (the rest are spare).
fn last_byte_mask(len: u32) -> u8 {
    match len % 8 {
        0 => 0xff,
        used => 0xffu8 << (8 - used),
    }
}

fn count_bits(bytes: &[u8]) -> u32 {
    // Whole words first: popcount on u64 is one instruction where the target has it.
    let mut chunks = bytes.chunks_exact(8);
    let mut ones: u32 = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        ones += u64::from_ne_bytes(word).count_ones();
    }
    ones + chunks.remainder().iter().map(|b| b.count_ones()).sum::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first_layout() {
        let mut bf = Bitfield::new(10);
        assert!(bf.set(0));
        assert!(bf.set(9));
        assert_eq!(bf.as_bytes(), &[0x80, 0x40]);
        assert!(!bf.set(0), "second set reports no change");
        assert_eq!(bf.count_ones(), 2);
        assert!(bf.clear(0));
        assert!(!bf.clear(0));
        assert_eq!(bf.as_bytes(), &[0x00, 0x40]);
        assert_eq!(bf.count_ones(), 1);
        assert_eq!(bf.count_zeros(), 9);
    }

    #[test]
    fn out_of_range_is_harmless() {
        let mut bf = Bitfield::new(10);
        // Index 10..15 live in the last byte's spare bits; 16+ are past the buffer.
        for i in [10, 15, 16, u32::MAX] {
            assert!(!bf.set(i));
            assert!(!bf.get(i));
            assert!(!bf.clear(i));
        }
        assert_eq!(bf.as_bytes(), &[0, 0]);
        assert!(bf.is_clear());
    }

    #[test]
    fn full_and_empty() {
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let full = Bitfield::full(len);
            assert!(full.is_full());
            assert_eq!(full.count_ones(), len);
            assert_eq!(full.iter_ones().count(), len as usize);
            assert_eq!(full.iter_zeros().count(), 0);
            assert_eq!(Bitfield::from_bytes(full.as_bytes(), len).unwrap(), full);
            let empty = Bitfield::new(len);
            assert_eq!(empty.is_full(), len == 0);
            assert_eq!(empty.iter_zeros().count(), len as usize);
            assert_eq!(empty.iter_ones().next(), None);
            let mut filled = empty.clone();
            filled.set_all();
            assert_eq!(filled, full);
            filled.clear_all();
            assert_eq!(filled, empty);
        }
        assert!(Bitfield::new(0).is_empty());
        assert!(!Bitfield::new(1).is_empty());
    }

    #[test]
    fn from_bytes_checks_length_and_spare_bits() {
        assert_eq!(
            Bitfield::from_bytes(&[0xff], 9),
            Err(BitfieldError::WrongLength { len: 9, expected: 2, got: 1 })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0, 0], 9),
            Err(BitfieldError::WrongLength { len: 9, expected: 2, got: 3 })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0x40], 9),
            Err(BitfieldError::SpareBitsSet { len: 9 })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0x01], 15),
            Err(BitfieldError::SpareBitsSet { len: 15 })
        );
        let bf = Bitfield::from_bytes(&[0xa5, 0x80], 9).unwrap();
        assert_eq!(bf.count_ones(), 5);
        assert_eq!(bf.iter_ones().collect::<Vec<_>>(), vec![0, 2, 5, 7, 8]);
        assert_eq!(bf.iter_zeros().collect::<Vec<_>>(), vec![1, 3, 4, 6]);
        assert!(Bitfield::from_bytes(&[], 0).unwrap().is_full());
    }

    #[test]
    fn iterators_match_get_on_a_sparse_pattern() {
        let len = 200;
        let mut bf = Bitfield::new(len);
        for i in (0..len).filter(|i| i % 7 == 3 || *i > 190) {
            bf.set(i);
        }
        let ones: Vec<u32> = (0..len).filter(|&i| bf.get(i)).collect();
        let zeros: Vec<u32> = (0..len).filter(|&i| !bf.get(i)).collect();
        assert_eq!(bf.iter_ones().collect::<Vec<_>>(), ones);
        assert_eq!(bf.iter_zeros().collect::<Vec<_>>(), zeros);
        assert_eq!(bf.count_ones() as usize, ones.len());
        assert_eq!(Bitfield::from_bytes(bf.as_bytes(), len).unwrap().count_ones(), bf.count_ones());
    }

    #[test]
    fn has_any_not_in() {
        let mut ours = Bitfield::new(20);
        let mut theirs = Bitfield::new(20);
        assert!(!theirs.has_any_not_in(&ours));
        theirs.set(17);
        assert!(theirs.has_any_not_in(&ours));
        ours.set(17);
        assert!(!theirs.has_any_not_in(&ours));
        assert!(ours.has_any_not_in(&Bitfield::new(20)));
    }
}
