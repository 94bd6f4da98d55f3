//! systemd notifications (`Type=notify` or `notify-reload`): READY, STATUS,
//! RELOADING, STOPPING and the watchdog. All are no-ops when NOTIFY_SOCKET
//! is unset.
//!
//! Sending never blocks the caller: a notify socket's queue is short (10
//! datagrams by default) and a send to a full one blocks, which would stall
//! the supervisor loop, signals included, for as long as the service manager
//! does not read. So messages go, in order, through a bounded queue to one
//! thread that sends them; when even that queue is full, a message is
//! dropped (logged at debug level): the next STATUS or WATCHDOG replaces it.

use sd_notify::NotifyState;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

/// One notify message's fields, owned so they can cross to the sender.
enum Field {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    MonotonicUsec(i128),
    Status(String),
    /// Not sent: answered once everything queued before it was sent.
    Flushed(std::sync::mpsc::Sender<()>),
}

fn sender() -> Option<&'static SyncSender<Vec<Field>>> {
    static SENDER: OnceLock<Option<SyncSender<Vec<Field>>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Vec<Field>>(64);
            std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for msg in rx {
                        if let [Field::Flushed(done)] = msg.as_slice() {
                            let _ = done.send(());
                            continue;
                        }
                        let states: Vec<NotifyState> = msg
                            .iter()
                            .filter_map(|f| {
                                Some(match f {
                                    Field::Ready => NotifyState::Ready,
                                    Field::Reloading => NotifyState::Reloading,
                                    Field::Stopping => NotifyState::Stopping,
                                    Field::Watchdog => NotifyState::Watchdog,
                                    Field::MonotonicUsec(u) => NotifyState::MonotonicUsec(*u),
                                    Field::Status(s) => NotifyState::Status(s),
                                    Field::Flushed(_) => return None,
                                })
                            })
                            .collect();
                        if let Err(e) = sd_notify::notify(&states) {
                            tracing::debug!("sd_notify: {e}");
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

fn send(msg: Vec<Field>) {
    let Some(tx) = sender() else { return };
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            tracing::debug!("sd_notify: the service manager is not reading; message dropped")
        }
        Err(TrySendError::Disconnected(_)) => tracing::debug!("sd_notify: sender thread gone"),
    }
}

pub fn ready(status: &str) {
    send(vec![Field::Ready, Field::Status(status.into())]);
}

pub fn status(status: &str) {
    send(vec![Field::Status(status.into())]);
}

/// A reload starts; `reloaded` says when it is over. systemd matches the
/// reload to its request by the monotonic time (`notify-reload` needs it),
/// taken here, when the reload starts.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(NotifyState::MonotonicUsec(now)) => send(vec![
            Field::Reloading,
            Field::MonotonicUsec(now),
            Field::Status("reloading".into()),
        ]),
        Ok(_) => {}
        Err(e) => tracing::debug!("sd_notify: no monotonic clock: {e}"),
    }
}

/// The reload `reloading` announced is over (applied or refused).
pub fn reloaded() {
    send(vec![Field::Ready]);
}

pub fn stopping() {
    send(vec![
        Field::Stopping,
        Field::Status("stopping: releasing resources".into()),
    ]);
}

pub fn watchdog() {
    send(vec![Field::Watchdog]);
}

/// Waits (at most `limit`) until every message queued so far was sent:
/// before the process exits, so STOPPING=1 is not lost.
pub fn flush(limit: Duration) {
    let Some(tx) = sender() else { return };
    let (done, wait) = std::sync::mpsc::channel();
    if tx.try_send(vec![Field::Flushed(done)]).is_ok() {
        let _ = wait.recv_timeout(limit);
    }
}

/// How often to feed the watchdog: half its timeout, when it is enabled.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
