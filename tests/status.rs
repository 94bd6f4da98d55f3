//! `dlm-electd status` as an admin uses it, against real daemons holding
//! real locks (file backend): the table, the JSON and its documentation,
//! `--watch`, and `release --hold-off` refusing values that make no sense.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};
use support::lab::{Lab, bare_resources};
use support::{BIN, WAIT, cli, cli_ok, wait_for};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Nodes a (master of web) and b (standby); a then released web for an
/// hour, so b is master and a holds off.
fn switched_over() -> Lab {
    let mut lab = Lab::new();
    let web = lab.logging("web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start("b", &web);
    lab.daemons[b].wait_state("web", "standby");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1h"],
    );
    lab.daemons[b].wait_state("web", "master");
    lab
}

fn web_of(status: &Value) -> &Value {
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .expect("web in status")
}

#[test]
fn table_and_json_show_since_hold_off_and_transitions() {
    let lab = switched_over();
    let (a, b) = (&lab.daemons[0], &lab.daemons[1]);
    let before = now_ms();
    let text = String::from_utf8(cli_ok(&a.config, &["status"]).stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "node: a", "{text}");
    let head: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "RESOURCE", "STATE", "SINCE", "HOLD-OFF", "HEALTH", "LAST", "ERROR"
        ]
    );
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "standby"], "{text}");
    assert!(
        row[2].ends_with('s') && row[3] == "ago",
        "since, relative: {text}"
    );
    // 1h less the few seconds since the release, rounded up.
    assert!(
        (row[4] == "1h" || row[4].starts_with("59m"))
            && row[5] == "left"
            && row[6] == "-"
            && row[7] == "-",
        "hold-off left, no check, no error: {text}"
    );

    let s = a.status().unwrap();
    let after = now_ms();
    let now = s["now_ms"].as_u64().unwrap();
    assert!((before..=after).contains(&now), "now_ms {now} is Unix ms");
    let w = web_of(&s);
    assert_eq!(w["state"], "standby");
    let since = w["since_ms"].as_u64().unwrap();
    assert!(since <= now && now - since < 60_000, "since_ms {since}");
    let until = w["hold_off_until_ms"].as_u64().unwrap();
    assert!(
        until > now + 3_500_000 && until <= now + 3_600_000,
        "hold_off_until_ms {until}, now {now}"
    );
    assert!(w["last_error"].is_null());
    // standby → acquiring → master → releasing → standby.
    assert_eq!(w["transitions"], 4, "{w}");
    assert_eq!(web_of(&b.status().unwrap())["transitions"], 2);

    // `resume` ends the hold-off: it leaves the status at once.
    cli_ok(&a.config, &["resume", "web"]);
    let w = web_of(&a.status().unwrap()).clone();
    assert!(w.get("hold_off_until_ms").is_none(), "{w}");
    let text = String::from_utf8(cli_ok(&a.config, &["status"]).stdout).unwrap();
    let row: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(&row[4..], ["-", "-", "-"], "{text}");
}

/// Every field `status --json` prints is in the field table of
/// docs/operating.md, with its unit where it has one.
#[test]
fn every_json_field_is_documented() {
    let lab = switched_over();
    let s = lab.daemons[0].status().unwrap();
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md")).unwrap();
    let section = page
        .split("\n### `status --json`")
        .nth(1)
        .expect("a docs/operating.md section \"### `status --json`\"");
    let section = section.split("\n#").next().unwrap();
    let documented = |key: &str| {
        section
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| {
                panic!("field {key} is not in docs/operating.md's table:\n{section}")
            })
    };
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.extend(web_of(&s).as_object().unwrap().keys().map(|k| k.as_str()));
    assert!(keys.contains(&"hold_off_until_ms") && keys.contains(&"transitions"));
    for k in keys {
        let row = documented(k);
        if k.ends_with("_ms") {
            assert!(row.contains("Unix time in ms"), "{row}");
        }
    }
    for state in [
        "standby",
        "acquiring",
        "master",
        "releasing",
        "backoff",
        "stalled",
    ] {
        assert!(section.contains(&format!("`{state}`")), "state {state}");
    }
}

