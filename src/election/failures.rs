//! Fail counts: a node whose acquire steps keep failing for a resource
//! stops competing for it for a while, so another node gets it instead of
//! this one grabbing the lock and rolling back again (Pacemaker's
//! `migration-threshold` and `failure-timeout`). Pure: the caller passes
//! the time in.
//!
//! The backoff after one failed acquire (2× poll, doubling up to a minute)
//! only spaces the attempts: a node that cannot run the resource (a broken
//! unit, a missing interface) keeps winning the lock whenever the others
//! poll later, and every win is a rollback and a gap without a master.
//! Here, `max` failures within `window` keep the node out for `timeout`
//! (or until an admin's `dlm-electd reset`). The counts live in the
//! daemon's memory only: a restart starts from none.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `max_failures`, `failure_window`, `failure_timeout` of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
    pub timeout: Duration,
}

/// One resource's recent acquire failures on this node.
#[derive(Debug, Default)]
pub struct Failures {
    /// When each failure within the window happened, oldest first.
    times: VecDeque<Instant>,
    /// Out of the competition until then.
    out_until: Option<Instant>,
    /// The failures that took it out, shown while it is out.
    tripped: usize,
}

impl Failures {
    /// An acquire failed at `now`. Some(until): that was one too many,
    /// the node stays out until then.
    pub fn failed(&mut self, limit: Limit, now: Instant) -> Option<Instant> {
        self.forget_old(limit, now);
        self.times.push_back(now);
        if self.times.len() < limit.max as usize {
            return None;
        }
        // Counted from here again once the node is back.
        self.tripped = self.times.len();
        self.times.clear();
        let until = now + limit.timeout;
        self.out_until = Some(until);
        Some(until)
    }

    /// Whether the node is out at `now`; false once the timeout is over
    /// (which ends it).
    pub fn out(&mut self, now: Instant) -> bool {
        match self.out_until {
            Some(t) if now < t => true,
            Some(_) => {
                self.out_until = None;
                false
            }
            None => false,
        }
    }

    /// When the node competes again, while it is out.
    pub fn out_until(&self) -> Option<Instant> {
        self.out_until
    }

    /// Failures within the window at `now` (for status); while out, the
    /// ones that took it out.
    pub fn recent(&mut self, limit: Limit, now: Instant) -> usize {
        if self.out_until.is_some() {
            return self.tripped;
        }
        self.forget_old(limit, now);
        self.times.len()
    }

    /// An admin's `reset`: no failures, not out. Whether it was out.
    pub fn reset(&mut self) -> bool {
        self.times.clear();
        self.out_until.take().is_some()
    }

    /// A reload changed the limit: what is already out stays out (until
    /// its end, or a reset); the counts are judged by the new window.
    fn forget_old(&mut self, limit: Limit, now: Instant) {
        while let Some(&t) = self.times.front() {
            if now.saturating_duration_since(t) < limit.window {
                break;
            }
            self.times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limit() -> Limit {
        Limit {
            max: 3,
            window: 60 * S,
            timeout: 600 * S,
        }
    }

    #[test]
    fn the_max_th_failure_within_the_window_puts_the_node_out_for_the_timeout() {
        let (mut f, t0) = (Failures::default(), Instant::now());
        assert_eq!(f.failed(limit(), t0), None);
        assert_eq!(f.failed(limit(), t0 + 10 * S), None);
        assert_eq!(f.recent(limit(), t0 + 10 * S), 2);
        let until = f.failed(limit(), t0 + 20 * S);
        assert_eq!(until, Some(t0 + 620 * S));
        assert!(f.out(t0 + 619 * S));
        assert_eq!(f.recent(limit(), t0 + 619 * S), 3, "what took it out");
        assert!(!f.out(t0 + 620 * S), "back once the timeout is over");
        assert_eq!(f.out_until(), None);
        assert_eq!(f.recent(limit(), t0 + 620 * S), 0, "counted afresh");
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let (mut f, t0) = (Failures::default(), Instant::now());
        f.failed(limit(), t0);
        f.failed(limit(), t0 + 30 * S);
        // The first is 61 s old by now: two within the window.
        assert_eq!(f.failed(limit(), t0 + 61 * S), None);
        assert_eq!(f.recent(limit(), t0 + 61 * S), 2);
        assert!(f.failed(limit(), t0 + 62 * S).is_some());
    }

    #[test]
    fn one_failure_is_enough_with_max_one_and_reset_clears_everything() {
        let (mut f, t0) = (Failures::default(), Instant::now());
        let one = Limit { max: 1, ..limit() };
        assert!(f.failed(one, t0).is_some());
        assert!(f.out(t0 + S));
        assert!(f.reset(), "it was out");
        assert!(!f.out(t0 + S));
        assert!(!f.reset(), "nothing left to reset");
        f.failed(limit(), t0);
        f.reset();
        assert_eq!(f.recent(limit(), t0), 0);
    }
}
