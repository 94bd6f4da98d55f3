//! How long a node defers to a more preferred candidate: pure, no clock
//! of its own, no I/O.
//!
//! A candidate lock says "this node would take mastership", but on dlmfs a
//! daemon killed without `cleanup` leaves its candidate lock cached on its
//! node, and a live daemon may fail to take the lock for reasons of its own.
//! Deferring to such a *stuck* candidate for ever would leave the resource
//! without a master while an eligible node exists. So deferral is bounded:
//!
//! - after deferring to candidates for a *window* in a row (3 polls, at
//!   least 10 s: nodes may poll at different rates), the node tries the
//!   lock anyway (and goes back to deferring if it is busy);
//! - the first time it wins it that way, the lock was free although a more
//!   preferred node is a candidate: it gives the lock straight back (no
//!   actions run) and notes when, to leave that node its chance;
//! - if it wins it that way again at least a window later, the candidate
//!   had a free lock for a window and did not take it:
//!   the node keeps the lock (becomes master) and treats that candidate as
//!   stuck: it neither defers nor hands over to it (preempt) until a probe
//!   finds its candidate lock free (its daemon gave it up or restarted).
//!
//! A live preferred node polls every `poll_interval` (plus up to 10%
//! jitter), so it takes a free lock well within the window: the second win
//! only happens when it did not. A stuck candidate costs at most about two
//! windows without a master.

use std::time::{Duration, Instant};

/// How long to defer before trying anyway, and how long a free lock must
/// stay untaken: 3 polls, at least 10 s.
pub fn window(poll: Duration) -> Duration {
    (poll * 3).max(Duration::from_secs(10))
}

#[derive(Debug, Default)]
pub struct Deferral {
    /// Deferring since then, without a try in between.
    since: Option<Instant>,
    /// When a try past the window found the lock free and gave it back.
    free_seen: Option<Instant>,
    /// Candidates judged stuck: skipped until seen not a candidate.
    stuck: Vec<String>,
}

/// What to do before a lock attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// Do not try: a more preferred node is a candidate.
    Defer,
    /// Try the lock.
    Try,
    /// Try the lock although a more preferred node is a candidate: the
    /// deferral window is over.
    TryPastWindow,
}

/// A lock won past the window.
#[derive(Debug, PartialEq, Eq)]
pub enum Won {
    /// Give it back at once, unused: the candidate gets its chance.
    GiveBack,
    /// Keep it: the candidate is stuck.
    Keep,
}

impl Deferral {
    /// Whether the candidate `node` is ignored (judged stuck).
    pub fn is_stuck(&self, node: &str) -> bool {
        self.stuck.iter().any(|n| n == node)
    }

    /// A probe found `node`'s candidate lock free: no longer stuck.
    /// Whether it was.
    pub fn seen_free(&mut self, node: &str) -> bool {
        let was = self.is_stuck(node);
        self.stuck.retain(|n| n != node);
        was
    }

    /// Before an attempt, given the first more preferred node that is a
    /// candidate (stuck ones skipped), if any.
    pub fn before(&mut self, now: Instant, candidate: Option<&str>, poll: Duration) -> Before {
        if candidate.is_none() {
            *self = Deferral {
                stuck: std::mem::take(&mut self.stuck),
                ..Deferral::default()
            };
            return Before::Try;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= window(poll) {
            Before::TryPastWindow
        } else {
            Before::Defer
        }
    }

    /// A try past the window found the lock busy: someone holds it, maybe
    /// the candidate. Defer again for a window.
    pub fn busy(&mut self, now: Instant) {
        self.since = Some(now);
        self.free_seen = None;
    }

    /// A try past the window won the lock while `candidate` is one.
    pub fn won(&mut self, now: Instant, candidate: &str, poll: Duration) -> Won {
        match self.free_seen {
            Some(t) if now.duration_since(t) >= window(poll) => {
                self.since = None;
                self.free_seen = None;
                self.stuck.push(candidate.to_string());
                Won::Keep
            }
            Some(_) => {
                // Free again sooner than a window: wait the window out.
                self.since = Some(now);
                Won::GiveBack
            }
            None => {
                self.since = Some(now);
                self.free_seen = Some(now);
                Won::GiveBack
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(1);
    /// window(POLL), and a small step.
    const W: Duration = Duration::from_secs(10);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_window_is_three_polls_and_at_least_ten_seconds() {
        assert_eq!(window(POLL), W);
        assert_eq!(window(Duration::from_secs(5)), Duration::from_secs(15));
    }

    #[test]
    fn no_candidate_means_try_and_forgets_the_window() {
        let (mut d, t) = (Deferral::default(), Instant::now());
        assert_eq!(d.before(t, Some("a"), POLL), Before::Defer);
        assert_eq!(d.before(t + S, None, POLL), Before::Try);
        // A new deferral starts a new window.
        let t = t + 2 * S;
        assert_eq!(d.before(t, Some("a"), POLL), Before::Defer);
        assert_eq!(d.before(t + W - S, Some("a"), POLL), Before::Defer);
        assert_eq!(d.before(t + W, Some("a"), POLL), Before::TryPastWindow);
    }

    #[test]
    fn a_busy_lock_restarts_the_window() {
        let (mut d, t) = (Deferral::default(), Instant::now());
        d.before(t, Some("a"), POLL);
        assert_eq!(d.before(t + W, Some("a"), POLL), Before::TryPastWindow);
        d.busy(t + W);
        assert_eq!(d.before(t + W + S, Some("a"), POLL), Before::Defer);
        assert_eq!(d.before(t + 2 * W, Some("a"), POLL), Before::TryPastWindow);
    }

    #[test]
    fn a_free_lock_is_given_back_once_then_kept_a_window_later() {
        let (mut d, t) = (Deferral::default(), Instant::now());
        d.before(t, Some("a"), POLL);
        assert_eq!(d.before(t + W, Some("a"), POLL), Before::TryPastWindow);
        assert_eq!(d.won(t + W, "a", POLL), Won::GiveBack);
        assert!(!d.is_stuck("a"));
        // The candidate has a window to take it.
        assert_eq!(d.before(t + W + S, Some("a"), POLL), Before::Defer);
        assert_eq!(d.before(t + 2 * W, Some("a"), POLL), Before::TryPastWindow);
        assert_eq!(d.won(t + 2 * W, "a", POLL), Won::Keep);
        assert!(d.is_stuck("a"));
        // Stuck until seen free.
        assert!(d.seen_free("a"));
        assert!(!d.is_stuck("a"));
        assert!(!d.seen_free("a"));
    }

    #[test]
    fn the_candidate_taking_the_lock_in_between_starts_over() {
        let (mut d, t) = (Deferral::default(), Instant::now());
        d.before(t, Some("a"), POLL);
        d.before(t + W, Some("a"), POLL);
        assert_eq!(d.won(t + W, "a", POLL), Won::GiveBack);
        // The candidate took it (busy), later let it go again.
        d.before(t + 2 * W, Some("a"), POLL);
        d.busy(t + 2 * W);
        d.before(t + 3 * W, Some("a"), POLL);
        assert_eq!(d.won(t + 3 * W, "a", POLL), Won::GiveBack);
        assert!(!d.is_stuck("a"));
    }

    #[test]
    fn stuck_candidates_survive_a_try() {
        let (mut d, t) = (Deferral::default(), Instant::now());
        d.stuck.push("a".into());
        assert_eq!(d.before(t, None, POLL), Before::Try);
        assert!(d.is_stuck("a"));
    }
}
