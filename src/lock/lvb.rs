//! Locks that carry a value: the DLM's lock value block (LVB), on dlmfs and
//! on fs/dlm. `status --cluster` keeps each node's record in them
//! (`cluster::store`), so the cluster is read through the lock manager
//! itself. The `file` backend has none (its records are files).
//!
//! The DLM hands a lock's value to the next holder: a writer takes the lock
//! EX, sets the value and lets it down (dlmfs: a close, the value goes
//! with the downconvert another node's request causes; fs/dlm: a
//! conversion to NL, which we keep so the value outlives the write); a
//! reader takes PR and gets the value with the grant. Both wait in the DLM
//! queue, never in a loop of trylocks: a dlmfs trylock sends the holder no
//! blocking AST, so a lock cached at EX on an idle node would refuse it
//! forever (docs/dlmfs.md §1.2). Waits are short (the other side holds the
//! lock for one write or read) but can last a node's recovery: callers run
//! them on threads of their own.

use super::dlm::{Ask, Flags, Lockspace, Mode, Status};
use super::{LockError, ValueLocks};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode as Perm;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// dlmfs: lock files in the domain directory. A file's content is its
/// 64-byte LVB (docs/dlmfs.md §1.5).
pub struct DlmfsValues {
    dir: PathBuf,
    held: Mutex<HashMap<String, File>>,
    /// Root of sysfs (configfs is under it).
    sysfs: PathBuf,
}

impl DlmfsValues {
    pub fn new(dir: PathBuf, sysfs: PathBuf) -> DlmfsValues {
        DlmfsValues {
            dir,
            held: Mutex::new(HashMap::new()),
            sysfs,
        }
    }

    fn open(&self, name: &str, flags: OFlag) -> Result<Option<File>, LockError> {
        let path = self.dir.join(name);
        match nix::fcntl::open(
            &path,
            flags | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Perm::from_bits_truncate(0o600),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ETXTBSY) | Err(Errno::EAGAIN) if flags.contains(OFlag::O_NONBLOCK) => {
                Ok(None)
            }
            Err(e) => Err(LockError::Failed(format!(
                "cannot open {}: {e}",
                path.display()
            ))),
        }
    }

    /// A blocking open: queued in the DLM (a BAST makes an idle holder's
    /// node let go). On o2cb it sleeps only while another process really
    /// holds the lock, or during a recovery.
    fn wait_open(&self, name: &str, flags: OFlag) -> Result<File, LockError> {
        self.open(name, flags)?
            .ok_or_else(|| LockError::Failed(format!("{name}: no lock")))
    }
}

impl ValueLocks for DlmfsValues {
    fn value_len(&self) -> usize {
        64
    }

