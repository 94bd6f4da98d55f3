//! The supervisor: one instance per runtime dir, one runner per resource,
//! signals (TERM/INT: release and exit; HUP: reload), sd_notify and the
//! watchdog, the control socket.

use crate::config::{self, Config, ResourceSpec};
use crate::control::{self, ReleaseCall};
use crate::election::Status;
use crate::election::runner::{Board, Request, Runner};
use crate::lock::file::FileBackend;
use crate::lock::keeper::Keeper;
use crate::lock::{self, LockBackend};
use crate::notify;
use futures_util::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub const INSTANCE_LOCK: &str = "instance.lock";

/// Creates the runtime dir (0700) and takes the instance lock: one daemon
/// (or cleanup) per runtime dir. dlmfs locks are per node, so a second
/// daemon on the node would "win" the same locks; this flock prevents it.
pub fn take_instance(runtime_dir: &Path) -> Result<Flock<File>, String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(runtime_dir)
        .map_err(|e| format!("cannot create runtime dir {}: {e}", runtime_dir.display()))?;
    // The control socket lives here: nobody else may enter.
    std::fs::set_permissions(runtime_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot chmod runtime dir {}: {e}", runtime_dir.display()))?;
    let path = runtime_dir.join(INSTANCE_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(format!(
                "another dlm-electd instance holds {} (pid {}); one daemon per runtime_dir",
                path.display(),
                pid.trim()
            ));
        }
        Err((_, e)) => return Err(format!("cannot lock {}: {e}", path.display())),
    };
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(lock)
}

struct Running {
    spec: Arc<ResourceSpec>,
    tx: mpsc::Sender<Request>,
    join: JoinHandle<()>,
}

struct Supervisor {
    cfg: Config,
    path: PathBuf,
    backend: Arc<dyn LockBackend>,
    /// The same backend when it is `file`: it must learn each resource's
    /// release actions for the lock keeper.
    file: Option<Arc<FileBackend>>,
    board: Board,
    changed: watch::Sender<()>,
    runners: HashMap<String, Running>,
}

impl Supervisor {
    fn spawn(&mut self, spec: ResourceSpec) {
        let spec = Arc::new(spec);
        if let Some(f) = &self.file {
            f.register(&spec);
        }
        let (tx, rx) = mpsc::channel(8);
        let runner = Runner {
            spec: spec.clone(),
            node: self.cfg.node.clone(),
            backend: self.backend.clone(),
            op_timeout: self.cfg.daemon.op_timeout,
            board: self.board.clone(),
            changed: self.changed.clone(),
        };
        let join = tokio::spawn(runner.run(rx));
        self.runners
            .insert(spec.name.clone(), Running { spec, tx, join });
    }

    /// Stops one runner: it releases what it holds and exits.
    /// Stops some runners: they release what they hold and exit, all at
    /// once. Their release actions may take a while, so meanwhile the
    /// watchdog is fed for as long as the remaining runners answer.
    async fn stop(&mut self, names: &[String]) {
        let mut specs = Vec::new();
        let mut joins = Vec::new();
        for r in names.iter().filter_map(|n| self.runners.remove(n)) {
            let _ = r.tx.send(Request::Shutdown).await;
            specs.push(r.spec);
            joins.push(r.join);
        }
        let joins = futures_util::future::join_all(joins);
        tokio::pin!(joins);
        let mut wd =
            tokio::time::interval(notify::watchdog_period().unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = &mut joins => break,
                _ = wd.tick(), if notify::watchdog_period().is_some() => {
                    if self.all_alive(Duration::from_secs(1)).await {
                        notify::watchdog();
                    }
                }
            }
        }
        for spec in specs {
            self.board.lock().unwrap().retain(|s| s.name != spec.name);
            if let Some(f) = &self.file {
                f.unregister(&spec.lock);
            }
        }
    }

    async fn stop_all(&mut self) {
        for r in self.runners.values() {
            let _ = r.tx.send(Request::Shutdown).await;
        }
        for (_, r) in self.runners.drain() {
            let _ = r.join.await;
        }
    }

    /// SIGHUP: a valid new config replaces the resources that changed; a bad
    /// one changes nothing.
    async fn reload(&mut self) {
        let new = match load_checked(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, keeping the running config:\n{e}");
                notify::status(&format!(
                    "reload refused: {}",
                    e.lines().next().unwrap_or("")
                ));
                return;
            }
        };
        if new.node != self.cfg.node
            || new.lock != self.cfg.lock
            || new.daemon.runtime_dir != self.cfg.daemon.runtime_dir
        {
            tracing::warn!(
                "reload: changes to [node], [lock] or daemon.runtime_dir need a restart; applying resource changes only"
            );
        }
        let keep: HashMap<&str, &ResourceSpec> =
            new.resources.iter().map(|r| (r.name.as_str(), r)).collect();
        let stale: Vec<String> = self
            .runners
            .iter()
            .filter(|(name, r)| keep.get(name.as_str()).is_none_or(|s| **s != *r.spec))
            .map(|(n, _)| n.clone())
            .collect();
        // Stop before starting: a changed resource's old runner must give
        // its lock up before the new one competes (dlmfs locks are per node).
        for name in &stale {
            tracing::info!(resource = %name, "reload: stopping");
        }
        self.stop(&stale).await;
        for spec in &new.resources {
            if !self.runners.contains_key(&spec.name) {
                tracing::info!(resource = %spec.name, "reload: starting");
                self.spawn(spec.clone());
            }
        }
        let (node, lock, runtime_dir) = (
            self.cfg.node.clone(),
            self.cfg.lock.clone(),
            self.cfg.daemon.runtime_dir.clone(),
        );
        self.cfg = new;
        (self.cfg.node, self.cfg.lock, self.cfg.daemon.runtime_dir) = (node, lock, runtime_dir);
        tracing::info!("reloaded {}", self.path.display());
    }

    /// True when every runner answers a ping within `wait`: the event loop
    /// and every runner loop are alive (a lock call stuck in the kernel
    /// does not stop its runner from answering).
    async fn all_alive(&self, wait: Duration) -> bool {
        let pings = self.runners.values().map(|r| {
            let tx = r.tx.clone();
            async move {
                let (reply, rx) = oneshot::channel();
                tx.send(Request::Ping(reply)).await.is_ok()
                    && tokio::time::timeout(wait, rx)
                        .await
                        .is_ok_and(|r| r.is_ok())
            }
        });
        futures_util::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }
}

