//! What `status`, STATUS= and the exit code know about each resource: the
//! runners publish here, the control socket and sd_notify read.

use crate::state::Status;
use indexmap::IndexMap;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What status shows for one resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    /// Its lock's name in the backend (`lock`, or the resource's name).
    #[serde(default)]
    pub lock: String,
    pub state: Status,
    /// When it entered `state`: Unix time in milliseconds.
    pub since_ms: u64,
    pub last_error: Option<String>,
    /// While an admin's hold-off runs: when it ends (Unix time in ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_off_until_ms: Option<u64>,
    /// With a health check (`[resource.check]`): `pending` before its first
    /// result, `ok` while this node may be master, `failing` while not
    /// (after `fall` failures in a row, until `rise` successes in a row).
    /// Absent without a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Why the last check run failed; absent once a run succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
    /// Fail counts: this node's failed acquires within `failure_window`
    /// (0, not shown, without `max_failures` or none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// While out for its fail count (state `failed`): when it competes
    /// again (Unix time in ms), unless an admin's `reset` comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_until_ms: Option<u64>,
    /// While master with `preempt_delay` and a more preferred node is a
    /// candidate: that node, and when the master hands over to it if it
    /// stays one (Unix time in ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_at_ms: Option<u64>,
    /// While this node holds the lock: its mastership's number in the
    /// resource's transitions, from the holder record in the lock
    /// (`lock::holder`; not on `dlm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// State changes since the daemon started this resource (its first
    /// state is none).
    #[serde(default)]
    pub transitions: u64,
    /// Reached a defined state since start (for READY=1); not shown.
    #[serde(skip)]
    pub settled: bool,
}

