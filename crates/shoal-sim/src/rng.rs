//! The simulation's only source of randomness: the core's seeded generator (`fastrand`),
//! seeded once per simulation, with the few draws the simulator needs.
//!
//! A failing seed must stay reproducible. Cargo.lock pins the generator, and the test below
//! fails if a dependency update changes the stream for a seed (fastrand changes it only in a
//! minor release, as 2.1 did): seeds quoted in tests and notes then need a fresh look.

#[derive(Clone, Debug)]
pub struct SimRng(fastrand::Rng);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(fastrand::Rng::with_seed(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// A value in `0..n`, and `0` when `n` is 0 (a spread of nothing draws nothing).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.u64(..n)
        }
    }

    /// A value in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        self.0.f64()
    }

    /// Random bytes (in the machine's byte order: the same on every target we run on, all
    /// little-endian).
    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let mut c = SimRng::new(8);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    /// If this fails after a dependency update, the generator's stream changed: every seed in
    /// the tests now means another run. Check the simulator tests' figures, then update these.
    #[test]
    fn the_stream_for_a_seed_is_pinned() {
        let mut r = SimRng::new(7);
        let words: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            words,
            [14_266_376_187_910_451_857, 4_104_141_878_723_513_376, 13_250_119_348_504_322_419]
        );
        assert_eq!(r.below(1000), 481);
        let mut bytes = [0u8; 5];
        r.fill(&mut bytes);
        assert_eq!(bytes, [44, 189, 203, 249, 8]);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut r = SimRng::new(1);
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert_eq!(r.below(0), 0);
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
