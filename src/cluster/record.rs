//! What a node publishes about itself: its daemon's status report, plus
//! what a reader needs to judge it.

use crate::control::StatusReport;
use serde::{Deserialize, Serialize};

/// One node's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The daemon's process (on its node).
    pub pid: u32,
    /// When the daemon started (Unix time in ms, its node's clock).
    pub started_ms: u64,
    /// The status report, as `status --json` shows it; its `now_ms` is
    /// when the record was written (the node's clock).
    #[serde(flatten)]
    pub report: StatusReport,
}

/// A node name as a file name: every byte outside `[A-Za-z0-9_-]` (and a
/// leading `.`, so no name is hidden or `..`) as `%XX`. Node names may hold
/// `/` (`config::names`), which must not make a path.
pub fn file_stem(node: &str) -> String {
    let mut s = String::with_capacity(node.len());
    for b in node.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_make_plain_distinct_file_names() {
        assert_eq!(file_stem("node-a"), "node-a");
        assert_eq!(file_stem("../x"), "%2E%2E%2Fx");
        assert_eq!(file_stem("a.b"), "a%2Eb");
        assert_ne!(file_stem("a/b"), file_stem("a_b"));
        assert!(!file_stem("é").contains('/'));
    }
}