impl ResourceStatus {
    /// A row that entered `state` at `since_ms`, with nothing else to show.
    pub fn new(name: &str, lock: &str, state: Status, since_ms: u64) -> ResourceStatus {
        ResourceStatus {
            name: name.into(),
            lock: lock.into(),
            state,
            since_ms,
            last_error: None,
            hold_off_until_ms: None,
            health: None,
            health_error: None,
            failures: 0,
            failed_until_ms: None,
            handover_to: None,
            handover_at_ms: None,
            epoch: None,
            transitions: 0,
            settled: false,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Every runner's status, read by the control socket and sd_notify; a
/// handle, cheap to clone.
///
/// Built for thousands of resources: a runner's publish is a hash lookup
/// plus, on a state change, two ordered-set updates (O(log n)); the
/// supervisor's STATUS= line and READY=1 check read kept counts instead of
/// walking every resource at every change (that walk made start-up at
/// 10,000 resources quadratic). Only `status` and SIGUSR1 copy the table.
#[derive(Clone, Default)]
pub struct Board(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    /// By name, in the order the runners first published: the order
    /// `status` shows.
    rows: IndexMap<String, ResourceStatus>,
    /// The names in each state (`STATES` order), sorted: STATUS= counts and
    /// its first few names.
    by_state: [BTreeSet<String>; STATES.len()],
    /// Rows not `settled` yet: READY=1 waits for none.
    unsettled: usize,
}

/// The order of states in the counted STATUS= line: what holds first, what
/// needs an admin last.
const STATES: [Status; 8] = [
    Status::Master,
    Status::Acquiring,
    Status::Releasing,
    Status::Standby,
    Status::Drained,
    Status::Backoff,
    Status::Stalled,
    Status::Failed,
];

fn slot(s: Status) -> usize {
    STATES
        .iter()
        .position(|&x| x == s)
        .expect("every state is in STATES")
}

/// Up to this many resources STATUS= names every one of them; beyond, it
/// counts them per state (a line listing 10,000 names is of no use in
/// `systemctl status` and costs a walk over all of them at every change).
pub const LIST_ALL_UP_TO: usize = 10;
/// With counts: how many names each state shows as examples.
const EXAMPLES: usize = 3;

impl Board {
    /// A runner's new status for its resource (added on its first publish).
    pub fn publish(&self, st: ResourceStatus) {
        let mut t = self.0.lock().unwrap();
        let t = &mut *t;
        match t.rows.get_mut(&st.name) {
            Some(old) => {
                if old.state != st.state {
                    t.by_state[slot(old.state)].remove(&st.name);
                    t.by_state[slot(st.state)].insert(st.name.clone());
                }
                t.unsettled = t.unsettled + usize::from(!st.settled) - usize::from(!old.settled);
                *old = st;
            }
            None => {
                t.by_state[slot(st.state)].insert(st.name.clone());
                t.unsettled += usize::from(!st.settled);
                t.rows.insert(st.name.clone(), st);
            }
        }
    }

    /// Resources whose runners are gone (stop, reload): one pass for all.
    pub fn remove(&self, names: &[String]) {
        let mut t = self.0.lock().unwrap();
        let t = &mut *t;
        let gone: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let (by_state, unsettled) = (&mut t.by_state, &mut t.unsettled);
        t.rows.retain(|name, st| {
            if !gone.contains(name.as_str()) {
                return true;
            }
            by_state[slot(st.state)].remove(name);
            *unsettled -= usize::from(!st.settled);
            false
        });
    }

    /// A copy of every row, in `status` order.
    pub fn snapshot(&self) -> Vec<ResourceStatus> {
        self.0.lock().unwrap().rows.values().cloned().collect()
    }

    /// One resource's row.
    pub fn get(&self, name: &str) -> Option<ResourceStatus> {
        self.0.lock().unwrap().rows.get(name).cloned()
    }

    /// The STATUS= line, and whether `expected` resources are on the board
    /// and all have settled (READY=1). Bounded work whatever the number of
    /// resources.
    pub fn overview(&self, expected: usize) -> (String, bool) {
        let t = self.0.lock().unwrap();
        (t.summary(), t.rows.len() == expected && t.unsettled == 0)
    }
}

impl Table {
    /// Few resources: every name, "master: web; standby: db, x" (states in
    /// order of first appearance). Many: counts with a few sorted example
    /// names, "master: 9990 (s0, s1, s10, …); stalled: 1 (db)".
    fn summary(&self) -> String {
        if self.rows.is_empty() {
            return "no resources configured".into();
        }
        if self.rows.len() <= LIST_ALL_UP_TO {
            let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
            for r in self.rows.values() {
                let state = r.state.as_str();
                match parts.iter_mut().find(|(s, _)| *s == state) {
                    Some((_, names)) => names.push(&r.name),
                    None => parts.push((state, vec![&r.name])),
                }
            }
            return parts
                .iter()
                .map(|(s, n)| format!("{s}: {}", n.join(", ")))
                .collect::<Vec<_>>()
                .join("; ");
        }
        STATES
            .iter()
            .zip(&self.by_state)
            .filter(|(_, names)| !names.is_empty())
            .map(|(s, names)| {
                let mut shown: Vec<&str> =
                    names.iter().take(EXAMPLES).map(String::as_str).collect();
                if names.len() > EXAMPLES {
                    shown.push("…");
                }
                format!("{}: {} ({})", s.as_str(), names.len(), shown.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: Status, settled: bool) -> ResourceStatus {
        ResourceStatus {
            settled,
            ..ResourceStatus::new(name, name, state, 0)
        }
    }

    #[test]
    fn few_resources_are_named_in_board_order() {
        let b = Board::default();
        assert_eq!(b.overview(0), ("no resources configured".into(), true));
        b.publish(row("web", Status::Standby, false));
        b.publish(row("db", Status::Master, true));
        b.publish(row("x", Status::Standby, true));
        assert_eq!(b.overview(3), ("standby: web, x; master: db".into(), false));
        b.publish(row("web", Status::Master, true));
        assert_eq!(b.overview(3), ("master: web, db; standby: x".into(), true));
        // A runner not on the board yet: not ready.
        assert!(!b.overview(4).1);
        let names: Vec<_> = b.snapshot().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["web", "db", "x"]);
    }

    #[test]
    fn many_resources_are_counted_with_a_few_names() {
        let b = Board::default();
        for i in 0..10_000 {
            b.publish(row(&format!("s{i}"), Status::Standby, false));
        }
        for i in 0..10_000 {
            let state = if i % 1000 == 7 {
                Status::Stalled
            } else {
                Status::Master
            };
            b.publish(row(&format!("s{i}"), state, true));
        }
        let (line, ready) = b.overview(10_000);
        assert!(ready);
        assert_eq!(
            line,
            "master: 9990 (s0, s1, s10, …); stalled: 10 (s1007, s2007, s3007, …)"
        );
        b.publish(row("s5", Status::Backoff, false));
        assert_eq!(
            b.overview(10_000),
            ("master: 9989 (s0, s1, s10, …); backoff: 1 (s5); stalled: 10 (s1007, s2007, s3007, …)".into(), false)
        );
    }

    #[test]
    fn removal_keeps_order_counts_and_readiness() {
        let b = Board::default();
        for i in 0..12 {
            b.publish(row(&format!("r{i}"), Status::Master, i != 3));
        }
        assert!(!b.overview(12).1);
        b.remove(&["r3".into(), "r0".into(), "nope".into()]);
        assert_eq!(
            b.overview(10),
            (
                "master: r1, r2, r4, r5, r6, r7, r8, r9, r10, r11".into(),
                true
            )
        );
        b.remove(&(1..12).map(|i| format!("r{i}")).collect::<Vec<_>>());
        assert_eq!(b.overview(0), ("no resources configured".into(), true));
        assert!(b.snapshot().is_empty());
    }
}
