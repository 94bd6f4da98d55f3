//! The control socket: line-delimited JSON over a unix socket in the runtime
//! dir (mode 0600 in a 0700 dir). One request per connection.
//!
//! A client cannot hold the daemon's memory or time: a request is at most
//! `MAX_REQUEST` bytes, and a client gets `CLIENT_TIME` in all to send its
//! request and take the reply (the daemon's own work on a release does not
//! count against it). A failing accept (out of fds) is retried with a pause.

use crate::drain::Drain;
use crate::election::{Board, ResourceStatus};
use crate::lock::LockBackend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout_at};

pub const SOCKET_NAME: &str = "control.sock";
/// The longest request, newline included; real ones are < 200 bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has, in all, to send its request and read the reply.
pub const CLIENT_TIME: Duration = Duration::from_secs(5);
/// How long a release may take before the client is told it still runs:
/// release actions have their own timeouts but a failing one is retried.
/// A little less than the 600 s `dlm-electd release` waits, so it gets
/// this answer rather than a timeout of its own.
pub const RELEASE_WAIT: Duration = Duration::from_secs(590);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Release {
        resource: String,
        hold_off_ms: u64,
    },
    /// End a hold-off early: compete for the resource again now.
    Resume {
        resource: String,
    },
    /// Clear the fail count: compete again now if it kept this node out.
    Reset {
        resource: String,
    },
    /// Read the drain record again and follow it (`drain` and `undrain`
    /// wrote or removed it).
    Drain,
    /// Whether some node holds the resource's lock now (`drain --wait`
    /// asks it of each resource this node gave up).
    Held {
        resource: String,
    },
    /// Every node's record and every resource's lock, read through the
    /// lock manager (`status --cluster` on dlmfs and dlm).
    Cluster,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    /// The daemon's clock when it answered (Unix time in ms), for a
    /// client to turn `since_ms` and `hold_off_until_ms` into ages.
    #[serde(default)]
    pub now_ms: u64,
    pub resources: Vec<ResourceStatus>,
    /// `file` backend: how far its locks reach, judged from the lock dir's
    /// filesystem at start (`lock::filesystem`): host-local, or
    /// cluster-wide with what a dead holder costs. `dlm` backend: whether
    /// dlm_controld fences (or `allow_unfenced` lets it run without).
    /// Absent on dlmfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<String>,
    /// The node's drain (`dlm-electd drain`), while it is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

/// What the status answer says about the daemon itself, and what it needs
/// for the requests about the node as a whole.
#[derive(Clone)]
pub struct Who {
    pub node: String,
    /// See [`StatusReport::locks`].
    pub locks: Option<String>,
    /// Where a `drain` request reads the record, and the watch it sets
    /// for the runners. None: the node cannot be drained (tests).
    pub drain: Option<Arc<Drainer>>,
    /// What a `held` request asks. None: it cannot be asked (tests).
    pub probe: Option<Arc<Probe>>,
    /// Answers a `cluster` request (blocking: run on a thread of its own).
    /// None: this daemon's backend keeps no records in the lock manager.
    pub cluster: Option<ClusterReader>,
}

/// Reads the cluster for a `cluster` request: a JSON document the client
/// knows (`cluster::store`'s); control does not name cluster's types,
/// since cluster's records embed a `StatusReport`.
pub type ClusterReader = Arc<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// How long a `cluster` request may take: a read waits for each node's
/// record in the DLM, and through a recovery of a dead node.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// The drain record's place and the runners' watch of it.
pub struct Drainer {
    pub state_dir: PathBuf,
    pub watch: watch::Sender<Option<Drain>>,
    /// Held from the read to the send: two rereads at once (a reload and
    /// a `drain` request) must not end on the older read.
    pub reading: std::sync::Mutex<()>,
}

impl Drainer {
    pub fn new(state_dir: PathBuf, now: Option<Drain>) -> Drainer {
        Drainer {
            state_dir,
            watch: watch::channel(now).0,
            reading: std::sync::Mutex::new(()),
        }
    }

    /// Reads the record again and tells the runners if it changed; the
    /// drain now in force.
    pub fn reread(&self) -> Option<Drain> {
        let _one = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::drain::read(&self.state_dir);
        let changed = self.watch.send_if_modified(|d| {
            let changed = *d != now;
            *d = now.clone();
            changed
        });
        if changed {
            match &now {
                Some(d) => tracing::warn!(
                    reason = d.reason.as_deref().unwrap_or(""),
                    by = %d.by,
                    "node {}: releasing every resource and competing for none until `dlm-electd undrain`",
                    d.describe()
                ),
                None => tracing::info!("node undrained: competing for every resource again"),
            }
        }
        now
    }
}

