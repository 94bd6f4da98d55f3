//! `drain` and `undrain`: the record in the state dir is the drain (see
//! `crate::drain`); the daemon is told to read it again and says what it
//! follows now, and `--wait` watches the resources go to other nodes.

use crate::config;
use crate::control::{self, ControlError, DrainAnswer, Request};
use crate::drain::{self, Drain};
use crate::exit;
use crate::state::Status;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the daemon may take to read the record again, or to answer
/// `status`.
const ASK: Duration = Duration::from_secs(10);
/// How long one `held` question may take: above the default `op_timeout`
/// (2 min), by which the daemon bounds its lock probe (a dlm call waits
/// out DLM recovery).
const ASK_HELD: Duration = Duration::from_secs(130);
/// How often `--wait` looks again.
const EVERY: Duration = Duration::from_millis(500);

/// `dlm-electd drain`: the exit code.
pub(super) async fn drain(
    config: &Path,
    reason: Option<String>,
    wait: Option<Duration>,
    force: bool,
) -> i32 {
    let (runtime_dir, state_dir) = match config::daemon_dirs(config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dlm-electd: drain: {e}; nothing changed");
            return exit::CONFIG;
        }
    };
    if !force && let Some(code) = last_one(config).await {
        return code;
    }
    let d = Drain {
        reason,
        since_ms: crate::clock::now_ms(),
        by: crate::workload::held::caller(),
    };
    match drain::write(&state_dir, &d) {
        Ok(None) => {}
        Ok(Some(w)) => eprintln!("dlm-electd: drain: recorded, but {w}"),
        Err(e) => {
            eprintln!(
                "dlm-electd: drain: cannot record it in {}: {e}; nothing changed",
                drain::path(&state_dir).display()
            );
            return exit::FAILURE;
        }
    }
    match tell(&runtime_dir, &state_dir, true).await {
        Told::Followed => println!(
            "node {}: releasing every resource it is master of; competing for none until `dlm-electd undrain`",
            d.describe()
        ),
        Told::NotFollowed(e) => {
            eprintln!("dlm-electd: drain: recorded, but {e}");
            return exit::FAILURE;
        }
        Told::NotRunning => {
            println!(
                "node {} (recorded in {}); no daemon runs here: it starts drained",
                d.describe(),
                drain::path(&state_dir).display()
            );
            if wait.is_some() {
                // A killed daemon's lock keeper (file) or cached locks
                // (dlmfs) may still hold what it was master of.
                eprintln!(
                    "dlm-electd: drain --wait: no daemon runs here to ask whether its resources went elsewhere"
                );
                return exit::FAILURE;
            }
            return exit::OK;
        }
        Told::NoAnswer(why) => {
            eprintln!(
                "dlm-electd: drain: recorded, but the daemon did not confirm it ({why}); it follows the record at its next reload (SIGHUP) or start"
            );
            return exit::FAILURE;
        }
    }
    match wait {
        Some(limit) => wait_elsewhere(&runtime_dir, limit).await,
        None => exit::OK,
    }
}

/// Without `--force`: refuses (Some(exit code)) when some resource has no
/// other running node that could be master of it, as far as the node
/// records tell (`status --cluster`'s view).
async fn last_one(config: &Path) -> Option<i32> {
    let cfg = match crate::preflight::load_checked_as(config, config::check::LockUse::Release) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!(
                "dlm-electd: drain: cannot check that other nodes could take over:\n{e}\nnothing changed; --force drains anyway"
            );
            return Some(exit::CONFIG);
        }
    };
    let v = match super::cluster::view_of(&cfg).await {
        Ok(v) => v,
        // dlmfs and dlm read the cluster through this node's daemon: one
        // that is not running masters nothing here to hand over.
        Err(e) if cfg.lock.backend != config::Backend::File => {
            eprintln!(
                "dlm-electd: drain: cannot check that other nodes could take over ({e}); draining anyway"
            );
            return None;
        }
        Err(e) => {
            eprintln!(
                "dlm-electd: drain: cannot check that other nodes could take over ({e}); nothing changed; --force drains anyway"
            );
            return Some(exit::FAILURE);
        }
    };
    let alone = super::cluster::only_me(&v, &cfg.node);
    if alone.is_empty() {
        return None;
    }
    eprintln!(
        "dlm-electd: drain: no other running node could be master of {} resource(s) (status --cluster):",
        alone.len()
    );
    for (r, others) in &alone {
        eprintln!("  {r}: {others}");
    }
    eprintln!("nothing changed; --force drains anyway (those resources then have no master)");
    Some(exit::FAILURE)
}

/// Why the daemon's answer `a` does not follow what the client wrote in
/// `state_dir` (`drained`: what it wrote), if it does not.
fn not_followed(a: &DrainAnswer, state_dir: &Path, drained: bool) -> Option<String> {
    let same = |x: &Path, y: &Path| match (x.canonicalize(), y.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => x == y,
    };
    if !same(&a.state_dir, state_dir) {
        return Some(format!(
            "the running daemon reads its drain record in {} (its config's state_dir when it started), not in {}: it is {}; restart it to use the new state_dir, or run this with a config that names the old one",
            a.state_dir.display(),
            state_dir.display(),
            if a.drained {
                "still drained"
            } else {
                "NOT drained"
            }
        ));
    }
    (a.drained != drained).then(|| {
        format!(
            "the running daemon read {} and is {} (did another drain or undrain just run?)",
            drain::path(state_dir).display(),
            if a.drained { "drained" } else { "NOT drained" }
        )
    })
}

