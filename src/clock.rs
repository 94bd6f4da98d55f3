//! Clock arithmetic that cannot overflow. A deadline is `now + d`, and
//! `Instant + Duration` panics past the clock's range: a duration from a
//! config or a client must never panic a task (a runner that panicked as
//! master would stop feeding the watchdog and leave its VIP up). Every
//! duration is bounded where it comes in; these keep a missed bound from
//! being more than a very late timer.

use std::time::Duration;
use tokio::time::Instant;

/// Far enough to never come while the daemon runs, and small enough to
/// add to any `Instant` (tokio clamps its timers beyond about 2 years).
pub const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + d`, at most `now + FAR`.
pub fn after(now: Instant, d: Duration) -> Instant {
    // A monotonic clock counts from boot in i64 seconds: `now + FAR`
    // always fits, so the fallback is never taken.
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// `after(Instant::now(), d)`.
pub fn from_now(d: Duration) -> Instant {
    after(Instant::now(), d)
}

/// Unix time in ms (0 on a clock before 1970): what status records carry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in ms `d` after `now_ms`, saturating at `u64::MAX`.
pub fn after_ms(now_ms: u64, d: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::MAX), now + FAR);
        // "300000000000years", as humantime parses it.
        let centuries = humantime::parse_duration("300000000000years").unwrap();
        assert_eq!(after(now, centuries), now + FAR);
        assert_eq!(after_ms(1_000, Duration::from_millis(u64::MAX)), u64::MAX);
        assert_eq!(after_ms(1_000, Duration::MAX), u64::MAX);
        assert_eq!(after_ms(1_000, Duration::from_secs(2)), 3_000);
    }
}
