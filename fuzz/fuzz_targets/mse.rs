//! Protocol encryption's handshake (MSE) with a hostile peer. Half the inputs are raw bytes
//! from the peer, to a responder and to an initiator; the other half run a real handshake and
//! flip bits of the initiator's encrypted step (VC, crypto_provide, the pad and payload
//! lengths, the payload) and add bytes after it, so the states behind the key exchange, which
//! random bytes never reach, see every value. Beyond no panic, OOM or hang: a responder that
//! finishes names our torrent and a method the policy allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::mse::{
    obfuscated_info_hash, EncryptionPolicy, Initiator, Method, Methods, Randomness, Responder,
};
use shoal_proto::InfoHash;

const HASH: InfoHash = InfoHash([0x42; 20]);

fn lookup(req2: &[u8; 20]) -> Option<InfoHash> {
    (*req2 == obfuscated_info_hash(&HASH)).then_some(HASH)
}

fn random(seed: u8, pad: usize) -> Randomness {
    Randomness { secret: [seed | 1; 20], pad: vec![seed; pad] }
}

fn policy(byte: u8) -> EncryptionPolicy {
    [EncryptionPolicy::Prefer, EncryptionPolicy::Require, EncryptionPolicy::Disable]
        [usize::from(byte % 3)]
}

fuzz_target!(|data: &[u8]| {
    let [mode, knob, rest @ ..] = data else { return };
    let policy = policy(*knob);
    if mode % 2 == 0 {
        let chunk = usize::from(knob / 3).max(1);
        let mut responder = Responder::new(policy, random(1, 0));
        let mut initiator = Initiator::new(HASH, Methods::BOTH, vec![1, 2, 3], random(2, 0));
        for piece in rest.chunks(chunk) {
            let _ = responder.feed(piece, lookup);
            let _ = initiator.feed(piece);
        }
        return;
    }
    let provide = [Methods::PLAINTEXT, Methods::RC4, Methods::BOTH][usize::from(mode / 2 % 3)];
    let mut initiator =
        Initiator::new(HASH, provide, rest.get(..68).unwrap_or(rest).to_vec(), random(3, 7));
    let mut responder = Responder::new(policy, random(4, 9));
    let Ok(None) = responder.feed(&initiator.take_transmit(), lookup) else { return };
    let Ok(None) = initiator.feed(&responder.take_transmit()) else { return };
    // Step 3: the two hashes (40 bytes), then the encrypted part, whose bits the input flips.
    let mut step3 = initiator.take_transmit();
    for (byte, flip) in step3.iter_mut().skip(40).zip(rest) {
        *byte ^= flip;
    }
    step3.extend_from_slice(rest);
    if let Ok(Some(done)) = responder.feed(&step3, lookup) {
        assert_eq!(done.info_hash, HASH);
        match done.method {
            Method::Rc4 => assert!(policy != EncryptionPolicy::Disable && done.ciphers.is_some()),
            Method::Plaintext => {
                assert!(policy == EncryptionPolicy::Prefer && done.ciphers.is_none())
            }
        }
        let _ = initiator.feed(&responder.take_transmit());
    }
});
