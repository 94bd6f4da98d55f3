//! What belongs to one daemon instance, kept in its runtime dir: the
//! instance lock (one daemon, or `cleanup`, per runtime dir) and the
//! *applied records*, one per resource whose acquire steps this instance
//! started and has not yet undone.
//!
//! Why records: at startup (a lock found busy) and in `cleanup`, an instance
//! undoes what a crashed predecessor of *itself* may have left. Without a
//! record it cannot tell that from what another instance on the same host
//! holds right now (two daemons sharing a `file` lock dir, as the demo does),
//! and would remove the live master's VIP. So the record is written before
//! the first acquire step and removed once the release steps succeeded (by
//! the daemon, or by its lock keeper after the daemon died); only a
//! resource with a record is undone at startup and by `cleanup`, and a
//! resource with a record always is.
//!
//! A record holds the resource's lock and release actions (JSON), so that
//! what a crashed run applied is undone even when the resource has left the
//! config since (an *orphan* record; an empty record from an older version
//! cannot be).
//!
//! The runtime dir is normally on tmpfs (/run), so records do not survive a
//! reboot, and that is right: neither does what they stand for (addresses,
//! started units, processes), while a record left from before the reboot
//! would make the next start undo things another instance may hold.

use crate::config::ActionSpec;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const INSTANCE_LOCK: &str = "instance.lock";
pub const RECORDS: &str = "applied";

/// The instance lock, held for the life of the process.
pub struct Instance {
    dir: PathBuf,
    _lock: Flock<File>,
    /// The same lock, on a name no file deletion can remove (see
    /// [`instance_socket`]).
    _socket: std::os::unix::net::UnixDatagram,
}

/// Binds the abstract unix socket named after `runtime_dir` (canonical):
/// one per runtime dir while its daemon lives. The flock on
/// `instance.lock` alone is lost with the file: `rm -rf` of the runtime dir
/// under a running daemon let a second one start beside it. An abstract
/// socket name has no file and goes only with the process (per network
/// namespace: daemons in different namespaces rely on the flock alone).
fn instance_socket(runtime_dir: &Path) -> Result<std::os::unix::net::UnixDatagram, String> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let dir = std::fs::canonicalize(runtime_dir).unwrap_or_else(|_| runtime_dir.to_path_buf());
    let dir = dir.as_os_str().as_encoded_bytes();
    // At most 107 bytes: a long path is named by its hash.
    let mut name = b"dlm-electd/instance:".to_vec();
    if name.len() + dir.len() <= 100 {
        name.extend_from_slice(dir);
    } else {
        let h = dir.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        name.extend_from_slice(format!("#{h:016x}").as_bytes());
    }
    let addr = SocketAddr::from_abstract_name(&name)
        .map_err(|e| format!("cannot name the instance socket: {e}"))?;
    UnixDatagram::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "another dlm-electd instance runs with runtime dir {} (its instance.lock may have been deleted with the directory); one daemon per runtime_dir",
                runtime_dir.display()
            )
        } else {
            format!("cannot bind the instance socket: {e}")
        }
    })
}

