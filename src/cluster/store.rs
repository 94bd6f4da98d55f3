//! Node records in lock value blocks (dlmfs and dlm): the daemon's
//! `Publisher` and the reader, over `lock::lvb::ValueLocks`; the layout is
//! `chunks`'s. Every call here may wait on the DLM (a recovery): blocking
//! code, on threads of its own.
//!
//! - The **roster** (a blob) lists every node name that published; a
//!   publisher adds its own under the roster's guard lock, and checks at
//!   each write (and every `publish::RECHECK`) that it is still there: the
//!   roster can be lost (fs/dlm: its value, held at NL by its writers, is
//!   invalid after a recovery; dlmfs: zeroed when its last writer's node
//!   dies). Readers add the cluster stack's node names to it.
//! - A node's **presence lock** is held EX by its daemon; a reader's probe
//!   finds it busy while the daemon runs and free once it stopped, died, or
//!   its node was recovered.
//! - A node's **record** is a blob, rewritten (the chunks that changed)
//!   after each change of its status.

use super::chunks::{self, ROSTER, ROSTER_GUARD};
use super::record::NodeRecord;
use super::view::{Held, NodeSeen};
use crate::control::StatusReport;
use crate::lock::LockBackend;
use crate::lock::ValueLocks;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the presence lock is tried for at start: a reader's probe
/// holds it for a moment only.
#[cfg(not(test))]
const PRESENCE_PATIENCE: Duration = Duration::from_secs(5);
#[cfg(test)]
const PRESENCE_PATIENCE: Duration = Duration::from_millis(300);

/// How often a read that met a write half done is read again.
const READS: usize = 5;

pub struct Publisher {
    values: Box<dyn ValueLocks>,
    node: String,
    started_ms: u64,
    /// The record's chunks as last written: unchanged ones are skipped.
    last: Mutex<Vec<Vec<u8>>>,
}

