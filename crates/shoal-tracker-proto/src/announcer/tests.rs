//! The announce schedule on virtual time.

use super::*;

fn at(secs: u64) -> Instant {
    Instant::from_duration(Duration::from_secs(secs))
}

/// Tiers whose order within each tier is the one given (seeded shuffles are skipped by
/// building each tier from one URL and then merging).
fn tiers(spec: &[&[&str]]) -> TrackerTiers {
    let tiers: Vec<Vec<String>> =
        spec.iter().map(|t| t.iter().map(|s| s.to_string()).collect()).collect();
    // Find a seed that keeps the given order, so tests read in the order they are written.
    (0..10_000)
        .map(|seed| TrackerTiers::new(tiers.clone(), seed))
        .find(|t| t.tiers() == tiers.as_slice())
        .expect("some seed keeps the order")
}

fn answer(interval: u64) -> AnnounceResponse {
    AnnounceResponse { interval: Duration::from_secs(interval), ..AnnounceResponse::empty() }
}

fn job(url: &str, event: AnnounceEvent) -> Option<AnnounceJob> {
    Some(AnnounceJob { url: url.into(), event, tracker_id: None })
}

fn announcer(spec: &[&[&str]]) -> Announcer {
    Announcer::new(tiers(spec), AnnouncerConfig::default())
}

#[test]
fn starts_then_follows_the_interval() {
    let mut a = announcer(&[&["a"]]);
    assert_eq!(a.next_deadline(), Some(Instant::ZERO));
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    assert_eq!(a.poll(at(0)), None, "one job at a time");
    assert_eq!(a.next_deadline(), None, "waiting for the answer");
    a.on_response("a", &answer(1800), at(2));
    assert_eq!(a.next_deadline(), Some(at(1802)));
    assert_eq!(a.poll(at(1801)), None);
    assert_eq!(a.poll(at(1802)), job("a", AnnounceEvent::None));
}

#[test]
fn a_stale_or_unknown_answer_is_ignored() {
    let mut a = announcer(&[&["a"]]);
    a.on_response("a", &answer(1800), at(0));
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_response("zz", &answer(1800), at(0));
    a.on_failure("zz", &"boom", at(0));
    assert_eq!(a.next_deadline(), None, "still waiting for a");
}

#[test]
fn fails_over_within_the_tier_then_to_the_next_tier() {
    let mut a = announcer(&[&["a", "b"], &["c"]]);
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_failure("a", &"timed out", at(10));
    assert_eq!(a.poll(at(10)), job("b", AnnounceEvent::Started));
    a.on_failure("b", &"refused", at(11));
    assert_eq!(a.poll(at(11)), job("c", AnnounceEvent::Started));
    a.on_response("c", &answer(600), at(12));
    assert_eq!(a.tracker_status("a").unwrap().last_error.as_deref(), Some("timed out"));
    assert_eq!(a.tracker_status("a").unwrap().failures, 1);
    assert_eq!(a.tracker_status("c").unwrap().last_success, Some(at(12)));

    // At the next regular announce the first tier, no longer backing off, is tried first
    // again: a fresh tracker still needs `started`.
    assert_eq!(a.poll(at(612)), job("a", AnnounceEvent::Started));
    a.on_response("a", &answer(600), at(613));
    assert_eq!(a.tracker_status("a").unwrap().failures, 0);
    assert_eq!(a.tracker_status("a").unwrap().last_error, None);
}

#[test]
fn the_answering_tracker_moves_to_the_front_of_its_tier() {
    let mut a = announcer(&[&["a", "b", "c"]]);
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_failure("a", &"x", at(0));
    assert_eq!(a.poll(at(0)), job("b", AnnounceEvent::Started));
    a.on_response("b", &answer(600), at(1));
    assert_eq!(a.tiers().tiers()[0], ["b", "a", "c"]);
    assert_eq!(a.poll(at(601)), job("b", AnnounceEvent::None));
}

