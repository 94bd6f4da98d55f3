//! The state a resource is in, as `status`, STATUS= and the metrics show it.
//!
//! A leaf: the election decides the state (`election::Machine::status`),
//! its observers (`election::status`, `metrics`, the control socket's
//! clients) only read it, so the value type lives below both and neither
//! side imports the other for it.

use serde::Serialize;

/// What status reports for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Standby,
    Acquiring,
    Master,
    Releasing,
    Backoff,
    Stalled,
    /// Out of the competition after too many failed acquires (fail
    /// counts), until its `failure_timeout` ends or an admin's `reset`.
    Failed,
    /// The node is drained (`dlm-electd drain`): not master and not
    /// competing for any resource until `undrain`.
    Drained,
}

impl Status {
    /// Every state, in a fixed order (the metrics' series, the names a
    /// `[[notify]]` `states` list takes).
    pub const ALL: [Status; 8] = [
        Status::Standby,
        Status::Acquiring,
        Status::Master,
        Status::Releasing,
        Status::Backoff,
        Status::Stalled,
        Status::Failed,
        Status::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Standby => "standby",
            Status::Acquiring => "acquiring",
            Status::Master => "master",
            Status::Releasing => "releasing",
            Status::Backoff => "backoff",
            Status::Stalled => "stalled",
            Status::Failed => "failed",
            Status::Drained => "drained",
        }
    }
}
