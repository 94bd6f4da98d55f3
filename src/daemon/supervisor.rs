//! The supervisor: one runner per resource, stopped through one function
//! for reload and shutdown; signals (TERM/INT: release and exit; HUP:
//! reload; USR1: log the status table), sd_notify and the watchdog's
//! rounds (`watchdog`), admin requests from the control socket; and the
//! way out.

use super::watchdog::{Beat, Watchdog};
use crate::config::{ActionSpec, Config, ResourceSpec};
use crate::control::{self, Admin, AdminCall};
use crate::election::runner::{Request, Runner};
use crate::election::{Board, ResourceStatus, Status};
use crate::exit;
use crate::instance::Instance;
use crate::keeper::{Keeper, KeeperHandle};
use crate::lock::LockBackend;
use crate::lock::file::Adopted;
use crate::metrics::Metrics;
use crate::notify;
use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGUSR1, SIGUSR2};
use signal_hook_tokio::Signals;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub(super) struct Running {
    spec: Arc<ResourceSpec>,
    tx: mpsc::Sender<Request>,
    join: JoinHandle<ResourceStatus>,
}

/// The running daemon: its config, instance, backend and one runner per
/// resource. Built by `startup`, run by [`serve`].
pub(super) struct Supervisor {
    pub(super) cfg: Config,
    pub(super) path: PathBuf,
    pub(super) instance: Instance,
    pub(super) backend: Arc<dyn LockBackend>,
    /// The `file` backend's lock keeper, which must learn each resource's
    /// release actions.
    pub(super) keeper: Option<Arc<Keeper>>,
    pub(super) board: Board,
    pub(super) changed: watch::Sender<()>,
    pub(super) runners: HashMap<String, Running>,
    pub(super) metrics: Arc<Metrics>,
    /// Whether this node's cluster membership is in doubt (dlmfs: it may
    /// have been declared dead while frozen; see `membership`).
    pub(super) membership: crate::membership::Doubt,
    /// The link watch, once a resource tracks a VIP's link (`links`).
    pub(super) links: Option<crate::links::Links>,
    /// The node's drain: the record's place and the runners' watch of it.
    pub(super) drain: Arc<control::Drainer>,
    /// The node's record for `status --cluster`, closed on the way out.
    pub(super) published: super::publish::Published,
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
                    // track_link changes only eligibility: in place.
                    ActionSpec::Vip(v) => {
                        v.timeout = Duration::ZERO;
                        v.track_link = true;
                    }
                    ActionSpec::Unit(u) => u.timeout = Duration::ZERO,
                }
                a
            })
            .collect()
    }
    a.lock == b.lock && untimed(&a.actions) == untimed(&b.actions)
}

/// The link watch, started the first time a resource of `cfg` tracks a
/// VIP's link (`have`: the one running). A watch that cannot start leaves
/// tracking off, said once: the VIPs still work, only a dead link does not
/// move them.
pub(super) async fn link_watch(
    cfg: &Config,
    have: Option<crate::links::Links>,
) -> Option<crate::links::Links> {
    let tracks = cfg
        .resources
        .iter()
        .flat_map(|r| &r.actions)
        .any(|a| matches!(a, ActionSpec::Vip(v) if v.track_link));
    if !tracks || have.is_some() {
        return have;
    }
    crate::links::watch()
        .await
        .inspect_err(|e| tracing::warn!("{e}: link tracking (track_link) is off"))
        .ok()
}