impl Instance {
    /// Creates the runtime dir (0700) and takes the instance lock: one
    /// daemon (or cleanup) per runtime dir. dlmfs locks are per node, so a
    /// second daemon on the node would "win" the same locks; this flock
    /// prevents it.
    pub fn take(runtime_dir: &Path) -> Result<Instance, String> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runtime_dir)
            .map_err(|e| format!("cannot create runtime dir {}: {e}", runtime_dir.display()))?;
        // The control socket lives here: nobody else may enter.
        std::fs::set_permissions(runtime_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod runtime dir {}: {e}", runtime_dir.display()))?;
        let path = runtime_dir.join(INSTANCE_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                return Err(format!(
                    "another dlm-electd instance holds {} (pid {}); one daemon per runtime_dir",
                    path.display(),
                    pid.trim()
                ));
            }
            Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        };
        let socket = instance_socket(runtime_dir)?;
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = writeln!(lock, "{}", std::process::id());
        Ok(Instance {
            dir: runtime_dir.to_path_buf(),
            _lock: lock,
            _socket: socket,
        })
    }

    /// Why this instance's runtime dir is not what it was, if so: its
    /// `instance.lock` no longer names the file we flocked (the dir, or the
    /// file, was deleted). A second daemon still cannot start (the abstract
    /// socket), but what lived in the dir is gone; said loudly by the
    /// daemon at its next look.
    pub fn gone(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let held = self._lock.metadata().ok()?;
        let now = std::fs::symlink_metadata(self.dir.join(INSTANCE_LOCK)).ok();
        if now.is_some_and(|n| n.dev() == held.dev() && n.ino() == held.ino()) {
            return None;
        }
        Some(format!(
            "runtime dir {} (or its {INSTANCE_LOCK}) was deleted under the running daemon: the applied records, hook tracking and control socket went with it (a crash now would leave what this node applied for `cleanup` to miss); no second daemon can start with this runtime dir; restart this one to recreate them",
            self.dir.display()
        ))
    }

    /// The applied record of `resource`.
    pub fn record(&self, resource: &str) -> Record {
        // Resource names are checked to be plain file names by the config.
        Record::at(self.dir.join(RECORDS).join(resource))
    }

    /// Records of resources not in `configured`: what a previous run
    /// applied for a resource since removed from the config.
    pub fn orphans(&self, configured: &[&str]) -> Vec<(String, Record)> {
        let Ok(dir) = std::fs::read_dir(self.dir.join(RECORDS)) else {
            return Vec::new();
        };
        let mut found: Vec<(String, Record)> = dir
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            // `.NAME.tmpPID`: a write that a crash cut short (`write_whole`).
            .filter(|name| !name.starts_with('.'))
            .filter(|name| !configured.contains(&name.as_str()))
            .map(|name| {
                let r = self.record(&name);
                (name, r)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

/// What a record says: enough to undo a resource without its config.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub lock: String,
    pub actions: Vec<ActionSpec>,
}

impl Applied {
    /// What makes this record unfit to run, as the config's validators
    /// would have refused it: empty argv, a unit name or prefix length
    /// that cannot be, a timeout past a day or zero.
    pub fn problem(&self) -> Option<String> {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let timeout = |t: Duration| (t.is_zero() || t > DAY).then(|| format!("timeout {t:?}"));
        if self.lock.is_empty() {
            return Some("no lock".into());
        }
        self.actions.iter().find_map(|a| match a {
            ActionSpec::Exec(e) => [&e.acquire, &e.release]
                .into_iter()
                .flatten()
                .find(|argv| argv.first().is_none_or(|p| p.is_empty()))
                .map(|_| "an exec step with no program".to_string())
                .or_else(|| timeout(e.timeout)),
            ActionSpec::Vip(v) => {
                let max = if v.address.is_ipv4() { 32 } else { 128 };
                if v.prefix_len > max {
                    Some(format!("prefix length {}", v.prefix_len))
                } else if v.interface.is_empty() || v.interface.len() > 15 {
                    Some(format!("interface {:?}", v.interface))
                } else if v.announce_count > 100 || v.announce_interval > DAY || v.refresh > DAY {
                    Some("announcements out of range".into())
                } else {
                    timeout(v.timeout)
                }
            }
            ActionSpec::Unit(u) => {
                if u.unit.is_empty() || u.unit.contains('/') || u.unit.len() > 255 {
                    Some(format!("unit {:?}", u.unit))
                } else {
                    timeout(u.timeout)
                }
            }
        })
    }
}

/// "This instance may have applied `resource`'s acquire steps."
#[derive(Debug, Clone)]
pub struct Record {
    path: PathBuf,
}

impl Record {
    pub fn at(path: PathBuf) -> Record {
        Record { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Written before the first acquire step runs, with what undoes it.
    pub fn mark(&self, applied: &Applied) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let body = serde_json::to_vec(applied).map_err(|e| e.to_string())?;
        write_whole(&self.path, &body).map_err(|e| {
            format!(
                "cannot write the applied record {}: {e}",
                self.path.display()
            )
        })
    }

    /// What the record says was applied; Err if it cannot tell (written by
    /// an older version, or damaged).
    pub fn read(&self) -> Result<Applied, String> {
        let body = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let applied: Applied = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{} does not say what was applied ({e})",
                self.path.display()
            )
        })?;
        // Run without the config's validators: judged as strictly here,
        // so a damaged or hand-edited record is refused, never run.
        match applied.problem() {
            None => Ok(applied),
            Some(p) => Err(format!(
                "{} is not a record this version would write ({p}); left in place",
                self.path.display()
            )),
        }
    }

    /// Removed once the release steps succeeded.
    pub fn clear(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

/// Writes `body` to `path` whole or not at all: to a temporary name in the
/// same dir, then renamed over it. A full runtime dir (ENOSPC) used to
/// leave an empty record, which cannot say what to undo.
pub fn write_whole(path: &Path, body: &[u8]) -> std::io::Result<()> {
    write_whole_with(path, |f| f.write_all(body))
}

fn write_whole_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let r = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| write(&mut f))
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExecSpec;
    use std::time::Duration;

    #[test]
    fn records_the_config_would_refuse_are_refused() {
        use crate::config::UnitSpec;
        let with = |a: ActionSpec| Applied {
            lock: "web".into(),
            actions: vec![a],
        };
        let exec = |release: Vec<String>, timeout| {
            with(ActionSpec::Exec(ExecSpec {
                acquire: None,
                release: Some(release),
                timeout,
                env: Default::default(),
            }))
        };
        let s3 = Duration::from_secs(3);
        assert_eq!(exec(vec!["/bin/true".into()], s3).problem(), None);
        assert!(exec(vec![], s3).problem().is_some());
        assert!(exec(vec!["".into()], s3).problem().is_some());
        assert!(
            exec(vec!["/bin/true".into()], Duration::ZERO)
                .problem()
                .is_some()
        );
        let unit = |u: &str| {
            with(ActionSpec::Unit(UnitSpec {
                unit: u.into(),
                timeout: s3,
            }))
            .problem()
        };
        assert_eq!(unit("nginx.service"), None);
        assert!(unit("../x.service").is_some());
        assert!(unit("").is_some());
    }

    #[test]
    fn a_record_says_what_to_undo_and_orphans_are_the_unconfigured() {
        let dir = tempfile::tempdir().unwrap();
        let inst = Instance::take(dir.path()).unwrap();
        let applied = Applied {
            lock: "web-lock".into(),
            actions: vec![ActionSpec::Exec(ExecSpec {
                acquire: None,
                release: Some(vec!["/bin/true".into()]),
                timeout: Duration::from_secs(3),
                env: Default::default(),
            })],
        };
        inst.record("web").mark(&applied).unwrap();
        inst.record("db").mark(&applied).unwrap();
        let back = inst.record("web").read().unwrap();
        assert_eq!(back.lock, "web-lock");
        assert_eq!(back.actions, applied.actions);
        let orphans: Vec<String> = inst.orphans(&["db"]).into_iter().map(|o| o.0).collect();
        assert_eq!(orphans, ["web"]);
        // A failed write (ENOSPC) leaves nothing behind, not an empty record.
        let failed = write_whole_with(inst.record("full").path(), |f| {
            f.write_all(b"{")?;
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        });
        assert!(failed.is_err());
        assert!(!inst.record("full").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(RECORDS)).unwrap().count(),
            2,
            "no temporary file left"
        );
        // A second instance of the runtime dir is refused, even once the
        // dir (and the instance.lock in it) is gone.
        std::fs::remove_dir_all(dir.path()).unwrap();
        let e = Instance::take(dir.path()).err().expect("refused");
        assert!(e.contains("another dlm-electd instance"), "{e}");
        std::fs::create_dir_all(dir.path().join(RECORDS)).unwrap();
        // An empty record (older versions) cannot be read back.
        std::fs::write(inst.record("old").path(), "").unwrap();
        assert!(inst.record("old").read().is_err());
    }
}