    /// The node keeps the lock cached at EX, then at PR once another
    /// node read it: either keeps the value, unless this node dies while
    /// at EX (o2cb's recovery zeroes it then).
    fn write(&self, name: &str, value: &[u8], _shared: bool) -> Result<(), LockError> {
        let f = self.wait_open(name, OFlag::O_RDWR)?;
        let mut buf = [0u8; 64];
        buf[..value.len()].copy_from_slice(value);
        // The whole 64 bytes: a write keeps the bytes it does not cover.
        f.write_all_at(&buf, 0)
            .map_err(|e| LockError::Failed(format!("cannot write lock {name}'s value: {e}")))
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, LockError> {
        let f = self.wait_open(name, OFlag::O_RDONLY)?;
        let mut buf = vec![0u8; 64];
        let n = f
            .read_at(&mut buf, 0)
            .map_err(|e| LockError::Failed(format!("cannot read lock {name}'s value: {e}")))?;
        // EOF: invalid; all zero: never written, or zeroed by recovery
        // because its writer's node died holding EX (o2cb).
        buf.truncate(n);
        Ok((n > 0 && buf.iter().any(|&b| b != 0)).then_some(buf))
    }

    /// Up to [`PARALLEL`] opens at once: each waits on a round trip (or a
    /// holder's downconvert) far more than on the CPU.
    fn read_many(&self, names: &[String]) -> Vec<Result<Option<Vec<u8>>, LockError>> {
        in_parallel(names, |n| self.read(n))
    }

    fn hold(&self, name: &str, wait: bool) -> Result<bool, LockError> {
        let flags = if wait {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDWR | OFlag::O_NONBLOCK
        };
        let Some(f) = self.open(name, flags)? else {
            return Ok(false);
        };
        self.held.lock().unwrap().insert(name.to_string(), f);
        Ok(true)
    }

    /// Closes it. The node keeps the lock cached at EX until another
    /// node's queued request: a guard (waited for) needs no more.
    fn let_go(&self, name: &str) {
        self.held.lock().unwrap().remove(name);
    }

    /// A PR trylock. Granted (nobody holds it): the grant would stay
    /// cached on this node and refuse the holder's next trylock, so the
    /// file is unlinked at once, which unlocks it (§1.4; only one probe of
    /// a name runs at a time on a node: the caller's job).
    fn held(&self, name: &str) -> Result<bool, LockError> {
        match self.open(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)? {
            None => Ok(true),
            Some(f) => {
                drop(f);
                match nix::unistd::unlink(&self.dir.join(name)) {
                    Ok(()) | Err(Errno::ENOENT) | Err(Errno::EBUSY) => Ok(false),
                    Err(e) => Err(LockError::Failed(format!(
                        "cannot unlink probe {name}: {e}"
                    ))),
                }
            }
        }
    }

    /// Closes what it holds and unlinks those files: a lock cached at EX
    /// after its holder left would keep answering "held" to every other
    /// node's probe.
    fn close(&self) {
        let held: Vec<String> = self.held.lock().unwrap().drain().map(|(n, _)| n).collect();
        for name in held {
            let _ = nix::unistd::unlink(&self.dir.join(name));
        }
    }

    /// `/sys/kernel/config/cluster/CLUSTER/node/NAME`: o2cb's node names
    /// (each the node's hostname, which o2cb requires).
    fn stack_nodes(&self) -> Vec<String> {
        let clusters = self.sysfs.join("kernel/config/cluster");
        let mut names: Vec<String> = std::fs::read_dir(clusters)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|c| {
                std::fs::read_dir(c.path().join("node"))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .filter_map(|n| n.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// How many dlmfs opens a read has under way at once.
const PARALLEL: usize = 8;

/// `f` of each of `items`, in order, up to [`PARALLEL`] at a time.
fn in_parallel<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    if items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(PARALLEL);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<T>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("a read thread panicked"))
            .collect()
    })
}

/// fs/dlm: locks through one open of the lockspace device (so they go
/// with the process). After a write the lock is kept, which keeps the
/// value (a resource nobody holds is forgotten, value and all): at PR,
/// which readers share and which keeps the value through a recovery; a
/// `shared` lock at NL, since another writer's EX must get past it, and
/// after a recovery (a node died or left the lockspace) a value held only
/// at NL or CR is invalid (`recover_lvb` in fs/dlm/recover.c; seen in the
/// corosync tier: the roster was gone after a node's daemon stopped).
pub struct FsDlmValues {
    ls: Mutex<Option<Lockspace>>,
    /// Lock ids by name: PR or NL after a write, EX while held.
    locks: Mutex<HashMap<String, u32>>,
    within: Duration,
    /// corosync's node names (the backend's: it runs corosync's tools).
    stack_nodes: fn() -> Vec<String>,
}

impl FsDlmValues {
    /// `within`: how long a result is awaited.
    pub fn new(ls: Lockspace, within: Duration, stack_nodes: fn() -> Vec<String>) -> FsDlmValues {
        FsDlmValues {
            ls: Mutex::new(Some(ls)),
            locks: Mutex::new(HashMap::new()),
            within,
            stack_nodes,
        }
    }

