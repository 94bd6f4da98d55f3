//! Configuration: the validated model the daemon runs on, and how it is read.
//!
//! `load` reads the main file and its drop-ins, `validate` turns the raw serde
//! types of `model` into the types below (defaults applied, names checked
//! against the backend; pure), and `check` then asks the filesystem: can the
//! programs run, and, as root, could anyone but root have changed the files,
//! programs and directories we trust (`security`). `source` turns spans into
//! file:line:column for all of them.
//!
//! Dependencies go one way: load → validate → source, check → security.

pub mod check;
pub mod load;
pub mod model;
pub mod security;
pub mod source;
pub mod validate;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use load::{load, load_placed};
pub use model::{Backend, Standby};
pub use source::Place;

pub const DEFAULT_PATH: &str = "/etc/dlm-electd/dlm-electd.toml";
/// EX_CONFIG from sysexits.h: systemd's `RestartPreventExitStatus=78` keeps a
/// broken config from restart-looping.
pub const EXIT_CONFIG: i32 = 78;

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub runtime_dir: PathBuf,
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

/// A config problem, located in a file when it has a place there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column.
    pub pos: Option<(usize, usize)>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.path.display(), l, c, self.msg),
            None => write!(f, "{}: {}", self.path.display(), self.msg),
        }
    }
}

/// All the problems found in one read, so an admin fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the values that `check` judges on the filesystem were written.
/// Kept out of `Config`, `ResourceSpec` and `ActionSpec` on purpose: a
/// reload restarts the resources whose specs differ, and a resource that
/// merely moved in the file has not changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// `lock.dir` (no position when defaulted).
    pub lock_dir: Place,
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

/// A config that passed every check, with what is worth a warning.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Worth telling, not worth refusing (an interface missing on this
    /// host may appear later). Displayed like errors: `file:line:col: msg`.
    pub warnings: Vec<ConfigError>,
}

/// Loads the config and runs every check on it: programs must be
/// executable; as root, the config files, programs, lock dir and runtime dir
/// must be safe from anyone but root (see `security`); the `file` backend's
/// lock dir must be on a filesystem whose locks reach every node that sees
/// it (`lock::filesystem`). The errors stay typed so a caller can log them
/// all and show the first.
pub fn load_checked(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_checked_as(path, check::LockUse::Take)
}

/// `load_checked`, for a command that uses the locks as `uses` says
/// (`cleanup` and `unlock` only give them up).
pub fn load_checked_as(path: &Path, uses: check::LockUse) -> Result<Loaded, ConfigErrors> {
    let (mut config, mut places) = load_placed(path)?;
    // Before the checks, so they judge the files exec will run (see
    // `check::resolve_programs`).
    check::resolve_programs(&mut config, &mut places);
    let as_root = nix::unistd::geteuid().is_root();
    let mut errors = Vec::new();
    if as_root {
        errors.extend(check::config_files(&config));
    }
    let warnings = match check::check_as(&config, &places, as_root, uses) {
        Ok(w) => {
            errors.extend(check::unresolved(&places));
            if !errors.is_empty() {
                return Err(ConfigErrors(errors));
            }
            w
        }
        Err(more) => {
            errors.extend(more);
            return Err(ConfigErrors(errors));
        }
    };
    Ok(Loaded { config, warnings })
}

/// The runtime dir a client (`status`, `release`) should look in. The
/// config may be mid-edit and invalid while the daemon runs on the old one,
/// so only that one key is read, leniently; anything unusable (missing,
/// not a string, relative) gives the default.
pub fn runtime_dir_hint(path: &Path) -> PathBuf {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("daemon")?
                .get("runtime_dir")?
                .as_str()
                .map(PathBuf::from)
        })
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| validate::DEFAULT_RUNTIME_DIR.into())
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

    #[test]
    fn backends_display_as_written_in_the_config() {
        assert_eq!(Backend::File.to_string(), "file");
        assert_eq!(Backend::Dlmfs.to_string(), "dlmfs");
    }
}
