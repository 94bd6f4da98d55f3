//! `dlm-electd run` up to its first runner: signals (from `main` on), the
//! runtime dir (shared with `cleanup`), the lock dir's filesystem, the
//! keeper, the control socket, the backend, what a previous run left
//! (`orphans`), metrics and membership. Each way to fail is a [`StartError`], logged once with its
//! exit code.

use super::orphans::adopt;
use super::supervisor::{self, Io, Supervisor};
use crate::action;
use crate::config::{self, Config};
use crate::control;
use crate::election::Board;
use crate::exit;
use crate::fdstore::{self, FdStore};
use crate::instance::{Instance, InstanceError};
use crate::keeper::{KeeperError, KeeperHandle};
use crate::lock::file::{FdGuard, FileBackend};
use crate::lock::filesystem::Accepted;
use crate::lock::{self, LockBackend};
use crate::metrics::Metrics;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_tokio::Signals;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::{mpsc, watch};

/// Why the daemon (or `cleanup`) did not start. The text is the log line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime dir cannot be ours: another instance holds it, or a
    /// system call failed.
    #[error("{0}")]
    Instance(InstanceError),
    /// The runtime dir exists and others may enter it (issue #19, item 14):
    /// a config problem, named at its key. `at`: `FILE:LINE:COL` (or the
    /// file, when defaulted).
    #[error("{at}: key `daemon.runtime_dir`: {error}")]
    RuntimeDirShared { at: String, error: InstanceError },
    /// Hook tracking in the runtime dir (see `action::hooks`).
    #[error("{0}")]
    Hooks(action::hooks::TrackError),
    /// The `file` backend's lock dir is on a filesystem whose locks would
    /// stay on this node (see `lock::filesystem`).
    #[error("key `lock.dir` ({}): refusing the `file` backend here: {why}", dir.display())]
    LockDir {
        dir: PathBuf,
        why: lock::filesystem::FsError,
    },
    #[error(
        "cannot start the lock keeper: {0}; refusing to run without it (a daemon killed with SIGKILL would let another node take over while our actions still stand)"
    )]
    Keeper(KeeperError),
    #[error("cannot bind the control socket in {}: {source}", dir.display())]
    ControlSocket {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Exit 78: the config must change (or the cluster's fencing).
    #[error(
        "{at}: key `lock.backend`: refusing the dlm backend: {why}; without fencing a network partition gives two masters (docs/dlm.md). Configure a fence method and enable_fencing=1 in /etc/dlm/dlm.conf, or set `lock.allow_unfenced = true` to accept that"
    )]
    Unfenced { at: String, why: String },
    /// A plain failure, so that `Restart=` tries again once dlm_controld runs.
    #[error(
        "{at}: key `lock.backend`: the dlm backend needs to know that dlm_controld fences, and cannot tell: {why}"
    )]
    FencingUnknown { at: String, why: String },
}

