//! `drain` and `undrain` with real daemons on the `file` backend: a
//! drained node releases what it is master of (release steps, then the
//! lock), competes for nothing, stays drained across a restart and while
//! no other node is left, and competes again once undrained. Never two
//! masters.

mod support;

use std::fs;
use support::lab::Lab;
use support::{assert_never_two_masters, cli, cli_ok};

/// Waits until `status --cluster` shows node `i` (in name order) in
/// `states`, one per resource: `drain` judges from those records.
fn seen_as(config: &std::path::Path, i: usize, states: &[&str]) {
    support::wait_for(support::WAIT, "the node records", || {
        let o = cli_ok(config, &["status", "--cluster", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        states
            .iter()
            .enumerate()
            .all(|(r, s)| v["resources"][r]["nodes"][i] == *s)
            .then_some(())
    });
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_drained_node_hands_over_stays_out_across_a_restart_and_comes_back_on_undrain() {
    let mut lab = Lab::with_state_dirs();
    let res = format!("{}{}", lab.logging("web"), lab.logging("db"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    let cfg_a = lab.daemons[a].config.clone();
    // drain checks b could take over from b's node record, written within
    // a moment of b's state.
    seen_as(&cfg_a, 1, &["standby", "standby"]);

    let o = cli_ok(&cfg_a, &["drain", "--reason", "kernel update", "--wait"]);
    let text = out(&o);
    assert!(text.contains("node drained: kernel update"), "{text}");
    assert!(
        text.contains("every resource (2) has a master on another node"),
        "{text}"
    );
    for r in ["web", "db"] {
        assert_eq!(lab.daemons[b].state(r).as_deref(), Some("master"));
        assert_eq!(lab.daemons[a].state(r).as_deref(), Some("drained"));
    }
    assert!(lab.count("a release web") == 1 && lab.count("a release db") == 1);
    let s = lab.daemons[a].status().unwrap();
    assert_eq!(s["drain"]["reason"], "kernel update", "{s}");
    let table = out(&cli_ok(&cfg_a, &["status"]));
    assert!(
        table.contains("drained: kernel update") && table.contains("`dlm-electd undrain` ends it"),
        "{table}"
    );
    lab.daemons[a].wait_log("node drained: kernel update");

    // A restart finds the record: drained from the start.
    lab.daemons[a].stop();
    let a2 = lab.start("a", &res);
    lab.daemons[a2].wait_state("web", "drained");
    lab.daemons[a2].wait_state("db", "drained");

    // The last other node stops: a drained node still takes nothing.
    lab.daemons[b].stop();
    let lock = lab.path("locks").join("web.lock");
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(lab.daemons[a2].state("web").as_deref(), Some("drained"));
        assert!(!support::held(&lock), "nobody holds web");
    }
    assert_eq!(lab.count("a acquire web"), 1, "no acquire while drained");

    // Without --force, draining the last node that could take over is
    // refused, saying which resources and what the others are.
    let o = cli(&cfg_a, &["drain", "--reason", "again"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("no other running node could be master of 2 resource(s)")
            && text.contains("web: b down")
            && text.contains("--force drains anyway"),
        "{text}"
    );
    let s = lab.daemons[a2].status().unwrap();
    assert_eq!(s["drain"]["reason"], "kernel update", "unchanged: {s}");
    // --wait with nobody to take over says which and why, and fails.
    let o = cli(&cfg_a, &["drain", "--force", "--wait", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("2 of 2 resource(s) have no master elsewhere")
            && text.contains("web: released here, but no node holds its lock"),
        "{text}"
    );

    // Undrained: competes at once.
    let text = out(&cli_ok(&cfg_a, &["undrain"]));
    assert!(text.contains("node undrained: competing"), "{text}");
    lab.daemons[a2].wait_state("web", "master");
    lab.daemons[a2].wait_state("db", "master");
    let s = lab.daemons[a2].status().unwrap();
    assert!(s.get("drain").is_none(), "{s}");
    let text = out(&cli_ok(&cfg_a, &["undrain"]));
    assert!(text.contains("node was not drained"), "{text}");
    assert_never_two_masters(&lab.events());
}

#[test]
fn a_node_drained_while_its_daemon_is_stopped_starts_drained() {
    let mut lab = Lab::with_state_dirs();
    let alerts = lab.path("alerts.log");
    let res = format!(
        "[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"echo \\\"$DLM_ELECTD_RESOURCE $DLM_ELECTD_STATE $DLM_ELECTD_REASON\\\" >> {}\"]\n{}",
        alerts.display(),
        lab.logging("web")
    );
    let cfg = lab.config("a", &res);
    let o = cli(&cfg, &["drain", "--reason", "disk swap"]);
    assert!(
        out(&o).contains("web: no other node has a record"),
        "the only node: {}",
        out(&o)
    );
    let o = cli_ok(&cfg, &["drain", "--force", "--reason", "disk swap"]);
    let text = out(&o);
    assert!(
        text.contains("no daemon runs here: it starts drained"),
        "{text}"
    );
    let record = lab.path("a").join("state/drain.json");
    let d: serde_json::Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    assert_eq!(d["reason"], "disk swap");
    assert!(d["by"].as_str().unwrap().contains("uid"), "{d}");

    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "drained");
    lab.daemons[a].wait_log("competing for no resource until `dlm-electd undrain`");
    assert_eq!(lab.count("a acquire web"), 0);
    support::wait_for(support::WAIT, "the drained alert", || {
        let log = fs::read_to_string(&alerts).unwrap_or_default();
        log.contains("web drained drained: disk swap").then_some(())
    });
    // A reason of more than one line is refused before anything changes.
    let o = cli(&cfg, &["drain", "--reason", "a\nb"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let d: serde_json::Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    assert_eq!(d["reason"], "disk swap", "unchanged");
    // SIGHUP reads the record again too: removed by hand, then a reload.
    fs::remove_file(&record).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(lab.count("a acquire web"), 1);
}

#[test]
fn a_drained_waiting_standby_never_takes_the_lock() {
    let mut lab = Lab::with_state_dirs();
    let res = lab.logging("web");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    // b waits in the kernel for the lock (the file backend's default).
    lab.daemons[b].wait_log("waiting for lock web");
    seen_as(&lab.daemons[b].config.clone(), 0, &["master"]);
    cli_ok(&lab.daemons[b].config.clone(), &["drain"]);
    lab.daemons[b].wait_state("web", "drained");
    lab.daemons[a].stop();
    let lock = lab.path("locks").join("web.lock");
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!support::held(&lock), "the drained standby took the lock");
    }
    assert_eq!(lab.count("b acquire web"), 0);
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("drained"));
}

#[test]
fn a_drain_the_daemon_does_not_follow_or_cannot_place_fails_and_says_why() {
    let mut lab = Lab::with_state_dirs();
    let res = lab.logging("web");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let cfg = lab.daemons[a].config.clone();
    // The config's state_dir edited since the daemon started: the daemon
    // reads the old one, so it is not drained, and drain says so.
    let text = fs::read_to_string(&cfg).unwrap();
    let moved = lab.path("moved.toml");
    fs::write(&moved, text.replace("/state\"", "/state2\"")).unwrap();
    let o = cli(&moved, &["drain", "--force", "--wait"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("it is NOT drained"), "{}", out(&o));
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
    // Recorded where that config says: a restart on it starts drained.
    assert!(lab.path("a/state2/drain.json").exists());
    fs::remove_dir_all(lab.path("a/state2")).unwrap();
    // A main file that is not TOML: refused before anything is written.
    fs::write(&moved, format!("{text}\n[daemon\n")).unwrap();
    let o = cli(&moved, &["drain"]);
    assert_eq!(o.status.code(), Some(78), "{}", out(&o));
    assert!(
        out(&o).contains("moved.toml:"),
        "file and line: {}",
        out(&o)
    );
    assert!(!lab.path("a/state2").exists() && !lab.path("a/state/drain.json").exists());
    // A bad --reason changes nothing either.
    let o = cli(&cfg, &["drain", "--reason", ""]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(!lab.path("a/state/drain.json").exists());
    // A damaged record drains, says why, and undrain removes it.
    fs::create_dir_all(lab.path("a/state")).unwrap();
    fs::write(lab.path("a/state/drain.json"), "{oops").unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_state("web", "drained");
    let table = out(&cli_ok(&cfg, &["status"]));
    assert!(table.contains("cannot be parsed"), "{table}");
    cli_ok(&cfg, &["undrain"]);
    lab.daemons[a].wait_state("web", "master");
    assert_never_two_masters(&lab.events());
}
