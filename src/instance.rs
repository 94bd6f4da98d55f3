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

/// Why the runtime dir could not be taken. Apart from `NotPrivate` and the
/// two "another instance" cases, each is a system call that failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot create runtime dir {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot stat runtime dir {}: {source}", dir.display())]
    Stat {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot chmod runtime dir {}: {source}", dir.display())]
    Chmod {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// An existing dir that others may enter or that is not ours: it may be
    /// shared (`/run`, `/var/lib`), so it is not chmodded to 0700 for us.
    #[error(
        "runtime dir {} is not private to dlm-electd ({why}): refusing to use it, and not changing its mode, since it may be shared with other services; point `daemon.runtime_dir` at a directory of its own (a missing one is created with mode 0700), or `chmod 0700` this one if it is dlm-electd's alone",
        dir.display()
    )]
    NotPrivate { dir: PathBuf, why: String },
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The instance lock is held: another daemon (or `cleanup`) runs.
    #[error("another dlm-electd instance holds {} (pid {pid}); one daemon per runtime_dir", path.display())]
    Held { path: PathBuf, pid: String },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("cannot name the instance socket: {0}")]
    SocketName(std::io::Error),
    /// The abstract socket is bound: another daemon runs, its
    /// `instance.lock` possibly deleted.
    #[error("another dlm-electd instance runs with runtime dir {} (its instance.lock may have been deleted with the directory); one daemon per runtime_dir", dir.display())]
    SocketHeld { dir: PathBuf },
    #[error("cannot bind the instance socket: {0}")]
    SocketBind(std::io::Error),
}

/// Why an applied record could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("cannot write the applied record {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Written by an older version, or damaged.
    #[error("{} does not say what was applied ({source})", path.display())]
    Unreadable {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Readable, but what it says is not something this version would run.
    #[error("{} is not a record this version would write ({problem}); left in place", path.display())]
    Refused { path: PathBuf, problem: String },
}

/// Binds the abstract unix socket named after `runtime_dir` (canonical):
/// one per runtime dir while its daemon lives. The flock on
/// `instance.lock` alone is lost with the file: `rm -rf` of the runtime dir
/// under a running daemon let a second one start beside it. An abstract
/// socket name has no file and goes only with the process (per network
/// namespace: daemons in different namespaces rely on the flock alone).
fn instance_socket(runtime_dir: &Path) -> Result<std::os::unix::net::UnixDatagram, InstanceError> {
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
    let addr = SocketAddr::from_abstract_name(&name).map_err(InstanceError::SocketName)?;
    UnixDatagram::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            InstanceError::SocketHeld {
                dir: runtime_dir.to_path_buf(),
            }
        } else {
            InstanceError::SocketBind(e)
        }
    })
}

