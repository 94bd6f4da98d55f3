//! Preferred nodes in the config: `[cluster] nodes`, a resource's `prefer`
//! (a list, or `"spread"` resolved here into the list `spread` computes, so
//! the election only ever sees a list), `preempt` and `preempt_delay`.

use super::ctx::{Ctx, at_most_a_day};
use super::model::{RawCluster, RawPrefer, RawResource};
use super::names::{lock_name_problem, node_name_problem};
use super::spread;
use crate::lock::Backend;
use std::time::Duration;
use toml::Spanned;

/// The one word `prefer` takes besides a list.
pub const SPREAD: &str = "spread";

/// A list of node names at `key`: each a valid name, none twice.
fn node_list(cx: &mut Ctx, list: &[Spanned<String>], key: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in list {
        let v = n.get_ref();
        if let Some(p) = node_name_problem(v) {
            cx.err(n, format!("key `{key}`: {p}"));
        } else if names.contains(v) {
            cx.err(n, format!("key `{key}`: {v:?} is listed twice"));
        }
        names.push(v.clone());
    }
    names
}

/// `[cluster] nodes`, None when not given. This node (`node`; `named`:
/// from `[node] name`, else the hostname) must be one of them: a list
/// without it is another cluster's, or a typo.
pub fn cluster_nodes(
    cx: &mut Ctx,
    raw: &RawCluster,
    node: &str,
    named: bool,
) -> Option<Vec<String>> {
    let list = raw.nodes.as_ref()?;
    let names = node_list(cx, list.get_ref(), "cluster.nodes");
    if names.is_empty() {
        cx.err(
            list,
            "key `cluster.nodes`: list every node's name ([node] name), at least this one",
        );
    } else if !names.iter().any(|n| n == node) {
        let whence = if named {
            "[node] name"
        } else {
            "the hostname, as [node] name is not set"
        };
        cx.err(
            list,
            format!(
                "key `cluster.nodes`: this node, {node:?} ({whence}), is not listed: add it to `[cluster] nodes` on every node, or set `[node] name` to its name in the list"
            ),
        );
    }
    Some(names)
}

/// `prefer` resolved to node names, most preferred first (empty: none);
/// checks `preempt` without it. `cluster`: `[cluster] nodes`, if given.
pub fn prefer(
    cx: &mut Ctx,
    r: &RawResource,
    name: &str,
    lock: &str,
    backend: Backend,
    cluster: Option<&[String]>,
) -> Vec<String> {
    let Some(raw) = &r.prefer else {
        if let Some(p) = r.preempt.as_ref().filter(|p| *p.get_ref()) {
            cx.err(
                p,
                "key `preempt`: needs `prefer`, the nodes in order of preference",
            );
        }
        return Vec::new();
    };
    let names = match raw.get_ref() {
        RawPrefer::List(list) => {
            let names = node_list(cx, list, "prefer");
            if names.is_empty() {
                cx.err(
                    raw,
                    "key `prefer`: list at least one node name, most preferred first",
                );
            }
            names
        }
        RawPrefer::Word(w) if w == SPREAD => match cluster {
            Some(nodes) => spread::order(name, nodes),
            None => {
                cx.err(
                    raw,
                    "key `prefer`: \"spread\" needs `[cluster] nodes` in the main file, every node's name, the same on every node",
                );
                return Vec::new();
            }
        },
        RawPrefer::Word(w) => {
            cx.err(
                raw,
                format!(
                    "key `prefer`: {w:?} is neither a list of node names (most preferred first) nor \"spread\""
                ),
            );
            return Vec::new();
        }
    };
    // Each listed node has a candidate lock named after the lock and its
    // place: the longest must be a valid lock name too.
    let longest = format!("{lock}.c{}", names.len().saturating_sub(1));
    if let Some(p) = lock_name_problem(backend, &longest) {
        cx.err(
            raw,
            format!("key `prefer`: the candidate lock {longest:?} cannot be used ({p}): shorten the lock name"),
        );
    }
    names
}

/// `preempt_delay`: zero unless given, and only with `preempt = true` (a
/// master without it never hands over, so a delay would mean nothing). The
/// default written out ("0s") passes without it: a config that spells out
/// every default, as `config/dlm-electd.toml` does, must stay valid.
pub fn preempt_delay(cx: &mut Ctx, r: &RawResource) -> Duration {
    let Some(d) = &r.preempt_delay else {
        return Duration::ZERO;
    };
    if !d.get_ref().0.is_zero() && !r.preempt.as_ref().is_some_and(|p| *p.get_ref()) {
        cx.err(
            d,
            "key `preempt_delay`: needs `preempt = true` (without it a master never hands over to a preferred node)",
        );
    }
    at_most_a_day(cx, d, "preempt_delay").unwrap_or(Duration::ZERO)
}
