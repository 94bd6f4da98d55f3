//! The supervisor: one instance per runtime dir, one runner per resource,
//! signals (TERM/INT: release and exit; HUP: reload; USR1: log the status
//! table), sd_notify and the watchdog, the control socket; and `cleanup`.

use crate::action;
use crate::config::{self, ActionSpec, Config, ResourceSpec};
use crate::control::{self, Admin, AdminCall};
use crate::election::runner::{Request, Runner};
use crate::election::{Board, ResourceStatus, Status};
use crate::exit;
use crate::fdstore::{self, FdStore, Stored};
use crate::instance::{Instance, Record};
use crate::keeper::{Keeper, KeeperHandle};
use crate::lock::file::{Adopted, FdGuard, FileBackend, ofd_setlk};
use crate::lock::{self, LockBackend};
use crate::metrics::Metrics;
use crate::notify;
use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_tokio::Signals;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

struct Running {
    spec: Arc<ResourceSpec>,
    tx: mpsc::Sender<Request>,
    join: JoinHandle<ResourceStatus>,
}

struct Supervisor {
    cfg: Config,
    path: PathBuf,
    instance: Instance,
    backend: Arc<dyn LockBackend>,
    /// The `file` backend's lock keeper, which must learn each resource's
    /// release actions.
    keeper: Option<Arc<Keeper>>,
    board: Board,
    changed: watch::Sender<()>,
    runners: HashMap<String, Running>,
    metrics: Arc<Metrics>,
    /// Whether this node's cluster membership is in doubt (dlmfs: it may
    /// have been declared dead while frozen; see `membership`).
    membership: crate::membership::Doubt,
}

/// Whether two versions of a resource hold and do the same: same lock, same
/// actions but for their timeouts. Only then can a reload apply the rest
/// (intervals, timeouts) in place instead of releasing and re-acquiring.
fn same_holdings(a: &ResourceSpec, b: &ResourceSpec) -> bool {
    fn untimed(actions: &[ActionSpec]) -> Vec<ActionSpec> {
        actions
            .iter()
            .cloned()
            .map(|mut a| {
                match &mut a {
                    ActionSpec::Exec(e) => e.timeout = Duration::ZERO,
                    ActionSpec::Vip(v) => v.timeout = Duration::ZERO,
                    ActionSpec::Unit(u) => u.timeout = Duration::ZERO,
                }
                a
            })
            .collect()
    }
    a.lock == b.lock && untimed(&a.actions) == untimed(&b.actions)
}

impl Supervisor {
    fn spawn(&mut self, spec: ResourceSpec) {
        let spec = Arc::new(spec);
        let record = self.instance.record(&spec.name);
        if let Some(k) = &self.keeper {
            k.register(&spec, Some(record.path().to_path_buf()));
        }
        let (tx, rx) = mpsc::channel(8);
        let runner = Runner {
            spec: spec.clone(),
            node: self.cfg.node.clone(),
            backend: self.backend.clone(),
            op_timeout: self.cfg.daemon.op_timeout,
            board: self.board.clone(),
            changed: self.changed.clone(),
            record,
            metrics: self.metrics.clone(),
            deferral: Default::default(),
            membership: self.membership.clone(),
        };
        let span = tracing::info_span!("resource", resource = %spec.name);
        let join = tokio::spawn(runner.run(rx).instrument(span));
        self.runners
            .insert(spec.name.clone(), Running { spec, tx, join });
    }

    /// Stops some runners, all at once: they release what they hold and
    /// exit. Their release actions may take a while, so meanwhile the
    /// watchdog is fed for as long as the remaining runners answer. Returns
    /// each one's final status (which says whether its lock is still held).
    async fn stop(&mut self, names: &[String]) -> Vec<ResourceStatus> {
        let mut specs = Vec::new();
        let mut joins = Vec::new();
        for r in names.iter().filter_map(|n| self.runners.remove(n)) {
            let _ = r.tx.send(Request::Shutdown).await;
            specs.push(r.spec);
            joins.push(r.join);
        }
        let joins = futures::future::join_all(joins);
        tokio::pin!(joins);
        let period = notify::watchdog_period();
        let mut wd = watchdog_timer(period);
        let results = loop {
            tokio::select! {
                r = &mut joins => break r,
                _ = wd.tick(), if period.is_some() => {
                    if self.all_alive(Duration::from_secs(1)).await {
                        notify::watchdog();
                    }
                }
            }
        };
        let mut finals = Vec::new();
        let gone: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        self.board.remove(&gone);
        for (spec, result) in specs.iter().zip(results) {
            if let Some(k) = &self.keeper {
                k.unregister(&spec.lock);
            }
            finals.push(result.unwrap_or_else(|e| ResourceStatus {
                name: spec.name.clone(),
                state: Status::Releasing,
                since_ms: crate::clock::now_ms(),
                last_error: Some(format!("its runner died: {e}")),
                hold_off_until_ms: None,
                health: None,
                health_error: None,
                transitions: 0,
                settled: true,
            }));
        }
        finals
    }

