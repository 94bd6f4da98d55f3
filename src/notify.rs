//! systemd notifications (`Type=notify` or `notify-reload`): READY, STATUS,
//! RELOADING, STOPPING and the watchdog. All are no-ops when NOTIFY_SOCKET
//! is unset.
//!
//! Sending never blocks the caller: a notify socket's queue is short (10
//! datagrams by default) and a send to a full one blocks, which would stall
//! the supervisor loop, signals included, for as long as the service manager
//! does not read. So messages go, in order, to one thread that sends them.
//! STATUS= and WATCHDOG=1 alone are kept as the latest of each (a burst of
//! status changes at startup with thousands of resources once filled a
//! bounded queue and dropped READY=1); events (READY, RELOADING, STOPPING)
//! wait in order, and only past 64 unsent is one dropped (logged at debug
//! level).

use sd_notify::NotifyState;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
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

/// What waits for the sender thread. STATUS= and WATCHDOG=1 alone are
/// states, not events: only the latest of each is kept, so a burst of
/// status changes (thousands of resources starting) can never push out a
/// READY=1, RELOADING=1 or STOPPING=1, which wait in order.
struct Pending {
    events: VecDeque<Vec<Field>>,
    status: Option<String>,
    watchdog: bool,
}

/// Events beyond this many unsent are dropped (logged at debug level):
/// only a service manager that stopped reading gets there.
const MAX_EVENTS: usize = 64;

struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

static QUEUE: Queue = Queue {
    pending: Mutex::new(Pending {
        events: VecDeque::new(),
        status: None,
        watchdog: false,
    }),
    wake: Condvar::new(),
};

/// The queue, once its sender thread runs; None without NOTIFY_SOCKET.
fn sender() -> Option<&'static Queue> {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET").is_some()
            && std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(|| {
                    let q = &QUEUE;
                    loop {
                        let msg = {
                            let mut p = q.pending.lock().unwrap();
                            loop {
                                if let Some(m) = p.events.pop_front() {
                                    break m;
                                }
                                if let Some(s) = p.status.take() {
                                    break vec![Field::Status(s)];
                                }
                                if std::mem::take(&mut p.watchdog) {
                                    break vec![Field::Watchdog];
                                }
                                p = q.wake.wait(p).unwrap();
                            }
                        };
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
                .is_ok()
    });
    started.then_some(&QUEUE)
}

fn send(msg: Vec<Field>) {
    let Some(q) = sender() else { return };
    let mut p = q.pending.lock().unwrap();
    match msg.as_slice() {
        [Field::Status(s)] => p.status = Some(s.clone()),
        [Field::Watchdog] => p.watchdog = true,
        _ if p.events.len() >= MAX_EVENTS => {
            tracing::debug!("sd_notify: the service manager is not reading; message dropped")
        }
        _ => {
            // An event with its own STATUS= supersedes an older one unsent.
            if msg.iter().any(|f| matches!(f, Field::Status(_))) {
                p.status = None;
            }
            p.events.push_back(msg);
        }
    }
    q.wake.notify_one();
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
    if sender().is_none() {
        return;
    }
    let (done, wait) = std::sync::mpsc::channel();
    send(vec![Field::Flushed(done)]);
    let _ = wait.recv_timeout(limit);
}

/// How often to feed the watchdog: half its timeout, when it is enabled.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
