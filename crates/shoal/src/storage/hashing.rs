//! SHA-1 of piece bytes, fed in large chunks through one reusable buffer per thread.
//!
//! RustCrypto's `sha1` picks the SHA-NI (x86) or SHA2 (aarch64) instructions at run time when
//! the CPU has them, so no feature flag is needed for the fast path.

use std::cell::RefCell;

use sha1::{Digest, Sha1};

/// How many bytes one read feeds the hasher: large enough that the per-read system call cost
/// vanishes next to hashing, small enough to stay in L2.
pub const CHUNK: usize = 256 * 1024;

thread_local! {
    // The driver hashes on a pool of long-lived threads; each keeps its buffer, so hashing a
    // piece allocates nothing (a fresh 256 KiB allocation would be mmap'ed and page-faulted
    // every time).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a `CHUNK`-sized buffer owned by this thread.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < CHUNK {
                buf.resize(CHUNK, 0);
            }
            f(&mut buf[..CHUNK])
        }
        // Only reachable if `f` itself hashes (it never does); stay correct regardless.
        Err(_) => f(&mut vec![0; CHUNK]),
    })
}

/// An incremental piece hash.
#[derive(Default)]
pub struct PieceHasher(Sha1);

impl PieceHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Feeds `len` zero bytes (pad files).
    pub fn update_zeros(&mut self, mut len: u64) {
        const ZEROS: [u8; 4096] = [0; 4096];
        while len > 0 {
            let n = len.min(ZEROS.len() as u64) as usize;
            self.0.update(&ZEROS[..n]);
            len -= n as u64;
        }
    }

    pub fn finish(self) -> [u8; 20] {
        self.0.finalize().into()
    }
}

/// SHA-1 of `bytes` in one go.
pub fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}
