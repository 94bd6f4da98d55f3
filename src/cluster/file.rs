//! The `file` backend's node records, beside its lock files:
//! `LOCK_DIR/.nodes/NODE.json` (written whole: a temporary name, then a
//! rename) and the presence lock `LOCK_DIR/.nodes/NODE.alive`, an OFD lock
//! the daemon holds for its life. The kernel drops it the moment the daemon
//! dies (on a cluster filesystem, once the filesystem has recovered the
//! dead node's locks), so a record is trusted exactly while its daemon runs.
//! Only the daemon holds it: not the lock keeper, not a hook (close-on-exec).

use super::record::{NodeRecord, file_stem};
use super::view::NodeSeen;
use crate::control::StatusReport;
use crate::lock::file::{ofd_held, ofd_setlk};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The records' directory in the lock dir (hidden: not a lock).
pub const DIR: &str = ".nodes";

/// The daemon's side: its presence lock, held while this lives, and its
/// record's place.
pub struct Publisher {
    dir: PathBuf,
    node: String,
    record: PathBuf,
    started_ms: u64,
    /// Holds the presence lock; closed (and so unlocked) with us. Taken
    /// again on a fresh file if its name went (an `rm -rf` of the lock dir).
    alive: Mutex<File>,
}

impl Publisher {
    /// Takes `node`'s presence lock in `lock_dir`. Err (why) if it cannot,
    /// also when another running daemon has the same node name there.
    pub fn start(lock_dir: &Path, node: &str) -> Result<Publisher, String> {
        let dir = lock_dir.join(DIR);
        let stem = file_stem(node);
        let f = presence(&dir, node)?;
        Ok(Publisher {
            record: dir.join(format!("{stem}.json")),
            dir,
            node: node.to_string(),
            started_ms: crate::clock::now_ms(),
            alive: Mutex::new(f),
        })
    }

    /// Writes the node's record (blocking: call it off the runtime). First
    /// makes sure the presence lock is still on the file its name leads
    /// to: a lock dir deleted and made again would hide a running node.
    pub fn write(&self, report: StatusReport) -> std::io::Result<()> {
        let stem = file_stem(&self.node);
        let alive = self.dir.join(format!("{stem}.alive"));
        {
            let mut held = self.alive.lock().unwrap();
            let same = std::fs::symlink_metadata(&alive)
                .ok()
                .zip(held.metadata().ok())
                .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                *held = presence(&self.dir, &self.node).map_err(std::io::Error::other)?;
            }
        }
        let rec = NodeRecord {
            pid: std::process::id(),
            started_ms: self.started_ms,
            report,
        };
        let body = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        crate::instance::write_whole(&self.record, &body)
    }
}

/// Takes `node`'s presence lock in `dir` (made if missing).
fn presence(dir: &Path, node: &str) -> Result<File, String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let alive = dir.join(format!("{}.alive", file_stem(node)));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&alive)
        .map_err(|e| format!("cannot open {}: {e}", alive.display()))?;
    ofd_setlk(&f, true).map_err(|e| match e {
        nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES => format!(
            "{} is held: another running daemon is named {node:?} in this lock dir",
            alive.display()
        ),
        e => format!("cannot lock {}: {e}", alive.display()),
    })?;
    Ok(f)
}

/// The client's side: every node that has a record or a presence lock in
/// `lock_dir`, with whether its daemon runs. Unreadable records are listed
/// with why.
pub fn read(lock_dir: &Path) -> std::io::Result<Vec<NodeSeen>> {
    let dir = lock_dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut stems: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_suffix(".json")
                .or_else(|| n.strip_suffix(".alive"))
                .map(str::to_string)
        })
        .filter(|s| !s.starts_with('.'))
        .collect();
    stems.sort();
    stems.dedup();
    Ok(stems.iter().map(|s| seen(&dir, s)).collect())
}

fn seen(dir: &Path, stem: &str) -> NodeSeen {
    let running = ofd_held(&dir.join(format!("{stem}.alive")));
    let path = dir.join(format!("{stem}.json"));
    let (record, mut error) = match std::fs::read(&path) {
        Ok(b) => match serde_json::from_slice::<NodeRecord>(&b) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{}: {e}", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("{}: {e}", path.display()))),
    };
    let running = match running {
        Ok(h) => h.unwrap_or(false),
        Err(e) => {
            error.get_or_insert(format!("cannot tell whether it runs: {e}"));
            false
        }
    };
    NodeSeen {
        name: record
            .as_ref()
            .map(|r| r.report.node.clone())
            .unwrap_or_else(|| stem.to_string()),
        running,
        record,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str) -> StatusReport {
        StatusReport {
            node: node.into(),
            now_ms: 5,
            resources: Vec::new(),
            locks: None,
            drain: None,
        }
    }

    #[test]
    fn a_record_counts_while_its_publisher_lives_and_one_name_has_one_publisher() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        let p = Publisher::start(dir.path(), "node/a").unwrap();
        let again = Publisher::start(dir.path(), "node/a").err().unwrap();
        assert!(again.contains("another running daemon"), "{again}");
        p.write(report("node/a")).unwrap();
        let seen = read(dir.path()).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].name, "node/a");
        assert!(seen[0].running && seen[0].record.is_some());
        // The lock dir deleted under it: the next write brings it back.
        std::fs::remove_dir_all(dir.path().join(DIR)).unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        p.write(report("node/a")).unwrap();
        assert!(read(dir.path()).unwrap()[0].running);
        drop(p);
        let seen = crate::testing::eventually("down once its publisher is gone", || {
            let s = read(dir.path()).unwrap();
            (!s[0].running).then_some(s)
        });
        assert!(
            seen[0].record.is_some(),
            "the last record stays, not trusted"
        );
    }
}
