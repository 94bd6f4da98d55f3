//! Building a lock backend from its settings. Apart from the trait in
//! `lock/mod.rs` so that `mod.rs` names none of its children's types (they
//! import the trait from it: naming them back would tie a circle).

use super::dlmfs::DlmfsBackend;
use super::file::FileBackend;
use super::fsdlm::FsDlmBackend;
use super::{Backend, LockBackend, Standby};
use std::path::Path;
use std::sync::Arc;

/// The backend without a lock keeper (the daemon builds its `file` backend
/// with one: see `daemon`). `dir` and `standby` are the `file` backend's,
/// `mount` and `domain` dlmfs's, `lockspace` dlm's; plain values, so the
/// lock layer needs nothing of `config`.
pub fn backend(
    kind: Backend,
    dir: &Path,
    standby: Standby,
    mount: &Path,
    domain: &str,
    lockspace: &str,
    node: &str,
) -> Arc<dyn LockBackend> {
    match kind {
        Backend::File => Arc::new(FileBackend::new(dir.to_path_buf(), standby)),
        Backend::Dlmfs => Arc::new(DlmfsBackend::new(
            mount.to_path_buf(),
            domain.to_string(),
            node,
        )),
        Backend::Dlm => Arc::new(FsDlmBackend::new(lockspace)),
    }
}