impl Publisher {
    /// Puts `node` on the roster and takes its presence lock. Err (why)
    /// when the lock stays busy: another running daemon has this node name
    /// (or, on dlmfs, one killed on another node whose `cleanup` has not
    /// run yet).
    pub fn start(values: Box<dyn ValueLocks>, node: &str) -> Result<Publisher, String> {
        let p = Publisher {
            values,
            node: node.to_string(),
            started_ms: crate::clock::now_ms(),
            last: Mutex::new(Vec::new()),
        };
        p.enrol()?;
        let presence = chunks::presence(node);
        let until = Instant::now() + PRESENCE_PATIENCE;
        while !p.values.hold(&presence, false).map_err(|e| e.to_string())? {
            if Instant::now() >= until {
                return Err(format!(
                    "its presence lock {presence} is held: another running daemon is named {node:?} (or one killed on another node awaits its `cleanup`)"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    /// Adds this node to the roster if it is not on it (or the roster was
    /// lost), under the roster's guard.
    pub fn enrol(&self) -> Result<(), String> {
        if read_roster(&*self.values).is_ok_and(|n| n.contains(&self.node)) {
            return Ok(());
        }
        self.values
            .hold(ROSTER_GUARD, true)
            .map_err(|e| format!("cannot take the roster's guard: {e}"))?;
        let r = (|| {
            let mut names = read_roster(&*self.values).unwrap_or_default();
            if names.contains(&self.node) {
                return Ok(());
            }
            names.push(self.node.clone());
            names.sort();
            let chunks = chunks::pack(&chunks::roster(&names), self.values.value_len());
            write_blob(&*self.values, ROSTER, &chunks, &[], true)
        })();
        self.values.let_go(ROSTER_GUARD);
        r
    }

    /// Writes the node's record (blocking).
    pub fn write(&self, report: StatusReport) -> Result<(), String> {
        self.enrol()?;
        let rec = NodeRecord {
            pid: std::process::id(),
            started_ms: self.started_ms,
            report,
        };
        let new = chunks::pack(&chunks::encode(&rec), self.values.value_len());
        let mut last = self.last.lock().unwrap();
        // Forgotten until written whole: a failed write is redone whole.
        let before = std::mem::take(&mut *last);
        write_blob(
            &*self.values,
            &chunks::record(&self.node),
            &new,
            &before,
            false,
        )?;
        *last = new;
        Ok(())
    }

    /// Lets go of the presence lock and every value lock.
    pub fn close(&self) {
        self.values.close();
    }
}

/// Writes `new` as blob `blob`: the chunks that differ from `before`, the
/// first (the header) last. `shared`: other nodes write it too (the roster).
fn write_blob(
    values: &dyn ValueLocks,
    blob: &str,
    new: &[Vec<u8>],
    before: &[Vec<u8>],
    shared: bool,
) -> Result<(), String> {
    for (k, c) in new.iter().enumerate().skip(1) {
        if before.get(k) != Some(c) {
            values
                .write(&chunks::chunk(blob, k), c, shared)
                .map_err(|e| e.to_string())?;
        }
    }
    values
        .write(&chunks::chunk(blob, 0), &new[0], shared)
        .map_err(|e| e.to_string())
}

/// Blob `blob`'s payload; None if it has none.
fn read_blob(values: &dyn ValueLocks, blob: &str) -> Result<Option<Vec<u8>>, String> {
    let mut why = String::new();
    for _ in 0..READS {
        let value = |k| {
            values
                .read(&chunks::chunk(blob, k))
                .map_err(|e| e.to_string())
        };
        let Some(first) = value(0)? else {
            return Ok(None);
        };
        let Some(h) = chunks::head(&first) else {
            return Ok(None);
        };
        let rest: Vec<String> = (1..h.count).map(|k| chunks::chunk(blob, k)).collect();
        let mut all = vec![first];
        for v in values.read_many(&rest) {
            all.push(v.map_err(|e| e.to_string())?.unwrap_or_default());
        }
        match chunks::unpack(h, &all) {
            Ok(p) => return Ok(Some(p)),
            Err(e) => why = e,
        }
    }
    Err(format!("{blob}: {why} ({READS} reads)"))
}

fn read_roster(values: &dyn ValueLocks) -> Result<Vec<String>, String> {
    match read_blob(values, ROSTER)? {
        Some(p) => chunks::roster_names(&p),
        None => Ok(Vec::new()),
    }
}

/// One reader at a time in this process: on dlmfs a granted probe is
/// unlinked at once, and an unlink racing another local open of the same
/// lock can hang (docs/dlmfs.md §1.4).
static READING: Mutex<()> = Mutex::new(());

/// Every node on the roster, in the cluster stack's node list or in
/// `known` (`[cluster] nodes`), with whether its daemon runs and, if it
/// does, its record. `me`: this node, running (its own presence lock is
/// held here, so a probe would say busy anyway) and always listed. The
/// roster alone would do but for a moment after it was lost (see the
/// module doc): the stack's names are each node's hostname, dlm-electd's
/// default node name.
pub fn read(values: &dyn ValueLocks, me: &str, known: &[String]) -> Result<Vec<NodeSeen>, String> {
    let _one = READING.lock().unwrap_or_else(|p| p.into_inner());
    let mut names = read_roster(values)?;
    names.extend(values.stack_nodes());
    names.extend(known.iter().cloned());
    names.push(me.to_string());
    names.sort();
    names.dedup();
    let others: Vec<String> = names
        .iter()
        .filter(|n| *n != me)
        .map(|n| chunks::presence(n))
        .collect();
    let mut probes = values.held_many(&others).into_iter();
    Ok(names
        .into_iter()
        .map(|name| {
            let running = if name == me {
                Ok(true)
            } else {
                probes
                    .next()
                    .unwrap_or_else(|| Err(crate::lock::LockError::Failed("not probed".into())))
                    .map_err(|e| e.to_string())
            };
            let (running, mut error) = match running {
                Ok(r) => (r, None),
                Err(e) => (false, Some(format!("cannot tell whether it runs: {e}"))),
            };
            // A stopped node's last record is not read: nothing of it
            // counts, and it may be gone with its node.
            let record = if running {
                match read_blob(values, &chunks::record(&name)) {
                    Ok(Some(p)) => chunks::decode(&p).map_err(|e| error = Some(e)).ok(),
                    Ok(None) => None,
                    Err(e) => {
                        error = Some(e);
                        None
                    }
                }
            } else {
                None
            };
            NodeSeen {
                name,
                running,
                record,
                error,
            }
        })
        .collect())
}

/// What a daemon answers a `cluster` request with: every node as
/// [`read`] finds it, and whether each lock of its resources is held.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub nodes: Vec<NodeSeen>,
    pub held: Vec<(String, Held)>,
}

/// Reads the cluster through `backend`'s lock values (a fresh set, closed
/// after: on fs/dlm an open of the lockspace of its own).
pub fn answer(
    backend: &dyn LockBackend,
    me: &str,
    known: &[String],
    locks: Vec<String>,
) -> Result<Answer, String> {
    let values = backend
        .value_locks()
        .map_err(|e| format!("cannot reach the lock manager: {e}"))?
        .ok_or("this backend keeps no records in the lock manager")?;
    let nodes = read(&*values, me, known);
    values.close();
    let held = locks
        .into_iter()
        .map(|l| {
            let h = Held::from_probe(backend.held(&l).map_err(|e| e.to_string()));
            (l, h)
        })
        .collect();
    Ok(Answer {
        nodes: nodes?,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LockError;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    /// Lock values as the DLM keeps them, in memory, shared by the
    /// "nodes" of a test (the real ones are tested on the VM tiers).
    #[derive(Default)]
    struct Dlm {
        values: Mutex<HashMap<String, Vec<u8>>>,
        held: Mutex<HashSet<String>>,
    }

    struct Node(Arc<Dlm>, Mutex<Vec<String>>);

    impl ValueLocks for Node {
        fn value_len(&self) -> usize {
            32
        }
        fn write(&self, name: &str, value: &[u8], _shared: bool) -> Result<(), LockError> {
            let mut v = value.to_vec();
            v.resize(32, 0);
            self.0.values.lock().unwrap().insert(name.into(), v);
            Ok(())
        }
        fn read(&self, name: &str) -> Result<Option<Vec<u8>>, LockError> {
            Ok(self.0.values.lock().unwrap().get(name).cloned())
        }
        fn hold(&self, name: &str, _wait: bool) -> Result<bool, LockError> {
            let ok = self.0.held.lock().unwrap().insert(name.into());
            if ok {
                self.1.lock().unwrap().push(name.into());
            }
            Ok(ok)
        }
        fn let_go(&self, name: &str) {
            self.0.held.lock().unwrap().remove(name);
        }
        fn held(&self, name: &str) -> Result<bool, LockError> {
            Ok(self.0.held.lock().unwrap().contains(name))
        }
        fn close(&self) {
            for n in self.1.lock().unwrap().drain(..) {
                self.0.held.lock().unwrap().remove(&n);
            }
        }
        fn stack_nodes(&self) -> Vec<String> {
            vec!["d".into()]
        }
    }

    fn report(node: &str, n: usize) -> StatusReport {
        StatusReport {
            node: node.into(),
            now_ms: 5,
            resources: (0..n)
                .map(|i| {
                    crate::election::ResourceStatus::new(
                        &format!("r{i}"),
                        &format!("r{i}"),
                        crate::state::Status::Standby,
                        i as u64,
                    )
                })
                .collect(),
            locks: None,
            drain: None,
        }
    }

    #[test]
    fn nodes_find_each_other_through_the_roster_and_a_stopped_one_shows_down() {
        let dlm = Arc::new(Dlm::default());
        let node = || Box::new(Node(dlm.clone(), Mutex::new(vec![])));
        let a = Publisher::start(node(), "a").unwrap();
        let b = Publisher::start(node(), "b/long name").unwrap();
        assert!(
            Publisher::start(node(), "a").is_err(),
            "one daemon per name"
        );
        a.write(report("a", 300)).unwrap();
        b.write(report("b/long name", 2)).unwrap();
        a.write(report("a", 301)).unwrap();
        let seen = read(&*node(), "c", &["e".into()]).unwrap();
        let names: Vec<&str> = seen.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b/long name", "c", "d", "e"],
            "roster, me, stack, config"
        );
        assert!(seen[0].running && seen[1].running && seen[2].running);
        assert!(!seen[3].running && !seen[4].running, "never started");
        assert_eq!(seen[0].record.as_ref().unwrap().report.resources.len(), 301);
        assert!(seen[2].record.is_none(), "c never published");
        b.close();
        let seen = read(&*node(), "a", &[]).unwrap();
        assert!(!seen[1].running && seen[1].record.is_none());
        // The roster lost (fs/dlm: nobody kept a lock on it): the next
        // write puts the writer back.
        dlm.values
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(ROSTER));
        a.write(report("a", 1)).unwrap();
        let seen = read(&*node(), "z", &[]).unwrap();
        assert_eq!(seen[0].name, "a");
        assert_eq!(seen[0].record.as_ref().unwrap().report.resources.len(), 1);
    }
}
