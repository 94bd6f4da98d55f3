//! Building a lock backend from its settings. Apart from the trait in
//! `lock/mod.rs` so that `mod.rs` names none of its children's types (they
//! import the trait from it: naming them back would tie a circle).

use super::dlmfs::DlmfsBackend;
use super::file::FileBackend;
use super::fsdlm::FsDlmBackend;
use super::{Backend, LockBackend, Standby};
use std::path::Path;
use std::sync::Arc;

/// A backend's settings as plain values, so the lock layer needs nothing
/// of `config`: `dir` and `standby` are the `file` backend's, `mount` and
/// `domain` dlmfs's, `lockspace` dlm's; `runtime_dir` the instance's (the
/// dlm backend keeps a marker there while it has joined its lockspace).
pub struct Settings<'a> {
    pub kind: Backend,
    pub dir: &'a Path,
    pub standby: Standby,
    pub mount: &'a Path,
    pub domain: &'a str,
    pub lockspace: &'a str,
    pub node: &'a str,
    pub runtime_dir: &'a Path,
}

/// The backend without a lock keeper (the daemon builds its `file` backend
/// with one: see `daemon`).
pub fn backend(s: &Settings) -> Arc<dyn LockBackend> {
    match s.kind {
        Backend::File => Arc::new(FileBackend::new(s.dir.to_path_buf(), s.standby).as_node(s.node)),
        Backend::Dlmfs => Arc::new(DlmfsBackend::new(
            s.mount.to_path_buf(),
            s.domain.to_string(),
            s.node,
        )),
        Backend::Dlm => Arc::new(
            FsDlmBackend::new(s.lockspace, s.standby)
                .with_marker(s.runtime_dir.join(super::fsdlm::MARKER)),
        ),
    }
}