/// What came of telling the daemon to read the record again.
enum Told {
    /// It follows what was written.
    Followed,
    /// It answered, following something else: why.
    NotFollowed(String),
    NotRunning,
    /// No answer: why.
    NoAnswer(String),
}

/// Tells the daemon at `runtime_dir` to read the record again; `drained`:
/// what was just written in `state_dir`.
async fn tell(runtime_dir: &Path, state_dir: &Path, drained: bool) -> Told {
    match control::call(runtime_dir, &Request::Drain, ASK).await {
        Ok(control::Reply {
            error: None,
            drain: Some(a),
            ..
        }) => match not_followed(&a, state_dir, drained) {
            Some(e) => Told::NotFollowed(e),
            None => Told::Followed,
        },
        Err(ControlError::NotRunning { .. }) => Told::NotRunning,
        Ok(r) => Told::NoAnswer(r.error.unwrap_or_else(|| "no answer".into())),
        Err(e) => Told::NoAnswer(e.to_string()),
    }
}

/// `dlm-electd undrain`: the exit code.
pub(super) async fn undrain(config: &Path) -> i32 {
    let (runtime_dir, state_dir) = match config::daemon_dirs(config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dlm-electd: undrain: {e}; nothing changed");
            return exit::CONFIG;
        }
    };
    let what = match drain::remove(&state_dir) {
        Ok(Some(warning)) => {
            if let Some(w) = warning {
                eprintln!("dlm-electd: undrain: removed, but {w}");
            }
            "node undrained"
        }
        Ok(None) => "node was not drained",
        Err(e) => {
            eprintln!(
                "dlm-electd: undrain: cannot remove {}: {e}; still drained",
                drain::path(&state_dir).display()
            );
            return exit::FAILURE;
        }
    };
    match tell(&runtime_dir, &state_dir, false).await {
        // A hold-off, a fail count or a health check may still keep it
        // out of some: `status` says which.
        Told::Followed => {
            println!("{what}: competing again (`dlm-electd status` shows what still keeps it out)");
            exit::OK
        }
        Told::NotFollowed(e) => {
            eprintln!("dlm-electd: undrain: removed, but {e}");
            exit::FAILURE
        }
        Told::NotRunning => {
            println!("{what}; no daemon runs here: it competes once started");
            exit::OK
        }
        Told::NoAnswer(why) => {
            eprintln!(
                "dlm-electd: undrain: the record is removed, but the daemon did not confirm it ({why}); it competes again at its next reload (SIGHUP) or start"
            );
            exit::FAILURE
        }
    }
}

/// Where one resource stands for `--wait`.
#[derive(Debug, Clone, PartialEq)]
enum Where {
    /// Not drained here yet (master, acquiring, releasing, or a state the
    /// drain has not reached): the state, and the last error.
    Here(Status, Option<String>),
    /// Drained here, and no node holds its lock (yet).
    Nobody,
    /// Drained here; the probe failed (why): asked again until the end.
    Unknown(String),
    /// Drained here; the backend cannot be asked (why).
    Unaskable(String),
    /// Drained here, and some other node holds its lock.
    Elsewhere,
}

/// `drain --wait`: every resource drained here and held by some other
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
        if report.drain.is_none() {
            eprintln!("dlm-electd: drain --wait: the node is not drained any more (undrained?)");
            return exit::FAILURE;
        }
        for r in &report.resources {
            let now = if r.state != Status::Drained {
                Where::Here(r.state, r.last_error.clone())
            } else if matches!(
                seen.get(&r.name),
                Some(Where::Elsewhere | Where::Unaskable(_))
            ) {
                continue;
            } else {
                let req = Request::Held {
                    resource: r.name.clone(),
                };
                let left = deadline.saturating_duration_since(Instant::now());
                match control::call(runtime_dir, &req, ASK_HELD.min(left.max(ASK))).await {
                    Ok(control::Reply {
                        held: Some(true), ..
                    }) => Where::Elsewhere,
                    Ok(control::Reply {
                        held: Some(false), ..
                    }) => Where::Nobody,
                    Ok(control::Reply {
                        unaskable: Some(why),
                        ..
                    }) => Where::Unaskable(why),
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
        // Drained here, and the backend cannot be asked about the rest
        // (dlmfs): as far as this node can tell, done.
        if left.iter().all(|(_, w)| matches!(w, Where::Unaskable(_))) {
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
                "dlm-electd: drain --wait: after {}, {} of {} resource(s) have no master elsewhere that this node can see (the node stays drained):",
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
        Where::Unaskable(e) => format!("released here; {e}"),
        Where::Elsewhere => "master elsewhere".into(),
    }
}
