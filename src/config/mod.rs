//! Configuration: the validated model the daemon runs on, and how it is read.
//!
//! `load` reads the main file and its drop-ins, `validate` turns the raw serde
//! types of `model` into the types of `spec` (defaults from `defaults`, names
//! checked by `names` against the backend, action tables by `actions`;
//! pure), and `check` then asks the filesystem: can the programs run, and,
//! as root, could anyone but root have changed the files, programs and
//! directories we trust (`security`). `source` turns spans into
//! file:line:column for all of them, as an `error::ConfigError`.
//!
//! Dependencies go one way, and this file only names what the others
//! define: load → validate → actions → ctx → source → error, validate →
//! prefer (`prefer`, `[cluster] nodes`, `preempt_delay`) → spread (the
//! rendezvous order of `prefer = "spread"`), check →
//! security; config imports from `lock` only leaf values (the backend kind,
//! the standby mode, `WORKLOAD_PREFIX`, `lock::filesystem`). What needs a
//! service manager or netlink (unit and VIP warnings) is `preflight`'s,
//! above `action` and `systemd`.

mod actions;
mod alerts;
#[cfg(test)]
mod backend_tests;
pub mod check;
mod ctx;
pub mod defaults;
pub mod error;
pub mod load;
pub mod model;
pub mod names;
mod prefer;
mod recover;
pub mod security;
pub mod source;
pub mod spec;
pub mod spread;
pub mod validate;
#[cfg(test)]
mod validate_tests;

pub use crate::lock::{Backend, Standby};
pub use error::{ConfigError, ConfigErrors};
pub use load::{
    Loaded, daemon_dirs, load, load_checked, load_checked_as, load_placed, runtime_dir_hint,
};
pub use source::Place;
pub use spec::{
    ActionSpec, CheckSpec, Config, DaemonConfig, ExecSpec, FailureLimit, LockConfig, MetricsConfig,
    NotifySpec, Places, ProgramPlace, ResourceSpec, UnitSpec, VipSpec,
};

pub const DEFAULT_PATH: &str = "/etc/dlm-electd/dlm-electd.toml";
/// EX_CONFIG from sysexits.h: systemd's `RestartPreventExitStatus=78` keeps a
/// broken config from restart-looping.
pub const EXIT_CONFIG: i32 = 78;
