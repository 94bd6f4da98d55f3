//! Preferred nodes (`prefer`, `preempt`) with real daemons on the `file`
//! backend: started in either order, the preferred node ends master with
//! `preempt = true` and whoever was first keeps it without; a preferred
//! master that dies is replaced; never two masters (the hooks' event log),
//! and the handover is bounded.

mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, assert_never_two_masters, held, wait_for};

/// Resource `web` preferring a, then b; `extra` is more of its keys.
fn web(lab: &Lab, preempt: bool, extra: &str) -> String {
    let hook = lab.timed_hook();
    format!(
        "[[resource]]\nname = \"web\"\nprefer = [\"a\", \"b\"]\npreempt = {preempt}\n[[resource.action]]\ntype = \"exec\"\nacquire = {hook}\nrelease = {hook}\n{extra}"
    )
}

/// The time of the last `event` of `node`.
fn last(lab: &Lab, node: &str, event: &str) -> u64 {
    lab.times()
        .iter()
        .rev()
        .find(|(_, n, e)| n == node && e == event)
        .unwrap_or_else(|| panic!("no {node} {event} in {:?}", lab.times()))
        .0
}

/// The resource stays with daemon `i` as master and the others standby
/// for `d` (polled through status).
fn stays_master(lab: &Lab, i: usize, d: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        assert_eq!(lab.sole_master("web"), i);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bound on a handover here: the old master's release hook, its unlock,
/// and one poll of the new one (100 ms), with room for a loaded machine.
const HANDOVER: u64 = 5_000;

#[test]
fn with_preempt_the_preferred_node_ends_master_whoever_starts_first() {
    // Less preferred first: b wins, then hands over to a.
    let mut lab = Lab::new();
    let res = web(&lab, true, "");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "master");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.sole_master("web"), a);
    lab.assert_order("b release web", "a acquire web");
    let gap = last(&lab, "a", "acquire") - last(&lab, "b", "release");
    eprintln!("preempt handover: {gap} ms from b's release hook to a's acquire hook");
    assert!(gap < HANDOVER, "handover took {gap} ms");
    assert!(lab.daemons[b].log().contains("handing mastership over"));
    stays_master(&lab, a, Duration::from_secs(1));

    // Preferred first: a wins and b defers.
    let mut lab = Lab::new();
    let res = web(&lab, true, "");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    stays_master(&lab, a, Duration::from_secs(1));
    assert_eq!(lab.count("b acquire web"), 0);
    assert_never_two_masters(&lab.events());
}

#[test]
fn without_preempt_whoever_was_first_keeps_it() {
    let mut lab = Lab::new();
    let res = web(&lab, false, "");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "master");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "standby");
    // a is a candidate all along (b's probes see it, see the next test);
    // b keeps mastership.
    stays_master(&lab, b, Duration::from_secs(2));
    assert_eq!(lab.count("a acquire web"), 0);
    assert_eq!(lab.count("b release web"), 0);

    // Once b stops, a takes over; b restarted defers to a.
    lab.daemons[b].stop();
    lab.daemons[a].wait_state("web", "master");
    let b2 = lab.start("b", &res);
    lab.daemons[b2].wait_state("web", "standby");
    stays_master(&lab, a, Duration::from_secs(1));
    assert_never_two_masters(&lab.events());
}

#[test]
fn a_preferred_master_that_dies_is_replaced_and_takes_over_again_on_return() {
    let mut lab = Lab::new();
    let res = web(&lab, true, "");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    lab.keeper(a);
    // SIGKILL: a's keeper releases for it, and its candidate lock goes with
    // the process, so b stops deferring and takes over.
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
    let gap = last(&lab, "b", "acquire") - last(&lab, "a", "release");
    eprintln!(
        "takeover after SIGKILL: {gap} ms from a's release hook (its keeper) to b's acquire hook"
    );
    assert!(gap < HANDOVER, "takeover took {gap} ms");
    // a comes back and, preferred with preempt, gets it back.
    let a2 = lab.start("a", &res);
    lab.daemons[a2].wait_state("web", "master");
    assert_eq!(lab.sole_master("web"), a2);
    assert_never_two_masters(&lab.events());
}

#[test]
fn an_unlisted_node_defers_to_listed_candidates() {
    let mut lab = Lab::new();
    let res = web(&lab, false, "");
    let c = lab.start("c", &res);
    lab.daemons[c].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    // c stops: b, listed, takes over; c restarted defers to b.
    lab.daemons[c].stop();
    lab.daemons[b].wait_state("web", "master");
    let c2 = lab.start("c", &res);
    lab.daemons[c2].wait_state("web", "standby");
    // b releases on request and holds off: c, the only eligible node, takes it.
    let cfg = lab.daemons[b].config.clone();
    support::cli_ok(&cfg, &["release", "web", "--hold-off", "1h"]);
    lab.daemons[c2].wait_state("web", "master");
    assert_never_two_masters(&lab.events());
}

