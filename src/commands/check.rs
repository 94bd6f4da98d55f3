//! `check-config`: the config's own checks (in `load`), then what the
//! running system says about it: the dlmfs stack, the dlm backend's
//! fencing and quorum, the file backend's reach, a drain recorded.

use super::{load, lock_reach, preferences};
use crate::config;
use crate::exit;
use std::path::Path;

/// `dlm-electd check-config`: the exit code.
pub(super) fn check_config(path: &Path) -> i32 {
    match load(path, true) {
        Ok(c) => {
            // On a node of a cluster whose stack is not o2cb, the dlmfs
            // backend would hang (docs/dlmfs.md): say so now.
            if c.lock.backend == config::Backend::Dlmfs
                && let Some(m) = crate::lock::dlmfs::cluster_stack_problem(Path::new(
                    crate::lock::dlmfs::SYSFS_ROOT,
                ))
            {
                eprintln!("{}: key `lock.backend`: {m}", path.display());
                return exit::CONFIG;
            }
            // What the dlm backend's start would judge of the cluster.
            let fencing = match c.lock.backend {
                config::Backend::Dlm => {
                    use crate::lock::fsdlm::{Fencing, fencing};
                    let f = Fencing::judge(fencing(), c.lock.allow_unfenced);
                    if f == Fencing::Off {
                        eprintln!("{}: key `lock.backend`: {}", path.display(), f.describe());
                        return exit::CONFIG;
                    }
                    Some(f.describe())
                }
                _ => None,
            };
            println!(
                "{}: ok, {} resource(s), {} backend",
                path.display(),
                c.resources.len(),
                c.lock.backend
            );
            // Where the `file` backend's locks reach (judged in `load`).
            if let Some(reach) = lock_reach(&c) {
                println!("locks: {reach}");
            }
            if let Some(f) = fencing {
                println!("fencing: {f}");
                // What the daemon's quorum watch would see now.
                match crate::lock::fsdlm::quorate() {
                    Ok(true) => println!("quorum: this node is quorate"),
                    Ok(false) => println!(
                        "quorum: this node is NOT quorate: `run` starts but competes for nothing until it is"
                    ),
                    Err(why) => println!(
                        "quorum: cannot tell ({why}): `run` competes for nothing until it can"
                    ),
                }
                println!(
                    "lockspace: {}",
                    crate::lock::fsdlm::lockspace_state(&c.lock.lockspace)
                );
            }
            // A drain recorded for this node (also one the daemon
            // would read as damaged): `run` starts drained.
            if let Some(d) = crate::drain::read(&c.daemon.state_dir) {
                println!(
                    "drain: {} (recorded in {}): `run` competes for nothing until `dlm-electd undrain`",
                    d.describe(),
                    crate::drain::path(&c.daemon.state_dir).display()
                );
            }
            print!("{}", preferences(&c));
            exit::OK
        }
        Err(code) => code,
    }
}
