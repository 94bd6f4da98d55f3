//! `status --cluster`: every node's record and every resource's lock,
//! judged by `cluster::view`, as a table or JSON.

use crate::cluster::store::Answer;
use crate::cluster::view::{self, ClusterView, Held, Master, NodeSeen, Row, Wanted};
use crate::config::{self, Config};
use crate::control::{self, ControlError, Request};
use crate::lock::LockBackend;
use crate::lock::file::FileBackend;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// The cluster view of `cfg`'s resources, rendered: a table, or JSON
/// (`pretty`, else on one line, as `--watch` gives one document a line).
pub(super) async fn text(cfg: &Config, json: bool, pretty: bool) -> Result<String, String> {
    let v = view_of(cfg).await?;
    if json {
        let t = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        };
        return Ok(format!("{}\n", t.map_err(|e| e.to_string())?));
    }
    Ok(table(&v))
}

/// The cluster view of `cfg`'s resources: on `file` read from the lock
/// dir here, on dlmfs and dlm asked of this node's daemon (which reads the
/// records in the lock manager: a dlmfs call can sleep through a
/// recovery, which a daemon's thread can wait out and a client could not).
pub(super) async fn view_of(cfg: &Config) -> Result<ClusterView, String> {
    let (seen, held) = if cfg.lock.backend == config::Backend::File {
        from_lock_dir(cfg)?
    } else {
        from_daemon(cfg).await?
    };
    let wanted: Vec<Wanted> = cfg
        .resources
        .iter()
        .map(|r| Wanted {
            name: &r.name,
            lock: &r.lock,
            prefer: &r.prefer,
            held: held.get(&r.lock).cloned().unwrap_or_else(|| {
                Held::Unknown("this node's daemon does not run it (a config not reloaded?)".into())
            }),
        })
        .collect();
    Ok(view::judge(&wanted, seen))
}

type Read = (Vec<NodeSeen>, HashMap<String, Held>);

fn from_lock_dir(cfg: &Config) -> Result<Read, String> {
    let seen = crate::cluster::file::read(&cfg.lock.dir).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            cfg.lock.dir.join(crate::cluster::file::DIR).display()
        )
    })?;
    let backend = FileBackend::new(cfg.lock.dir.clone(), cfg.lock.standby);
    let held = cfg
        .resources
        .iter()
        .map(|r| {
            let h = Held::from_probe(backend.held(&r.lock).map_err(|e| e.to_string()));
            (r.lock.clone(), h)
        })
        .collect();
    Ok((seen, held))
}

async fn from_daemon(cfg: &Config) -> Result<Read, String> {
    let wait = control::CLUSTER_WAIT + Duration::from_secs(5);
    let reply = control::call(&cfg.daemon.runtime_dir, &Request::Cluster, wait)
        .await
        .map_err(|e| match e {
            ControlError::NotRunning { .. } => format!(
                "on the {} backend status --cluster reads the cluster through this node's daemon: {e}; start it, or ask on a node where it runs",
                cfg.lock.backend
            ),
            e => e.to_string(),
        })?;
    if let Some(e) = reply.error {
        return Err(e);
    }
    let a: Answer = serde_json::from_value(reply.cluster.ok_or("the daemon sent no cluster")?)
        .map_err(|e| format!("bad answer from the daemon: {e}"))?;
    Ok((a.nodes, a.held.into_iter().collect()))
}

/// The resources of `v` that no running node but `me` could be master of
/// now, each with what the others are (for `drain` without `--force`).
pub(super) fn only_me(v: &ClusterView, me: &str) -> Vec<(String, String)> {
    v.resources
        .iter()
        .filter_map(|r| {
            let others: Vec<(&str, &str)> = v
                .nodes
                .iter()
                .zip(&r.nodes)
                .filter(|(n, _)| n.name != me)
                .map(|(n, s)| (n.name.as_str(), s.as_str()))
                .collect();
            let could = |s: &str| {
                let state = s.split(' ').next().unwrap_or("");
                matches!(state, "master" | "standby" | "acquiring" | "backoff")
                    && !s.contains("holding off")
                    && !s.contains("ineligible")
            };
            if others.iter().any(|(_, s)| could(s)) {
                return None;
            }
            let what = if others.is_empty() {
                "no other node has a record".to_string()
            } else {
                others
                    .iter()
                    .map(|(n, s)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Some((r.name.clone(), what))
        })
        .collect()
}

/// Unix time in ms as UTC to the second ("-" for none).
fn utc(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn table(v: &ClusterView) -> String {
    let running = v.nodes.iter().filter(|n| n.running).count();
    let mut t = format!(
        "cluster: {} node(s) with a record, {running} running\n",
        v.nodes.len()
    );
    if v.resources.is_empty() {
        t.push_str("no resources configured\n");
        return t;
    }
    // A column as wide as its heading or its widest row.
    let width = |cell: &dyn Fn(&Row) -> usize, heading: usize| {
        v.resources.iter().map(cell).max().unwrap_or(0).max(heading)
    };
    let wn = width(&|r| r.name.len(), 8);
    let master = |m: &Master| match m {
        Master::Node { node, .. } => node.clone(),
        Master::Nobody => "none".into(),
        Master::Unknown { .. } => "?".into(),
    };
    let wm = width(&|r| master(&r.master).len(), 6);
    let epoch = |m: &Master| match m {
        Master::Node { epoch: Some(e), .. } => e.to_string(),
        _ => "-".into(),
    };
    let we = width(&|r| epoch(&r.master).len(), 5);
    // One column per node, as wide as its name or its widest state.
    let widths: Vec<usize> = v
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            v.resources
                .iter()
                .map(|r| r.nodes[i].len())
                .max()
                .unwrap_or(0)
                .max(n.name.len())
        })
        .collect();
    let _ = write!(
        t,
        "{:<wn$}  {:<wm$}  {:<20}  {:<we$}",
        "RESOURCE", "MASTER", "SINCE (ITS CLOCK)", "EPOCH"
    );
    for (n, w) in v.nodes.iter().zip(&widths) {
        let _ = write!(t, "  {:<w$}", n.name);
    }
    let end = t.trim_end_matches(' ').len();
    t.truncate(end);
    t.push('\n');
    for r in &v.resources {
        let since = match &r.master {
            Master::Node { since_ms, .. } => utc(*since_ms),
            _ => "-".into(),
        };
        let _ = write!(
            t,
            "{:<wn$}  {:<wm$}  {since:<20}  {:<we$}",
            r.name,
            master(&r.master),
            epoch(&r.master)
        );
        for (s, w) in r.nodes.iter().zip(&widths) {
            let _ = write!(t, "  {s:<w$}");
        }
        // No trailing spaces.
        let end = t.trim_end_matches(' ').len();
        t.truncate(end);
        t.push('\n');
    }
    for r in &v.resources {
        if let Master::Unknown { why } = &r.master {
            let _ = writeln!(t, "{}: master unknown: {why}", r.name);
        }
    }
    t.push('\n');
    let wn = v
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        t,
        "{:<wn$}  {:<7}  {:<20}  DRAIN",
        "NODE", "DAEMON", "RECORD (ITS CLOCK)"
    );
    for n in &v.nodes {
        let daemon = if n.running { "running" } else { "down" };
        let drain = match (&n.drain, &n.error) {
            (_, Some(e)) => format!("? ({e})"),
            (Some(d), None) => d.describe(),
            (None, None) => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:<wn$}  {daemon:<7}  {:<20}  {drain}",
            n.name,
            utc(n.written_ms.unwrap_or(0))
        );
    }
    t
}
