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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub runtime_dir: Option<Spanned<PathBuf>>,
    pub poll_interval: Option<Spanned<Interval>>,
    pub op_timeout: Option<Spanned<Interval>>,
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
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
    pub prefer: Option<Spanned<Vec<Spanned<String>>>>,
    pub preempt: Option<Spanned<bool>>,
    pub env: Option<Spanned<RawEnv>>,
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
