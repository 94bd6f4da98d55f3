//! `drain` and `undrain`: the record in the state dir is the drain (see
//! `crate::drain`); the daemon is told to read it again, and `--wait`
//! watches the resources go to other nodes.

use crate::config;
use crate::control::{self, ControlError, Request};
use crate::drain::{self, Drain};
use crate::exit;
use crate::state::Status;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the daemon may take to read the record again.
const ASK: Duration = Duration::from_secs(10);
/// How often `--wait` looks again.
const EVERY: Duration = Duration::from_millis(500);

/// `dlm-electd drain`: the exit code.
pub(super) async fn drain(config: &Path, reason: Option<String>, wait: Option<Duration>) -> i32 {
    let state_dir = config::state_dir_hint(config);
    let runtime_dir = config::runtime_dir_hint(config);
    let d = Drain {
        reason,
        since_ms: crate::clock::now_ms(),
        by: crate::workload::held::caller(),
    };
    if let Err(e) = drain::write(&state_dir, &d) {
        eprintln!(
            "dlm-electd: drain: cannot record it in {}: {e}; nothing changed",
            drain::path(&state_dir).display()
        );
        return exit::FAILURE;
    }
    match control::call(&runtime_dir, &Request::Drain, ASK).await {
        Ok(control::Reply { error: None, .. }) => println!(
            "node {}: releasing every resource it is master of; competing for none until `dlm-electd undrain`",
            d.describe()
        ),
        Err(ControlError::NotRunning { .. }) => {
            println!(
                "node {} (recorded in {}); no daemon runs here: it starts drained",
                d.describe(),
                drain::path(&state_dir).display()
            );
            // Without a daemon this node is master of nothing.
            return exit::OK;
        }
        Ok(control::Reply { error: Some(e), .. }) => return not_told(&e.to_string()),
        Err(e) => return not_told(&e.to_string()),
    }
    match wait {
        Some(limit) => wait_elsewhere(&runtime_dir, limit).await,
        None => exit::OK,
    }
}

/// The record is written but the daemon did not confirm it follows it.
fn not_told(why: &str) -> i32 {
    eprintln!(
        "dlm-electd: drain: recorded, but the daemon did not confirm it ({why}); it follows the record at its next reload (SIGHUP) or start"
    );
    exit::FAILURE
}

/// `dlm-electd undrain`: the exit code.
pub(super) async fn undrain(config: &Path) -> i32 {
    let state_dir = config::state_dir_hint(config);
    let runtime_dir = config::runtime_dir_hint(config);
    let was = match drain::remove(&state_dir) {
        Ok(was) => was,
        Err(e) => {
            eprintln!(
                "dlm-electd: undrain: cannot remove {}: {e}; still drained",
                drain::path(&state_dir).display()
            );
            return exit::FAILURE;
        }
    };
    let what = if was {
        "node undrained"
    } else {
        "node was not drained"
    };
    match control::call(&runtime_dir, &Request::Drain, ASK).await {
        Ok(control::Reply { error: None, .. }) => {
            println!("{what}: competing for every resource again");
            exit::OK
        }
        Err(ControlError::NotRunning { .. }) => {
            println!("{what}; no daemon runs here: it competes once started");
            exit::OK
        }
        Ok(control::Reply { error: Some(e), .. }) => undrain_not_told(&e),
        Err(e) => undrain_not_told(&e.to_string()),
    }
}

fn undrain_not_told(why: &str) -> i32 {
    eprintln!(
        "dlm-electd: undrain: the record is removed, but the daemon did not confirm it ({why}); it competes again at its next reload (SIGHUP) or start"
    );
    exit::FAILURE
}

/// Where one resource stands for `--wait`.
#[derive(Debug, Clone, PartialEq)]
enum Where {
    /// This node still has it (master, acquiring, releasing): the state,
    /// and the last error.
    Here(Status, Option<String>),
    /// Released here, and no node holds its lock (yet).
    Nobody,
    /// The probe failed: why.
    Unknown(String),
    /// Some other node holds its lock.
    Elsewhere,
}

/// `drain --wait`: every resource released here and held by some other
/// node, looked at every `EVERY` until `limit`.
async fn wait_elsewhere(runtime_dir: &Path, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    let mut seen: BTreeMap<String, Where> = BTreeMap::new();
    loop {
        let report = match control::call(runtime_dir, &Request::Status, ASK).await {
            Ok(control::Reply {
                status: Some(s), ..
            }) => s,
            Ok(r) => {
                let e = r.error.unwrap_or_else(|| "empty answer".into());
                eprintln!("dlm-electd: drain --wait: {e}");
                return exit::FAILURE;
            }
            Err(e) => {
                eprintln!("dlm-electd: drain --wait: {e}");
                return exit::FAILURE;
            }
        };
        for r in &report.resources {
            if seen.get(&r.name) == Some(&Where::Elsewhere) {
                continue;
            }
            let here = matches!(
                r.state,
                Status::Master | Status::Acquiring | Status::Releasing | Status::Stalled
            );
            let now = if here {
                Where::Here(r.state, r.last_error.clone())
            } else {
                let req = Request::Held {
                    resource: r.name.clone(),
                };
                match control::call(runtime_dir, &req, ASK).await {
                    Ok(control::Reply {
                        held: Some(true), ..
                    }) => Where::Elsewhere,
                    Ok(control::Reply {
                        held: Some(false), ..
                    }) => Where::Nobody,
                    Ok(r) => Where::Unknown(r.error.unwrap_or_else(|| "no answer".into())),
                    Err(e) => Where::Unknown(e.to_string()),
                }
            };
            seen.insert(r.name.clone(), now);
        }
        // Resources a reload removed meanwhile are not waited for.
        seen.retain(|n, _| report.resources.iter().any(|r| &r.name == n));
        let left: Vec<(&String, &Where)> = seen
            .iter()
            .filter(|(_, w)| **w != Where::Elsewhere)
            .collect();
        if left.is_empty() {
            println!(
                "every resource ({}) has a master on another node",
                seen.len()
            );
            return exit::OK;
        }
        // Released here, and the backend cannot be asked about the rest
        // (dlmfs): as far as this node can tell, done.
        if left.iter().all(|(_, w)| matches!(w, Where::Unknown(_))) {
            let known = seen.len() - left.len();
            println!(
                "every resource ({}) is released here; {known} have a master on another node, {} cannot be asked:",
                seen.len(),
                left.len()
            );
            for (name, w) in left {
                println!("  {name}: {}", explain(w));
            }
            return exit::OK;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "dlm-electd: drain --wait: after {}, {} of {} resource(s) have no master elsewhere (the node stays drained):",
                humantime::format_duration(limit),
                left.len(),
                seen.len()
            );
            for (name, w) in left {
                eprintln!("  {name}: {}", explain(w));
            }
            return exit::FAILURE;
        }
        tokio::time::sleep(EVERY.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn explain(w: &Where) -> String {
    match w {
        Where::Here(s, None) => format!("still {} here", s.as_str()),
        Where::Here(s, Some(e)) => format!("still {} here: {e}", s.as_str()),
        Where::Nobody => {
            "released here, but no node holds its lock: no other node runs dlm-electd, or none may be master (health, fail count, link, drained)".into()
        }
        Where::Unknown(e) => format!("cannot tell: {e}"),
        Where::Elsewhere => "master elsewhere".into(),
    }
}
