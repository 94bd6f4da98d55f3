//! Workload locks: a lock that guards a start decided elsewhere (a VM, a
//! job) instead of electing a node. `dlm-electd run-locked NAME -- PROGRAM`
//! is the cluster-wide flock(1).
//!
//! A workload lock NAME is two locks, always taken in this order:
//! 1. a node-local `flock` on `RUNTIME_DIR/workload/NAME.lock`: dlmfs locks
//!    are per node (a second local open of a held lock succeeds), so
//!    exclusion between processes of one node must come from here;
//! 2. the cluster lock `@NAME` in the configured backend and domain (dlmfs:
//!    `/dlm/DOMAIN/@NAME`; file: `DIR/@NAME.lock`). The `@` prefix is
//!    reserved: election lock names may not start with it (config
//!    validation), so the two never collide.
//!
//! Both fds are handed to the program (every other fd stays CLOEXEC): a
//! `run-locked` killed with SIGKILL cannot free the lock while its program
//! still runs. On `file` the OFD lock lives while any copy of the fd is
//! open; on dlmfs the node keeps the lock while a local process holds the
//! fd, and keeps it *cached* after the last close until someone unlinks the
//! file. `run-locked` unlinks after the program ended; after a kill,
//! [`drop_stale`] (`cleanup`) or `unlock NAME` unlinks the cached locks
//! that no local process holds. They take the name's local flock before the
//! unlink, so they never race a local trylock of the same lock (that race
//! hangs the kernel: docs/dlmfs.md §1.4) and never touch a lock a running
//! program holds. `run-locked` does not sweep other names at its start:
//! holding another name's flock for the sweep would make a concurrent
//! `run-locked` of that name see "busy" that is not.
//!
//! On the `dlm` backend the cluster lock is an fs/dlm lock `@NAME` in the
//! configured lockspace, on an open of the lockspace device of its own
//! (that fd is the one the program inherits), and a `--wait` waits in the
//! DLM's queue instead of polling: see `dlm`.
//!
//! Every cluster lock call runs on a thread of its own under `op_timeout`:
//! a dlmfs open may sleep in the kernel while the DLM recovers a dead node,
//! and so may an fs/dlm write.
//!
//! The parts, each importing only those below it: `names` (allowed names,
//! paths), `error`, `local` (the node-local lock, bounded calls), `dlm`
//! (the cluster lock on fs/dlm and the lockspace create it owes), `take`
//! (the two locks), `watch` (a holder's look at its `file` lock's names),
//! `held` (`lock`/`unlock`: holder processes and their records), `stale`
//! (what dead holders left), `run` (`run-locked`).

mod dlm;
mod error;
pub mod held;
mod local;
mod names;
mod run;
mod stale;
mod take;
mod watch;

pub use error::WorkloadError;
pub use names::{MAX_NAME, MAX_WAIT, PREFIX, name_problem};
pub use run::run_locked;
pub use stale::drop_stale;