impl StartError {
    /// 78 for what only a config change fixes (systemd's
    /// `RestartPreventExitStatus=78` keeps it from restart-looping), 1 for
    /// the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::RuntimeDirShared { .. }
            | StartError::LockDir { .. }
            | StartError::Unfenced { .. } => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

/// What `run` and `cleanup` take first: the runtime dir, private and held
/// (the instance lock), and where hook groups are tracked in it.
pub(super) struct Runtime {
    pub(super) instance: Instance,
    pub(super) hooks: PathBuf,
}

impl Runtime {
    pub(super) fn take(cfg: &Config) -> Result<Runtime, StartError> {
        let dir = &cfg.daemon.runtime_dir;
        let instance = Instance::take(dir).map_err(|e| match e {
            InstanceError::NotPrivate { .. } => StartError::RuntimeDirShared {
                at: place(cfg, |p| &p.runtime_dir),
                error: e,
            },
            e => StartError::Instance(e),
        })?;
        Ok(Runtime {
            instance,
            hooks: action::hooks::dir_in(dir),
        })
    }
}

/// Where a key was written, as `FILE:LINE:COL` (the main file when
/// defaulted). Only for the message: the file is read again, and if that
/// fails now the main file is named alone.
fn place(cfg: &Config, key: impl Fn(&config::Places) -> &config::Place) -> String {
    let Some(main) = cfg.files.first() else {
        return "the config".into();
    };
    match config::load_placed(main) {
        Ok((_, places)) => {
            let at = key(&places);
            match at.pos {
                Some((line, col)) => format!("{}:{line}:{col}", at.path.display()),
                None => at.path.display().to_string(),
            }
        }
        Err(_) => main.display().to_string(),
    }
}

/// The signals the daemon answers, caught from `main` on (see
/// [`catch_signals_early`]) and queued from here until the supervisor's
/// loop reads them: taken before the config is read, so a SIGHUP while the
/// daemon starts is a reload once it runs, and a SIGTERM a clean release.
/// With them, a flag set by SIGTERM or SIGINT: a stop asked before the
/// start began ends it there, before any lock is tried.
pub fn signals() -> Result<(Signals, Arc<AtomicBool>), StartError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(StartError::Signals)?;
    }
    let signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]).map_err(StartError::Signals)?;
    Ok((signals, stop))
}

/// From the first line of `main` of `dlm-electd run` until [`signals`]
/// takes over: SIGHUP, SIGUSR1 and SIGUSR2 are caught and dropped instead of
/// killing the process (their default). Found by the fault-injection run:
/// a SIGHUP (`systemctl reload`, a config tool) meeting a daemon still
/// starting under load ended it without a word. Dropping is right this
/// early, because the config has not been read yet. SIGTERM and SIGINT keep
/// their default until then: nothing is held yet. A handler (not SIG_IGN)
/// so that hooks started later do not inherit an ignored signal.
pub fn catch_signals_early() {
    for sig in [SIGHUP, SIGUSR1, SIGUSR2] {
        let dropped = Arc::new(AtomicBool::new(false));
        // Fails only for a signal that cannot be caught: not these.
        let _ = signal_hook::flag::register(sig, dropped);
    }
}

