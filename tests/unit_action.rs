//! `unit` actions against a real D-Bus: a private `dbus-daemon` and a
//! stand-in for systemd's manager on it (written with zbus's server side
//! here), which owns `org.freedesktop.systemd1` and implements the methods
//! the daemon calls (StartUnit, StopUnit, GetUnit, GetUnitFileState,
//! Subscribe, a unit's ActiveState) and emits `JobRemoved`. Real
//! `dlm-electd` processes reach it through DBUS_SYSTEM_BUS_ADDRESS. This
//! checks the wire protocol: method names and signatures, signal matching
//! by job path (a decoy signal for another job comes first, and the real
//! one is sent before the method's reply), results and timeouts. systemd
//! itself is the `system` tier's (Debian VMs).
//!
//! Needs `dbus-daemon` (Debian package `dbus`; scripts/test-all installs
//! it).
//!
//! For the real-systemd tier (`system` branch, Debian VMs), a resource with
//! a unit action looks like this (`timeout` is optional, default "2m"):
//!
//! ```toml
//! [[resource]]
//! name = "web"
//! [[resource.action]]
//! type = "unit"
//! unit = "nginx.service"
//! timeout = "2m"
//! ```
//!
//! What only a real systemd can show: the master's unit is `active` and the
//! others' `inactive`; a unit that fails to start (e.g. `ExecStart=/bin/false`)
//! gives `backoff` with "start X: the unit failed to start" and fails over;
//! `systemctl enable X` then `check-config` warns; a standby where the unit
//! was started by hand (or at boot) stops it at daemon start.

mod support;

use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use support::lab::Lab;
use support::{Daemon, WAIT, log_hook, read_events, wait_for};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

// ---- the bus ----

/// A private `dbus-daemon`, killed on drop.
struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    fn start(dir: &Path) -> Bus {
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.join("bus.sock").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It warns that it cannot raise its fd limit, which is harmless.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon) must be installed");
        // It prints its address once it listens.
        let mut address = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        assert!(!address.trim().is_empty(), "dbus-daemon printed no address");
        Bus {
            child,
            address: address.trim().to_string(),
        }
    }

    /// The wrapper that runs a command on this bus as the system bus.
    fn env(&self) -> String {
        format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.address)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the stand-in for systemd ----

#[derive(Debug, Clone)]
struct Fake {
    active: bool,
    file_state: &'static str,
    /// The start job's result; None: it never finishes.
    start: Option<&'static str>,
}

#[derive(Default)]
struct State {
    /// "StartUnit NAME MODE", "StopUnit NAME MODE", "GetUnit NAME", in order.
    calls: Vec<String>,
    units: HashMap<String, Fake>,
    jobs: u32,
}

type Shared = Arc<Mutex<State>>;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum SdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchUnit(String),
}

fn unit_path(name: &str) -> String {
    let escaped: String = name
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("_{b:02x}"),
        })
        .collect();
    format!("/org/freedesktop/systemd1/unit/{escaped}")
}

struct ManagerIface(Shared);

impl ManagerIface {
    fn job(&self, call: String, name: &str) -> Result<(u32, Option<Fake>), SdError> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(call);
        s.jobs += 1;
        let fake = s.units.get(name).cloned();
        Ok((s.jobs, fake))
    }

    fn set_active(&self, name: &str, active: bool) {
        if let Some(u) = self.0.lock().unwrap().units.get_mut(name) {
            u.active = active;
        }
    }
}