#[test]
fn a_lone_failing_tracker_backs_off_exponentially_up_to_the_cap() {
    let config = AnnouncerConfig {
        backoff_base: Duration::from_secs(15),
        backoff_max: Duration::from_secs(100),
        ..AnnouncerConfig::default()
    };
    let mut a = Announcer::new(tiers(&[&["a"]]), config);
    let mut now = at(0);
    let mut waits = Vec::new();
    for _ in 0..5 {
        assert_eq!(a.poll(now).map(|j| j.event), Some(AnnounceEvent::Started));
        a.on_failure("a", &"down", now);
        let next = a.next_deadline().unwrap();
        assert_eq!(
            a.poll(Instant::from_duration(next.since_epoch() - Duration::from_secs(1))),
            None
        );
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [15, 30, 60, 100, 100]);
    assert_eq!(a.tracker_status("a").unwrap().failures, 5);
}

#[test]
fn when_every_tracker_backs_off_the_earliest_retry_wins() {
    let mut a = announcer(&[&["a"], &["b"]]);
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_failure("a", &"x", at(0)); // retry at 15
    assert_eq!(a.poll(at(5)), job("b", AnnounceEvent::Started));
    a.on_failure("b", &"x", at(5)); // retry at 20
    assert_eq!(a.next_deadline(), Some(at(15)));
    assert_eq!(a.poll(at(15)), job("a", AnnounceEvent::Started));
}

#[test]
fn completed_is_sent_once_when_the_download_finishes() {
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    a.on_response("a", &answer(1800), at(0));
    a.on_completed(at(100));
    assert_eq!(a.next_deadline(), Some(at(100)), "completed goes out at once");
    assert_eq!(a.poll(at(100)), job("a", AnnounceEvent::Completed));
    a.on_response("a", &answer(1800), at(101));
    a.on_completed(at(102));
    assert_eq!(a.next_deadline(), Some(at(1901)));
    assert_eq!(a.poll(at(1901)), job("a", AnnounceEvent::None));
}

#[test]
fn a_failed_completed_is_retried_on_the_next_tracker() {
    let mut a = announcer(&[&["a"], &["b"]]);
    assert!(a.poll(at(0)).is_some());
    a.on_response("a", &answer(1800), at(0));
    a.on_completed(at(50));
    assert_eq!(a.poll(at(50)), job("a", AnnounceEvent::Completed));
    a.on_failure("a", &"x", at(51));
    // b never saw us: it learns we are done from `started`, and never gets `completed`.
    assert_eq!(a.poll(at(51)), job("b", AnnounceEvent::Started));
    a.on_response("b", &answer(1800), at(52));
    assert_eq!(a.next_deadline(), Some(at(1852)));
    // a, back from its backoff at the next regular announce, still owes `completed`.
    assert_eq!(a.poll(at(1852)), job("a", AnnounceEvent::Completed));
}

#[test]
fn starting_as_a_seeder_never_sends_completed() {
    let mut a = announcer(&[&["a"]]);
    a.on_completed(at(0));
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_response("a", &answer(1800), at(1));
    assert_eq!(a.next_deadline(), Some(at(1801)));
    assert_eq!(a.poll(at(1801)), job("a", AnnounceEvent::None));
}

#[test]
fn finishing_while_started_is_in_flight_still_sends_completed() {
    let mut a = announcer(&[&["a"]]);
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.on_completed(at(1));
    a.on_response("a", &answer(1800), at(2));
    assert_eq!(a.poll(at(2)), job("a", AnnounceEvent::Completed));
}

#[test]
fn early_announces_respect_min_interval() {
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    let resp = AnnounceResponse { min_interval: Some(Duration::from_secs(300)), ..answer(1800) };
    a.on_response("a", &resp, at(0));
    a.want_peers(at(10));
    assert_eq!(a.next_deadline(), Some(at(300)));
    assert_eq!(a.poll(at(299)), None);
    assert_eq!(a.poll(at(300)), job("a", AnnounceEvent::None));
    a.on_response("a", &resp, at(301));
    // Satisfied: back to the regular interval.
    assert_eq!(a.next_deadline(), Some(at(2101)));

    // Without a tracker-given floor the default applies; asked late, it goes at once.
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    a.on_response("a", &answer(1800), at(0));
    a.want_peers(at(500));
    assert_eq!(a.next_deadline(), Some(at(500)));
    a.want_peers(at(10));
    assert_eq!(a.next_deadline(), Some(at(500)), "the first request stands");
}

