//! The whole cluster at a glance (`dlm-electd status --cluster`), read
//! through the lock manager itself, never over SSH or a side channel.
//!
//! Every daemon publishes its node's view (its status report: each
//! resource's state, since when, a hold-off, health, the drain) as a
//! *node record*, and proves it runs by holding a *presence lock*; a
//! reader combines every node's record with whether each resource's lock
//! is held (`LockBackend::held`), and trusts a record only while its
//! presence lock is held. So a dead node shows as down as soon as the
//! lock manager has freed its presence lock, and a master is named only
//! when exactly one running node says so *and* the lock is held; anything
//! else is said as unknown, with why, never a stale master as fact.
//!
//! Where records live is the backend's: `file` keeps them beside the lock
//! files (`LOCK_DIR/.nodes/`, so on a cluster filesystem every node reads
//! every other's); dlmfs and dlm keep them in lock value blocks, read by
//! the daemon for its `status --cluster` client (a dlmfs lock call can
//! sleep through a recovery: a daemon's thread can wait that out, a
//! client could not even exit).
//!
//! `record` (what a node publishes), `file` (the `file` backend's
//! records: the daemon's publisher, the client's reader), `chunks` (pure:
//! a record as lock values), `store` (the records in lock values: the
//! daemon's publisher and reader), `view` (pure: records and lock probes
//! into one row per resource).

pub mod chunks;
pub mod file;
pub mod record;
pub mod store;
pub mod view;

pub use record::NodeRecord;
pub use view::{ClusterView, Held, Master, NodeSeen};
