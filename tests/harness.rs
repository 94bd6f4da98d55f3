//! The test harness itself (tests/support/): a `Lab` cleans up after a
//! failed test, and `assert_never_two_masters` catches what it should.

mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use support::lab::{Lab, exec_resource};
use support::{WAIT, alive, assert_never_two_masters, log_hook, wait_for};

/// What a failed test leaves for `Lab`'s Drop: a live daemon with its
/// keeper, and the keeper of a SIGKILLed daemon busy in a release hook (in
/// the keeper's session) that would run for 1000 s. After the panic none
/// of them may be left.
#[test]
fn a_failed_test_leaves_no_daemon_keeper_or_keeper_hook_behind() {
    let mut pids = Vec::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut lab = Lab::new();
        let hook_pid = lab.path("hook.pid");
        let release = format!(
            r#"["/bin/sh", "-c", "echo $$ > {}; exec sleep 1000"]"#,
            hook_pid.display()
        );
        let web = exec_resource("web", &log_hook("", &lab.events_log()), &release);
        let a = lab.start("a", &web);
        lab.daemons[a].wait_state("web", "master");
        let b = lab.start("b", &web);
        lab.daemons[b].wait_state("web", "standby");
        pids.push(lab.daemons[a].pid().as_raw());
        pids.push(lab.daemons[b].pid().as_raw());
        // Found here only to check on them afterwards: Drop must find
        // them itself.
        pids.push(lab.daemons[a].find_keeper());
        pids.push(lab.daemons[b].find_keeper());
        // a dies; its keeper runs the release hook, which hangs.
        lab.daemons[a].signal(Signal::SIGKILL);
        lab.daemons[a].wait_exit();
        let hook = wait_for(WAIT, "a's release hook", || {
            fs::read_to_string(&hook_pid)
                .ok()?
                .trim()
                .parse::<i32>()
                .ok()
        });
        pids.push(hook);
        panic!("a failing test");
    }));
    assert!(r.is_err(), "the test body should have failed");
    assert_eq!(pids.len(), 5, "the setup did not get far: {pids:?}");
    let left: Vec<i32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "still running after the Lab dropped: {left:?}"
    );
}

/// A daemon that never exits (stopped here) fails `wait_exit`; the Lab
/// must still kill it.
#[test]
fn a_daemon_that_outlives_wait_exit_is_killed_with_the_lab() {
    let mut lab = Lab::new();
    let a = lab.start("a", "");
    wait_for(WAIT, "a's status", || lab.daemons[a].status());
    let pid = lab.daemons[a].pid().as_raw();
    lab.daemons[a].signal(Signal::SIGSTOP);
    let r = catch_unwind(AssertUnwindSafe(|| lab.daemons[a].wait_exit()));
    assert!(r.is_err(), "a stopped daemon exited: {r:?}");
    drop(lab);
    assert!(
        !alive(pid),
        "daemon {pid} still there after the Lab dropped"
    );
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn masters_of_different_resources_and_handovers_are_fine() {
    assert_never_two_masters(&lines(
        "a acquire web\nb acquire db\na acquire web\na release web\nb acquire web\nb release db\na acquire db",
    ));
}

#[test]
#[should_panic(expected = "line 3: b acquired web while a was master")]
fn two_masters_of_one_resource_are_caught() {
    assert_never_two_masters(&lines("a acquire web\nb acquire db\nb acquire web"));
}

#[test]
#[should_panic(expected = "line 3: a acquired db while b was master")]
fn a_release_of_another_node_does_not_end_mastership() {
    assert_never_two_masters(&lines("b acquire db\na release db\na acquire db"));
}

#[test]
#[should_panic(expected = "bad event line")]
fn a_malformed_event_line_is_an_error() {
    assert_never_two_masters(&lines("a acquire2 web"));
}