fn job_path(id: u32) -> OwnedObjectPath {
    ObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}"))
        .unwrap()
        .into()
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl ManagerIface {
    async fn subscribe(&self) {}

    async fn start_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, SdError> {
        let (id, fake) = self.job(format!("StartUnit {name} {mode}"), &name)?;
        let Some(fake) = fake else {
            return Err(SdError::NoSuchUnit(format!("Unit {name} not found.")));
        };
        if let Some(result) = fake.start {
            // Another client's job ends first, with another result: only
            // the job path may tell them apart.
            Self::job_removed(&emitter, id + 1000, job_path(id + 1000), &name, "failed").await?;
            if result == "done" {
                self.set_active(&name, true);
            }
            // Before the reply, as a quick job does in systemd.
            Self::job_removed(&emitter, id, job_path(id), &name, result).await?;
        }
        Ok(job_path(id))
    }

    async fn stop_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath, SdError> {
        let (id, fake) = self.job(format!("StopUnit {name} {mode}"), &name)?;
        if fake.is_none() {
            return Err(SdError::NoSuchUnit(format!("Unit {name} not loaded.")));
        }
        self.set_active(&name, false);
        Self::job_removed(&emitter, id, job_path(id), &name, "done").await?;
        Ok(job_path(id))
    }

    async fn get_unit(&self, name: String) -> Result<OwnedObjectPath, SdError> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(format!("GetUnit {name}"));
        match s.units.get(&name) {
            Some(_) => Ok(ObjectPath::try_from(unit_path(&name)).unwrap().into()),
            None => Err(SdError::NoSuchUnit(format!("Unit {name} not loaded."))),
        }
    }

    async fn get_unit_file_state(&self, file: String) -> Result<String, SdError> {
        match self.0.lock().unwrap().units.get(&file) {
            Some(u) => Ok(u.file_state.to_string()),
            None => Err(SdError::NoSuchUnit(format!("Unit file {file} not found."))),
        }
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

struct UnitIface {
    name: String,
    state: Shared,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl UnitIface {
    #[zbus(property)]
    async fn active_state(&self) -> String {
        let s = self.state.lock().unwrap();
        match s.units.get(&self.name) {
            Some(u) if u.active => "active".into(),
            _ => "inactive".into(),
        }
    }
}

/// The stand-in, serving on its own runtime until dropped.
struct Systemd {
    state: Shared,
    _conn: zbus::Connection,
    _rt: tokio::runtime::Runtime,
}

impl Systemd {
    fn serve(bus: &Bus, units: &[(&str, Fake)]) -> Systemd {
        let state: Shared = Arc::default();
        state.lock().unwrap().units = units
            .iter()
            .map(|(n, f)| (n.to_string(), f.clone()))
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async {
            let mut b = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .name("org.freedesktop.systemd1")
                .unwrap()
                .serve_at("/org/freedesktop/systemd1", ManagerIface(state.clone()))
                .unwrap();
            for (name, _) in units {
                b = b
                    .serve_at(
                        unit_path(name),
                        UnitIface {
                            name: name.to_string(),
                            state: state.clone(),
                        },
                    )
                    .unwrap();
            }
            b.build().await.expect("stand-in on the bus")
        });
        Systemd {
            state,
            _conn: conn,
            _rt: rt,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn active(&self, unit: &str) -> bool {
        self.state.lock().unwrap().units[unit].active
    }
}

fn unit(active: bool, file_state: &'static str, start: Option<&'static str>) -> Fake {
    Fake {
        active,
        file_state,
        start,
    }
}

// ---- daemons ----

/// A `Lab` whose daemons run on a private bus, with the stand-in for
/// systemd serving there. Fields drop in order: the daemons and their
/// keepers first, then the stand-in, then the bus.
struct Setup {
    lab: Lab,
    sd: Systemd,
    bus: Bus,
}

impl Setup {
    /// The bus (in the lab's dir) and the stand-in with `units`.
    fn new(units: &[(&str, Fake)]) -> Setup {
        let lab = Lab::new();
        let bus = Bus::start(lab.dir.path());
        let sd = Systemd::serve(&bus, units);
        Setup { lab, sd, bus }
    }

    /// Starts `node` with `resources` on the bus; returns its index once
    /// its keeper runs.
    fn start(&mut self, node: &str, resources: &str) -> usize {
        let env = self.bus.env();
        let i = self
            .lab
            .start_under(node, &["/usr/bin/env", env.as_str()], resources);
        self.lab.keeper(i);
        i
    }

    /// Resource `name` with an exec action logging to the lab's event log,
    /// then a unit action for `unit` (`extra`: more of its keys).
    fn resource(&self, name: &str, unit: &str, extra: &str) -> String {
        let hook = log_hook("", &self.lab.events_log());
        format!(
            "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"exec\"\nacquire = {hook}\nrelease = {hook}\n[[resource.action]]\ntype = \"unit\"\nunit = \"{unit}\"\n{extra}"
        )
    }
}

/// The common opening: the stand-in with one unit `name` as `fake`, and
/// node a started with resource web over it (`extra`: more keys of the
/// unit action); returns the setup and a's index.
fn web_on(name: &str, fake: Fake, extra: &str) -> (Setup, usize) {
    let mut s = Setup::new(&[(name, fake)]);
    let res = s.resource("web", name, extra);
    let a = s.start("a", &res);
    (s, a)
}

/// The resource's last error once it shows `state` with an error.
fn wait_error(d: &Daemon, resource: &str, state: &str) -> String {
    wait_for(
        WAIT,
        &format!("{resource} {state} with an error\n{}", d.log()),
        || {
            let s = d.status()?;
            let r = s["resources"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == resource)?
                .clone();
            (r["state"] == state).then(|| r["last_error"].as_str().map(str::to_string))?
        },
    )
}

#[test]
fn start_on_acquire_stop_on_release_and_warn_when_enabled() {
    let (mut s, a) = web_on("web.service", unit(false, "enabled", Some("done")), "");
    let d = &mut s.lab.daemons[a];
    d.wait_state("web", "master");
    assert_eq!(s.sd.calls(), ["StartUnit web.service replace"]);
    assert!(s.sd.active("web.service"));

    // The unit is on line 17 of the config write_config wrote.
    let config = d.config.clone();
    let warning = format!(
        "{}:17:8: key `unit`: unit web.service is enabled: it starts at boot on every node, which defeats the election; run systemctl disable web.service",
        config.display()
    );
    assert!(d.log().contains(&warning), "{}", d.log());
    let out = Command::new(support::BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &s.bus.address)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), format!("warning: {warning}"));
    // No bus: no warning, no error (said at debug level only).
    let out = Command::new(support::BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    d.stop();
    assert_eq!(
        s.sd.calls(),
        [
            "StartUnit web.service replace",
            "StopUnit web.service replace"
        ]
    );
    assert!(!s.sd.active("web.service"));
    assert_eq!(s.lab.events(), ["a acquire web", "a release web"]);
}

#[test]
fn a_failed_start_is_a_failed_acquire_that_rolls_back() {
    let (mut s, a) = web_on("bad.service", unit(false, "disabled", Some("failed")), "");
    let e = wait_error(&s.lab.daemons[a], "web", "backoff");
    assert!(
        e.contains(
            "action 2 (unit bad.service) failed: start bad.service: the unit failed to start"
        ),
        "{e}"
    );
    // The unit is stopped (a failed unit may be restarted by systemd), and
    // the exec action before it rolled back.
    assert_eq!(
        s.sd.calls()[..2],
        [
            "StartUnit bad.service replace",
            "StopUnit bad.service replace"
        ]
    );
    assert_eq!(s.lab.events()[..2], ["a acquire web", "a release web"]);
    s.lab.daemons[a].stop();
}

#[test]
fn a_start_past_the_timeout_fails_and_stops_the_unit() {
    let (mut s, a) = web_on(
        "slow.service",
        unit(false, "disabled", None),
        "timeout = \"300ms\"\n",
    );
    let e = wait_error(&s.lab.daemons[a], "web", "backoff");
    assert!(
        e.contains("slow.service did not finish within the action's timeout (300ms)"),
        "{e}"
    );
    assert_eq!(
        s.sd.calls()[..2],
        [
            "StartUnit slow.service replace",
            "StopUnit slow.service replace"
        ]
    );
    s.lab.daemons[a].stop();
}

/// A unit active on a node that is not master (enabled, or started by
/// hand) is stopped by the startup reconcile although this instance never
/// applied the resource; its other actions (here a hook) are not undone
/// without the applied record, and an inactive unit is left alone.
#[test]
fn a_standby_stops_an_active_unit_without_a_record() {
    let mut s = Setup::new(&[
        ("web.service", unit(true, "disabled", Some("done"))),
        ("db.service", unit(false, "disabled", Some("done"))),
    ]);
    // b holds both locks; it has no actions of its own.
    let b = s.start(
        "b",
        "[[resource]]\nname = \"web\"\n[[resource]]\nname = \"db\"\n",
    );
    s.lab.daemons[b].wait_state("web", "master");
    s.lab.daemons[b].wait_state("db", "master");
    let res = format!(
        "{}{}",
        s.resource("web", "web.service", ""),
        s.resource("db", "db.service", "")
    );
    let a = s.start("a", &res);
    let events = s.lab.events_log();
    let d = &mut s.lab.daemons[a];
    wait_for(WAIT, &format!("web.service stopped\n{}", d.log()), || {
        (!s.sd.active("web.service")).then_some(())
    });
    let calls = s.sd.calls();
    assert!(
        calls.contains(&"GetUnit db.service".to_string()),
        "{calls:?}"
    );
    let mut calls: Vec<String> = calls
        .into_iter()
        .filter(|c| !c.starts_with("GetUnit"))
        .collect();
    calls.dedup();
    assert_eq!(calls, ["StopUnit web.service replace"]);
    d.wait_state("web", "standby");
    d.wait_state("db", "standby");
    assert!(
        d.log()
            .contains("unit web.service is active on a node that is not master"),
        "{}",
        d.log()
    );
    assert_eq!(read_events(&events), Vec::<String>::new(), "hooks ran");
    d.stop();
    assert!(!s.sd.calls().iter().any(|c| c.starts_with("StartUnit")));
}

/// A master killed with SIGKILL: its lock keeper stops the unit (over the
/// bus, from its own process) before it lets the lock go.
#[test]
fn the_keeper_stops_the_unit_of_a_killed_master() {
    let (s, a) = web_on("web.service", unit(false, "disabled", Some("done")), "");
    let d = &s.lab.daemons[a];
    d.wait_state("web", "master");
    assert!(s.sd.active("web.service"));
    d.signal(Signal::SIGKILL);
    support::wait_exit_of(d.keeper, "the keeper");
    assert!(!s.sd.active("web.service"), "{}", d.log());
    assert_eq!(
        s.sd.calls(),
        [
            "StartUnit web.service replace",
            "StopUnit web.service replace"
        ]
    );
    assert_eq!(s.lab.events(), ["a acquire web", "a release web"]);
}
