//! When a master with `preempt` hands over to a more preferred node that
//! came back (`preempt_delay`): pure, no clock of its own, no I/O.
//!
//! A preferred node that flaps (a check that passes for a moment, a daemon
//! that restarts in a loop) would otherwise pull mastership over at every
//! return and lose it again: each handover runs the release and acquire
//! steps. So with a delay the master hands over only once the *same* more
//! preferred node has been a candidate at every probe for at least that
//! long. A probe that finds no better candidate, or another one, restarts
//! the clock: "eligible for 5 minutes" means without a gap. A delay of zero
//! hands over at the first probe that sees a candidate (the behaviour
//! without `preempt_delay`).

use std::time::{Duration, Instant};

/// The clock of one master's watch: which better candidate it has seen at
/// every probe, since when.
#[derive(Debug)]
pub struct Failback {
    delay: Duration,
    seen: Option<(String, Instant)>,
}

/// What a probe's finding means.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No better candidate: stay master (the clock is reset).
    Stay,
    /// `node` is a candidate, newly (or another than before): the delay
    /// starts now. Said once per start, so the caller can log it.
    Started(String),
    /// The same candidate as before, its delay not over yet.
    Waiting,
    /// Hand mastership over to `node`.
    HandOver(String),
}

impl Failback {
    pub fn new(delay: Duration) -> Failback {
        Failback { delay, seen: None }
    }

    /// A probe at `now` found `candidate` (the first more preferred node
    /// that is a candidate, stuck ones skipped), or none.
    pub fn probed(&mut self, now: Instant, candidate: Option<&str>) -> Verdict {
        let Some(node) = candidate else {
            self.seen = None;
            return Verdict::Stay;
        };
        let (since, fresh) = match &self.seen {
            Some((n, since)) if n == node => (*since, false),
            _ => {
                self.seen = Some((node.to_string(), now));
                (now, true)
            }
        };
        if now.saturating_duration_since(since) >= self.delay {
            self.seen = None;
            Verdict::HandOver(node.to_string())
        } else if fresh {
            Verdict::Started(node.to_string())
        } else {
            Verdict::Waiting
        }
    }

    /// The candidate whose delay runs, and since when; None while none.
    pub fn pending(&self) -> Option<(&str, Instant)> {
        self.seen.as_ref().map(|(n, t)| (n.as_str(), *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn hand_over(n: &str) -> Verdict {
        Verdict::HandOver(n.into())
    }

    #[test]
    fn without_a_delay_the_first_sighting_hands_over() {
        let (mut f, t) = (Failback::new(Duration::ZERO), Instant::now());
        assert_eq!(f.probed(t, None), Verdict::Stay);
        assert_eq!(f.probed(t + S, Some("a")), hand_over("a"));
    }

    #[test]
    fn the_same_candidate_at_every_probe_for_the_delay_gets_it() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        assert_eq!(f.probed(t, Some("a")), Verdict::Started("a".into()));
        assert_eq!(f.pending(), Some(("a", t)));
        assert_eq!(f.probed(t + S, Some("a")), Verdict::Waiting);
        assert_eq!(f.probed(t + 4 * S, Some("a")), Verdict::Waiting);
        assert_eq!(f.probed(t + 5 * S, Some("a")), hand_over("a"));
    }

    #[test]
    fn a_probe_without_the_candidate_restarts_the_clock() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        f.probed(t, Some("a"));
        f.probed(t + 4 * S, Some("a"));
        // One probe without it: a gap, so it starts over.
        assert_eq!(f.probed(t + 5 * S, None), Verdict::Stay);
        assert_eq!(f.pending(), None);
        assert_eq!(f.probed(t + 6 * S, Some("a")), Verdict::Started("a".into()));
        assert_eq!(f.probed(t + 10 * S, Some("a")), Verdict::Waiting);
        assert_eq!(f.probed(t + 11 * S, Some("a")), hand_over("a"));
    }

    #[test]
    fn another_candidate_restarts_the_clock() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        f.probed(t, Some("a"));
        assert_eq!(f.probed(t + 4 * S, Some("b")), Verdict::Started("b".into()));
        assert_eq!(f.probed(t + 5 * S, Some("b")), Verdict::Waiting);
        assert_eq!(f.probed(t + 9 * S, Some("b")), hand_over("b"));
    }

    #[test]
    fn a_delay_starts_once() {
        // Two probes at the same instant (coarse clocks): still waiting.
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        assert_eq!(f.probed(t, Some("a")), Verdict::Started("a".into()));
        assert_eq!(f.probed(t, Some("a")), Verdict::Waiting, "started once");
    }
}