#[test]
fn an_unhealthy_preferred_node_is_not_a_candidate_until_it_recovers() {
    let mut lab = Lab::new();
    let check = format!(
        "[resource.check]\nexec = [\"/bin/sh\", \"-c\", \"test ! -e {}/$DLM_ELECTD_NODE.sick\"]\ninterval = \"100ms\"\nfall = 1\nrise = 1\nhold_off = \"1s\"\n",
        lab.dir.path().display()
    );
    let res = web(&lab, true, &check);
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    let sick = lab.path("a.sick");
    fs::write(&sick, "").unwrap();
    lab.daemons[b].wait_state("web", "master");
    // Still sick: b keeps it although a is preferred and preempt is on.
    stays_master(&lab, b, Duration::from_millis(1500));
    fs::remove_file(&sick).unwrap();
    lab.daemons[a].wait_state("web", "master");
    wait_for(WAIT, "b standby", || {
        (lab.daemons[b].state("web").as_deref() == Some("standby")).then_some(())
    });
    assert_never_two_masters(&lab.events());
}

/// Holds `path` with an OFD write lock, as a daemon would, until dropped.
fn hold_lock(path: &std::path::Path) -> fs::File {
    use std::os::fd::AsRawFd;
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    // SAFETY: a zeroed flock is a valid whole-file lock request.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a plain fcntl on our fd with a valid flock.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(rc, 0, "lock {}", path.display());
    f
}

#[test]
fn when_the_lock_frees_the_preferred_candidate_wins_even_polling_slower() {
    let mut lab = Lab::new();
    // Someone else holds the lock while both daemons start.
    let outsider = hold_lock(&lab.path("locks").join("web.lock"));
    let slow = web(&lab, false, "").replace(
        "preempt = false\n",
        "preempt = false\npoll_interval = \"1s\"\n",
    );
    let fast = web(&lab, false, "").replace(
        "preempt = false\n",
        "preempt = false\npoll_interval = \"50ms\"\n",
    );
    let a = lab.start("a", &slow);
    let b = lab.start("b", &fast);
    lab.daemons[a].wait_state("web", "standby");
    lab.daemons[b].wait_state("web", "standby");
    // a is a candidate: its candidate lock is held.
    let cand = lab.path("locks").join("web.c0.lock");
    wait_for(WAIT, "a's candidate lock", || held(&cand).then_some(()));
    drop(outsider);
    // b polls 20 times as often, yet defers: a gets it.
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.sole_master("web"), a);
    assert_eq!(lab.count("b acquire web"), 0, "{:?}", lab.events());
}

#[test]
fn a_reload_that_turns_preempt_on_hands_over_to_the_preferred_candidate() {
    let mut lab = Lab::new();
    let res = web(&lab, false, "");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "master");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "standby");
    let cand = lab.path("locks").join("web.c0.lock");
    wait_for(WAIT, "a's candidate lock", || held(&cand).then_some(()));
    stays_master(&lab, b, Duration::from_millis(500));
    let cfg = lab.daemons[b].config.clone();
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, text.replace("preempt = false", "preempt = true")).unwrap();
    lab.daemons[b].signal(Signal::SIGHUP);
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.sole_master("web"), a);
    lab.assert_order("b release web", "a acquire web");
}

/// A candidate lock nobody will act on (on dlmfs: a daemon killed without
/// `cleanup` leaves its candidate lock cached on its node): the less
/// preferred node defers for a window only, gives a free lock back once,
/// then keeps it a window later; with `preempt` it does not hand over to
/// the stuck candidate, and once that candidate lock is free and a live
/// preferred node comes, it hands over to it. Fails when deferral is
/// unbounded (b never becomes master).
#[test]
fn a_stuck_candidate_delays_mastership_by_a_bounded_time_only() {
    let mut lab = Lab::new();
    let cand = lab.path("locks").join("web.c0.lock");
    let stuck = hold_lock(&cand);
    let res = web(&lab, true, "");
    let t0 = Instant::now();
    let b = lab.start("b", &res);
    // The first attempt never defers (crash recovery): b wins at once and,
    // with preempt, hands over at the next poll to "a", which is stuck.
    // Then the window (10 s with the lab's 100 ms poll), a free lock given
    // back, a window later kept: about 20 s.
    wait_for(Duration::from_secs(60), "b master for good", || {
        lab.daemons[b]
            .log()
            .contains("taking mastership, and ignoring a")
            .then_some(())
    });
    lab.daemons[b].wait_state("web", "master");
    let took = t0.elapsed();
    eprintln!("master despite a stuck candidate after {took:?}");
    assert!(
        lab.daemons[b].log().contains("giving it straight back"),
        "a free lock is given back once first"
    );
    // preempt does not hand over to the stuck candidate.
    let acquired = lab.count("b acquire web");
    stays_master(&lab, b, Duration::from_secs(3));
    assert_eq!(lab.count("b acquire web"), acquired, "{:?}", lab.events());

    // The stuck lock goes away (cleanup on a's node); b's next probe sees
    // it free. Then a real "a" comes: b hands over to it. (A restart
    // faster than b's poll would go unseen: a stays ignored until its
    // candidate lock is next free; see docs/ARCHITECTURE.md.)
    drop(stuck);
    wait_for(WAIT, "b sees a's candidate lock free", || {
        lab.daemons[b]
            .log()
            .contains("no longer ignoring a")
            .then_some(())
    });
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.sole_master("web"), a);
    assert_never_two_masters(&lab.events());
}
