//! The node's drain (`dlm-electd drain`): a record under the state dir
//! that keeps this node from being master of any resource until
//! `dlm-electd undrain`.
//!
//! The record is the drain: the client writes or removes it, then tells a
//! running daemon to read it again; a daemon reads it at start. So a drain
//! outlives a daemon restart, a package upgrade and a reboot (the state dir
//! is on disk, `/var/lib/dlm-electd` by default, and the record is synced
//! before the client says it is done), and draining a node whose daemon is
//! stopped works too: it starts drained.
//!
//! A record that is there but cannot be read or parsed still drains the
//! node: the admin who wrote it wanted the node out, and a damaged file
//! must not bring it back in. Its reason then says what is wrong.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The record's name in the state dir.
pub const FILE: &str = "drain.json";

/// Longest reason kept: a line in `status`, an alert's environment.
pub const MAX_REASON: usize = 200;

/// What `drain` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The admin's `--reason`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the drain was recorded (Unix time in ms, the writer's clock).
    #[serde(default)]
    pub since_ms: u64,
    /// Who drained (the calling process and user), for `status`.
    #[serde(default)]
    pub by: String,
}

impl Drain {
    /// One line for the journal and `status`: the reason, or that none was
    /// given.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("drained: {r}"),
            None => "drained (no reason given)".into(),
        }
    }
}

/// Where the record lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The node's drain, if any. Never fails: a record that exists but cannot
/// be read drains the node with a reason saying why (see the module doc).
pub fn read(state_dir: &Path) -> Option<Drain> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(body) => Some(serde_json::from_slice(&body).unwrap_or_else(|e| Drain {
            reason: Some(format!("{} cannot be parsed ({e})", p.display())),
            since_ms: 0,
            by: String::new(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Drain {
            reason: Some(format!("{} cannot be read ({e})", p.display())),
            since_ms: 0,
            by: String::new(),
        }),
    }
}

/// Records `d`, durably: written under a temporary name, synced, renamed
/// over the record, and the directory synced, so a power cut right after
/// `drain` returned finds the node drained. Creates the state dir (0700,
/// as the unit's `StateDirectoryMode=` makes it) if needed. Ok(Some(why)):
/// the record is in place but the directory could not be synced (a power
/// cut now could lose it).
pub fn write(state_dir: &Path, d: &Drain) -> std::io::Result<Option<String>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)?;
    let body = serde_json::to_vec_pretty(d).map_err(std::io::Error::other)?;
    let tmp = state_dir.join(format!(".{FILE}.tmp{}", std::process::id()));
    let r = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path(state_dir)));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    Ok(sync_dir(state_dir))
}

/// Syncs the directory after a rename or unlink in it; why not, if not.
fn sync_dir(dir: &Path) -> Option<String> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .err()
        .map(|e| format!("{} could not be synced ({e})", dir.display()))
}

/// Removes the record: Ok(None) if there was none, Ok(Some(warning)) if it
/// was removed (the warning: the directory could not be synced).
pub fn remove(state_dir: &Path) -> std::io::Result<Option<Option<String>>> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(Some(sync_dir(state_dir))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(read(&state), None);
        let d = Drain {
            reason: Some("kernel update".into()),
            since_ms: 7,
            by: "uid 0".into(),
        };
        assert_eq!(write(&state, &d).unwrap(), None);
        assert_eq!(read(&state), Some(d));
        assert_eq!(remove(&state).unwrap(), Some(None));
        assert_eq!(remove(&state).unwrap(), None);
        assert_eq!(read(&state), None);
        let left: Vec<_> = std::fs::read_dir(&state).unwrap().collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
    }

    #[test]
    fn a_damaged_record_still_drains() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "{not json").unwrap();
        let d = read(dir.path()).expect("drained");
        assert!(d.describe().contains("cannot be parsed"), "{d:?}");
    }
}
