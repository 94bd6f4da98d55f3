//! The config file as written: serde types that mirror the TOML exactly.
//!
//! Every struct denies unknown keys, and values that validation must point
//! back at are `Spanned` so an error can name file:line:column. Nothing here
//! applies defaults or cross-checks: that is `validate`'s job.

use crate::lock::{Backend, Standby};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The main config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub lock: RawLock,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub notify: Vec<Spanned<RawNotify>>,
    #[serde(default)]
    pub resource: Vec<Spanned<RawResource>>,
}

/// A drop-in (`conf.d/*.toml`): may only add resources, so that the node,
/// backend and daemon settings live in exactly one place.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDropIn {
    #[serde(default)]
    pub resource: Vec<Spanned<RawResource>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLock {
    pub backend: Option<Spanned<Backend>>,
    pub dir: Option<Spanned<PathBuf>>,
    pub mount: Option<Spanned<PathBuf>>,
    pub domain: Option<Spanned<String>>,
    pub standby: Option<Spanned<Standby>>,
    pub trust_filesystem: Option<Spanned<bool>>,
    pub lockspace: Option<Spanned<String>>,
    pub allow_unfenced: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub runtime_dir: Option<Spanned<PathBuf>>,
    pub state_dir: Option<Spanned<PathBuf>>,
    pub poll_interval: Option<Spanned<Interval>>,
    pub op_timeout: Option<Spanned<Interval>>,
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// `[cluster]`: what every node must agree on about the others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Every node's name (`[node] name`): what `prefer = "spread"` spreads
    /// resources over.
    pub nodes: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub name: Option<Spanned<String>>,
    pub lock: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<Interval>>,
    #[serde(default)]
    pub action: Vec<Spanned<RawAction>>,
    pub check: Option<Spanned<RawCheck>>,
    pub prefer: Option<Spanned<RawPrefer>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<Duration0>>,
    pub env: Option<Spanned<RawEnv>>,
    pub max_failures: Option<Spanned<i64>>,
    pub failure_window: Option<Spanned<Interval>>,
    pub failure_timeout: Option<Spanned<Interval>>,
    #[serde(default)]
    pub notify: Vec<Spanned<RawNotify>>,
}

/// `[[notify]]` (every resource) and `[[resource.notify]]` (one more for
/// that resource): a program run at each state change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub exec: Option<Spanned<Argv>>,
    pub timeout: Option<Spanned<Interval>>,
    pub states: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `prefer`: node names in order, or a word (`"spread"`) that `validate`
/// judges. A hand-written visitor rather than an untagged enum: untagged
/// enums buffer their input and lose the spans of the names.
#[derive(Debug)]
pub enum RawPrefer {
    List(Vec<Spanned<String>>),
    Word(String),
}

impl<'de> Deserialize<'de> for RawPrefer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawPrefer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of node names, most preferred first, or \"spread\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPrefer, E> {
                Ok(RawPrefer::Word(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawPrefer, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element()? {
                    names.push(n);
                }
                Ok(RawPrefer::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// `env = { NAME = "value" }`: every name and value placed, for errors.
pub type RawEnv = std::collections::BTreeMap<Spanned<String>, Spanned<String>>;

/// `[resource.check]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub exec: Option<Spanned<Argv>>,
    pub interval: Option<Spanned<Interval>>,
    pub timeout: Option<Spanned<Interval>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    pub hold_off: Option<Spanned<Duration0>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    Exec,
    Vip,
    Unit,
}

/// One `[[resource.action]]` table. Flat rather than a serde-tagged enum:
/// internally tagged enums buffer their input and lose the spans we need for
/// file:line:column errors, so `validate` checks which keys fit which type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(rename = "type")]
    pub kind: Spanned<ActionType>,
    // exec
    pub acquire: Option<Spanned<Argv>>,
    pub release: Option<Spanned<Argv>>,
    pub timeout: Option<Spanned<Interval>>,
    // vip
    pub address: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    pub announce_count: Option<Spanned<u32>>,
    pub announce_interval: Option<Spanned<Interval>>,
    pub refresh: Option<Spanned<Duration0>>,
    pub track_link: Option<Spanned<bool>>,
    // unit
    pub unit: Option<Spanned<String>>,
}

/// A non-empty argv array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.is_empty() || v[0].is_empty() {
            return Err(serde::de::Error::custom(
                "empty command: give an argv array such as [\"/usr/local/bin/up\", \"arg\"]",
            ));
        }
        Ok(Argv(v))
    }
}

fn parse_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?} ({e}): write a number and a unit, like \"250ms\", \"2s\" or \"1m\""
        ))
    })
}