/// The lock backend, to ask whether a lock is held, each call bounded.
pub struct Probe {
    pub backend: Arc<dyn LockBackend>,
    pub op_timeout: Duration,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to `held`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// The answer to `held` when the backend cannot be asked: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaskable: Option<String>,
    /// The answer to `drain`: what the daemon follows now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainAnswer>,
    /// The answer to `cluster` (see [`ClusterReader`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
}

/// What a daemon follows after a `drain` request: the record it read, and
/// where (its config's state dir at start), for the client to compare with
/// what it wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainAnswer {
    pub state_dir: PathBuf,
    pub drained: bool,
}

/// What an admin asks of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Release { hold_off: Duration },
    Resume,
    Reset,
}

/// An admin request handed to the supervisor, which owns the runners.
pub struct AdminCall {
    pub resource: String,
    pub what: Admin,
    pub reply: oneshot::Sender<Result<(), String>>,
}

pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

/// Binds the socket (replacing a stale one: the caller holds the instance
/// lock, so no live daemon owns it) with mode 0600.
pub fn bind(runtime_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(runtime_dir);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub async fn serve(
    listener: UnixListener,
    node: String,
    board: Board,
    release: mpsc::Sender<AdminCall>,
) {
    let who = Who {
        node,
        locks: None,
        drain: None,
        probe: None,
        cluster: None,
    };
    serve_as(listener, who, board, release).await
}

/// `serve`, answering status with all of `who`.
pub async fn serve_as(
    listener: UnixListener,
    node: Who,
    board: Board,
    release: mpsc::Sender<AdminCall>,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of fds (EMFILE/ENFILE) the connection stays queued and
                // accept fails again at once: pause instead of spinning.
                let (pause, log) = backoff.failed(Instant::now());
                if log {
                    tracing::warn!(
                        "control socket: accept failed: {e}; retrying after pauses of {:?} doubling to {:?} (logged at most every {:?})",
                        AcceptBackoff::FIRST,
                        AcceptBackoff::MAX,
                        AcceptBackoff::LOG_EVERY
                    );
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        backoff.succeeded();
        let (node, board, release) = (node.clone(), board.clone(), release.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, node, board, release).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

/// The pauses after failed accepts: 100 ms doubling to 1 s, back to 100 ms
/// after a success. Logged at most every 10 s: near the fd limit accept
/// flaps between failing and working, and one line says it all.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures in a row.
    streak: u32,
    logged: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// A failure at `now`: how long to pause, and whether to log it.
    fn failed(&mut self, now: Instant) -> (Duration, bool) {
        let pause = Self::FIRST
            .saturating_mul(1 << self.streak.min(16))
            .min(Self::MAX);
        self.streak += 1;
        let log = self
            .logged
            .is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY);
        if log {
            self.logged = Some(now);
        }
        (pause, log)
    }

    fn succeeded(&mut self) {
        self.streak = 0;
    }
}

async fn handle(
    stream: UnixStream,
    node: Who,
    board: Board,
    release: mpsc::Sender<AdminCall>,
) -> std::io::Result<()> {
    let mut deadline = Instant::now() + CLIENT_TIME;
    let timed_out = |_| std::io::Error::other("client too slow: connection closed");
    let peer_uid = stream.peer_cred()?.uid();
    let (rd, mut wr) = stream.into_split();
    let mut line = Vec::new();
    // At most one byte more than allowed, so an overlong request is seen
    // without reading (and keeping) the rest of it.
    let n = timeout_at(
        deadline,
        BufReader::new(rd)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line),
    )
    .await
    .map_err(timed_out)??;
    if n == 0 {
        return Ok(());
    }
    let work = Instant::now();
    let reply = if line.len() > MAX_REQUEST {
        error_reply(format!(
            "request longer than {MAX_REQUEST} bytes; closing the connection"
        ))
    } else {
        answer(&line, peer_uid, node, board, release).await
    };
    // Our own work (a release) is not the client's time.
    deadline += work.elapsed();
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    timeout_at(deadline, wr.write_all(&out))
        .await
        .map_err(timed_out)?
}

