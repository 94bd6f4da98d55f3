//! More problems in a file serde could not read: serde stops at the first
//! error, so an unknown key after a type error (or a second bad value in
//! another table) went unreported until the first was fixed (issue #19,
//! item 9). When the text is still TOML, each table is read on its own
//! (the main tables, each resource) and every key is held against the keys
//! its table takes; what that finds beyond serde's first error is added,
//! in the order written. A file that is not TOML at all gives its syntax
//! error alone: nothing after it can be placed reliably.

use super::error::ConfigError;
use super::model::*;
use super::source::Source;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Problems besides `first` (serde's), each once, in file order.
pub fn more_errors(src: &Source, drop_in: bool, first: &ConfigError) -> Vec<ConfigError> {
    let Ok(root) = DeTable::parse(&src.text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let top = if drop_in { DROP_IN_KEYS } else { MAIN_KEYS };
    for (key, value) in root.get_ref() {
        match key.get_ref().as_ref() {
            name if !top.contains(&name) => found.push(unknown(src, key, top)),
            "node" => table::<RawNode>(src, value, NODE_KEYS, &mut found),
            "lock" => table::<RawLock>(src, value, LOCK_KEYS, &mut found),
            "daemon" => table::<RawDaemon>(src, value, DAEMON_KEYS, &mut found),
            "metrics" => table::<RawMetrics>(src, value, METRICS_KEYS, &mut found),
            "cluster" => table::<RawCluster>(src, value, CLUSTER_KEYS, &mut found),
            "notify" => {
                for n in array(value) {
                    table::<RawNotify>(src, n, NOTIFY_KEYS, &mut found);
                }
            }
            _ => {
                for res in array(value) {
                    resource(src, res, &mut found);
                }
            }
        }
    }
    found.retain(|e| e.pos != first.pos);
    found.sort_by_key(|e| e.pos);
    found.dedup_by_key(|e| e.pos);
    found
}

/// One resource: its own keys, each action and its check read on their
/// own (`env` takes any name).
fn resource(src: &Source, res: &Spanned<DeValue>, found: &mut Vec<ConfigError>) {
    let DeValue::Table(t) = res.get_ref() else {
        // Not a table: the resource's own read says so.
        return read::<RawResource>(src, res.clone(), found);
    };
    for (key, value) in t {
        match key.get_ref().as_ref() {
            "action" => {
                for a in array(value) {
                    table::<RawAction>(src, a, ACTION_KEYS, found);
                }
            }
            "check" => table::<RawCheck>(src, value, CHECK_KEYS, found),
            "notify" => {
                for n in array(value) {
                    table::<RawNotify>(src, n, NOTIFY_KEYS, found);
                }
            }
            _ => {}
        }
    }
    let own: Vec<&str> = RESOURCE_KEYS
        .iter()
        .copied()
        .filter(|k| !["action", "check", "notify"].contains(k))
        .collect();
    keys(src, res, RESOURCE_KEYS, found);
    let mut res = res.clone();
    strip(&mut res, &own);
    read::<RawResource>(src, res, found);
}

/// A table's unknown keys, then its first other error: serde checks the
/// keys before the values, so it is read again without the unknown ones.
fn table<T: DeserializeOwned>(
    src: &Source,
    value: &Spanned<DeValue>,
    known: &[&str],
    found: &mut Vec<ConfigError>,
) {
    keys(src, value, known, found);
    let mut value = value.clone();
    strip(&mut value, known);
    read::<T>(src, value, found);
}

/// `value` read into `T`: its first error, if any.
fn read<T: DeserializeOwned>(src: &Source, value: Spanned<DeValue>, found: &mut Vec<ConfigError>) {
    if let Err(e) = T::deserialize(ValueDeserializer::from(value)) {
        found.push(src.toml_error(&e));
    }
}

/// Drops the keys of `value` (a table) that `known` lacks.
fn strip(value: &mut Spanned<DeValue>, known: &[&str]) {
    if let DeValue::Table(t) = value.get_mut() {
        *t = std::mem::take(t)
            .into_iter()
            .filter(|(k, _)| known.contains(&k.get_ref().as_ref()))
            .collect();
    }
}

/// Every key of `value` (a table) that `known` lacks.
fn keys(src: &Source, value: &Spanned<DeValue>, known: &[&str], found: &mut Vec<ConfigError>) {
    if let DeValue::Table(t) = value.get_ref() {
        for key in t.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                found.push(unknown(src, key, known));
            }
        }
    }
}

fn unknown(src: &Source, key: &Spanned<toml::de::DeString>, known: &[&str]) -> ConfigError {
    src.error(Some(key.span()), unknown_key(key.get_ref(), known))
}

/// The elements of an array (of tables); nothing for anything else,
/// which the table's own read reports.
fn array<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> &'a [Spanned<DeValue<'i>>] {
    match value.get_ref() {
        DeValue::Array(a) => a,
        _ => &[],
    }
}
