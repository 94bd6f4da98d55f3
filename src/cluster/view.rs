//! Pure: every node's record and each resource's lock probe into one row
//! per resource, judged as docs/operating.md ("The cluster") says.

use super::record::NodeRecord;
use crate::state::Status;
use serde::Serialize;

/// A node as the reader found it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct NodeSeen {
    pub name: String,
    /// Its presence lock is held: its daemon runs.
    pub running: bool,
    /// Its record, if one could be read.
    pub record: Option<NodeRecord>,
    /// Why its record could not be read.
    pub error: Option<String>,
}

/// Who is master of a resource, as far as the cluster shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Master {
    /// One running node says it is master, and the lock is held.
    Node {
        node: String,
        /// When it became master: Unix time in ms on *its* clock.
        since_ms: u64,
        /// Its mastership's number in the resource's transitions (the
        /// holder record in the lock; none on `dlm`).
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Nobody says so and nobody holds the lock.
    Nobody,
    /// Anything else, with why.
    Unknown { why: String },
}

/// One resource across the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub lock: String,
    pub master: Master,
    /// Each node's state for it, in the view's node order: its state
    /// (with `holding off`, `ineligible`, a candidate rank `#N`), `down`
    /// for a node whose daemon does not run, `-` for a running node that
    /// has no such resource.
    pub nodes: Vec<String>,
}

/// A node in the view's header.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLine {
    pub name: String,
    pub running: bool,
    /// When its record was written (its clock), if read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<crate::drain::Drain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The cluster at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<NodeLine>,
    pub resources: Vec<Row>,
}

/// A configured resource, as the reader's config has it.
pub struct Wanted<'a> {
    pub name: &'a str,
    pub lock: &'a str,
    /// Its `prefer` order (empty: none).
    pub prefer: &'a [String],
    /// Whether some process holds its lock now.
    pub held: Held,
}

/// What the backend says of a resource's lock.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Held {
    Yes,
    No,
    /// Not asked: dlmfs has no probe that leaves nothing behind (a granted
    /// trylock stays cached and keeps the others out). One running node's
    /// claim is then believed: the DLM lets one node hold the lock, and a
    /// record counts only while its node's presence lock is held.
    NotAsked,
    /// Asking failed, with why.
    Unknown(String),
}

impl Held {
    /// What `LockBackend::held` answered (None: it cannot be asked).
    pub fn from_probe(probe: Result<Option<bool>, String>) -> Held {
        match probe {
            Ok(Some(true)) => Held::Yes,
            Ok(Some(false)) => Held::No,
            Ok(None) => Held::NotAsked,
            Err(e) => Held::Unknown(e),
        }
    }
}

pub fn judge(wanted: &[Wanted], mut seen: Vec<NodeSeen>) -> ClusterView {
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    let nodes = seen
        .iter()
        .map(|n| NodeLine {
            name: n.name.clone(),
            running: n.running,
            written_ms: n.record.as_ref().map(|r| r.report.now_ms),
            drain: n.record.as_ref().and_then(|r| r.report.drain.clone()),
            error: n.error.clone(),
        })
        .collect();
    let resources = wanted.iter().map(|w| row(w, &seen)).collect();
    ClusterView { nodes, resources }
}

