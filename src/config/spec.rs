//! The validated config the daemon runs on (defaults applied, names
//! checked): what `validate` makes of the raw `model`, and where the values
//! that `check` judges on the filesystem were written (`Places`).

use super::source::Place;
use crate::lock::{Backend, Standby};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: String,
    pub lock: LockConfig,
    pub daemon: DaemonConfig,
    pub metrics: MetricsConfig,
    pub resources: Vec<ResourceSpec>,
    /// Every file the config was read from, in order (main file first).
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockConfig {
    pub backend: Backend,
    pub dir: PathBuf,
    pub mount: PathBuf,
    pub domain: String,
    /// `Wait` only with the `file` backend (validation sees to it).
    pub standby: Standby,
    /// `file` backend: accept a lock dir on a filesystem dlm-electd does
    /// not know, on the admin's word that its locks are cluster-wide
    /// (`lock::filesystem`). Never overrides one known to keep locks local.
    pub trust_filesystem: bool,
    /// `dlm` backend: the fs/dlm lockspace (`lock.lockspace`).
    pub lockspace: String,
    /// `dlm` backend: run although dlm_controld does not fence (two
    /// masters on a partition: docs/dlm.md).
    pub allow_unfenced: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub runtime_dir: PathBuf,
    /// What must outlive a reboot: the drain record (`drain`).
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    pub op_timeout: Duration,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Where the Prometheus endpoint listens; None (the default): nowhere.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSpec {
    pub name: String,
    pub lock: String,
    pub poll_interval: Duration,
    pub actions: Vec<ActionSpec>,
    /// `[resource.check]`: a health check that decides whether this node
    /// may be master. None: always eligible.
    pub check: Option<CheckSpec>,
    /// Node names, most preferred first (`prefer`); empty: no preference.
    pub prefer: Vec<String>,
    /// A less preferred master hands over to a more preferred candidate.
    pub preempt: bool,
    /// With `preempt`: hand over only once the same more preferred node
    /// has been a candidate at every probe this long (zero: at once).
    pub preempt_delay: Duration,
    /// Fail counts (`max_failures`): None, the default, is off.
    pub failures: Option<FailureLimit>,
    /// Programs run at each state change: the daemon-wide `[[notify]]`
    /// first, then the resource's own `[[resource.notify]]`.
    pub notify: Vec<NotifySpec>,
}

/// A transition alert (`[[notify]]`): run for every state change of a
/// resource, or only for changes into `states`.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySpec {
    pub exec: Vec<String>,
    pub timeout: Duration,
    /// None: every state.
    pub states: Option<Vec<crate::state::Status>>,
    /// The resource's `env`, as its hooks get it.
    pub env: BTreeMap<String, String>,
}

/// `max_failures` failed acquires within `window` keep this node out of
/// the competition for `timeout` (see `election::failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub max: u32,
    pub window: Duration,
    pub timeout: Duration,
}

impl ResourceSpec {
    /// The candidate lock of the node at `prefer[i]`: its index rather than
    /// its name, so it fits dlmfs's 31 bytes (validation checks the longest).
    pub fn candidate_lock(&self, i: usize) -> String {
        format!("{}.c{i}", self.lock)
    }

    /// This node's place in `prefer`, None if it is not listed.
    pub fn rank(&self, node: &str) -> Option<usize> {
        self.prefer.iter().position(|n| n == node)
    }
}

/// A resource's health check (`[resource.check]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub exec: Vec<String>,
    /// From the start of one run to the start of the next (runs never
    /// overlap: a slow one delays the next).
    pub interval: Duration,
    /// A run that takes longer is killed (its process group) and fails.
    pub timeout: Duration,
    /// Failures in a row that make an eligible node ineligible.
    pub fall: u32,
    /// Successes in a row that make an ineligible node eligible again.
    pub rise: u32,
    /// After a master gave up for health: stay out at least this long.
    pub hold_off: Duration,
    /// The resource's `env`, on top of the hooks' minimal environment.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ActionSpec {
    Exec(ExecSpec),
    Vip(VipSpec),
    Unit(UnitSpec),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    pub acquire: Option<Vec<String>>,
    pub release: Option<Vec<String>>,
    pub timeout: Duration,
    /// The resource's `env`, on top of the hooks' minimal environment.
    /// Carried by each exec step rather than the resource so that applied
    /// records and the keeper release with the variables they acquired
    /// with; left out of records when empty (and absent in older ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VipSpec {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub announce_count: u32,
    pub announce_interval: Duration,
    /// Periodic re-announce while master; zero is off.
    pub refresh: Duration,
    pub timeout: Duration,
    /// Link tracking: while `interface` has no carrier this node does not
    /// compete for the resource, and a master gives it up (`links`).
    /// Records written before it existed read as on, the default.
    #[serde(default = "on")]
    pub track_link: bool,
}