    /// One call on the device and its completion, with the LVB it brought.
    fn call(
        &self,
        name: &str,
        start: impl FnOnce(&Lockspace) -> Result<u32, super::dlm::DlmError>,
    ) -> Result<Done, LockError> {
        let guard = self.ls.lock().unwrap();
        let ls = guard
            .as_ref()
            .ok_or_else(|| LockError::Failed("closed".into()))?;
        let lkid = start(ls).map_err(|e| LockError::Failed(e.to_string()))?;
        let deadline = std::time::Instant::now() + self.within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match ls.next_event(Some(left)) {
                Ok(Some(super::dlm::Event::Completion {
                    lkid: l,
                    status,
                    sb_flags,
                    lvb,
                    ..
                })) if l == lkid => return Ok((lkid, status, sb_flags, lvb)),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(LockError::Failed(format!(
                        "no answer from the DLM about {name} within {:?}",
                        self.within
                    )));
                }
                Err(e) => return Err(LockError::Failed(e.to_string())),
            }
        }
    }

    /// One request of `ask` for each of `names`, all written before any
    /// completion is awaited (one DLM round for the lot, not one per
    /// lock); each one's completion, in order. Then the granted ones are
    /// unlocked the same way when `unlock`.
    fn batch(&self, names: &[String], ask: &Ask) -> Vec<Result<Done, LockError>> {
        let guard = self.ls.lock().unwrap();
        let Some(ls) = guard.as_ref() else {
            return names
                .iter()
                .map(|_| Err(LockError::Failed("closed".into())))
                .collect();
        };
        let mut out: Vec<Option<Result<Done, LockError>>> = Vec::with_capacity(names.len());
        let mut pending = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            match ls.request(ask, n.as_bytes()) {
                Ok(lkid) => {
                    pending.insert(lkid, i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(LockError::Failed(e.to_string())))),
            }
        }
        let got = Self::completions(ls, pending, self.within, |lkid, st, fl, lvb| {
            (lkid, st, fl, lvb)
        });
        for (i, r) in got {
            out[i] = Some(r);
        }
        // Granted: unlocked, their completions read (nothing left behind).
        let granted: HashMap<u32, usize> = out
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Some(Ok((lkid, Status::Granted, _, _))) => Some((*lkid, i)),
                _ => None,
            })
            .filter(|(lkid, _)| ls.unlock(*lkid, Flags::NONE, None).is_ok())
            .collect();
        let _ = Self::completions(ls, granted, self.within, |_, _, _, _| ());
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(LockError::Failed("no answer from the DLM".into()))))
            .collect()
    }

    /// The completions of `pending` (lock id → index), read until each
    /// came or `within` passed; those that did not come are errors.
    fn completions<T>(
        ls: &Lockspace,
        mut pending: HashMap<u32, usize>,
        within: Duration,
        f: impl Fn(u32, Status, u8, Option<[u8; 32]>) -> T,
    ) -> Vec<(usize, Result<T, LockError>)> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + within;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match ls.next_event(Some(left)) {
                Ok(Some(super::dlm::Event::Completion {
                    lkid,
                    status,
                    sb_flags,
                    lvb,
                    ..
                })) => {
                    if let Some(i) = pending.remove(&lkid) {
                        out.push((i, Ok(f(lkid, status, sb_flags, lvb))));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let e = e.to_string();
                    out.extend(
                        pending
                            .drain()
                            .map(|(_, i)| (i, Err(LockError::Failed(e.clone())))),
                    );
                }
            }
        }
        out.extend(pending.into_values().map(|i| {
            (
                i,
                Err(LockError::Failed(format!(
                    "no answer from the DLM within {within:?}"
                ))),
            )
        }));
        out
    }

    fn expect(name: &str, what: &str, status: Status) -> Result<(), LockError> {
        match status {
            Status::Granted | Status::Unlocked => Ok(()),
            other => Err(LockError::Failed(format!(
                "{what} of {name} ended {other:?}"
            ))),
        }
    }
}

/// The answer of a batch of one.
fn one<T>(mut v: Vec<Result<T, LockError>>) -> Result<T, LockError> {
    v.pop()
        .unwrap_or_else(|| Err(LockError::Failed("no answer".into())))
}

/// A call's lock id, status, `DLM_SBF_*` flags and value.
type Done = (u32, Status, u8, Option<[u8; 32]>);