fn error_reply(e: String) -> Reply {
    Reply {
        error: Some(e),
        ..Reply::default()
    }
}

async fn answer(
    line: &[u8],
    peer_uid: u32,
    node: Who,
    board: Board,
    release: mpsc::Sender<AdminCall>,
) -> Reply {
    match serde_json::from_slice::<Request>(line) {
        Err(e) => error_reply(format!("bad request: {e}")),
        Ok(Request::Status) => Reply {
            status: Some(StatusReport {
                node: node.node,
                now_ms: crate::clock::now_ms(),
                resources: board.snapshot(),
                locks: node.locks,
                drain: node.drain.and_then(|d| d.watch.borrow().clone()),
            }),
            ..Reply::default()
        },
        Ok(
            Request::Release { .. }
            | Request::Resume { .. }
            | Request::Reset { .. }
            | Request::Drain
            | Request::Held { .. },
        ) if peer_uid != nix::unistd::geteuid().as_raw() => {
            error_reply(format!("refused: uid {peer_uid} is not the daemon's user"))
        }
        Ok(Request::Drain) => match node.drain {
            Some(d) => {
                let state_dir = d.state_dir.clone();
                match tokio::task::spawn_blocking(move || d.reread()).await {
                    Ok(now) => Reply {
                        drain: Some(DrainAnswer {
                            state_dir,
                            drained: now.is_some(),
                        }),
                        ..Reply::default()
                    },
                    Err(e) => error_reply(format!("reading the drain record failed: {e}")),
                }
            }
            None => error_reply("this daemon cannot be drained".into()),
        },
        Ok(Request::Held { resource }) => held(node.probe, &board, &resource).await,
        Ok(Request::Cluster) => cluster(node.cluster).await,
        Ok(Request::Release {
            resource,
            hold_off_ms,
        }) => {
            let hold_off = Duration::from_millis(hold_off_ms);
            // The CLI's bounds, again here: the socket is the daemon's
            // interface, and an unbounded hold-off wrapped the status's
            // end time while keeping the node out for good.
            if let Some(p) = crate::cli::hold_off_problem(hold_off) {
                return error_reply(format!(
                    "refused: hold_off_ms {hold_off_ms}: {p}; nothing changed"
                ));
            }
            admin(release, resource, Admin::Release { hold_off }).await
        }
        Ok(Request::Resume { resource }) => admin(release, resource, Admin::Resume).await,
        Ok(Request::Reset { resource }) => admin(release, resource, Admin::Reset).await,
    }
}

/// The answer to an admin request (`release`, `resume`) while the daemon
/// stops: it is releasing every resource on its way out, so the request
/// has nothing left to do. `state`: the resource's state now, if known.
pub fn stopping_error(resource: &str, state: Option<&str>) -> String {
    let now = state
        .map(|s| format!(" ({resource} is {s} now)"))
        .unwrap_or_default();
    format!(
        "the daemon is stopping: it releases every resource, then exits{now}; nothing was changed on request"
    )
}

/// Hands an admin request to the supervisor and waits for its outcome (a
/// release: until the lock is given up, or its first attempt failed).
async fn admin(to: mpsc::Sender<AdminCall>, resource: String, what: Admin) -> Reply {
    let (tx, rx) = oneshot::channel();
    let stopping = stopping_error(&resource, None);
    let call = AdminCall {
        resource,
        what,
        reply: tx,
    };
    let r = tokio::time::timeout(RELEASE_WAIT, async {
        to.send(call).await.map_err(|_| stopping.clone())?;
        rx.await.unwrap_or(Err(stopping))
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "not finished after {RELEASE_WAIT:?}; see `dlm-electd status`"
        ))
    });
    Reply {
        error: r.err(),
        ..Reply::default()
    }
}

/// Whether some node holds `resource`'s lock: one backend call on the
/// blocking pool, bounded by `op_timeout` (a dlmfs call may sleep while
/// the DLM recovers a node).
async fn held(probe: Option<Arc<Probe>>, board: &Board, resource: &str) -> Reply {
    let Some(p) = probe else {
        return error_reply("this daemon cannot probe locks".into());
    };
    let Some(lock) = board.get(resource).map(|r| r.lock) else {
        return error_reply(format!("no resource named {resource:?}"));
    };
    let backend = p.backend.clone();
    let call = tokio::task::spawn_blocking(move || backend.held(&lock));
    match tokio::time::timeout(p.op_timeout, call).await {
        Ok(Ok(Ok(Some(h)))) => Reply {
            held: Some(h),
            ..Reply::default()
        },
        Ok(Ok(Ok(None))) => Reply {
            unaskable: Some(
                "this lock backend cannot be asked without a probe that would keep other nodes out (dlmfs: a granted probe stays cached on the asking node)".into(),
            ),
            ..Reply::default()
        },
        Ok(Ok(Err(e))) => error_reply(e.to_string()),
        Ok(Err(e)) => error_reply(format!("the probe failed: {e}")),
        Err(_) => error_reply(format!(
            "the probe did not return within op_timeout ({:?})",
            p.op_timeout
        )),
    }
}

