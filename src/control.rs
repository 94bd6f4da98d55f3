//! The control socket: line-delimited JSON over a unix socket in the runtime
//! dir (mode 0600 in a 0700 dir). One request per connection.

use crate::election::{Board, ResourceStatus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

pub const SOCKET_NAME: &str = "control.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Release { resource: String, hold_off_ms: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    pub resources: Vec<ResourceStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A release request handed to the supervisor, which owns the runners.
pub struct ReleaseCall {
    pub resource: String,
    pub hold_off: Duration,
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
    release: mpsc::Sender<ReleaseCall>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (node, board, release) = (node.clone(), board.clone(), release.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, node, board, release).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn handle(
    stream: UnixStream,
    node: String,
    board: Board,
    release: mpsc::Sender<ReleaseCall>,
) -> std::io::Result<()> {
    let peer_uid = stream.peer_cred()?.uid();
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // Bounded: a client that never finishes its line is dropped.
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(rd).read_line(&mut line),
    )
    .await
    .map_err(|_| std::io::Error::other("request timed out"))??;
    if n == 0 {
        return Ok(());
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            status: None,
            error: Some(format!("bad request: {e}")),
        },
        Ok(Request::Status) => Reply {
            status: Some(StatusReport {
                node,
                resources: board.lock().unwrap().clone(),
            }),
            error: None,
        },
        Ok(Request::Release { .. }) if peer_uid != nix::unistd::geteuid().as_raw() => Reply {
            status: None,
            error: Some(format!(
                "release refused: uid {peer_uid} is not the daemon's user"
            )),
        },
        Ok(Request::Release {
            resource,
            hold_off_ms,
        }) => {
            let (tx, rx) = oneshot::channel();
            let call = ReleaseCall {
                resource,
                hold_off: Duration::from_millis(hold_off_ms),
                reply: tx,
            };
            let r = match release.send(call).await {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Err("daemon is shutting down".into())),
                Err(_) => Err("daemon is shutting down".into()),
            };
            Reply {
                status: None,
                error: r.err(),
            }
        }
    };
    let mut out = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await
}

/// Client side: one request, one reply.
pub async fn call(runtime_dir: &Path, req: &Request, wait: Duration) -> Result<Reply, String> {
    let path = socket_path(runtime_dir);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "dlm-electd is not running (no daemon answers on {})",
                    path.display()
                )
            }
            _ => format!("cannot connect to {}: {e}", path.display()),
        })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    wr.write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tokio::time::timeout(wait, BufReader::new(rd).read_line(&mut answer))
        .await
        .map_err(|_| format!("no answer from the daemon within {wait:?}"))?
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from the daemon: {e}"))
}