#[test]
fn tracker_supplied_intervals_are_clamped_again() {
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    let resp = AnnounceResponse { min_interval: Some(Duration::ZERO), ..answer(0) };
    a.on_response("a", &resp, at(0));
    assert_eq!(a.next_deadline(), Some(Instant::ZERO + MIN_INTERVAL));
    a.want_peers(at(0));
    assert_eq!(a.next_deadline(), Some(Instant::ZERO + MIN_MIN_INTERVAL));
}

#[test]
fn tracker_id_is_echoed() {
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    let resp = AnnounceResponse { tracker_id: Some(b"xyz".to_vec()), ..answer(60) };
    a.on_response("a", &resp, at(0));
    let next = a.poll(at(60)).unwrap();
    assert_eq!(next.tracker_id.as_deref(), Some(&b"xyz"[..]));
}

#[test]
fn stop_tells_every_tracker_that_registered_us() {
    let mut a = announcer(&[&["a"], &["b"], &["c"]]);
    assert!(a.poll(at(0)).is_some());
    a.on_response("a", &answer(60), at(0));
    // Register with b too: a fails once at the next announce.
    assert_eq!(a.poll(at(60)), job("a", AnnounceEvent::None));
    a.on_failure("a", &"x", at(60));
    assert_eq!(a.poll(at(60)), job("b", AnnounceEvent::Started));
    a.on_response("b", &answer(60), at(61));

    a.stop(at(70));
    assert!(!a.is_stopped());
    assert_eq!(a.next_deadline(), Some(at(70)));
    let mut stops = vec![a.poll(at(70)).unwrap(), a.poll(at(70)).unwrap()];
    assert_eq!(a.poll(at(70)), None);
    stops.sort_by(|x, y| x.url.cmp(&y.url));
    assert_eq!(
        stops,
        [job("a", AnnounceEvent::Stopped).unwrap(), job("b", AnnounceEvent::Stopped).unwrap()]
    );
    a.on_response("a", &answer(60), at(71));
    assert!(!a.is_stopped());
    a.on_failure("b", &"x", at(72));
    assert!(a.is_stopped(), "no retries during shutdown");
    assert_eq!(a.poll(at(1000)), None);
    assert_eq!(a.next_deadline(), None);
    a.want_peers(at(1000));
    a.stop(at(1000));
    assert_eq!(a.poll(at(2000)), None);
}

#[test]
fn stop_before_any_answer_sends_nothing() {
    let mut a = announcer(&[&["a"]]);
    a.stop(at(0));
    assert!(a.is_stopped());
    assert_eq!(a.poll(at(0)), None);

    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    a.stop(at(1));
    assert!(!a.is_stopped(), "started is still under way");
    a.on_failure("a", &"x", at(2));
    assert!(a.is_stopped());
}

#[test]
fn a_started_answered_during_shutdown_gets_stopped() {
    let mut a = announcer(&[&["a"]]);
    assert_eq!(a.poll(at(0)), job("a", AnnounceEvent::Started));
    a.stop(at(1));
    assert_eq!(a.poll(at(1)), None);
    a.on_response("a", &answer(60), at(2));
    assert_eq!(a.poll(at(2)), job("a", AnnounceEvent::Stopped));
    a.on_response("a", &answer(60), at(3));
    assert!(a.is_stopped());
}

#[test]
fn a_regular_announce_failing_during_shutdown_still_gets_stopped() {
    let mut a = announcer(&[&["a"]]);
    assert!(a.poll(at(0)).is_some());
    a.on_response("a", &answer(60), at(0));
    assert_eq!(a.poll(at(60)), job("a", AnnounceEvent::None));
    a.stop(at(61));
    assert_eq!(a.poll(at(61)), None, "a is busy");
    a.on_failure("a", &"timed out", at(62));
    assert_eq!(a.poll(at(62)), job("a", AnnounceEvent::Stopped));
    a.on_failure("a", &"timed out", at(63));
    assert!(a.is_stopped());
}

#[test]
fn no_trackers_means_no_jobs() {
    let mut a = Announcer::new(TrackerTiers::new(vec![], 0), AnnouncerConfig::default());
    assert_eq!(a.next_deadline(), None);
    assert_eq!(a.poll(at(0)), None);
    a.stop(at(0));
    assert!(a.is_stopped());
}
