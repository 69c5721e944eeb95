//! How an API backfill is split and paced: the id ranges that its cursors walk
//! side by side, and how many requests may be in flight at once.
//!
//! Plain data and arithmetic, as [`crate::retry`]: no clock (instants are passed
//! in), no sleeping, no I/O. The commercetools adapter asks and sleeps as told.

use std::time::{Duration, Instant};

/// Id ranges a walk reads at once unless configured otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// The most id ranges (and so requests in flight) one walk may use.
pub const MAX_CONCURRENCY: u32 = 64;

/// After an overload, how long the concurrency stays reduced before it grows
/// again, and the least time between two halvings.
pub const OVERLOAD_HOLD: Duration = Duration::from_secs(2);

/// One contiguous slice of the id space, in byte order as commercetools compares
/// strings: `low <= id < high`, a missing bound being open.
///
/// The ranges of [`id_ranges`] cover every string exactly once, so a customer
/// whose id is not hex (imported ids can be anything) still belongs to exactly
/// one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRange {
    low: Option<String>,
    high: Option<String>,
}

impl IdRange {
    /// The whole id space: one range, no bounds.
    pub fn everything() -> Self {
        Self {
            low: None,
            high: None,
        }
    }

    /// The smallest id in the range (inclusive), if it has a lower bound.
    pub fn low(&self) -> Option<&str> {
        self.low.as_deref()
    }

    /// The first id past the range (exclusive), if it has an upper bound.
    pub fn high(&self) -> Option<&str> {
        self.high.as_deref()
    }

    /// Whether `id` belongs to this range.
    pub fn contains(&self, id: &str) -> bool {
        self.low.as_deref().is_none_or(|low| id >= low)
            && self.high.as_deref().is_none_or(|high| id < high)
    }
}

/// `count` ranges (at least one) splitting the id space evenly for uniform hex
/// ids (commercetools' UUIDs): `[.., "1")`, `["1", "2")` … `["f", ..)` for 16.
///
/// The first range is open below and the last open above; the bounds between
/// them are hex prefixes, long enough that no range is more than about 1/16
/// bigger than another, with trailing zeros dropped (`"4"`, not `"40"`).
pub fn id_ranges(count: u32) -> Vec<IdRange> {
    let count = u64::from(count.max(1));
    // Hex digits such that 16^digits >= 16 · count: every range spans at least
    // 16 prefixes, so rounding makes them differ by at most one in 16.
    let mut digits = 1u32;
    while 16u64.pow(digits) < 16 * count {
        digits += 1;
    }
    let space = 16u64.pow(digits);
    let bound = |n: u64| {
        let prefix = format!("{:0width$x}", space * n / count, width = digits as usize);
        let trimmed = prefix.trim_end_matches('0');
        trimmed.to_owned()
    };
    let bounds: Vec<String> = (1..count).map(bound).collect();
    (0..bounds.len() + 1)
        .map(|n| IdRange {
            low: n.checked_sub(1).map(|below| bounds[below].clone()),
            high: bounds.get(n).cloned(),
        })
        .collect()
}

/// How many requests a walk keeps in flight: additive increase, multiplicative
/// decrease (AIMD).
///
/// - It starts at its ceiling.
/// - An overload (429, 502, 503, 504) halves it, at most once per
///   [`OVERLOAD_HOLD`]: the answers to requests already sent do not halve it
///   again. A `Retry-After` pauses every new request until then.
/// - Once no overload came for [`OVERLOAD_HOLD`] (or the `Retry-After`, if
///   longer), it grows by one for each round of successful requests (as many
///   as the current limit) until it is back at its ceiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptiveConcurrency {
    ceiling: u32,
    limit: u32,
    /// No new request starts before this: the API asked to wait.
    paused_until: Option<Instant>,
    /// When it was last halved.
    halved_at: Option<Instant>,
    /// It grows again only from this instant on.
    calm_from: Option<Instant>,
    /// Successes since it last grew.
    successes: u32,
}

