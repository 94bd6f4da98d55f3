//! Workload lock names: which are allowed, the cluster lock's name for
//! one, and where its node-local files live under the runtime dir. A leaf
//! of `workload`: every other part of it names locks through this.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::lock::WORKLOAD_PREFIX as PREFIX;
/// dlmfs lock names are at most 31 bytes, one of them the prefix.
pub const MAX_NAME: usize = 30;
/// The longest `--wait`: a start that waits longer for another node is
/// stuck, and should fail where someone sees it.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Under the runtime dir: the node-local flocks.
pub(super) const LOCAL_DIR: &str = "workload";

/// Why `name` cannot name a workload lock, or None. Portable on purpose
/// (a VM or unit name maps onto it; both backends and file names take it).
pub fn name_problem(name: &str) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+');
    if name.is_empty() || name.len() > MAX_NAME {
        Some(format!(
            "a workload lock name has 1 to {MAX_NAME} bytes, {name:?} has {}",
            name.len()
        ))
    } else if let Some(c) = name.chars().find(|c| !ok_char(*c)) {
        Some(format!(
            "{c:?} is not allowed in a workload lock name (use letters, digits, '_', '-', '.', '+')"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("a workload lock name starts with a letter or digit".into())
    } else {
        None
    }
}

/// The cluster lock's name in the backend.
pub(crate) fn cluster_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The node-local lock of `name`.
pub(super) fn local_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir.join(LOCAL_DIR).join(format!("{name}.lock"))
}

/// The record `lock` writes for `status` (see `held`).
pub(super) fn record_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir.join(LOCAL_DIR).join(format!("{name}.held"))
}

/// dlm backend: the lockspace create a taker of `name` owes back (see
/// `workload::dlm`).
pub(super) fn joined_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir
        .join(LOCAL_DIR)
        .join(format!("{name}.{JOINED_EXT}"))
}

/// The extension of [`joined_path`]'s records.
pub(super) const JOINED_EXT: &str = "dlm-joined";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable_and_fit_dlmfs_with_the_prefix() {
        assert_eq!(name_problem("vm-web01.example_2+x"), None);
        assert_eq!(name_problem(&"a".repeat(MAX_NAME)), None);
        assert!(
            name_problem(&"a".repeat(MAX_NAME + 1))
                .unwrap()
                .contains("1 to 30 bytes")
        );
        assert!(name_problem("").unwrap().contains("1 to 30 bytes"));
        assert!(name_problem("a/b").unwrap().contains("'/' is not allowed"));
        assert!(name_problem("$x").unwrap().contains("'$' is not allowed"));
        assert!(name_problem("a b").is_some());
        assert!(name_problem(".x").unwrap().contains("starts with a letter"));
        assert!(name_problem("-x").is_some());
        assert_eq!(cluster_name("vm1").len(), 4);
        assert!(cluster_name(&"a".repeat(MAX_NAME)).len() <= 31);
    }
}
