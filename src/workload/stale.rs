//! Dropping what dead holders left: dlmfs locks this node keeps cached
//! with no local holder, and `lock`'s records of holders that are gone.

use super::error::WorkloadError;
use super::held::forget_dead;
use super::local::{bounded, try_local};
use super::names::{PREFIX, name_problem, record_path};
use crate::config::{Backend, Config};
use crate::lock::dlmfs;
use nix::errno::Errno;
use std::path::Path;

/// dlmfs: unlinks every workload lock this node keeps cached while no local
/// process holds it (a `run-locked` killed with SIGKILL whose program has
/// ended since). Each under the name's local flock: a name whose flock is
/// held is in use and left alone. Returns the names dropped. Nothing to do
/// on `file` (the kernel drops an OFD lock with its last fd). dlm: gives
/// back the lockspace creates such holders left (`workload::dlm`).
pub fn drop_stale(cfg: &Config) -> Result<Vec<String>, WorkloadError> {
    if cfg.lock.backend == Backend::Dlm {
        let rt = &cfg.daemon.runtime_dir;
        let mut names = super::dlm::drop_stale(rt, cfg.daemon.op_timeout)?;
        names.extend(forget_dead(rt));
        names.sort();
        names.dedup();
        return Ok(names);
    }
    if cfg.lock.backend != Backend::Dlmfs {
        // The kernel dropped a dead holder's lock with its fds: only its
        // record is left to clear.
        return Ok(forget_dead(&cfg.daemon.runtime_dir));
    }
    // Like clear_stale: no dlmfs call at all on a refused stack.
    if let Some(m) = dlmfs::cluster_stack_problem(Path::new(dlmfs::SYSFS_ROOT)) {
        return Err(WorkloadError::Stack(m));
    }
    let dir = cfg.lock.mount.join(&cfg.lock.domain);
    let runtime_dir = cfg.daemon.runtime_dir.clone();
    bounded(
        cfg.daemon.op_timeout,
        "dropping stale workload locks",
        move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                Err(source) => return Err(WorkloadError::List { dir, source }),
            };
            let mut dropped = vec![];
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
                    continue;
                };
                if name_problem(name).is_some() {
                    continue;
                }
                let Some(_local) = try_local(&runtime_dir, name)? else {
                    continue; // a local run-locked or its program has it
                };
                match nix::unistd::unlink(&entry.path()) {
                    Ok(()) => {
                        // A `lock` holder that died (its flock is free) left this.
                        let _ = std::fs::remove_file(record_path(&runtime_dir, name));
                        dropped.push(name.to_string())
                    }
                    Err(Errno::ENOENT) | Err(Errno::EBUSY) => {}
                    Err(errno) => {
                        return Err(WorkloadError::Unlink {
                            path: entry.path(),
                            errno,
                        });
                    }
                }
            }
            Ok(dropped)
        },
    )
}
