//! Fail counts (`max_failures`) with real daemons on the `file` backend: a
//! node whose acquire steps keep failing stops competing (state `failed`),
//! another node gets the resource, and `dlm-electd reset` or the
//! `failure_timeout` lets the node compete again. Never two masters.

mod support;

use std::fs;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, assert_never_two_masters, cli_ok, wait_for};

/// Resource `web` whose acquire step fails on node a while `broken`
/// exists (logging `a failed web`); `extra` is more of its keys.
fn web(lab: &Lab, extra: &str) -> String {
    let (log, flag) = (lab.events_log(), lab.path("broken"));
    let (log, flag) = (log.display(), flag.display());
    format!(
        r#"[[resource]]
name = "web"
{extra}
[[resource.action]]
type = "exec"
acquire = ["/bin/sh", "-c", "if [ \"$DLM_ELECTD_NODE\" = a ] && [ -e {flag} ]; then echo \"a failed web\" >> {log}; exit 1; fi; echo \"$DLM_ELECTD_NODE acquire web\" >> {log}"]
release = ["/bin/sh", "-c", "echo \"$DLM_ELECTD_NODE release web\" >> {log}"]
"#
    )
}

/// `web`'s row in daemon `i`'s status.
fn row(lab: &Lab, i: usize) -> serde_json::Value {
    let s = lab.daemons[i].status().expect("status");
    s["resources"][0].clone()
}

#[test]
fn a_node_that_keeps_failing_its_acquire_steps_stops_competing_until_reset() {
    let mut lab = Lab::new();
    fs::write(lab.path("broken"), "").unwrap();
    let res = web(
        &lab,
        "max_failures = 2\nfailure_window = \"1m\"\nfailure_timeout = \"1h\"",
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "failed");
    assert_eq!(lab.count("a failed web"), 2);
    let r = row(&lab, a);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let until = r["failed_until_ms"].as_u64().expect("failed_until_ms");
    assert!(
        until > now + 3_500_000 && until <= now + 3_600_000,
        "out for about the hour of failure_timeout: {r}"
    );
    assert!(lab.daemons[a].log().contains("not competing for 1h"));
    assert_eq!(r["failures"], 2, "what took it out: {r}");
    // `resume` is for hold-offs, and says what to use.
    let out = support::cli(&lab.daemons[a].config, &["resume", "web"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`dlm-electd reset` lets it compete again"),
        "{out:?}"
    );
    // Out: no more attempts (at a 100 ms poll there would be several
    // within this second), and no candidate lock held.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        assert_eq!(lab.daemons[a].state("web").as_deref(), Some("failed"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.count("a failed web"), 2, "no attempt while out");

    // Another node gets it.
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "master");

    // Reset: a competes again (standby while b holds), and takes over
    // once b stops, its acquire step fixed meanwhile.
    let out = cli_ok(&lab.daemons[a].config, &["reset", "web"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "web: fail count cleared; competing again\n"
    );
    lab.daemons[a].wait_state("web", "standby");
    assert_eq!(row(&lab, a)["failed_until_ms"], serde_json::Value::Null);
    fs::remove_file(lab.path("broken")).unwrap();
    lab.daemons[b].stop();
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.count("a acquire web"), 1);
    // (The failed steps' lines are no acquire: a rolled back.)
    let events: Vec<String> = lab
        .events()
        .into_iter()
        .filter(|l| !l.contains(" failed "))
        .collect();
    assert_never_two_masters(&events);
}

#[test]
fn the_failure_timeout_ends_it_by_itself() {
    let mut lab = Lab::new();
    fs::write(lab.path("broken"), "").unwrap();
    let res = web(&lab, "max_failures = 1\nfailure_timeout = \"2s\"");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "failed");
    let out_at = Instant::now();
    fs::remove_file(lab.path("broken")).unwrap();
    lab.daemons[a].wait_state("web", "master");
    assert!(
        out_at.elapsed() >= Duration::from_millis(1500),
        "back before the timeout: {:?}",
        out_at.elapsed()
    );
    lab.daemons[a].wait_log("failure_timeout over: competing again");
    assert_eq!(lab.count("a failed web"), 1);
}

#[test]
fn without_max_failures_a_failing_node_keeps_backing_off_and_trying() {
    let mut lab = Lab::new();
    fs::write(lab.path("broken"), "").unwrap();
    let a = lab.start("a", &web(&lab, ""));
    // Backoff doubles from 200 ms: four failures within a few seconds.
    wait_for(WAIT, "four failed acquires", || {
        (lab.count("a failed web") >= 4).then_some(())
    });
    assert_ne!(lab.daemons[a].state("web").as_deref(), Some("failed"));
    let out = support::cli(&lab.daemons[a].config, &["reset", "web"]);
    assert!(
        out.status.success(),
        "reset without fail counts is harmless"
    );
}
