//! The systemd manager over D-Bus: start and stop a unit and wait for its
//! job's result, read a unit's state, and its unit file state. Used by the
//! `unit` action and by the config check (enabled units); it knows nothing
//! of either.
//!
//! D-Bus rather than spawning `systemctl`: it works inside a hardened unit
//! sandbox, and the `JobRemoved` signal reports how the job ended. The bus
//! is the system bus at the address libraries use (`DBUS_SYSTEM_BUS_ADDRESS`,
//! else `/run/dbus/system_bus_socket`); the tests point it at a private bus.

use futures::StreamExt;
use std::time::Duration;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// A job to queue for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Start,
    Stop,
}

impl Job {
    fn verb(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Stop => "stop",
        }
    }
}

/// Why the service manager did not do what was asked, or could not be
/// asked. `Job` is systemd's own verdict on a job (its `result` says which:
/// "failed", "timeout", ...); the others are trouble reaching it.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to the system bus: {0}")]
    Connect(Box<zbus::Error>),
    #[error("systemd manager on the system bus: {0}")]
    Manager(Box<zbus::Error>),
    /// Queueing or watching a job failed on the bus.
    #[error("{} {unit}: {source}", job.verb())]
    Call {
        job: Job,
        unit: String,
        source: Box<zbus::Error>,
    },
    /// The job ended with a result other than `done`.
    #[error("{} {unit}: {why}", job.verb())]
    Job {
        job: Job,
        unit: String,
        result: String,
        why: String,
    },
    #[error("{} {unit}: the system bus connection closed before the job finished", job.verb())]
    Closed { job: Job, unit: String },
    #[error("state of {unit}: {source}")]
    State {
        unit: String,
        source: Box<zbus::Error>,
    },
    #[error("unit file state of {unit}: {source}")]
    UnitFileState {
        unit: String,
        source: Box<zbus::Error>,
    },
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no answer from systemd within {0:?}")]
    Timeout(Duration),
    #[error("the query thread panicked")]
    Panicked,
}

/// How a job's result (the `JobRemoved` signal's last argument) is judged:
/// only `done` did what was asked. Pure, so the mapping is unit-tested.
pub fn job_outcome(job: Job, unit: &str, result: &str) -> Result<(), SystemdError> {
    let why = match result {
        "done" => return Ok(()),
        "failed" => format!(
            "the unit failed to {} (see systemctl status {unit})",
            job.verb()
        ),
        "dependency" => "a unit it depends on failed".into(),
        "timeout" => {
            "systemd's own timeout for the job expired (TimeoutStartSec=/TimeoutStopSec=)".into()
        }
        "canceled" => {
            "the job was canceled: another job replaced it (did someone stop or start the unit meanwhile?)"
                .into()
        }
        "skipped" => "the job was skipped: it did not apply to the unit's state".into(),
        other => format!("the job ended with result {other:?}"),
    };
    Err(SystemdError::Job {
        job,
        unit: unit.to_string(),
        result: result.to_string(),
        why,
    })
}

/// The error name of a D-Bus error reply, if `e` is one.
fn error_name(e: &zbus::Error) -> Option<String> {
    use zbus::DBusError;
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        zbus::Error::FDO(fdo) => Some(fdo.name().to_string()),
        _ => None,
    }
}

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// A connection to the system bus's service manager.
pub struct Manager {
    proxy: ManagerProxy<'static>,
}