/// Transitional: callers move to `config::load_checked` (typed errors, warnings).
pub fn load_checked(path: &Path) -> Result<Config, String> {
    config::load_checked(path)
        .map(|l| l.config)
        .map_err(|e| e.to_string())
}

/// `dlm-electd run`. Returns the exit code.
pub async fn run(path: PathBuf, cfg: Config) -> i32 {
    let instance = match take_instance(&cfg.daemon.runtime_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let keeper = match cfg.lock.backend {
        config::Backend::File => match start_keeper(&cfg).await {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(
                    "cannot start the lock keeper: {e}; refusing to run without it (a daemon killed with SIGKILL would let another node take over while our actions still stand)"
                );
                return 1;
            }
        },
        // The node itself keeps a dead holder's dlmfs lock until `cleanup`.
        config::Backend::Dlmfs => None,
    };
    let listener = match control::bind(&cfg.daemon.runtime_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot bind the control socket in {}: {e}",
                cfg.daemon.runtime_dir.display()
            );
            return 1;
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let (changed, mut changed_rx) = watch::channel(());
    let file = keeper.as_ref().map(|k| {
        Arc::new(FileBackend::with_keeper(
            cfg.lock.dir.clone(),
            k.keeper.clone(),
        ))
    });
    let mut sup = Supervisor {
        backend: match &file {
            Some(f) => f.clone(),
            None => lock::backend(&cfg.lock, &cfg.node),
        },
        file,
        path,
        board: Arc::new(Mutex::new(Vec::new())),
        changed,
        runners: HashMap::new(),
        cfg,
    };
    tracing::info!(node = %sup.cfg.node, "starting: {} resource(s), {:?} backend", sup.cfg.resources.len(), sup.cfg.lock.backend);
    for spec in sup.cfg.resources.clone() {
        sup.spawn(spec);
    }
    let (release_tx, mut release_rx) = mpsc::channel::<ReleaseCall>(16);
    let server = tokio::spawn(control::serve(
        listener,
        sup.cfg.node.clone(),
        sup.board.clone(),
        release_tx,
    ));

    let mut ready = false;
    let wd_period = notify::watchdog_period();
    let mut wd = tokio::time::interval(wd_period.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Some(SIGHUP) => { sup.reload().await; sup.changed.send_replace(()); }
                Some(s) => { tracing::info!("signal {s}: releasing and exiting"); break; }
                None => break,
            },
            Ok(()) = changed_rx.changed() => {
                let board = sup.board.lock().unwrap().clone();
                let summary = notify::summary(&board);
                if !ready && board.len() == sup.runners.len() && board.iter().all(|s| s.settled) {
                    ready = true;
                    tracing::info!("ready: {summary}");
                    notify::ready(&summary);
                } else {
                    notify::status(&summary);
                }
            }
            Some(call) = release_rx.recv() => match sup.runners.get(&call.resource) {
                Some(r) => { let _ = r.tx.send(Request::Release { hold_off: call.hold_off, reply: call.reply }).await; }
                None => { let _ = call.reply.send(Err(format!("no resource named {:?}", call.resource))); }
            },
            _ = wd.tick(), if wd_period.is_some() => {
                if sup.all_alive(Duration::from_secs(1)).await {
                    notify::watchdog();
                } else {
                    tracing::error!("a resource runner did not answer; not feeding the watchdog");
                }
            }
        }
    }
    notify::stopping();
    sup.stop_all().await;
    server.abort();
    let _ = std::fs::remove_file(control::socket_path(&sup.cfg.daemon.runtime_dir));
    let left: Vec<String> = sup
        .board
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.state != Status::Standby)
        .map(|s| format!("{} ({})", s.name, s.state.as_str()))
        .collect();
    if let Some(k) = keeper {
        k.stop(!left.is_empty()).await;
    }
    drop(instance);
    if left.is_empty() {
        tracing::info!("stopped cleanly");
        0
    } else {
        tracing::error!(
            "exiting with resources not released: {}; `dlm-electd cleanup` retries",
            left.join(", ")
        );
        1
    }
}

