//! Transition alerts (`[[notify]]`) with real daemons on the `file`
//! backend: every state change runs the programs in order with the state,
//! the previous state and a sequence number; a hung alert program never
//! holds up a handover, and a stop leaves no alert process behind.

mod support;

use std::fs;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, cli_ok, wait_for};

/// A daemon-wide `[[notify]]` appending `node resource prev>state seq
/// eEPOCH` to alerts.log (the epoch while this node holds the lock), and
/// resource `web` logging its steps.
fn with_alert_log(lab: &Lab) -> String {
    format!(
        "{}[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"echo \\\"$DLM_ELECTD_NODE $DLM_ELECTD_RESOURCE $DLM_ELECTD_PREVIOUS_STATE>$DLM_ELECTD_STATE $DLM_ELECTD_SEQ e$DLM_ELECTD_EPOCH\\\" >> {}\"]\n",
        lab.logging("web"),
        lab.path("alerts.log").display()
    )
}

/// alerts.log's lines of `node`, without the node.
fn alerts(lab: &Lab, node: &str) -> Vec<String> {
    fs::read_to_string(lab.path("alerts.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{node} web ")))
        .map(str::to_string)
        .collect()
}

fn wait_alerts(lab: &Lab, node: &str, want: &[&str]) {
    wait_for(WAIT, &format!("{node}'s alerts {want:?}"), || {
        (alerts(lab, node) == want).then_some(())
    });
}

#[test]
fn every_state_change_runs_the_alert_in_order() {
    let mut lab = Lab::new();
    let res = with_alert_log(&lab);
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    wait_alerts(
        &lab,
        "a",
        &[
            ">standby 0 e",
            "standby>acquiring 1 e1",
            "acquiring>master 2 e1",
        ],
    );
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "standby");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1m"],
    );
    lab.daemons[b].wait_state("web", "master");
    wait_alerts(
        &lab,
        "a",
        &[
            ">standby 0 e",
            "standby>acquiring 1 e1",
            "acquiring>master 2 e1",
            "master>releasing 3 e1",
            "releasing>standby 4 e",
        ],
    );
    // The next master's epoch is one on: it read a's record in the lock.
    wait_alerts(
        &lab,
        "b",
        &[
            ">standby 0 e",
            "standby>acquiring 1 e2",
            "acquiring>master 2 e2",
        ],
    );
    // The stop's own changes are alerted before the daemon exits.
    lab.daemons[b].stop();
    let b_seen = alerts(&lab, "b");
    assert_eq!(
        b_seen[3..],
        ["master>releasing 3 e2", "releasing>standby 4 e"],
        "{b_seen:?}"
    );
}

/// The hung alert program's command line: a sleep this test process
/// alone starts (its pid in the duration).
fn hung_cmd() -> String {
    format!("sleep {}", 600_000 + std::process::id())
}

/// Processes running `hung_cmd`.
fn hung_alerts() -> Vec<i32> {
    support::pids()
        .into_iter()
        .filter(|&p| support::cmdline(p).trim_end() == hung_cmd())
        .collect()
}

/// Kills what `hung_alerts` finds when the test ends, passed or failed
/// (a failed test's Lab kills daemon and keeper, not their hooks: that is
/// `cleanup`'s job in production).
struct KillHung;

impl Drop for KillHung {
    fn drop(&mut self) {
        for p in hung_alerts() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_hung_alert_program_never_holds_up_a_handover_nor_outlives_the_daemon() {
    let _kill = KillHung;
    let mut lab = Lab::new();
    let hung = format!(
        "{}[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"exec {}\"]\ntimeout = \"1h\"\n",
        lab.logging("web"),
        hung_cmd()
    );
    let a = lab.start("a", &hung);
    lab.daemons[a].wait_state("web", "master");
    wait_for(WAIT, "the hung alert running", || {
        (!hung_alerts().is_empty()).then_some(())
    });
    let b = lab.start("b", &lab.logging("web"));
    lab.daemons[b].wait_state("web", "standby");
    // The release and the takeover go on while a's first alert hangs.
    let t0 = Instant::now();
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1m"],
    );
    lab.daemons[b].wait_state("web", "master");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "handover took {:?}",
        t0.elapsed()
    );
    // A stop gives the queue a few seconds, then kills the program's
    // group: nothing left running.
    lab.daemons[a].stop();
    assert!(
        hung_alerts().is_empty(),
        "alert program left behind: {:?}",
        hung_alerts()
    );
    assert!(lab.daemons[a].log().contains("stopping them"));
}

/// The shipped example (packaging/examples/notify-alert) as the daemon
/// runs it: `webhook` POSTs one JSON message per change, here to a
/// listener of this test on 127.0.0.1.
#[test]
fn the_shipped_example_posts_each_change_to_a_webhook() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/examples/notify-alert"
    );
    let mut lab = Lab::new();
    let res = format!(
        "{}[[notify]]\nexec = [\"{script}\", \"webhook\", \"{url}\"]\nstates = [\"master\"]\n",
        lab.logging("web")
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let body: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(WAIT).expect("a POST for becoming master")).unwrap();
    assert_eq!(body["state"], "master");
    assert_eq!(body["previous_state"], "acquiring");
    assert_eq!(body["node"], "a");
    assert_eq!(body["resource"], "web");
    assert_eq!(body["text"], "dlm-electd: web on a: acquiring -> master");
    // `states = ["master"]`: nothing for the other changes.
    lab.daemons[a].stop();
    assert!(rx.try_recv().is_err(), "only master is alerted");
}

/// A backlog past 64 drops the oldest waiting alerts, never the newest:
/// the resource's current state is always told, with the drops counted
/// and the time of each change.
#[test]
fn a_full_backlog_drops_the_oldest_and_the_current_state_is_told() {
    let mut lab = Lab::new();
    let (go, log) = (lab.path("go"), lab.path("alerts.log"));
    let res = format!(
        "{}[[notify]]\nexec = [\"/bin/sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.05; done; echo \\\"$DLM_ELECTD_SEQ $DLM_ELECTD_STATE $DLM_ELECTD_DROPPED $DLM_ELECTD_SINCE_MS\\\" >> {}\"]\ntimeout = \"5m\"\n",
        lab.logging("web"),
        go.display(),
        log.display()
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let cfg = lab.daemons[a].config.clone();
    // 18 rounds of 4 changes while the first alert's program waits.
    for _ in 0..18 {
        cli_ok(&cfg, &["release", "web", "--hold-off", "1h"]);
        cli_ok(&cfg, &["resume", "web"]);
        lab.daemons[a].wait_state("web", "master");
    }
    let last_seq = lab.daemons[a].status().unwrap()["resources"][0]["transitions"]
        .as_u64()
        .unwrap();
    assert!(last_seq >= 2 + 18 * 4, "{last_seq}");
    fs::write(&go, "").unwrap();
    wait_for(WAIT, "the current state's alert", || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{last_seq} master ")))
            .then_some(())
    });
    let lines: Vec<Vec<u64>> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            vec![
                f[0].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            ]
        })
        .collect();
    let delivered = lines.len() as u64;
    let dropped: u64 = lines.iter().map(|l| l[1]).sum();
    // Every change was delivered or counted as dropped.
    assert_eq!(delivered + dropped, last_seq + 1, "{lines:?}");
    assert!(dropped > 0, "the backlog overflowed: {lines:?}");
    assert!(lines.windows(2).all(|w| w[0][0] < w[1][0]), "in order");
    assert!(
        lines.windows(2).all(|w| w[0][2] <= w[1][2]),
        "times of change"
    );
}
