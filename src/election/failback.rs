//! When a master with `preempt` hands over to a more preferred node that
//! came back (`preempt_delay`): pure, no clock of its own, no I/O.
//!
//! A preferred node that flaps (a check that passes for a moment, a daemon
//! that restarts in a loop) would otherwise pull mastership over at every
//! return and lose it again: each handover runs the release and acquire
//! steps. So with a delay the master hands over only to a more preferred
//! node that has been a candidate at every probe for at least that long.
//! Each such node has its own clock: a probe that does not find it
//! restarts *its* clock ("eligible for 5 minutes" means without a gap),
//! and a flapping node never holds back another, steadier one. When
//! several are due, the most preferred of them gets it. A delay of zero
//! hands over at the first probe that sees a candidate (the behaviour
//! without `preempt_delay`).

use std::time::{Duration, Instant};

/// The clocks of one master's watch: each more preferred candidate seen
/// at every probe, since when, in preference order.
#[derive(Debug)]
pub struct Failback {
    delay: Duration,
    seen: Vec<(String, Instant)>,
}

/// What a probe's finding means.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No better candidate: stay master (every clock is reset).
    Stay,
    /// These nodes are candidates newly: their delays start now. Said once
    /// per start, so the caller can log it.
    Started(Vec<String>),
    /// Candidates whose delays are not over yet, none new.
    Waiting,
    /// Hand mastership over to `node`.
    HandOver(String),
}

impl Failback {
    pub fn new(delay: Duration) -> Failback {
        Failback {
            delay,
            seen: Vec::new(),
        }
    }

    /// A probe at `now` found `candidates` (the more preferred nodes that
    /// are candidates, in preference order, stuck ones skipped).
    pub fn probed(&mut self, now: Instant, candidates: &[String]) -> Verdict {
        let mut fresh = Vec::new();
        let seen: Vec<(String, Instant)> = candidates
            .iter()
            .map(|n| match self.seen.iter().find(|(s, _)| s == n) {
                Some((_, since)) => (n.clone(), *since),
                None => {
                    fresh.push(n.clone());
                    (n.clone(), now)
                }
            })
            .collect();
        self.seen = seen;
        if self.seen.is_empty() {
            return Verdict::Stay;
        }
        let due = self
            .seen
            .iter()
            .find(|(_, since)| now.saturating_duration_since(*since) >= self.delay);
        if let Some((node, _)) = due {
            let node = node.clone();
            self.seen.clear();
            return Verdict::HandOver(node);
        }
        if fresh.is_empty() {
            Verdict::Waiting
        } else {
            Verdict::Started(fresh)
        }
    }

    /// The candidate whose delay ends first (the most preferred of those
    /// ending together), and since when; None while none.
    pub fn pending(&self) -> Option<(&str, Instant)> {
        self.seen
            .iter()
            .min_by_key(|(_, since)| *since)
            .map(|(n, t)| (n.as_str(), *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn hand_over(n: &str) -> Verdict {
        Verdict::HandOver(n.into())
    }

    fn started(n: &[&str]) -> Verdict {
        Verdict::Started(n.iter().map(|s| s.to_string()).collect())
    }

    fn c(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_a_delay_the_first_sighting_hands_over() {
        let (mut f, t) = (Failback::new(Duration::ZERO), Instant::now());
        assert_eq!(f.probed(t, &[]), Verdict::Stay);
        assert_eq!(f.probed(t + S, &c(&["a"])), hand_over("a"));
    }

    #[test]
    fn the_same_candidate_at_every_probe_for_the_delay_gets_it() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        assert_eq!(f.probed(t, &c(&["a"])), started(&["a"]));
        assert_eq!(f.pending(), Some(("a", t)));
        assert_eq!(f.probed(t + S, &c(&["a"])), Verdict::Waiting);
        assert_eq!(f.probed(t + 4 * S, &c(&["a"])), Verdict::Waiting);
        assert_eq!(f.probed(t + 5 * S, &c(&["a"])), hand_over("a"));
    }

    #[test]
    fn a_probe_without_the_candidate_restarts_its_clock() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        f.probed(t, &c(&["a"]));
        f.probed(t + 4 * S, &c(&["a"]));
        // One probe without it: a gap, so it starts over.
        assert_eq!(f.probed(t + 5 * S, &[]), Verdict::Stay);
        assert_eq!(f.pending(), None);
        assert_eq!(f.probed(t + 6 * S, &c(&["a"])), started(&["a"]));
        assert_eq!(f.probed(t + 10 * S, &c(&["a"])), Verdict::Waiting);
        assert_eq!(f.probed(t + 11 * S, &c(&["a"])), hand_over("a"));
    }

    #[test]
    fn a_flapping_node_never_holds_back_a_steady_one() {
        // b steady from t; a (more preferred) comes and goes every 3 s.
        let (mut f, t) = (Failback::new(10 * S), Instant::now());
        assert_eq!(f.probed(t, &c(&["b"])), started(&["b"]));
        for i in 1..10u32 {
            let now = t + i * S;
            let cands = if i % 6 < 3 { c(&["a", "b"]) } else { c(&["b"]) };
            assert_ne!(f.probed(now, &cands), hand_over("a"));
        }
        assert_eq!(f.pending(), Some(("b", t)));
        assert_eq!(f.probed(t + 10 * S, &c(&["a", "b"])), hand_over("b"));
    }

    #[test]
    fn of_several_due_the_most_preferred_gets_it() {
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        assert_eq!(f.probed(t, &c(&["b"])), started(&["b"]));
        assert_eq!(f.probed(t + S, &c(&["a", "b"])), started(&["a"]));
        assert_eq!(f.pending(), Some(("b", t)), "b's delay ends first");
        assert_eq!(f.probed(t + 5 * S, &c(&["a", "b"])), hand_over("b"));
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        f.probed(t, &c(&["a", "b"]));
        assert_eq!(f.probed(t + 5 * S, &c(&["a", "b"])), hand_over("a"));
    }

    #[test]
    fn a_delay_starts_once() {
        // Two probes at the same instant (coarse clocks): still waiting.
        let (mut f, t) = (Failback::new(5 * S), Instant::now());
        assert_eq!(f.probed(t, &c(&["a"])), started(&["a"]));
        assert_eq!(f.probed(t, &c(&["a"])), Verdict::Waiting, "started once");
    }
}