/// `dlm-electd run`, with the [`signals`] taken before `cfg` was read.
/// Returns the exit code.
pub async fn run(path: PathBuf, cfg: Config, signals: Signals) -> i32 {
    match start(path, cfg, signals).await {
        Ok((sup, io)) => supervisor::serve(sup, io).await,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// Everything before the supervisor's loop, in this order: stored fds,
/// runtime dir, hook tracking, lock dir, keeper, control socket, backend,
/// adoption, metrics, membership, then one runner per resource and the
/// control socket's server.
async fn start(
    path: PathBuf,
    cfg: Config,
    signals: Signals,
) -> Result<(Supervisor, Io), StartError> {
    // First, before any child (keeper, hook) starts: the lock fds systemd
    // kept for us across a restart, now close-on-exec.
    let stored = fdstore::take_stored();
    let Runtime { instance, hooks } = Runtime::take(&cfg)?;
    // Every hook group is tracked from here on, for the keeper or
    // `cleanup` to kill if we are killed (see action::hooks).
    action::hooks::track_in(hooks.clone()).map_err(StartError::Hooks)?;
    let locks = judge_lock_dir(&cfg)?;
    let keeper = match cfg.lock.backend {
        config::Backend::File => Some(
            KeeperHandle::start(&cfg.node, hooks)
                .await
                .map_err(StartError::Keeper)?,
        ),
        // The node itself keeps a dead holder's dlmfs lock until `cleanup`;
        // a dead holder's dlm lock stays as an orphan (lock::fsdlm).
        config::Backend::Dlmfs | config::Backend::Dlm => None,
    };
    // What `status` says about how far the locks reach: the file backend's
    // filesystem, or the dlm backend's fencing (the admin must see that a
    // node runs with `allow_unfenced`, not only its journal at start).
    let reach = match cfg.lock.backend {
        config::Backend::Dlm => Some(format!("dlm; fencing: {}", judge_fencing(&cfg)?)),
        _ => locks.as_ref().map(|a| a.describe()),
    };
    let listener =
        control::bind(&cfg.daemon.runtime_dir).map_err(|source| StartError::ControlSocket {
            dir: cfg.daemon.runtime_dir.clone(),
            source,
        })?;
    let (changed, changed_rx) = watch::channel(());
    let (backend, file_backend) = backend(&cfg, keeper.as_ref(), locks.as_ref());
    // Kept open until exit: stored locks we could not let go (see adopt).
    let still_held = adopt(stored, file_backend.as_deref(), &instance, &cfg, &backend).await;
    let metrics = Arc::new(Metrics::new(keeper.is_some()));
    // Only where configured; aborted with the daemon's exit, so it answers
    // while the resources release on the way out.
    let metrics_server = cfg
        .metrics
        .listen
        .map(|addr| tokio::spawn(crate::metrics::serve(addr, metrics.clone())));
    let membership = membership(&cfg);
    let drained = crate::drain::read(&cfg.daemon.state_dir);
    if let Some(d) = &drained {
        tracing::warn!(
            reason = d.reason.as_deref().unwrap_or(""),
            by = %d.by,
            "node {} (recorded in {}): competing for no resource until `dlm-electd undrain`",
            d.describe(),
            crate::drain::path(&cfg.daemon.state_dir).display()
        );
    }
    let drain = Arc::new(control::Drainer::new(cfg.daemon.state_dir.clone(), drained));
    let probe = Arc::new(control::Probe {
        backend: backend.clone(),
        op_timeout: cfg.daemon.op_timeout,
    });
    let mut sup = Supervisor {
        drain: drain.clone(),
        membership,
        metrics,
        backend,
        keeper: keeper.as_ref().map(|k| k.keeper.clone()),
        instance,
        path,
        board: Board::default(),
        changed,
        runners: HashMap::new(),
        links: supervisor::link_watch(&cfg, None).await,
        published: Default::default(),
        cfg,
    };
    tracing::info!(node = %sup.cfg.node, "starting: {} resource(s), {} backend", sup.cfg.resources.len(), sup.cfg.lock.backend);
    let follow = super::publish::Follow {
        board: sup.board.clone(),
        changed: sup.changed.subscribe(),
        drain: sup.drain.watch.subscribe(),
    };
    sup.published = super::publish::start(&sup.cfg, &sup.backend, follow, reach.clone());
    for spec in sup.cfg.resources.clone() {
        sup.spawn(spec);
    }
    let (release_tx, admin) = mpsc::channel(16);
    let server = tokio::spawn(control::serve_as(
        listener,
        control::Who {
            node: sup.cfg.node.clone(),
            locks: reach,
            drain: Some(drain),
            probe: Some(probe),
            cluster: super::publish::reader(&sup.cfg, &sup.backend, &sup.board),
        },
        sup.board.clone(),
        release_tx,
    ));
    let io = Io {
        signals,
        keeper,
        admin,
        changed: changed_rx,
        server,
        metrics_server,
        still_held,
    };
    Ok((sup, io))
}

/// The lock dir's filesystem, judged again now (check-config may have run
/// long ago, and a mount may have come or gone since): a lock that stays
/// on this node would make two masters. See lock::filesystem. None for
/// dlmfs.
fn judge_lock_dir(cfg: &Config) -> Result<Option<Accepted>, StartError> {
    match cfg.lock.backend {
        config::Backend::File => {
            match lock::filesystem::check_dir(&cfg.lock.dir, cfg.lock.trust_filesystem) {
                Ok(a) => {
                    tracing::info!(
                        "file backend locks in {}: {}",
                        cfg.lock.dir.display(),
                        a.describe()
                    );
                    Ok(Some(a))
                }
                Err(why) => Err(StartError::LockDir {
                    dir: cfg.lock.dir.clone(),
                    why,
                }),
            }
        }
        config::Backend::Dlmfs | config::Backend::Dlm => Ok(None),
    }
}

/// The lock backend's settings, for `lock::open::backend`.
pub(super) fn lock_settings(cfg: &Config) -> lock::open::Settings<'_> {
    let l = &cfg.lock;
    lock::open::Settings {
        kind: l.backend,
        dir: &l.dir,
        standby: l.standby,
        mount: &l.mount,
        domain: &l.domain,
        lockspace: &l.lockspace,
        node: &cfg.node,
        runtime_dir: &cfg.daemon.runtime_dir,
    }
}

/// The dlm backend only where dlm_controld fences, or on the admin's word
/// (`lock.allow_unfenced`): without fencing a partition gives two masters.
/// Ok: the verdict in words, for `status`.
fn judge_fencing(cfg: &Config) -> Result<String, StartError> {
    use lock::fsdlm::Fencing;
    let f = Fencing::judge(lock::fsdlm::fencing(), cfg.lock.allow_unfenced);
    match &f {
        Fencing::On => tracing::info!("dlm backend: fencing: {}", f.describe()),
        Fencing::OffAllowed | Fencing::UnknownAllowed(_) => {
            tracing::warn!("dlm backend: fencing: {}", f.describe())
        }
        Fencing::Off => {
            return Err(StartError::Unfenced {
                at: place(cfg, |p| &p.backend),
                why: "dlm_controld runs with enable_fencing=0".into(),
            });
        }
        Fencing::Unknown(why) => {
            return Err(StartError::FencingUnknown {
                at: place(cfg, |p| &p.backend),
                why: why.clone(),
            });
        }
    }
    Ok(f.describe())
}

/// The lock backend: with a keeper (the `file` backend), one whose won
/// locks the keeper and, under systemd, the fd store hold copies of; also
/// returned as itself, for adoption. Else the config's plain backend.
fn backend(
    cfg: &Config,
    keeper: Option<&KeeperHandle>,
    locks: Option<&Accepted>,
) -> (Arc<dyn LockBackend>, Option<Arc<FileBackend>>) {
    let Some(k) = keeper else {
        let plain = lock::open::backend(&lock_settings(cfg));
        return (plain, None);
    };
    let mut guards: Vec<Arc<dyn FdGuard>> = vec![k.keeper.clone()];
    if let Some(store) = FdStore::if_available() {
        FdStore::check_room(cfg.resources.len());
        guards.push(Arc::new(store));
    }
    let mut fb =
        FileBackend::with_guards(cfg.lock.dir.clone(), cfg.lock.standby, guards).as_node(&cfg.node);
    if let Some(a) = locks {
        fb = fb.judged_on(a.f_type);
    }
    let fb = Arc::new(fb);
    (fb.clone(), Some(fb))
}

/// dlmfs locks can be taken from a node the cluster declared dead while
/// it was frozen; the file backend's cannot (see `membership`).
fn membership(cfg: &Config) -> crate::membership::Doubt {
    match cfg.lock.backend {
        config::Backend::Dlmfs => {
            let dir = cfg.daemon.runtime_dir.clone();
            crate::membership::watch(
                &cfg.daemon.runtime_dir,
                Path::new(crate::lock::dlmfs::SYSFS_ROOT),
                Path::new("/proc"),
                move || super::doubt::drop_vips(&dir),
            )
        }
        // fs/dlm recovers a node's locks only after dlm_controld fenced it
        // (startup refuses a cluster that does not fence): a frozen node
        // is powered off, never resumed beside the new master. What is
        // watched instead is quorum: a master cut off from it gives up
        // before the fence lands (see quorum).
        config::Backend::Dlm => crate::quorum::watch(crate::quorum::Corosync::default()),
        config::Backend::File => crate::membership::never(),
    }
}
