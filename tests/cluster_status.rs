//! `status --cluster` with real daemons on the `file` backend: every node's
//! record beside the locks, a master named only while its daemon runs and
//! its lock is held, a killed daemon shown down at once, the same view from
//! every node.

mod support;

use serde_json::Value;
use std::path::Path;
use support::lab::Lab;
use support::{WAIT, cli_ok, wait_for};

fn view(config: &Path) -> Value {
    serde_json::from_slice(&cli_ok(config, &["status", "--cluster", "--json"]).stdout).unwrap()
}

/// `web`'s master in the view, if one is named.
fn master(v: &Value) -> Option<String> {
    let r = &v["resources"][0];
    (r["master"]["kind"] == "node").then(|| r["master"]["node"].as_str().unwrap().to_string())
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {v}"))
}

#[test]
fn every_node_sees_the_same_master_and_a_killed_one_goes_down() {
    let mut lab = Lab::with_state_dirs();
    let res = format!("{}{}", lab.logging("web"), lab.logging("db"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &res);
    let c = lab.start("c", &res);
    lab.daemons[b].wait_state("web", "standby");
    lab.daemons[c].wait_state("web", "standby");
    let cfgs: Vec<_> = lab.daemons.iter().map(|d| d.config.clone()).collect();
    // Records are written within a moment of each change.
    let v = wait_for(WAIT, "every node's record", || {
        let v = view(&cfgs[2]);
        let all = ["a", "b", "c"].iter().all(|n| {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == *n && x["running"] == true)
        });
        (all && v["resources"][0]["nodes"] == serde_json::json!(["master", "standby", "standby"]))
            .then_some(v)
    });
    assert_eq!(master(&v).as_deref(), Some("a"), "{v}");
    // a made both lock files: each resource's first mastership.
    assert_eq!(v["resources"][0]["master"]["epoch"], 1, "{v}");
    for cfg in &cfgs {
        assert_eq!(
            master(&view(cfg)).as_deref(),
            Some("a"),
            "the same from every node"
        );
    }
    let table = String::from_utf8(cli_ok(&cfgs[1], &["status", "--cluster"]).stdout).unwrap();
    assert!(
        table.contains("cluster: 3 node(s) with a record, 3 running"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web") && l.split_whitespace().nth(1) == Some("a")),
        "{table}"
    );

    // A drained node shows its drain.
    cli_ok(&cfgs[2], &["drain", "--reason", "disk swap"]);
    wait_for(WAIT, "c's drain in the view", || {
        let v = view(&cfgs[0]);
        (node(&v, "c")["drain"]["reason"] == "disk swap"
            && v["resources"][0]["nodes"][2] == "drained")
            .then_some(())
    });

    // The master killed: down at once (its presence lock went with it),
    // and never named master again; then b takes over.
    lab.keeper(a);
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGKILL);
    let v = wait_for(WAIT, "a down", || {
        let v = view(&cfgs[1]);
        (node(&v, "a")["running"] == false).then_some(v)
    });
    assert_ne!(master(&v).as_deref(), Some("a"), "{v}");
    let v = wait_for(WAIT, "b master", || {
        let v = view(&cfgs[1]);
        (master(&v).as_deref() == Some("b")).then_some(v)
    });
    assert_eq!(v["resources"][0]["nodes"][0], "down", "{v}");
    // The next mastership is numbered on from the record a left in the
    // lock file, though a died without a release.
    assert_eq!(v["resources"][0]["master"]["epoch"], 2, "{v}");
    support::assert_never_two_masters(&lab.events());
}

/// dlmfs and dlm read the cluster through this node's daemon (a lock call
/// can sleep through a recovery, which a client could not wait out): with
/// none running, the client says so and exits 1, touching no lock.
#[test]
fn on_a_dlm_backend_the_client_asks_its_daemon_and_says_when_none_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[lock]\nbackend = \"dlm\"\n[daemon]\nruntime_dir = \"{0}/run\"\nstate_dir = \"{0}/state\"\n[[resource]]\nname = \"web\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = support::cli(&config, &["status", "--cluster"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("through this node's daemon") && err.contains("not running"),
        "{err}"
    );
}