impl AdaptiveConcurrency {
    /// At most `ceiling` requests in flight (at least one).
    pub fn new(ceiling: u32) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            ceiling,
            limit: ceiling,
            paused_until: None,
            halved_at: None,
            calm_from: None,
            successes: 0,
        }
    }

    /// How many requests may be in flight now: between 1 and the ceiling.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The configured most.
    pub fn ceiling(&self) -> u32 {
        self.ceiling
    }

    /// When a new request may start, if not at `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    /// The API answered a request with an overload status at `now`, asking to
    /// wait `retry_after` if it said so.
    pub fn overloaded(&mut self, now: Instant, retry_after: Option<Duration>) {
        let asked = retry_after.unwrap_or(Duration::ZERO);
        if let Some(wait) = retry_after {
            let until = now + wait;
            self.paused_until = Some(self.paused_until.map_or(until, |old| old.max(until)));
        }
        let may_halve = self
            .halved_at
            .is_none_or(|at| now.saturating_duration_since(at) >= OVERLOAD_HOLD);
        if may_halve {
            self.limit = (self.limit / 2).max(1);
            self.halved_at = Some(now);
        }
        let calm = now + OVERLOAD_HOLD.max(asked);
        self.calm_from = Some(self.calm_from.map_or(calm, |old| old.max(calm)));
        self.successes = 0;
    }

    /// A request succeeded at `now`.
    pub fn succeeded(&mut self, now: Instant) {
        if self.limit >= self.ceiling || self.calm_from.is_some_and(|calm| now < calm) {
            return;
        }
        self.successes += 1;
        if self.successes >= self.limit {
            self.limit += 1;
            self.successes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bounds(ranges: &[IdRange]) -> Vec<(Option<&str>, Option<&str>)> {
        ranges.iter().map(|r| (r.low(), r.high())).collect()
    }

    #[test]
    fn one_range_is_the_whole_id_space() {
        assert_eq!(id_ranges(1), vec![IdRange::everything()]);
        assert_eq!(id_ranges(0), vec![IdRange::everything()]);
    }

    #[test]
    fn sixteen_ranges_split_on_the_first_hex_digit() {
        let ranges = id_ranges(16);
        assert_eq!(ranges.len(), 16);
        assert_eq!(bounds(&ranges)[0], (None, Some("1")));
        assert_eq!(bounds(&ranges)[4], (Some("4"), Some("5")));
        assert_eq!(bounds(&ranges)[15], (Some("f"), None));
    }

    #[test]
    fn four_ranges_read_as_the_issue_writes_them() {
        assert_eq!(
            bounds(&id_ranges(4)),
            vec![
                (None, Some("4")),
                (Some("4"), Some("8")),
                (Some("8"), Some("c")),
                (Some("c"), None)
            ]
        );
    }

    #[test]
    fn uneven_counts_use_longer_prefixes() {
        let ranges = id_ranges(10);
        assert_eq!(ranges.len(), 10);
        assert_eq!(bounds(&ranges)[1], (Some("19"), Some("33")));
    }

    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}",
            "0{0,6}[0-9a-f]{0,4}",
            "\\PC{0,12}",
            "[A-Z_-][a-zA-Z0-9_-]{0,10}",
        ]
    }

    proptest! {
        #[test]
        fn every_id_belongs_to_exactly_one_range(count in 1u32..=MAX_CONCURRENCY, id in any_id()) {
            let owners = id_ranges(count).iter().filter(|r| r.contains(&id)).count();
            prop_assert_eq!(owners, 1);
        }

        #[test]
        fn ranges_are_as_many_as_asked_and_in_order(count in 1u32..=MAX_CONCURRENCY) {
            let ranges = id_ranges(count);
            prop_assert_eq!(ranges.len(), count as usize);
            prop_assert!(ranges[0].low().is_none());
            prop_assert!(ranges[ranges.len() - 1].high().is_none());
            for pair in ranges.windows(2) {
                prop_assert_eq!(pair[0].high(), pair[1].low());
                if let (Some(low), Some(high)) = (pair[1].low(), pair[1].high()) {
                    prop_assert!(low < high, "{low} < {high}");
                }
            }
        }

        #[test]
        fn the_limit_stays_between_one_and_the_ceiling(
            ceiling in 1u32..=MAX_CONCURRENCY,
            events in proptest::collection::vec((any::<bool>(), 0u64..5_000, proptest::option::of(0u64..10)), 0..200),
        ) {
            let start = Instant::now();
            let mut now = start;
            let mut limit = AdaptiveConcurrency::new(ceiling);
            for (overload, step_ms, retry_after) in events {
                now += Duration::from_millis(step_ms);
                let before = limit.limit();
                if overload {
                    limit.overloaded(now, retry_after.map(Duration::from_secs));
                    prop_assert!(limit.limit() <= before);
                } else {
                    limit.succeeded(now);
                    prop_assert!(limit.limit() >= before);
                    prop_assert!(limit.limit() <= before + 1);
                }
                prop_assert!((1..=ceiling).contains(&limit.limit()));
            }
        }
    }

    #[test]
    fn an_overload_halves_once_per_hold_and_not_below_one() {
        let start = Instant::now();
        let mut limit = AdaptiveConcurrency::new(16);
        limit.overloaded(start, None);
        assert_eq!(limit.limit(), 8);
        // The answers to requests sent before the halving: no second halving.
        limit.overloaded(start + Duration::from_millis(300), None);
        assert_eq!(limit.limit(), 8);
        limit.overloaded(start + OVERLOAD_HOLD, None);
        assert_eq!(limit.limit(), 4);
        for n in 2..10 {
            limit.overloaded(start + OVERLOAD_HOLD * n, None);
        }
        assert_eq!(limit.limit(), 1);
    }

    #[test]
    fn retry_after_pauses_every_new_request_until_then() {
        let start = Instant::now();
        let mut limit = AdaptiveConcurrency::new(4);
        assert_eq!(limit.paused_until(start), None);
        limit.overloaded(start, Some(Duration::from_secs(3)));
        let until = start + Duration::from_secs(3);
        assert_eq!(limit.paused_until(start), Some(until));
        assert_eq!(
            limit.paused_until(until - Duration::from_millis(1)),
            Some(until)
        );
        assert_eq!(limit.paused_until(until), None);
        // A shorter wait asked later does not shorten the pause.
        limit.overloaded(start + Duration::from_secs(1), Some(Duration::from_secs(1)));
        assert_eq!(
            limit.paused_until(start + Duration::from_secs(2)),
            Some(until)
        );
    }

    #[test]
    fn it_grows_back_one_per_round_once_calm() {
        let start = Instant::now();
        let mut limit = AdaptiveConcurrency::new(16);
        limit.overloaded(start, None);
        assert_eq!(limit.limit(), 8);
        // Still within the hold: successes do not count.
        for _ in 0..100 {
            limit.succeeded(start + Duration::from_secs(1));
        }
        assert_eq!(limit.limit(), 8);
        let calm = start + OVERLOAD_HOLD;
        for _ in 0..7 {
            limit.succeeded(calm);
        }
        assert_eq!(
            limit.limit(),
            8,
            "a round is as many successes as the limit"
        );
        limit.succeeded(calm);
        assert_eq!(limit.limit(), 9);
        for _ in 0..1_000 {
            limit.succeeded(calm);
        }
        assert_eq!(limit.limit(), 16, "never past the ceiling");
    }

    #[test]
    fn a_long_retry_after_holds_the_growth_as_long() {
        let start = Instant::now();
        let mut limit = AdaptiveConcurrency::new(2);
        limit.overloaded(start, Some(Duration::from_secs(10)));
        assert_eq!(limit.limit(), 1);
        limit.succeeded(start + Duration::from_secs(5));
        assert_eq!(limit.limit(), 1);
        limit.succeeded(start + Duration::from_secs(10));
        assert_eq!(limit.limit(), 2);
    }
}
