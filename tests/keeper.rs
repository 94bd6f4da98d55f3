//! The `file` backend's lock keeper, end to end: real `dlm-electd run`
//! daemons and their `keep-locks` processes, real OFD locks in a shared
//! directory, exec actions that append "node event resource" to one log.
//! The release hook sleeps a second before it logs, so a keeper that let the
//! lock go before the release actions finished would show as the new
//! master's `acquire` line coming first.
//!
//! `Lab` makes this test process a child subreaper, so the keeper of a
//! killed daemon becomes our child: we can read its exit status, and the
//! Drop of `Lab` kills and reaps every keeper (and whatever its hooks
//! started, by session) even when a test fails.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::lab::{Lab, exec_resource};
use support::{alive, cli_ok, log_hook, proc_stat, wait_exit_of};

/// Starts node `node` with one resource `web` whose exec action logs
/// `node event resource`, the release side after a second's sleep; returns
/// its index once its keeper runs.
fn start(lab: &mut Lab, node: &str) -> usize {
    let log = lab.events_log();
    let web = exec_resource("web", &log_hook("", &log), &log_hook("sleep 1; ", &log));
    let i = lab.start(node, &web);
    let keeper = lab.keeper(i);
    // Its own session: a Ctrl-C or a kill of our process group misses it.
    assert_eq!(proc_stat(keeper).unwrap().2, keeper, "keeper runs setsid");
    i
}

/// A lab with node a master of web, node b standing by, and their indexes.
fn master_and_standby() -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let b = start(&mut lab, "b");
    lab.daemons[b].wait_state("web", "standby");
    // b never applied web, so its startup undoes nothing (a holds it).
    assert_eq!(lab.count("b release web"), 0, "{:?}", lab.events());
    (lab, a, b)
}

#[test]
fn sigkill_of_master_keeps_the_lock_until_its_keeper_ran_release() {
    let (mut lab, a, b) = master_and_standby();
    let keeper = lab.daemons[a].keeper;
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    lab.daemons[b].wait_state("web", "master");
    // The killed node's release (run by its keeper, with its node name)
    // comes before the new master's acquire.
    lab.assert_order("a release web", "b acquire web");
    assert_eq!(lab.count("a release web"), 1);
    assert_eq!(
        wait_exit_of(keeper, "a's keeper to exit"),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
    assert!(
        lab.daemons[a]
            .log()
            .contains("lock keeper: released; lock given up"),
        "{}",
        lab.daemons[a].log()
    );
}

#[test]
fn sigterm_shutdown_leaves_no_keeper_running() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let keeper = lab.daemons[a].keeper;
    lab.daemons[a].stop();
    // The daemon waited for (and reaped) its keeper before exiting.
    assert!(
        !alive(keeper),
        "keeper {keeper} still runs\n{}",
        lab.daemons[a].log()
    );
    // Released once, by the daemon: the keeper had nothing left to do.
    assert_eq!(lab.count("a release web"), 1, "{:?}", lab.events());
}

#[test]
fn release_switchover_drops_the_lock_from_the_keeper() {
    let (mut lab, a, b) = master_and_standby();
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "60s"],
    );
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
    let keeper = lab.daemons[a].keeper;
    assert!(alive(keeper), "the keeper lives on with its daemon");
    // The keeper closed its copy: killing a now runs no release there.
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    assert_eq!(wait_exit_of(keeper, "a's keeper to exit"), Some(0));
    assert_eq!(lab.count("a release web"), 1, "{:?}", lab.events());
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("master"));
}

/// systemd's default stop sends SIGTERM to every process of the unit at
/// once: the keeper must not let go early, the daemon releases as usual.
#[test]
fn sigterm_to_daemon_and_keeper_together_releases_before_takeover() {
    let (mut lab, a, b) = master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGTERM).unwrap();
    lab.daemons[a].stop();
    assert!(!alive(keeper), "keeper exits with its daemon");
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
}

/// A keeper that dies loses nothing while its daemon lives: the daemon
/// still has its own fd, says so, and releases normally.
#[test]
fn killed_keeper_makes_its_daemon_release_in_order_and_exit() {
    let (mut lab, a, b) = master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    // The daemon notices its keeper died: without one it may take no lock
    // (a standby could never become master), so it stops in order and
    // exits 1 for its service manager to start it again.
    lab.daemons[a].wait_log(&format!("lock keeper (pid {keeper}) exited"));
    assert_eq!(
        lab.daemons[a].wait_exit(),
        Some(1),
        "{}",
        lab.daemons[a].log()
    );
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
    // The same on a standby: it leaves rather than stand by uselessly
    // (it could never become master), and the master is untouched.
    let c = start(&mut lab, "c");
    lab.daemons[c].wait_state("web", "standby");
    let keeper = lab.daemons[c].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    assert_eq!(
        lab.daemons[c].wait_exit(),
        Some(1),
        "{}",
        lab.daemons[c].log()
    );
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("master"));
}
