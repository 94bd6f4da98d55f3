//! The values every action shares: which half runs (`Step`), for whom
//! (`Ctx`), and the token that stops it (`Cancel`). A leaf: the action
//! kinds (exec, vip, unit) import these, and `action` (mod.rs), which
//! dispatches into them, re-exports them, so no child imports its parent.

use tokio::sync::watch;

/// Which half of an action to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Acquire,
    Release,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Acquire => "acquire",
            Step::Release => "release",
        }
    }
}

/// Who runs the action, for logs and the hooks' environment.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub resource: String,
    pub node: String,
}

/// Asks running acquire steps to stop (the daemon is shutting down).
#[derive(Clone)]
pub struct Cancel(watch::Receiver<bool>);

impl Cancel {
    pub fn new() -> (watch::Sender<bool>, Cancel) {
        let (tx, rx) = watch::channel(false);
        (tx, Cancel(rx))
    }

    /// A token nobody will ever cancel.
    pub fn never() -> Cancel {
        Cancel(watch::channel(false).1)
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled; never, if the sender is gone first.
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