    /// SIGHUP: a valid new config replaces the resources that changed what
    /// they hold or do, applies new intervals and timeouts in place, and
    /// starts new ones; a bad one changes nothing.
    async fn reload(&mut self) {
        let new = match crate::preflight::load_checked(&self.path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("reload: {w}");
                }
                loaded.config
            }
            Err(errors) => {
                tracing::error!("reload refused, keeping the running config:\n{errors}");
                let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
                notify::status(&format!("reload refused: {first}"));
                return;
            }
        };
        if new.node != self.cfg.node
            || new.lock != self.cfg.lock
            || new.daemon.runtime_dir != self.cfg.daemon.runtime_dir
            || new.metrics != self.cfg.metrics
        {
            tracing::warn!(
                "reload: changes to [node], [lock], [metrics] or daemon.runtime_dir need a restart; applying resource changes only"
            );
        }
        let wanted: HashMap<&str, &ResourceSpec> =
            new.resources.iter().map(|r| (r.name.as_str(), r)).collect();
        let stale: Vec<String> = self
            .runners
            .iter()
            .filter(|(name, r)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|s| !same_holdings(s, &r.spec))
            })
            .map(|(n, _)| n.clone())
            .collect();
        // Stop before starting: a changed resource's old runner must give
        // its lock up before the new one competes (dlmfs locks are per node).
        for name in &stale {
            tracing::info!(resource = %name, "reload: stopping");
        }
        for st in self.stop(&stale).await {
            if st.state != Status::Standby {
                tracing::error!(resource = %st.name, "reload: stopped without releasing its lock ({}); it stays held until exit", st.state.as_str());
            }
            if !wanted.contains_key(st.name.as_str()) {
                self.metrics.forget(&st.name);
            }
        }
        for spec in &new.resources {
            match self.runners.get_mut(&spec.name) {
                Some(r) => {
                    let spec = Arc::new(spec.clone());
                    if let Some(k) = &self.keeper {
                        k.register(&spec, Some(self.instance.record(&spec.name).path().into()));
                    }
                    let _ =
                        r.tx.send(Request::Update {
                            spec: spec.clone(),
                            op_timeout: new.daemon.op_timeout,
                        })
                        .await;
                    r.spec = spec;
                }
                None => {
                    tracing::info!(resource = %spec.name, "reload: starting");
                    self.spawn(spec.clone());
                }
            }
        }
        let (node, lock, runtime_dir, metrics) = (
            self.cfg.node.clone(),
            self.cfg.lock.clone(),
            self.cfg.daemon.runtime_dir.clone(),
            self.cfg.metrics.clone(),
        );
        self.cfg = new;
        (
            self.cfg.node,
            self.cfg.lock,
            self.cfg.daemon.runtime_dir,
            self.cfg.metrics,
        ) = (node, lock, runtime_dir, metrics);
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
        futures::future::join_all(pings)
            .await
            .into_iter()
            .all(|ok| ok)
    }

    /// READY=1 once every resource reached its start state (with none, at
    /// once); STATUS= otherwise.
    fn notify(&self, ready: &mut bool) {
        let (summary, settled) = self.board.overview(self.runners.len());
        if !*ready && settled {
            *ready = true;
            tracing::info!("ready: {summary}");
            notify::ready(&summary);
        } else {
            notify::status(&summary);
        }
    }

    /// SIGUSR1: the status table, in the log.
    fn log_status(&self) {
        let board = self.board.snapshot();
        if board.is_empty() {
            tracing::info!("status: no resources configured");
        }
        for r in &board {
            tracing::info!(
                resource = %r.name,
                state = r.state.as_str(),
                "status: {}{}",
                r.state.as_str(),
                r.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
}

/// The watchdog's tick. Ticks missed while the loop was busy elsewhere (a
/// reload) are skipped, not sent in a burst: a burst of WATCHDOG=1 can fill
/// the notify socket's queue, and sending then blocks the whole loop.
fn watchdog_timer(period: Option<Duration>) -> tokio::time::Interval {
    let mut wd = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
    wd.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    wd
}

/// `dlm-electd run`. Returns the exit code.
pub async fn run(path: PathBuf, cfg: Config) -> i32 {
    // First, before any child (keeper, hook) starts: the lock fds systemd
    // kept for us across a restart, now close-on-exec.
    let stored = fdstore::take_stored();
    let instance = match Instance::take(&cfg.daemon.runtime_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return exit::FAILURE;
        }
    };
    // Every hook group is tracked from here on, for the keeper or
    // `cleanup` to kill if we are killed (see action::hooks).
    let hooks_dir = action::hooks::dir_in(&cfg.daemon.runtime_dir);
    if let Err(e) = action::hooks::track_in(hooks_dir.clone()) {
        tracing::error!("{e}");
        return exit::FAILURE;
    }
    // The lock dir's filesystem, judged again now (check-config may have
    // run long ago, and a mount may have come or gone since): a lock that
    // stays on this node would make two masters. See lock::filesystem.
    let locks = match cfg.lock.backend {
        config::Backend::File => {
            match lock::filesystem::check_dir(&cfg.lock.dir, cfg.lock.trust_filesystem) {
                Ok(a) => {
                    tracing::info!(
                        "file backend locks in {}: {}",
                        cfg.lock.dir.display(),
                        a.describe()
                    );
                    Some(a)
                }
                Err(e) => {
                    tracing::error!(
                        "key `lock.dir` ({}): refusing the `file` backend here: {e}",
                        cfg.lock.dir.display()
                    );
                    return exit::CONFIG;
                }
            }
        }
        config::Backend::Dlmfs => None,
    };
    let keeper = match cfg.lock.backend {
        config::Backend::File => match KeeperHandle::start(&cfg.node, hooks_dir.clone()).await {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(
                    "cannot start the lock keeper: {e}; refusing to run without it (a daemon killed with SIGKILL would let another node take over while our actions still stand)"
                );
                return exit::FAILURE;
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
            return exit::FAILURE;
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return exit::FAILURE;
        }
    };
    let mut keeper = keeper;
    let mut keeper_lost = false;
    let (changed, mut changed_rx) = watch::channel(());
    let mut file_backend = None;
    let backend: Arc<dyn LockBackend> = match &keeper {
        Some(k) => {
            let mut guards: Vec<Arc<dyn FdGuard>> = vec![k.keeper.clone()];
            if let Some(store) = FdStore::if_available() {
                FdStore::check_room(cfg.resources.len());
                guards.push(Arc::new(store));
            }
            let mut fb = FileBackend::with_guards(cfg.lock.dir.clone(), cfg.lock.standby, guards);
            if let Some(a) = &locks {
                fb = fb.judged_on(a.f_type);
            }
            let fb = Arc::new(fb);
            file_backend = Some(fb.clone());
            fb
        }
        None => {
            let l = &cfg.lock;
            lock::open::backend(l.backend, &l.dir, l.standby, &l.mount, &l.domain, &cfg.node)
        }
    };
    // Kept open until exit: stored locks we could not let go (see below).
    let _still_held = adopt(stored, file_backend.as_deref(), &instance, &cfg, &backend).await;
    let metrics = Arc::new(Metrics::new(keeper.is_some()));
    // Only where configured; aborted with the daemon's exit, so it answers
    // while the resources release on the way out.
    let metrics_server = cfg
        .metrics
        .listen
        .map(|addr| tokio::spawn(crate::metrics::serve(addr, metrics.clone())));
    // dlmfs locks can be taken from a node the cluster declared dead while
    // it was frozen; the file backend's cannot (see `membership`).
    let membership = match cfg.lock.backend {
        config::Backend::Dlmfs => crate::membership::watch(
            &cfg.daemon.runtime_dir,
            Path::new(crate::lock::dlmfs::SYSFS_ROOT),
            Path::new("/proc"),
        ),
        config::Backend::File => crate::membership::never(),
    };
    let mut sup = Supervisor {
        membership,
        metrics,
        backend,
        keeper: keeper.as_ref().map(|k| k.keeper.clone()),
        instance,
        path,
        board: Board::default(),
        changed,
        runners: HashMap::new(),
        cfg,
    };
    tracing::info!(node = %sup.cfg.node, "starting: {} resource(s), {} backend", sup.cfg.resources.len(), sup.cfg.lock.backend);
    for spec in sup.cfg.resources.clone() {
        sup.spawn(spec);
    }
    let (release_tx, mut release_rx) = mpsc::channel::<AdminCall>(16);
    let server = tokio::spawn(control::serve_as(
        listener,
        control::Who {
            node: sup.cfg.node.clone(),
            locks: locks.map(|a| a.describe()),
        },
        sup.board.clone(),
        release_tx,
    ));

    let mut ready = false;
    sup.notify(&mut ready);
    let wd_period = notify::watchdog_period();
    let mut wd = watchdog_timer(wd_period);
    // A look at the runtime dir every poll: deleted under us, it is said
    // loudly (once, until it is back).
    let mut runtime_look = tokio::time::interval(sup.cfg.daemon.poll_interval);
    runtime_look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut runtime_gone = false;
    loop {
        tokio::select! {
            _ = runtime_look.tick() => match sup.instance.gone() {
                Some(why) if !runtime_gone => {
                    tracing::error!("{why}");
                    runtime_gone = true;
                }
                Some(_) => {}
                None => runtime_gone = false,
            },
            sig = signals.next() => match sig {
                Some(SIGHUP) => {
                    // Before the first READY=1 systemd ignores RELOADING=1,
                    // and a READY=1 after the reload would come too early.
                    let framed = ready;
                    if framed { notify::reloading(); }
                    sup.reload().await;
                    if framed { notify::reloaded(); }
                    sup.notify(&mut ready);
                }
                Some(SIGUSR1) => sup.log_status(),
                Some(SIGUSR2) => tracing::info!("SIGUSR2 ignored (SIGUSR1 logs the status table)"),
                Some(s) => { tracing::info!("signal {s}: releasing and exiting"); break; }
                None => break,
            },
            Ok(()) = changed_rx.changed() => sup.notify(&mut ready),
            () = async { match keeper.as_mut() { Some(k) => k.died().await, None => std::future::pending().await } } => {
                keeper_lost = true;
                sup.metrics.keeper_died();
                break;
            }
            Some(call) = release_rx.recv() => match sup.runners.get(&call.resource) {
                Some(r) => {
                    let req = match call.what {
                        Admin::Release { hold_off } => Request::Release { hold_off, reply: call.reply },
                        Admin::Resume => Request::Resume(call.reply),
                    };
                    let _ = r.tx.send(req).await;
                }
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
    let names: Vec<String> = sup.runners.keys().cloned().collect();
    let board = sup.board.clone();
    // Admin requests while stopping are answered at once, saying so: left
    // unread they got no answer until the daemon exited (EOF).
    let stopping = |call: AdminCall| {
        let state = board
            .snapshot()
            .into_iter()
            .find(|r| r.name == call.resource)
            .map(|r| r.state.as_str());
        let _ = call
            .reply
            .send(Err(control::stopping_error(&call.resource, state)));
    };
    let finals = {
        // Signals while releasing are answered in the log, not dropped
        // silently: an admin pressing Ctrl-C again should know why nothing
        // happens faster.
        let stop = sup.stop(&names);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                f = &mut stop => break f,
                Some(s) = signals.next() => tracing::info!(
                    "signal {s}: already stopping, releasing in order (SIGKILL would leave the release to the lock keeper or `dlm-electd cleanup`)"
                ),
                Some(call) = release_rx.recv() => stopping(call),
            }
        }
    };
    release_rx.close();
    while let Ok(call) = release_rx.try_recv() {
        stopping(call);
    }
    server.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    let _ = std::fs::remove_file(control::socket_path(&sup.cfg.daemon.runtime_dir));
    let left: Vec<String> = finals
        .iter()
        .filter(|s| s.state != Status::Standby)
        .map(|s| {
            format!(
                "{} ({}: {})",
                s.name,
                s.state.as_str(),
                s.last_error.as_deref().unwrap_or("-")
            )
        })
        .collect();
    if let Some(k) = keeper {
        k.stop(!left.is_empty()).await;
    }
    notify::flush(Duration::from_secs(1));
    if keeper_lost {
        tracing::error!("stopped because the lock keeper died; start dlm-electd again");
        exit::FAILURE
    } else if left.is_empty() {
        tracing::info!("stopped cleanly");
        exit::OK
    } else {
        tracing::error!(
            "exiting with resources not released, their locks still held: {} (the lock keeper on the file backend, or `dlm-electd cleanup`, retries)",
            left.join(", ")
        );
        exit::FAILURE
    }
}

/// At startup: resume with the lock fds systemd kept for us, and undo what
/// a previous run applied for resources no longer configured.
///
/// A stored lock of a configured resource goes to the backend, whose first
/// `try_lock` of it resumes as master (acquire steps are idempotent). The
/// others are let go (unlocked, closed, removed from the store) only once
/// every orphan record was undone; if one could not be, they stay held (in
/// the store too) and are returned, to be kept until exit: the next start
/// or `cleanup` retries.
async fn adopt(
    stored: Vec<Stored>,
    fb: Option<&FileBackend>,
    instance: &Instance,
    cfg: &Config,
    backend: &Arc<dyn LockBackend>,
) -> Vec<Adopted> {
    for Stored { name, fd } in stored {
        let refused = match fb {
            Some(fb) if name.starts_with("lock.") => match fb.adopt(fd, name.clone()) {
                Ok(()) => continue,
                Err((_fd, why)) => why,
            },
            Some(_) => "not a lock fd of ours".to_string(),
            None => format!("the {} backend stores no fds", cfg.lock.backend),
        };
        tracing::warn!("dropping {name:?} from systemd's fd store: {refused}");
        if let Err(e) = FdStore::remove(&name) {
            tracing::warn!("{e}");
        }
    }
    let configured: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    let mut all_undone = true;
    for (name, record) in instance.orphans(&configured) {
        let span = tracing::info_span!("resource", resource = %name);
        all_undone &= undo_orphan(&name, &record, backend, cfg)
            .instrument(span)
            .await;
    }
    let locks: Vec<&str> = cfg.resources.iter().map(|r| r.lock.as_str()).collect();
    let unconfigured = fb.map(|fb| fb.unconfigured(&locks)).unwrap_or_default();
    if !all_undone {
        for a in &unconfigured {
            tracing::error!(
                "keeping {} (stored lock of a resource no longer configured) until what it stood for is undone: the next start or `dlm-electd cleanup` retries",
                a.name
            );
        }
        return unconfigured;
    }
    for a in unconfigured {
        tracing::info!(
            "letting go of {}: a stored lock of a resource no longer configured, nothing of it left applied",
            a.name
        );
        let _ = ofd_setlk(&a.file, false);
        if let Err(e) = FdStore::remove(&a.name) {
            tracing::warn!("{e}");
        }
    }
    Vec::new()
}

/// Undoes what an orphan record (a resource no longer configured) says was
/// applied, then drops lock state the node keeps for it. False if
/// something is left.
async fn undo_orphan(
    name: &str,
    record: &Record,
    backend: &Arc<dyn LockBackend>,
    cfg: &Config,
) -> bool {
    let applied = match record.read() {
        Ok(a) => a,
        Err(e) => {
            // Not a failure that should hold locks hostage: an older
            // version's record names nothing we could undo.
            tracing::warn!(
                "resource no longer configured, and its applied record cannot be undone: {e}; check by hand and remove the record"
            );
            return true;
        }
    };
    tracing::info!(
        "resource no longer configured, but a previous run applied it ({}): undoing that",
        record.path().display()
    );
    let ctx = crate::action::Ctx {
        resource: name.to_string(),
        node: cfg.node.clone(),
    };
    if let Err(e) = crate::action::release_all(&applied.actions, &ctx).await {
        tracing::error!("release actions failed: {e}");
        return false;
    }
    record.clear();
    let ok = drop_stale(backend, &applied.lock, cfg.daemon.op_timeout).await;
    if ok {
        tracing::info!("undone: release steps run, lock state dropped");
    }
    ok
}

/// `clear_stale` on the blocking pool under `limit`.
async fn drop_stale(backend: &Arc<dyn LockBackend>, lock: &str, limit: Duration) -> bool {
    let (b, l) = (backend.clone(), lock.to_string());
    let call = tokio::task::spawn_blocking(move || b.clear_stale(&l));
    match tokio::time::timeout(limit, call).await {
        // The backend cannot tell whether there was anything to drop: the
        // callers say what they did, once per resource.
        Ok(Ok(Ok(()))) => {
            tracing::debug!("no lock state left for {lock}");
            true
        }
        Ok(Ok(Err(e))) => {
            tracing::error!("{e}");
            false
        }
        _ => {
            tracing::error!("dropping the lock did not finish within {limit:?}");
            false
        }
    }
}

/// `dlm-electd cleanup`: after a crash (ExecStopPost), run the release
/// actions of every resource this instance's applied records name, and
/// drop lock state this node still keeps. Refuses while a daemon holds the
/// runtime dir.
pub async fn cleanup(cfg: Config) -> i32 {
    let instance = match Instance::take(&cfg.daemon.runtime_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("not cleaning up: {e}");
            return exit::FAILURE;
        }
    };
    // Hooks of a daemon (and keeper) killed together run on unwatched:
    // kill them before any release step, or an acquire could land after.
    let hooks = action::hooks::dir_in(&cfg.daemon.runtime_dir);
    let n = tokio::task::spawn_blocking(move || action::hooks::kill_all(&hooks))
        .await
        .unwrap_or(0);
    if n > 0 {
        tracing::warn!("killed {n} hook process group(s) a dead daemon left running");
    }
    let l = &cfg.lock;
    let backend = lock::open::backend(l.backend, &l.dir, l.standby, &l.mount, &l.domain, &cfg.node);
    let mut rc = exit::OK;
    for spec in &cfg.resources {
        let span = tracing::info_span!("resource", resource = %spec.name);
        if !clean_one(&instance, &backend, spec, &cfg)
            .instrument(span)
            .await
        {
            rc = exit::FAILURE;
        }
    }
    let configured: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    for (name, record) in instance.orphans(&configured) {
        let span = tracing::info_span!("resource", resource = %name);
        if !undo_orphan(&name, &record, &backend, &cfg)
            .instrument(span)
            .await
        {
            rc = exit::FAILURE;
        }
    }
    // Workload locks a killed `run-locked` left cached on this node (dlmfs),
    // once their programs ended; one a local program still holds is kept.
    let c = cfg.clone();
    match tokio::task::spawn_blocking(move || crate::workload::drop_stale(&c)).await {
        Ok(Ok(names)) if names.is_empty() => {}
        Ok(Ok(names)) => {
            tracing::info!("workload locks whose holders are gone, dropped: {names:?}")
        }
        Ok(Err(e)) => {
            tracing::error!("cannot drop stale workload locks: {e}");
            rc = exit::FAILURE;
        }
        Err(e) => {
            tracing::error!("dropping stale workload locks: {e}");
            rc = exit::FAILURE;
        }
    }
    let _ = std::fs::remove_file(control::socket_path(&cfg.daemon.runtime_dir));
    rc
}

/// `cleanup` of one resource; false if something is left.
async fn clean_one(
    instance: &Instance,
    backend: &Arc<dyn LockBackend>,
    spec: &ResourceSpec,
    cfg: &Config,
) -> bool {
    let record = instance.record(&spec.name);
    let applied = record.exists();
    if applied {
        let ctx = crate::action::Ctx {
            resource: spec.name.clone(),
            node: cfg.node.clone(),
        };
        // Undo first: the lock is dropped only once our side effects are
        // gone, so no other node takes over while they still stand.
        if let Err(e) = crate::action::release_all(&spec.actions, &ctx).await {
            tracing::error!("release actions failed, keeping the lock: {e}");
            return false;
        }
        record.clear();
    } else {
        tracing::debug!("no applied record: nothing of ours to undo");
    }
    let mut ok = drop_stale(backend, &spec.lock, cfg.daemon.op_timeout).await;
    // Our candidate lock too (preferred nodes): a dead daemon's stays cached
    // on a dlmfs node and would make less preferred nodes defer to it.
    if let Some(cand) = spec.rank(&cfg.node).map(|i| spec.candidate_lock(i)) {
        ok &= drop_stale(backend, &cand, cfg.daemon.op_timeout).await;
    }
    // One line per resource, and only for what was done.
    if ok && applied {
        tracing::info!("cleaned up: release steps run, lock state dropped");
    }
    ok
}
