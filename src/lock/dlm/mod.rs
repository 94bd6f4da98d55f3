//! The kernel's generic DLM (fs/dlm: corosync and dlm_controld), spoken
//! through its userspace device protocol rather than libdlm, so that the
//! static binary links nothing (issue #22; docs/dlm.md says why and what
//! the kernel does). `layout` is the header's offsets and constants,
//! `wire` encodes requests and decodes results (both pure), `device` has
//! the fds.
//!
//! Imports nothing of the crate (only libc, nix, thiserror), so the probe
//! in tests/corosync/dlmprobe builds it from these files alone.

pub mod device;
pub mod layout;
pub mod wire;

pub use device::{Control, DlmError, Lockspace, Paths, lockspace_minor};
pub use layout::{Flags, Mode};
pub use wire::{Ask, Event, Status};