fn ask(mode: Mode, flags: Flags) -> Ask {
    Ask::plain(mode, flags)
}

impl ValueLocks for FsDlmValues {
    fn value_len(&self) -> usize {
        32
    }

    fn write(&self, name: &str, value: &[u8], shared: bool) -> Result<(), LockError> {
        let mut lvb = [0u8; 32];
        lvb[..value.len()].copy_from_slice(value);
        let known = self.locks.lock().unwrap().get(name).copied();
        let ex = ask(Mode::Ex, Flags::VALBLK);
        let lkid = match known {
            Some(lkid) => {
                let (_, st, _, _) =
                    self.call(name, |ls| ls.convert(&ex, lkid, None).map(|()| lkid))?;
                Self::expect(name, "conversion to EX", st)?;
                lkid
            }
            None => {
                let (lkid, st, _, _) = self.call(name, |ls| ls.request(&ex, name.as_bytes()))?;
                Self::expect(name, "EX request", st)?;
                self.locks.lock().unwrap().insert(name.to_string(), lkid);
                lkid
            }
        };
        // Down with the value: the conversion from EX writes it.
        let down = ask(if shared { Mode::Nl } else { Mode::Pr }, Flags::VALBLK);
        let (_, st, _, _) = self.call(name, |ls| {
            ls.convert(&down, lkid, Some(&lvb)).map(|()| lkid)
        })?;
        Self::expect(name, "conversion down", st)
    }

    /// A batch of one (see `read_many`).
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, LockError> {
        one(self.read_many(&[name.to_string()]))
    }

    fn hold(&self, name: &str, wait: bool) -> Result<bool, LockError> {
        let flags = if wait { Flags::NONE } else { Flags::NOQUEUE };
        let (lkid, st, _, _) = self.call(name, |ls| {
            ls.request(&ask(Mode::Ex, flags), name.as_bytes())
        })?;
        match st {
            Status::Granted => {
                self.locks.lock().unwrap().insert(name.to_string(), lkid);
                Ok(true)
            }
            Status::Busy => Ok(false),
            other => Err(LockError::Failed(format!(
                "EX request of {name} ended {other:?}"
            ))),
        }
    }

    fn let_go(&self, name: &str) {
        let Some(lkid) = self.locks.lock().unwrap().remove(name) else {
            return;
        };
        let _ = self.call(name, |ls| ls.unlock(lkid, Flags::NONE, None).map(|()| lkid));
    }

    /// All requested at once, then all answers (see `batch`).
    fn read_many(&self, names: &[String]) -> Vec<Result<Option<Vec<u8>>, LockError>> {
        self.batch(names, &ask(Mode::Pr, Flags::VALBLK))
            .into_iter()
            .zip(names)
            .map(|(r, n)| {
                let (_, st, sb_flags, lvb) = r?;
                Self::expect(n, "PR request", st)?;
                Ok(lvb
                    .filter(|v| sb_flags & 2 == 0 && v.iter().any(|&b| b != 0))
                    .map(|v| v.to_vec()))
            })
            .collect()
    }

    /// NOQUEUE PR requests (no BAST), the granted ones unlocked at once.
    fn held_many(&self, names: &[String]) -> Vec<Result<bool, LockError>> {
        self.batch(names, &ask(Mode::Pr, Flags::NOQUEUE))
            .into_iter()
            .zip(names)
            .map(|(r, n)| match r?.1 {
                Status::Busy => Ok(true),
                Status::Granted => Ok(false),
                other => Err(LockError::Failed(format!(
                    "PR probe of {n} ended {other:?}"
                ))),
            })
            .collect()
    }

    /// A batch of one (see `held_many`).
    fn held(&self, name: &str) -> Result<bool, LockError> {
        one(self.held_many(&[name.to_string()]))
    }

    /// Closes the device: the kernel unlocks all of it (nothing is
    /// PERSISTENT here).
    fn close(&self) {
        self.locks.lock().unwrap().clear();
        self.ls.lock().unwrap().take();
    }

    fn stack_nodes(&self) -> Vec<String> {
        (self.stack_nodes)()
    }
}
