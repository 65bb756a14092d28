//! (in progress)
pub struct Bitfield;
