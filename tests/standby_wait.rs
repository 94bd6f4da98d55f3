//! The event-driven standby on the `file` backend: it waits for the lock
//! in the kernel (F_OFD_SETLKW on a thread of its own), so it takes over
//! the moment the master lets go, whatever its poll interval; and its wait
//! is cancelled cleanly, never leaving a lock held by nobody's will.
//!
//! Every resource here polls once an hour: a takeover within the test's
//! bounds can only come from the wait.

mod support;

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, cli_ok, wait_for};

/// Resource `name` with a logging exec action that polls once an hour.
fn hourly(lab: &Lab, name: &str) -> String {
    let res = lab.logging(name);
    let line = format!("name = \"{name}\"\n");
    res.replacen(&line, &format!("{line}poll_interval = \"1h\"\n"), 1)
}

/// Node a master of `web`, node b standing by (waiting) for it.
fn pair(lab: &mut Lab) -> (usize, usize) {
    let res = hourly(lab, "web");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    (a, b)
}

#[test]
fn a_waiting_standby_takes_over_at_once_on_release() {
    let mut lab = Lab::new();
    let (a, b) = pair(&mut lab);
    let cfg = lab.daemons[a].config.clone();
    let t = Instant::now();
    cli_ok(&cfg, &["release", "web", "--hold-off", "1h"]);
    lab.daemons[b].wait_state("web", "master");
    // Generous for a loaded machine; polling would take an hour.
    assert!(t.elapsed() < WAIT, "took {:?}", t.elapsed());
    lab.assert_order("a release web", "b acquire web");
}

#[test]
fn a_waiting_standby_takes_over_at_once_on_stop_and_on_sigkill() {
    let mut lab = Lab::new();
    let (a, b) = pair(&mut lab);
    lab.daemons[a].stop();
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
    // Now a comes back as the waiting standby and b is killed: b's keeper
    // runs the release step, lets go, and a wins.
    let res = hourly(&lab, "web");
    let a2 = lab.start("a", &res);
    lab.daemons[a2].wait_state("web", "standby");
    lab.keeper(b);
    lab.daemons[b].signal(Signal::SIGKILL);
    lab.daemons[a2].wait_state("web", "master");
    lab.assert_order("b release web", "a acquire web");
    assert_eq!(lab.count("a acquire web"), 2);
}

#[test]
fn a_cancelled_wait_holds_nothing() {
    let mut lab = Lab::new();
    let (a, b) = pair(&mut lab);
    // Reload b without `web`: its runner stops, and with it the wait.
    let other = hourly(&lab, "db");
    lab.config("b", &other);
    lab.daemons[b].signal(Signal::SIGHUP);
    wait_for(WAIT, "b without web", || {
        lab.daemons[b].state("web").is_none().then_some(())
    });
    // a lets go; a third node must win: nobody holds web for b.
    let res = hourly(&lab, "web");
    let c = lab.start("c", &res);
    lab.daemons[c].wait_state("web", "standby");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1h"],
    );
    lab.daemons[c].wait_state("web", "master");
    assert_eq!(lab.count("b acquire web"), 0, "{:?}", lab.events());
    // A waiting standby stops at once on SIGTERM, holding nothing.
    let t = Instant::now();
    lab.daemons[b].stop();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn polling_stays_available() {
    // `standby = "poll"`: the hourly standby does not take over on release
    // (watched for 2 s: an absence has no event to wait for), which the
    // waiting one does in milliseconds.
    let mut lab = Lab::new();
    let web = hourly(&lab, "web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "master");
    let cfg = lab.config("b", &web);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "backend = \"file\"\n",
        "backend = \"file\"\nstandby = \"poll\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let stderr = lab.stderr_path("b");
    let b = lab.spawn("b", &[], cfg, stderr);
    lab.daemons[b].wait_state("web", "standby");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1h"],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("standby"));
}
