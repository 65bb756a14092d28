//! Announce-list tiers (BEP 12).
//!
//! A torrent lists trackers in tiers. Each tier is shuffled once, then trackers are tried in
//! order, tier by tier, until one answers; the one that answered moves to the front of its
//! tier so it is tried first next time.

/// How many tracker URLs we keep from one torrent or magnet; the rest are dropped, since a
/// hostile torrent could list millions and each costs memory and, worse, announces.
pub const MAX_TRACKER_URLS: usize = 256;
/// How long one tracker URL may be.
pub const MAX_TRACKER_URL_LEN: usize = 2048;

/// The tiers of one torrent, in try order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrackerTiers {
    tiers: Vec<Vec<String>>,
}

impl TrackerTiers {
    /// Builds the tiers, shuffling each one with `seed` (the core has no randomness of its
    /// own; pass a random value, or a fixed one in tests). Surrounding whitespace is trimmed;
    /// empty URLs, URLs longer than [`MAX_TRACKER_URL_LEN`], repeats (the first occurrence
    /// wins) and empty tiers are dropped, and at most [`MAX_TRACKER_URLS`] URLs are kept.
    pub fn new(tiers: Vec<Vec<String>>, seed: u64) -> Self {
        // Shuffling tracker order needs no cryptographic quality, only a reproducible order.
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut kept: Vec<Vec<String>> = Vec::new();
        let mut total = 0;
        for tier in tiers {
            let mut urls = Vec::new();
            for url in tier {
                if total == MAX_TRACKER_URLS {
                    break;
                }
                let url = url.trim();
                let seen = kept.iter().flatten().chain(urls.iter()).any(|u: &String| u == url);
                if url.is_empty() || url.len() > MAX_TRACKER_URL_LEN || seen {
                    continue;
                }
                urls.push(url.to_owned());
                total += 1;
            }
            rng.shuffle(&mut urls);
            if !urls.is_empty() {
                kept.push(urls);
            }
        }
        TrackerTiers { tiers: kept }
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// Every URL, tier by tier, with its tier index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, urls)| urls.iter().map(move |u| (tier, u.as_str())))
    }

    /// How many URLs there are in all tiers.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The tier and the index within it of `url`.
    pub fn position(&self, url: &str) -> Option<(usize, usize)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(t, urls)| urls.iter().position(|u| u == url).map(|i| (t, i)))
    }

    /// Moves `url` to the front of its tier, as BEP 12 asks when it answered. Returns false
    /// for an unknown URL.
    pub fn promote(&mut self, url: &str) -> bool {
        let Some((tier, index)) = self.position(url) else { return false };
        if let Some(urls) = self.tiers.get_mut(tier) {
            urls[..=index].rotate_right(1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tiers: &[&[&str]]) -> Vec<Vec<String>> {
        tiers.iter().map(|t| t.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn shuffles_within_tiers_only() {
        let input = strings(&[&["a", "b", "c", "d", "e"], &["x", "y"]]);
        let mut orders = std::collections::HashSet::new();
        for seed in 0..50 {
            let tiers = TrackerTiers::new(input.clone(), seed);
            let mut first = tiers.tiers()[0].clone();
            orders.insert(first.clone());
            first.sort();
            assert_eq!(first, ["a", "b", "c", "d", "e"]);
            let mut second = tiers.tiers()[1].clone();
            second.sort();
            assert_eq!(second, ["x", "y"]);
        }
        assert!(orders.len() > 10, "shuffle barely varies: {orders:?}");
        assert_eq!(TrackerTiers::new(input.clone(), 7), TrackerTiers::new(input, 7));
    }

    #[test]
    fn drops_empty_duplicate_and_excess_urls() {
        let tiers = TrackerTiers::new(strings(&[&[" a ", "", "a"], &[], &["a", "b"]]), 1);
        assert_eq!(tiers.tiers(), &strings(&[&["a"], &["b"]])[..]);
        assert_eq!(tiers.len(), 2);

        let long = "x".repeat(MAX_TRACKER_URL_LEN + 1);
        let many: Vec<String> = (0..MAX_TRACKER_URLS + 10).map(|i| format!("u{i}")).collect();
        let tiers = TrackerTiers::new(vec![vec![long], many], 1);
        assert_eq!(tiers.len(), MAX_TRACKER_URLS);
        assert!(TrackerTiers::new(vec![vec![]], 1).is_empty());
    }

    #[test]
    fn iterates_tier_by_tier_and_promotes() {
        let mut tiers = TrackerTiers { tiers: strings(&[&["a", "b", "c"], &["d", "e"]]) };
        let order: Vec<_> = tiers.iter().collect();
        assert_eq!(order, [(0, "a"), (0, "b"), (0, "c"), (1, "d"), (1, "e")]);
        assert!(tiers.promote("c"));
        assert!(tiers.promote("e"));
        assert!(!tiers.promote("zz"));
        assert_eq!(tiers.tiers(), &strings(&[&["c", "a", "b"], &["e", "d"]])[..]);
        assert_eq!(tiers.position("b"), Some((0, 2)));
        assert!(tiers.promote("c"));
        assert_eq!(tiers.tiers()[0], ["c", "a", "b"]);
    }
}
