//! Random bytes from the browser's CSPRNG (peer ids and offer ids must not be guessable:
//! an offer id is what lets an answer reach our connection).

/// `N` random bytes; `Math.random` only where `crypto` is missing (never in a real browser).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut out).is_ok());
    if !filled {
        for b in &mut out {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    out
}
