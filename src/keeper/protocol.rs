//! The wire between the daemon and its keeper: one JSON object per
//! `SOCK_SEQPACKET` packet, a lock fd attached to `hold` as SCM_RIGHTS.
//!
//! daemon → keeper: `{"op":"hello","hooks":DIR}` (where the daemon tracks
//! its running hook groups, see `action::hooks`),
//! `{"op":"hold","resource":R,"actions":[...],"record":PATH}` (with the fd),
//! `{"op":"drop","resource":R}`; keeper → daemon: `{"ok":true}` or
//! `{"ok":false,"error":"..."}`.

use crate::config::ActionSpec;
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Largest message; a resource's actions are far smaller.
const MAX_MSG: usize = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Msg {
    Hello {
        /// The daemon's hook tracking dir: the keeper kills what is left
        /// there before it runs any release step, and tracks its own
        /// release hooks there too.
        #[serde(default)]
        hooks: Option<PathBuf>,
    },
    Hold {
        resource: String,
        actions: Vec<ActionSpec>,
        /// The instance's record that this resource's acquire steps ran
        /// (see `instance`): removed once the keeper's release succeeded, so
        /// a restart does not undo them a second time.
        #[serde(default)]
        record: Option<PathBuf>,
        /// Where the lock's range starts (`lock::twin`): the keeper's own
        /// lock calls must keep it, or the lock would stop showing as this
        /// lock's in /proc/locks. None: the whole file.
        #[serde(default)]
        start: Option<i64>,
    },
    Drop {
        resource: String,
    },
}

/// What went wrong on the wire. The timeouts are the socket's own
/// (SO_SNDTIMEO / SO_RCVTIMEO, set by the client).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("send timed out")]
    SendTimeout,
    #[error("send: {0}")]
    Send(Errno),
    #[error("no answer within the timeout")]
    ReceiveTimeout,
    #[error("receive: {0}")]
    Receive(Errno),
    #[error("message truncated")]
    Truncated,
    #[error("{0}")]
    Encode(serde_json::Error),
    /// The other side closed the socket before answering.
    #[error("it is gone (EOF)")]
    Eof,
    #[error("bad answer: {0}")]
    BadAnswer(serde_json::Error),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Ack {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    pub fn from(r: Result<(), String>) -> Ack {
        match r {
            Ok(()) => Ack {
                ok: true,
                error: None,
            },
            Err(e) => Ack {
                ok: false,
                error: Some(e),
            },
        }
    }
}

pub fn send(sock: &OwnedFd, body: &[u8], fd: Option<RawFd>) -> Result<(), WireError> {
    let fds = fd.map(|f| [f]);
    let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(body)],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(WireError::SendTimeout),
            Err(e) => return Err(WireError::Send(e)),
        }
    }
}

/// One received packet: its bytes and the fds that came with it.
pub type Packet = (Vec<u8>, Vec<OwnedFd>);

/// The next packet; `None` at EOF.
pub fn recv(sock: &OwnedFd) -> Result<Option<Packet>, WireError> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match r {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(WireError::ReceiveTimeout),
            Err(Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(WireError::Receive(e)),
        };
        let mut fds = Vec::new();
        if let Ok(it) = msg.cmsgs() {
            for c in it {
                if let ControlMessageOwned::ScmRights(v) = c {
                    // SAFETY: SCM_RIGHTS installed these fds in our table
                    // just now; nobody else owns them.
                    fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
        }
        let (n, flags) = (msg.bytes, msg.flags);
        if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
            return Err(WireError::Truncated);
        }
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

pub fn round_trip(sock: &OwnedFd, msg: &Msg, fd: Option<RawFd>) -> Result<Ack, WireError> {
    let body = serde_json::to_vec(msg).map_err(WireError::Encode)?;
    send(sock, &body, fd)?;
    match recv(sock)? {
        None => Err(WireError::Eof),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map_err(WireError::BadAnswer),
    }
}