/// The runtime dir, private: the control socket, the applied records and
/// the hook tracking live there, so nobody else may enter.
///
/// A missing dir is created (parents too) with mode 0700. An existing one
/// must already be private, owned by our user with no access for group or
/// others; it is never chmodded. Earlier versions forced any existing dir
/// to 0700, which locked other services out of a shared one (`/run`,
/// `/var/lib`) named by mistake, and nothing said so (issue #19, item 14).
fn private_dir(dir: &Path) -> Result<(), InstanceError> {
    let created = match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Parents first, 0700 like before; then the dir itself, unless
            // someone was quicker.
            if let Some(parent) = dir.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|source| InstanceError::CreateDir {
                        dir: dir.to_path_buf(),
                        source,
                    })?;
            }
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(source) => {
                    return Err(InstanceError::CreateDir {
                        dir: dir.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Err(source) => {
            return Err(InstanceError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    if created {
        // Ours: 0700 whatever the umask took away.
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| InstanceError::Chmod {
                dir: dir.to_path_buf(),
                source,
            },
        );
    }
    let md = std::fs::metadata(dir).map_err(|source| InstanceError::Stat {
        dir: dir.to_path_buf(),
        source,
    })?;
    match crate::config::security::not_private(&md) {
        None => Ok(()),
        Some(why) => Err(InstanceError::NotPrivate {
            dir: dir.to_path_buf(),
            why,
        }),
    }
}

impl Instance {
    /// Makes sure of a private runtime dir (see [`private_dir`]) and takes
    /// the instance lock: one daemon (or cleanup) per runtime dir. dlmfs
    /// locks are per node, so a second daemon on the node would "win" the
    /// same locks; this flock prevents it.
    pub fn take(runtime_dir: &Path) -> Result<Instance, InstanceError> {
        private_dir(runtime_dir)?;
        let path = runtime_dir.join(INSTANCE_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(|source| InstanceError::Open {
                path: path.clone(),
                source,
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                return Err(InstanceError::Held {
                    path,
                    pid: pid.trim().to_string(),
                });
            }
            Err((_, source)) => return Err(InstanceError::Lock { path, source }),
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
        records_in(&self.dir)
            .into_iter()
            .filter(|(name, _)| !configured.contains(&name.as_str()))
            .collect()
    }
}

/// Every applied record in `runtime_dir`, by resource name in order.
pub fn records_in(runtime_dir: &Path) -> Vec<(String, Record)> {
    let records = runtime_dir.join(RECORDS);
    let Ok(dir) = std::fs::read_dir(&records) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Record)> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        // `.NAME.tmpPID`: a write that a crash cut short (`write_whole`).
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            let r = Record::at(records.join(&name));
            (name, r)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
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
    pub fn mark(&self, applied: &Applied) -> Result<(), RecordError> {
        if let Some(dir) = self.path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| RecordError::CreateDir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
        }
        let body = serde_json::to_vec(applied).map_err(RecordError::Encode)?;
        write_whole(&self.path, &body).map_err(|source| RecordError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// What the record says was applied; Err if it cannot tell (written by
    /// an older version, or damaged).
    pub fn read(&self) -> Result<Applied, RecordError> {
        let body = std::fs::read(&self.path).map_err(|source| RecordError::Read {
            path: self.path.clone(),
            source,
        })?;
        let applied: Applied =
            serde_json::from_slice(&body).map_err(|source| RecordError::Unreadable {
                path: self.path.clone(),
                source,
            })?;
        // Run without the config's validators: judged as strictly here,
        // so a damaged or hand-edited record is refused, never run.
        match applied.problem() {
            None => Ok(applied),
            Some(problem) => Err(RecordError::Refused {
                path: self.path.clone(),
                problem,
            }),
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
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("run");
        let inst = Instance::take(&dir).unwrap();
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
            std::fs::read_dir(dir.join(RECORDS)).unwrap().count(),
            2,
            "no temporary file left"
        );
        // A second instance of the runtime dir is refused, even once the
        // dir (and the instance.lock in it) is gone.
        std::fs::remove_dir_all(&dir).unwrap();
        let e = Instance::take(&dir).err().expect("refused");
        assert!(matches!(e, InstanceError::SocketHeld { .. }), "{e}");
        assert!(e.to_string().contains("another dlm-electd instance"), "{e}");
        std::fs::create_dir_all(dir.join(RECORDS)).unwrap();
        // An empty record (older versions) cannot be read back.
        std::fs::write(inst.record("old").path(), "").unwrap();
        assert!(inst.record("old").read().is_err());
    }

    /// Issue #19, item 14: an existing directory that others may enter
    /// (`/run`, `/var/lib`) was forced to 0700. Now it is refused and left
    /// as it is; a dir we create is 0700, an existing private one is used.
    #[test]
    fn a_shared_runtime_dir_is_refused_not_chmodded() {
        use std::os::unix::fs::PermissionsExt;
        let top = tempfile::tempdir().unwrap();
        let shared = top.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Instance::take(&shared).err().expect("refused");
        assert!(matches!(e, InstanceError::NotPrivate { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("mode 755") && text.contains("`daemon.runtime_dir`"),
            "{text}"
        );
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "left as it was");
        assert!(
            !shared.join(INSTANCE_LOCK).exists(),
            "nothing written there"
        );

        // One we create, parents too: 0700 whatever the umask.
        let fresh = shared.join("a/run");
        drop(Instance::take(&fresh).unwrap());
        for d in [&fresh, &shared.join("a")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        // An existing private one, as systemd's RuntimeDirectoryMode=0700
        // makes it, is used as it is.
        drop(Instance::take(&fresh).unwrap());
        // Group access alone is enough to refuse.
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert!(matches!(
            Instance::take(&fresh),
            Err(InstanceError::NotPrivate { .. })
        ));
        // Not a directory at all.
        let file = top.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = Instance::take(&file).err().expect("refused");
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