impl Manager {
    pub async fn connect() -> Result<Manager, SystemdError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(|e| SystemdError::Connect(e.into()))?;
        let proxy = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| SystemdError::Manager(e.into()))?;
        Ok(Manager { proxy })
    }

    /// Queues a start or stop job for `unit` in mode "replace" and waits for
    /// its result. Stopping a unit systemd does not know succeeds (nothing
    /// runs). The caller bounds the wait.
    pub async fn run_job(&self, job: Job, unit: &str) -> Result<(), SystemdError> {
        let fail = |source: zbus::Error| SystemdError::Call {
            job,
            unit: unit.to_string(),
            source: source.into(),
        };
        // Subscribe before queueing: a quick job may be removed before its
        // reply reaches us, and a signal sent before the match exists is lost.
        let mut removed = self.proxy.receive_job_removed().await.map_err(fail)?;
        // The manager sends JobRemoved to the job's requester anyway; this
        // asks for it on buses where only subscribers get signals.
        if let Err(e) = self.proxy.subscribe().await {
            tracing::debug!("systemd Subscribe: {e}");
        }
        let queued = match job {
            Job::Start => self.proxy.start_unit(unit, "replace").await,
            Job::Stop => self.proxy.stop_unit(unit, "replace").await,
        };
        let path = match queued {
            Ok(p) => p,
            Err(e) if job == Job::Stop && error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => {
                return Ok(());
            }
            Err(e) => return Err(fail(e)),
        };
        tracing::debug!("{} {unit}: job {}", job.verb(), path.as_str());
        while let Some(signal) = removed.next().await {
            let Ok(args) = signal.args() else { continue };
            if args.job.as_str() == path.as_str() {
                return job_outcome(job, unit, &args.result);
            }
        }
        Err(SystemdError::Closed {
            job,
            unit: unit.to_string(),
        })
    }

    /// The unit's ActiveState ("active", "inactive", "failed", ...);
    /// "inactive" for a unit systemd has not loaded.
    pub async fn active_state(&self, unit: &str) -> Result<String, SystemdError> {
        let fail = |source: zbus::Error| SystemdError::State {
            unit: unit.to_string(),
            source: source.into(),
        };
        let path = match self.proxy.get_unit(unit).await {
            Ok(p) => p,
            Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => {
                return Ok("inactive".into());
            }
            Err(e) => return Err(fail(e)),
        };
        let proxy = UnitProxy::builder(self.proxy.inner().connection())
            .path(path)
            .map(|b| b.cache_properties(CacheProperties::No))
            .map_err(fail)?
            .build()
            .await
            .map_err(fail)?;
        proxy.active_state().await.map_err(fail)
    }

    /// The unit file state ("enabled", "disabled", "static", "masked", ...),
    /// or None when there is no unit file of that name.
    pub async fn unit_file_state(&self, unit: &str) -> Result<Option<String>, SystemdError> {
        match self.proxy.get_unit_file_state(unit).await {
            Ok(s) => Ok(Some(s)),
            Err(e)
                if matches!(
                    error_name(&e).as_deref(),
                    Some(NO_SUCH_UNIT | "org.freedesktop.DBus.Error.FileNotFound")
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(SystemdError::UnitFileState {
                unit: unit.to_string(),
                source: source.into(),
            }),
        }
    }
}

/// The unit file state of each of `units` (see `Manager::unit_file_state`),
/// from plain blocking code, within `limit`. Err when the service manager
/// cannot be asked (no system bus, no systemd on it).
pub fn unit_file_states(
    units: &[String],
    limit: Duration,
) -> Result<Vec<Option<String>>, SystemdError> {
    let units = units.to_vec();
    // Its own thread and runtime: the caller may run inside a runtime,
    // where starting another one panics.
    let asked = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SystemdError::Runtime)?;
        rt.block_on(async {
            tokio::time::timeout(limit, async {
                let m = Manager::connect().await?;
                let mut states = Vec::new();
                for u in &units {
                    states.push(m.unit_file_state(u).await?);
                }
                Ok(states)
            })
            .await
            .unwrap_or(Err(SystemdError::Timeout(limit)))
        })
    });
    asked.join().unwrap_or(Err(SystemdError::Panicked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_done_is_success() {
        assert!(job_outcome(Job::Start, "a.service", "done").is_ok());
        assert!(job_outcome(Job::Stop, "a.service", "done").is_ok());
        for r in [
            "failed",
            "dependency",
            "timeout",
            "canceled",
            "skipped",
            "frozen",
        ] {
            let e = job_outcome(Job::Start, "a.service", r).unwrap_err();
            assert!(matches!(&e, SystemdError::Job { result, .. } if result == r));
            let e = e.to_string();
            assert!(e.starts_with("start a.service: "), "{r}: {e}");
        }
        let text = |r| {
            job_outcome(Job::Start, "a.service", r)
                .unwrap_err()
                .to_string()
        };
        let e = text("failed");
        assert!(e.contains("failed to start"), "{e}");
        let e = job_outcome(Job::Stop, "a.service", "timeout")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("stop a.service: ") && e.contains("TimeoutStopSec"),
            "{e}"
        );
        let e = text("dependency");
        assert!(e.contains("depends on failed"), "{e}");
        let e = text("weird");
        assert!(e.contains("\"weird\""), "{e}");
    }
}