/// Reads the cluster on the blocking pool, bounded by [`CLUSTER_WAIT`].
async fn cluster(reader: Option<ClusterReader>) -> Reply {
    let Some(read) = reader else {
        return error_reply(
            "this daemon's backend keeps no records in the lock manager (file: the client reads the lock dir itself)".into(),
        );
    };
    let call = tokio::task::spawn_blocking(move || read());
    match tokio::time::timeout(CLUSTER_WAIT, call).await {
        Ok(Ok(Ok(v))) => Reply {
            cluster: Some(v),
            ..Reply::default()
        },
        Ok(Ok(Err(e))) => error_reply(e),
        Ok(Err(e)) => error_reply(format!("reading the cluster failed: {e}")),
        Err(_) => error_reply(format!(
            "the cluster could not be read within {CLUSTER_WAIT:?}: a lock call waits (the DLM recovering a dead node, until it is fenced); try again"
        )),
    }
}

/// Why a client's request got no answer. `Timeout` is the daemon taking
/// too long; `NotRunning` is nobody listening.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("not running (no daemon answers on {})", path.display())]
    NotRunning { path: PathBuf },
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    /// Not JSON trouble: the daemon went away (exited, or was killed)
    /// while the request was open.
    #[error(
        "the daemon closed the connection without answering: it stopped or restarted meanwhile (see `dlm-electd status`)"
    )]
    Closed,
    #[error("bad answer from the daemon: {0}")]
    BadAnswer(serde_json::Error),
}

/// Client side: one request, one reply.
pub async fn call(
    runtime_dir: &Path,
    req: &Request,
    wait: Duration,
) -> Result<Reply, ControlError> {
    let path = socket_path(runtime_dir);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning { path: path.clone() }
            }
            _ => ControlError::Connect {
                path: path.clone(),
                source,
            },
        })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(ControlError::Encode)?;
    line.push('\n');
    wr.write_all(line.as_bytes())
        .await
        .map_err(ControlError::Io)?;
    let mut answer = String::new();
    let n = tokio::time::timeout(wait, BufReader::new(rd).read_line(&mut answer))
        .await
        .map_err(|_| ControlError::Timeout(wait))?
        .map_err(ControlError::Io)?;
    if n == 0 {
        return Err(ControlError::Closed);
    }
    serde_json::from_str(&answer).map_err(ControlError::BadAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_logs_at_most_every_10s() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = AcceptBackoff::default();
        let mut fail = |now| {
            let (d, log) = b.failed(now);
            (d.as_millis(), log)
        };
        assert_eq!(fail(at(0)), (100, true));
        assert_eq!(fail(at(100)), (200, false));
        assert_eq!(fail(at(300)), (400, false));
        assert_eq!(fail(at(700)), (800, false));
        assert_eq!(fail(at(1500)), (1000, false));
        assert_eq!(fail(at(2500)), (1000, false));
        assert_eq!(fail(at(10_000)), (1000, true));
        // A success starts the pauses over, not the log interval.
        b.succeeded();
        assert_eq!(b.failed(at(10_100)).0.as_millis(), 100);
        assert!(!b.failed(at(19_999)).1);
        assert!(b.failed(at(20_000)).1);
    }

    /// The client's errors say which trouble it was: nobody listening, or
    /// a daemon that took too long.
    #[tokio::test]
    async fn a_client_tells_not_running_from_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let e = call(dir.path(), &Request::Status, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::NotRunning { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("not running (no daemon answers on ")
        );
        // Bound, but never answered.
        let _listener = bind(dir.path()).unwrap();
        let e = call(dir.path(), &Request::Status, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ControlError::Timeout(_)), "{e}");
        assert_eq!(e.to_string(), "no answer from the daemon within 50ms");
    }
}