/// The longest interval, timeout or hold-off a config may give.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A strictly positive duration ("250ms", "2s"), at most a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = parse_duration(d)?;
        if v.is_zero() {
            return Err(serde::de::Error::custom("must be greater than zero"));
        }
        // Every interval, timeout and hold-off here is seconds to minutes:
        // days are a typo ("100d" for "100s").
        if v > MAX_INTERVAL {
            return Err(serde::de::Error::custom(
                "at most 24h (every interval, timeout and hold-off here is seconds to minutes)",
            ));
        }
        Ok(Interval(v))
    }
}

/// A duration where zero is allowed and means "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration0(pub Duration);

impl<'de> Deserialize<'de> for Duration0 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_duration(d).map(Duration0)
    }
}

/// The keys each table takes, in the order serde lists them (the fields
/// above): `recover` looks for unknown keys with these once serde stopped
/// at another error. A unit test holds them to the structs.
pub const MAIN_KEYS: &[&str] = &[
    "node", "lock", "daemon", "metrics", "cluster", "notify", "resource",
];
pub const DROP_IN_KEYS: &[&str] = &["resource"];
pub const NODE_KEYS: &[&str] = &["name"];
pub const LOCK_KEYS: &[&str] = &[
    "backend",
    "dir",
    "mount",
    "domain",
    "standby",
    "trust_filesystem",
    "lockspace",
    "allow_unfenced",
];
pub const DAEMON_KEYS: &[&str] = &["runtime_dir", "state_dir", "poll_interval", "op_timeout"];
pub const METRICS_KEYS: &[&str] = &["listen"];
pub const CLUSTER_KEYS: &[&str] = &["nodes"];
pub const RESOURCE_KEYS: &[&str] = &[
    "name",
    "lock",
    "poll_interval",
    "action",
    "check",
    "prefer",
    "preempt",
    "preempt_delay",
    "env",
    "max_failures",
    "failure_window",
    "failure_timeout",
    "notify",
];
pub const NOTIFY_KEYS: &[&str] = &["exec", "timeout", "states"];
pub const CHECK_KEYS: &[&str] = &["exec", "interval", "timeout", "fall", "rise", "hold_off"];
pub const ACTION_KEYS: &[&str] = &[
    "type",
    "acquire",
    "release",
    "timeout",
    "address",
    "interface",
    "announce_count",
    "announce_interval",
    "refresh",
    "track_link",
    "unit",
];

/// serde's message for an unknown key, word for word (`recover` adds
/// more of them than serde stops at).
pub fn unknown_key(key: &str, expected: &[&str]) -> String {
    let list = |keys: &[&str]| {
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match expected {
        [] => format!("unknown field `{key}`, there are no fields"),
        [one] => format!("unknown field `{key}`, expected `{one}`"),
        [a, b] => format!("unknown field `{key}`, expected `{a}` or `{b}`"),
        more => format!("unknown field `{key}`, expected one of {}", list(more)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key lists are the structs' fields, and `unknown_key` says what
    /// serde says.
    #[test]
    fn key_lists_match_the_structs() {
        fn serde_says<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
            toml::from_str::<T>(text).unwrap_err().message().to_string()
        }
        let bogus = "bogus = 1\n";
        assert_eq!(
            serde_says::<RawConfig>(bogus),
            unknown_key("bogus", MAIN_KEYS)
        );
        assert_eq!(
            serde_says::<RawDropIn>(bogus),
            unknown_key("bogus", DROP_IN_KEYS)
        );
        assert_eq!(
            serde_says::<RawNode>(bogus),
            unknown_key("bogus", NODE_KEYS)
        );
        assert_eq!(
            serde_says::<RawLock>(bogus),
            unknown_key("bogus", LOCK_KEYS)
        );
        assert_eq!(
            serde_says::<RawDaemon>(bogus),
            unknown_key("bogus", DAEMON_KEYS)
        );
        assert_eq!(
            serde_says::<RawMetrics>(bogus),
            unknown_key("bogus", METRICS_KEYS)
        );
        assert_eq!(
            serde_says::<RawCluster>(bogus),
            unknown_key("bogus", CLUSTER_KEYS)
        );
        assert_eq!(
            serde_says::<RawResource>(bogus),
            unknown_key("bogus", RESOURCE_KEYS)
        );
        assert_eq!(
            serde_says::<RawCheck>(bogus),
            unknown_key("bogus", CHECK_KEYS)
        );
        assert_eq!(
            serde_says::<RawAction>("type = \"exec\"\nbogus = 1\n"),
            unknown_key("bogus", ACTION_KEYS)
        );
    }
}