impl Supervisor {
    pub(super) fn spawn(&mut self, spec: ResourceSpec) {
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
            links: self.links.clone(),
            drain: self.drain.watch.subscribe(),
        };
        let span = tracing::info_span!("resource", resource = %spec.name);
        let run = span.in_scope(|| runner.run(rx));
        let join = tokio::spawn(run.instrument(span));
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
        let mut wd = Watchdog::new();
        let results = loop {
            tokio::select! {
                r = &mut joins => break r,
                beat = wd.next() => if let Beat::Due = beat {
                    wd.start(self.pingers());
                },
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
                last_error: Some(format!("its runner died: {e}")),
                settled: true,
                ..ResourceStatus::new(
                    &spec.name,
                    &spec.lock,
                    Status::Releasing,
                    crate::clock::now_ms(),
                )
            }));
        }
        finals
    }

    /// The drain's metric, from the watch's current value.
    fn drain_metric(&self, drain: &mut watch::Receiver<Option<crate::drain::Drain>>) {
        let reason = drain
            .borrow_and_update()
            .as_ref()
            .map(|d| d.reason.clone().unwrap_or_default());
        self.metrics.drained(reason.as_deref());
    }

    /// SIGHUP: the drain record is read again (whatever the config); a
    /// valid new config replaces the resources that changed what they hold
    /// or do, applies new intervals and timeouts in place, and starts new
    /// ones; a bad one changes nothing else.
    async fn reload(&mut self) {
        // A drain written while no request reached us is followed now.
        let drain = self.drain.clone();
        let _ = tokio::task::spawn_blocking(move || drain.reread()).await;
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
            || new.daemon.state_dir != self.cfg.daemon.state_dir
            || new.metrics != self.cfg.metrics
        {
            tracing::warn!(
                "reload: changes to [node], [lock], [metrics], daemon.runtime_dir or daemon.state_dir need a restart; applying resource changes only"
            );
        }
        self.links = link_watch(&new, self.links.take()).await;
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

    /// Every runner's sender, for a watchdog round.
    fn pingers(&self) -> Vec<mpsc::Sender<Request>> {
        self.runners.values().map(|r| r.tx.clone()).collect()
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

/// What the supervisor's loop listens to and ends, besides the runners.
pub(super) struct Io {
    pub(super) signals: Signals,
    /// The `file` backend's keeper process (None on dlmfs).
    pub(super) keeper: Option<KeeperHandle>,
    /// Admin requests from the control socket.
    pub(super) admin: mpsc::Receiver<AdminCall>,
    /// A runner published a new status.
    pub(super) changed: watch::Receiver<()>,
    /// The control socket's server, aborted at exit.
    pub(super) server: JoinHandle<()>,
    /// The metrics endpoint, if configured; aborted at exit, so it answers
    /// while the resources release on the way out.
    pub(super) metrics_server: Option<JoinHandle<()>>,
    /// Stored locks we could not let go (see `orphans::adopt`): kept open
    /// until exit.
    pub(super) still_held: Vec<Adopted>,
}

/// Runs the daemon until a signal (or the keeper's death) says stop, then
/// releases everything. Returns the exit code.
pub(super) async fn serve(mut sup: Supervisor, mut io: Io) -> i32 {
    let keeper_lost = event_loop(&mut sup, &mut io).await;
    shutdown(sup, io, keeper_lost).await
}

/// The supervisor's life until it is told to stop; true if it stops
/// because the lock keeper died.
async fn event_loop(sup: &mut Supervisor, io: &mut Io) -> bool {
    let mut ready = false;
    sup.notify(&mut ready);
    let mut wd = Watchdog::new();
    // The drain, for its metric (the runners follow it themselves).
    let mut drain = sup.drain.watch.subscribe();
    sup.drain_metric(&mut drain);
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
            sig = io.signals.next() => match sig {
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
                Some(s) => { tracing::info!("signal {s}: releasing and exiting"); return false; }
                None => return false,
            },
            Ok(()) = io.changed.changed() => sup.notify(&mut ready),
            Ok(()) = drain.changed() => sup.drain_metric(&mut drain),
            () = async { match io.keeper.as_mut() { Some(k) => k.died().await, None => std::future::pending().await } } => {
                sup.metrics.keeper_died();
                return true;
            }
            Some(call) = io.admin.recv() => match sup.runners.get(&call.resource) {
                Some(r) => {
                    let req = match call.what {
                        Admin::Release { hold_off } => Request::Release { hold_off, reply: call.reply },
                        Admin::Resume => Request::Resume(call.reply),
                        Admin::Reset => Request::Reset(call.reply),
                    };
                    let _ = r.tx.send(req).await;
                }
                None => { let _ = call.reply.send(Err(format!("no resource named {:?}", call.resource))); }
            },
            beat = wd.next() => if let Beat::Due = beat {
                wd.start(sup.pingers());
            },
        }
    }
}

/// Stops every runner (releasing), answers what comes meanwhile, ends the
/// keeper and the servers, and says how it went. Returns the exit code.
async fn shutdown(mut sup: Supervisor, io: Io, keeper_lost: bool) -> i32 {
    let Io {
        mut signals,
        keeper,
        admin: mut release_rx,
        server,
        metrics_server,
        // Dropped last, at the end: until then these stored locks stay ours.
        still_held,
        ..
    } = io;
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
    // Our record's locks go before the lockspace is left (fs/dlm), and a
    // dlmfs presence lock must not stay cached here as if we still ran.
    let published = sup.published.clone();
    let _ = tokio::task::spawn_blocking(move || published.close()).await;
    let backend = sup.backend.clone();
    let all_released = left.is_empty() && still_held.is_empty();
    let _ = tokio::task::spawn_blocking(move || backend.leave(all_released)).await;
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