fn on() -> bool {
    true
}

/// A systemd unit, started while master.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitSpec {
    /// A full unit name, such as `nginx.service`.
    pub unit: String,
    /// Bound on each start or stop job (and on the stop after a failed start).
    pub timeout: Duration,
}

impl VipSpec {
    /// How long an announce burst takes: the first announcement goes out at
    /// once, then one every `announce_interval`. The burst runs inside the
    /// acquire step, so it must fit in `timeout`.
    pub fn burst(&self) -> Duration {
        self.announce_interval
            .saturating_mul(self.announce_count.saturating_sub(1))
    }
}

impl fmt::Display for ActionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionSpec::Exec(e) => {
                let first = e.acquire.as_ref().or(e.release.as_ref());
                write!(f, "exec {}", first.map(|a| a[0].as_str()).unwrap_or("-"))
            }
            ActionSpec::Vip(v) => {
                write!(f, "vip {}/{} on {}", v.address, v.prefix_len, v.interface)
            }
            ActionSpec::Unit(u) => write!(f, "unit {}", u.unit),
        }
    }
}

/// Where the values that `check` judges on the filesystem were written.
/// Kept out of `Config`, `ResourceSpec` and `ActionSpec` on purpose: a
/// reload restarts the resources whose specs differ, and a resource that
/// merely moved in the file has not changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// `lock.dir` (no position when defaulted).
    pub lock_dir: Place,
    /// `lock.backend` (no position when defaulted).
    pub backend: Place,
    /// `daemon.runtime_dir` (no position when defaulted).
    pub runtime_dir: Place,
    /// Every exec program, in the file that defines it.
    pub programs: Vec<ProgramPlace>,
    /// Every vip action's interface.
    pub interfaces: Vec<(String, Place)>,
    /// Every unit action's unit.
    pub units: Vec<(String, Place)>,
    /// Every vip action's address and interface, at its `address`.
    pub vips: Vec<(std::net::IpAddr, String, Place)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramPlace {
    pub resource: String,
    /// `acquire` or `release`.
    pub key: &'static str,
    /// argv[0] as written; a bare name becomes the absolute path PATH
    /// gave it once `check::resolve_programs` ran.
    pub program: String,
    pub at: Place,
}

impl ProgramPlace {
    /// How an error names it: "key `K` of resource \"R\"", or "key `K`"
    /// for a daemon-wide one (`[[notify]]`).
    pub fn named(&self) -> String {
        if self.resource.is_empty() {
            format!("key `{}`", self.key)
        } else {
            format!("key `{}` of resource {:?}", self.key, self.resource)
        }
    }
}

#[cfg(test)]
impl VipSpec {
    /// A VIP on a test address and a missing interface, for unit tests.
    pub(crate) fn example(count: u32, interval_ms: u64, timeout_ms: u64) -> VipSpec {
        VipSpec {
            address: "198.18.0.10".parse().unwrap(),
            prefix_len: 24,
            interface: "nonexistent0".into(),
            announce_count: count,
            announce_interval: Duration::from_millis(interval_ms),
            refresh: Duration::ZERO,
            timeout: Duration::from_millis(timeout_ms),
            track_link: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(count: u32, interval_ms: u64) -> VipSpec {
        VipSpec::example(count, interval_ms, 1000)
    }

    #[test]
    fn burst_counts_intervals_between_announcements() {
        assert_eq!(vip(0, 200).burst(), Duration::ZERO);
        assert_eq!(vip(1, 200).burst(), Duration::ZERO);
        assert_eq!(vip(5, 200).burst(), Duration::from_millis(800));
        assert_eq!(vip(u32::MAX, u64::MAX).burst(), Duration::MAX);
    }
}
