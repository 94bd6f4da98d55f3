//! The defaults and bounds of every setting, named, so tests and docs can
//! refer to them. Pure values.

use super::model::MAX_INTERVAL;
use std::time::Duration;

pub const DEFAULT_LOCK_DIR: &str = "/var/lib/dlm-electd/locks";
pub const DEFAULT_MOUNT: &str = "/dlm";
pub const DEFAULT_DOMAIN: &str = "dlm-electd";
pub const DEFAULT_RUNTIME_DIR: &str = "/run/dlm-electd";
/// On disk, kept across reboots (systemd's `StateDirectory=dlm-electd`):
/// the node's drain record.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dlm-electd";
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Above o2cb's default recovery window (~60 s dead time plus recovery), so a
/// trylock that waits out a node death is "slow", not "stalled".
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(120);
/// Below these a setting only burns CPU or fails every call: typos for
/// "1s" and the like.
pub const MIN_POLL: Duration = Duration::from_millis(10);
pub const MIN_OP_TIMEOUT: Duration = Duration::from_millis(100);
pub const MIN_VIP_REFRESH: Duration = Duration::from_millis(100);
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10);
/// Each run forks a program: at "1ms" (for "1s") the daemon forked it
/// hundreds of times a second.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Below this a check, or an action step, cannot even start its program
/// reliably, so every run would fail.
pub const MIN_CHECK_TIMEOUT: Duration = Duration::from_millis(100);
pub const MIN_ACTION_TIMEOUT: Duration = Duration::from_millis(100);
/// More gratuitous ARPs than this on one takeover is a flood, not an
/// announcement.
pub const MAX_ANNOUNCE_COUNT: u32 = 100;
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_FALL: u32 = 3;
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_HOLD_OFF: Duration = Duration::from_secs(30);
/// Bounds of `fall` and `rise`: beyond 100 runs a check stops meaning
/// anything an admin would wait for.
pub const MAX_CHECK_COUNT: i64 = 100;
/// Same bound as `release --hold-off`, and as every other duration.
pub const MAX_CHECK_HOLD_OFF: Duration = MAX_INTERVAL;
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_VIP_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 5;
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);
/// Zero: no periodic re-announce.
pub const DEFAULT_VIP_REFRESH: Duration = Duration::ZERO;
/// Above systemd's default start and stop timeouts (90 s), so that systemd
/// normally judges a slow unit first and says why (result `timeout`).
pub const DEFAULT_UNIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Fail counts, once `max_failures` is set: failures older than this do
/// not count, and a node out stays out this long (Pacemaker has no window
/// and never expires by default; an hour-long outage of a dependency
/// should not keep every node out for good).
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(600);
pub const DEFAULT_FAILURE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Beyond this many failures the count stops meaning anything: leave it
/// off instead.
pub const MAX_FAILURES: i64 = 100;
/// Below this a failure window counts nothing useful, and a timeout would
/// end before the node's next poll anyway.
pub const MIN_FAILURE_WINDOW: Duration = Duration::from_secs(1);
/// A transition alert's program: a webhook or a mail is done in seconds; a
/// hung one is killed here, and the next alert of that resource waits.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