#[test]
fn release_refuses_a_zero_or_negative_hold_off_and_changes_nothing() {
    let mut lab = Lab::new();
    let web = lab.logging("web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "master");
    for (bad, why) in [
        ("0s", "must be more than 0s"),
        ("-5s", "cannot be negative"),
        ("2d", "at most 24h"),
        ("soon", "write e.g. 30s, 5m, 1h"),
    ] {
        let out = cli(
            &lab.daemons[a].config,
            &["release", "web", "--hold-off", bad],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(&format!(
                "invalid value '{bad}' for '--hold-off <DURATION>'"
            )) && err.contains(why),
            "{bad}: {err}"
        );
    }
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
    assert_eq!(lab.count("a release web"), 0);
}

/// `status --watch` with its output piped; its lines come through a
/// channel so that every read is bounded. Killed on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(config: &std::path::Path, args: &[&str]) -> Watch {
        let mut child = Command::new(BIN)
            .args(["status", "--watch", "--interval", "200ms"])
            .args(args)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line that satisfies `f`.
    fn line_where(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if f(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line with {what} from status --watch: {e}"),
            }
        }
    }

    /// Waits for its exit; (code, stderr).
    fn wait(&mut self) -> (Option<i32>, String) {
        let st = wait_for(WAIT, "status --watch to exit", || {
            self.child.try_wait().unwrap()
        });
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (st.code(), err)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_refreshes_until_ctrl_c() {
    let mut lab = Lab::new();
    let web = lab.logging("web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "master");
    let mut w = Watch::start(&lab.daemons[a].config, &[]);
    // Two refreshes, each a whole table; the second shows a change.
    w.line_where("web master", |l| {
        l.starts_with("web") && l.contains("master")
    });
    w.line_where("the next table", |l| l == "node: a");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1h"],
    );
    w.line_where("web standby, holding off", |l| {
        l.starts_with("web") && l.contains("standby") && l.contains("left")
    });
    kill(Pid::from_raw(w.child.id() as i32), Signal::SIGINT).unwrap();
    let (code, err) = w.wait();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn watch_json_ends_when_the_daemon_goes_away() {
    let mut lab = Lab::new();
    let web = lab.logging("web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "master");
    let mut w = Watch::start(&lab.daemons[a].config, &["--json"]);
    // One JSON document per line.
    for _ in 0..2 {
        let l = w.line_where("a JSON line", |_| true);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(web_of(&v)["state"], "master");
    }
    lab.daemons[a].stop();
    let (code, err) = w.wait();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("stopped watching"), "{err}");
}

#[test]
fn status_lists_last_error() {
    let mut lab = Lab::new();
    // A file where the lock directory should be: every attempt fails.
    std::fs::write(lab.path("locks"), "not a dir").unwrap();
    let web = lab.logging("web");
    let a = lab.start("a", &web);
    lab.daemons[a].wait_state("web", "backoff");
    let err = lab.daemons[a].last_error("web").unwrap();
    let text = String::from_utf8(cli_ok(&lab.daemons[a].config, &["status"]).stdout).unwrap();
    let row = text.lines().find(|l| l.starts_with("web")).unwrap();
    assert!(row.contains("backoff") && row.ends_with(&err), "{text}");
}

/// A mistyped `--config` is reported, not answered with "not running" from
/// the default socket.
#[test]
fn a_config_path_that_cannot_be_read_is_an_error_not_not_running() {
    for cmd in [&["status"][..], &["release", "web"], &["resume", "web"]] {
        let out = std::process::Command::new(support::BIN)
            .args(cmd)
            .args(["--config", "/nonexistent/dlm-electd.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot read /nonexistent/dlm-electd.toml"),
            "{cmd:?}: {err}"
        );
    }
}

/// A daemon with no resources: `status` says so, as docs/operating.md and the
/// STATUS= line do (issue #19, item 12), rather than print a bare header.
#[test]
fn status_without_resources_says_no_resources_configured() {
    let mut lab = Lab::new();
    let a = lab.start("a", "");
    let cfg = lab.daemons[a].config.clone();
    let out = wait_for(WAIT, "a daemon answering status", || {
        let out = cli(&cfg, &["status"]);
        out.status.success().then_some(out)
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["node: a", "no resources configured"], "{text}");
    assert!(!text.contains("RESOURCE"), "{text}");
    let json: Value = serde_json::from_slice(&cli_ok(&cfg, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["resources"], serde_json::json!([]));
}

/// The daemon's first answer to `status` lists every configured resource:
/// the control socket may answer before every runner has had a turn (more
/// than one runtime worker), so each is on the board before it runs.
#[test]
fn the_first_status_answer_lists_every_resource() {
    let mut lab = Lab::new();
    let resources = bare_resources(300);
    let a = lab.start("a", &resources);
    let first = wait_for(WAIT, "a first status answer", || lab.daemons[a].status());
    let listed = first["resources"].as_array().unwrap().len();
    assert_eq!(
        listed, 300,
        "the first answer listed {listed} of 300: {first}"
    );
}
