//! What `status`, STATUS= and the exit code know about each resource: the
//! runners publish here, the control socket and sd_notify read.

use super::machine::Status;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What status shows for one resource.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    pub state: Status,
    /// When it entered `state`: Unix time in milliseconds.
    pub since_ms: u64,
    pub last_error: Option<String>,
    /// While an admin's hold-off runs: when it ends (Unix time in ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_off_until_ms: Option<u64>,
    /// With a health check (`[resource.check]`): `pending` before its first
    /// result, `ok` while this node may be master, `failing` while not
    /// (after `fall` failures in a row, until `rise` successes in a row).
    /// Absent without a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Why the last check run failed; absent once a run succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
    /// State changes since the daemon started this resource (its first
    /// state is none).
    #[serde(default)]
    pub transitions: u64,
    /// Reached a defined state since start (for READY=1); not shown.
    #[serde(skip)]
    pub settled: bool,
}

/// Every runner's status, read by the control socket and sd_notify.
pub type Board = Arc<Mutex<Vec<ResourceStatus>>>;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One line for STATUS=: "master: web; standby: db; stalled: x".
pub fn summary(board: &[ResourceStatus]) -> String {
    let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in board {
        let state = r.state.as_str();
        match parts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, names)) => names.push(&r.name),
            None => parts.push((state, vec![&r.name])),
        }
    }
    if parts.is_empty() {
        return "no resources configured".into();
    }
    parts
        .iter()
        .map(|(s, n)| format!("{s}: {}", n.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}