/// The running lock keeper of the `file` backend.
struct KeeperHandle {
    keeper: Arc<Keeper>,
    /// Set before we close the keeper on purpose, so its exit is not
    /// reported as a failure.
    closing: Arc<AtomicBool>,
    exited: JoinHandle<Option<std::process::ExitStatus>>,
}

async fn start_keeper(cfg: &Config) -> Result<KeeperHandle, String> {
    let (keeper, process) = Keeper::spawn(&cfg.node).await?;
    let keeper = Arc::new(keeper);
    tracing::debug!("lock keeper running as pid {}", keeper.pid());
    let closing = Arc::new(AtomicBool::new(false));
    let exited = process.watch(keeper.clone(), closing.clone());
    Ok(KeeperHandle {
        keeper,
        closing,
        exited,
    })
}

impl KeeperHandle {
    /// After every runner stopped: the keeper sees EOF. Holding nothing (a
    /// clean shutdown), it exits at once and we wait for that; holding
    /// locks we could not release, it goes on retrying their release
    /// actions after we exit, and lets each lock go once they succeed.
    async fn stop(mut self, left_held: bool) {
        self.closing.store(true, Ordering::SeqCst);
        self.keeper.close();
        let wait = if left_held {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        match tokio::time::timeout(wait, &mut self.exited).await {
            Ok(Ok(Some(st))) if st.success() => tracing::debug!("lock keeper exited"),
            Ok(r) => tracing::warn!("lock keeper exited: {r:?}"),
            Err(_) => tracing::warn!(
                "lock keeper (pid {}) keeps the unreleased locks and retries their release actions",
                self.keeper.pid()
            ),
        }
    }
}

/// `dlm-electd cleanup`: after a crash (ExecStopPost), run every resource's
/// release actions and drop lock state this node still keeps. Refuses while
/// a daemon holds the runtime dir.
pub async fn cleanup(cfg: Config) -> i32 {
    let _instance = match take_instance(&cfg.daemon.runtime_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("not cleaning up: {e}");
            return 1;
        }
    };
    let backend = lock::backend(&cfg.lock, &cfg.node);
    let mut rc = 0;
    for spec in &cfg.resources {
        let ctx = crate::action::Ctx {
            resource: spec.name.clone(),
            node: cfg.node.clone(),
        };
        // Undo first: the lock is dropped only once our side effects are
        // gone, so no other node takes over while they still stand.
        if let Err(e) = crate::action::release_all(&spec.actions, &ctx).await {
            tracing::error!(resource = %spec.name, "release actions failed, keeping the lock: {e}");
            rc = 1;
            continue;
        }
        let (b, l) = (backend.clone(), spec.lock.clone());
        let call = tokio::task::spawn_blocking(move || b.clear_stale(&l));
        match tokio::time::timeout(cfg.daemon.op_timeout, call).await {
            Ok(Ok(Ok(()))) => tracing::info!(resource = %spec.name, "cleaned up"),
            Ok(Ok(Err(e))) => {
                tracing::error!(resource = %spec.name, "{e}");
                rc = 1;
            }
            _ => {
                tracing::error!(resource = %spec.name, "dropping the lock did not finish within {:?}", cfg.daemon.op_timeout);
                rc = 1;
            }
        }
    }
    let _ = std::fs::remove_file(control::socket_path(&cfg.daemon.runtime_dir));
    rc
}