fn row(w: &Wanted, seen: &[NodeSeen]) -> Row {
    let mut claims = Vec::new();
    let mut states = Vec::new();
    for n in seen {
        let r = n
            .record
            .as_ref()
            .filter(|_| n.running)
            .and_then(|rec| rec.report.resources.iter().find(|r| r.name == w.name));
        let state = match (n.running, r) {
            (false, _) => "down".to_string(),
            (true, None) => "-".to_string(),
            (true, Some(r)) => {
                if r.state == Status::Master {
                    claims.push((n.name.clone(), r.since_ms, r.epoch));
                }
                describe(r, rank(w.prefer, &n.name))
            }
        };
        states.push(state);
    }
    let master = match (claims.as_slice(), &w.held) {
        (_, Held::Unknown(e)) => Master::Unknown {
            why: format!("the lock cannot be asked: {e}"),
        },
        ([(node, since, epoch)], Held::Yes | Held::NotAsked) => Master::Node {
            node: node.clone(),
            since_ms: *since,
            epoch: *epoch,
        },
        ([], Held::No) => Master::Nobody,
        ([], Held::NotAsked) => Master::Unknown {
            why: "no running node says it is master (this backend cannot be asked whether the lock is held: a killed daemon's lock keeper may hold it, or one is starting or releasing)".into(),
        },
        ([], Held::Yes) => Master::Unknown {
            why: "the lock is held, but no running node says it is master (one starting or releasing, or a lock keeper finishing a killed daemon's release)".into(),
        },
        ([(node, _, _)], Held::No) => Master::Unknown {
            why: format!("{node} says it is master but the lock is free (its record is behind)"),
        },
        (many, _) => Master::Unknown {
            why: format!(
                "{} each say they are master (a record behind a handover)",
                many.iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        },
    };
    Row {
        name: w.name.to_string(),
        lock: w.lock.to_string(),
        master,
        nodes: states,
    }
}

/// `node`'s place in a `prefer` list (1 = most preferred), if in it.
fn rank(prefer: &[String], node: &str) -> Option<usize> {
    prefer.iter().position(|p| p == node).map(|i| i + 1)
}

fn describe(r: &crate::election::ResourceStatus, rank: Option<usize>) -> String {
    let mut s = r.state.as_str().to_string();
    if r.hold_off_until_ms.is_some() {
        s.push_str(" (holding off)");
    } else if r.health.as_deref() == Some("failing") {
        s.push_str(" (ineligible)");
    }
    if let Some(k) = rank {
        s.push_str(&format!(" #{k}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::StatusReport;
    use crate::election::ResourceStatus;

    fn res(name: &str, state: Status, since_ms: u64) -> ResourceStatus {
        ResourceStatus::new(name, name, state, since_ms)
    }

    fn node(name: &str, running: bool, rows: Vec<ResourceStatus>) -> NodeSeen {
        NodeSeen {
            name: name.into(),
            running,
            record: Some(NodeRecord {
                pid: 1,
                started_ms: 0,
                report: StatusReport {
                    node: name.into(),
                    now_ms: 100,
                    resources: rows,
                    locks: None,
                    drain: None,
                },
            }),
            error: None,
        }
    }

    fn wanted(name: &str, held: Held) -> Wanted<'_> {
        Wanted {
            name,
            lock: name,
            prefer: &[],
            held,
        }
    }

    #[test]
    fn a_master_is_named_only_when_one_running_node_says_so_and_the_lock_is_held() {
        let seen = vec![
            node("b", true, vec![res("web", Status::Standby, 5)]),
            node("a", true, vec![res("web", Status::Master, 7)]),
            node("c", false, vec![res("web", Status::Master, 3)]),
        ];
        let v = judge(&[wanted("web", Held::Yes)], seen.clone());
        let names: Vec<&str> = v.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "sorted");
        assert_eq!(
            v.resources[0].master,
            Master::Node {
                node: "a".into(),
                since_ms: 7,
                epoch: None
            },
            "c is down: its record does not count"
        );
        assert_eq!(v.resources[0].nodes, ["master", "standby", "down"]);
        // The lock free: a's record is behind, so no master as fact.
        let v = judge(&[wanted("web", Held::No)], seen.clone());
        assert!(matches!(&v.resources[0].master, Master::Unknown { why } if why.contains("free")));
        // Nobody says so, the lock held: unknown; free: nobody.
        let quiet = vec![node("b", true, vec![res("web", Status::Standby, 5)])];
        let v = judge(&[wanted("web", Held::Yes)], quiet.clone());
        assert!(matches!(v.resources[0].master, Master::Unknown { .. }));
        let v = judge(&[wanted("web", Held::No)], quiet.clone());
        assert_eq!(v.resources[0].master, Master::Nobody);
        // dlmfs, not asked: a running node's one claim is believed, no
        // claim is unknown (a keeper may hold the lock), never "nobody".
        let v = judge(&[wanted("web", Held::NotAsked)], seen.clone());
        assert!(matches!(&v.resources[0].master, Master::Node { node, .. } if node == "a"));
        let v = judge(&[wanted("web", Held::NotAsked)], quiet);
        assert!(matches!(v.resources[0].master, Master::Unknown { .. }));
    }

    #[test]
    fn a_probes_answer_is_a_held_state() {
        assert_eq!(Held::from_probe(Ok(Some(true))), Held::Yes);
        assert_eq!(Held::from_probe(Ok(Some(false))), Held::No);
        assert_eq!(Held::from_probe(Ok(None)), Held::NotAsked);
        assert_eq!(Held::from_probe(Err("x".into())), Held::Unknown("x".into()));
    }

    #[test]
    fn two_claims_or_an_unaskable_lock_are_unknown_and_states_say_why_not_master() {
        let mut held_off = res("web", Status::Standby, 1);
        held_off.hold_off_until_ms = Some(9);
        let mut failing = res("db", Status::Standby, 1);
        failing.health = Some("failing".into());
        let seen = vec![
            node("a", true, vec![res("web", Status::Master, 1), failing]),
            node("b", true, vec![res("web", Status::Master, 2)]),
            node("c", true, vec![held_off]),
        ];
        let prefer = ["c".to_string(), "a".to_string()];
        let w = [
            Wanted {
                name: "web",
                lock: "web",
                prefer: &prefer,
                held: Held::Yes,
            },
            wanted("db", Held::Unknown("timed out".into())),
        ];
        let v = judge(&w, seen);
        assert!(
            matches!(&v.resources[0].master, Master::Unknown { why } if why.contains("a and b"))
        );
        assert_eq!(
            v.resources[0].nodes,
            ["master #2", "master", "standby (holding off) #1"]
        );
        assert!(matches!(v.resources[1].master, Master::Unknown { .. }));
        assert_eq!(v.resources[1].nodes, ["standby (ineligible)", "-", "-"]);
    }
}
