//! Workload locks end to end on the `file` backend: real `dlm-electd
//! run-locked` processes of two "nodes" (two configs, each with its own
//! runtime dir, sharing one lock dir) holding real OFD and flock locks, and
//! programs that log `node acquire|release NAME` to one event log.
//!
//! The programs wait for a `go` file (bounded) instead of sleeping, so each
//! test decides when they end; every process is killed when a test fails.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, WAIT, alive, assert_never_two_masters, read_events, wait_for};

struct Lab {
    dir: tempfile::TempDir,
    /// run-locked processes, killed on drop.
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Programs whose run-locked was killed: they wrote their pid.
        for pid in fs::read_dir(self.dir.path().join("pids"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// What the test's program does after logging its start.
const UNTIL_GO: &str =
    "n=0; while [ ! -e \"$GO\" ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done";

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("pids")).unwrap();
        for node in ["a", "b"] {
            fs::write(
                dir.path().join(format!("{node}.toml")),
                format!(
                    "[node]\nname = \"{node}\"\n[lock]\nbackend = \"file\"\ndir = \"{}\"\n[daemon]\nruntime_dir = \"{}\"\npoll_interval = \"100ms\"\n",
                    dir.path().join("locks").display(),
                    dir.path().join(format!("run-{node}")).display()
                ),
            )
            .unwrap();
        }
        Lab {
            dir,
            children: vec![],
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("events")
    }

    /// The `go` file that ends the program of `tag`.
    fn go(&self, tag: &str) {
        fs::write(self.path(&format!("go-{tag}")), "").unwrap();
    }

    /// `run-locked NAME [extra] -- sh -c SCRIPT` as node `node`; the
    /// script sees GO (its go file), LOG (the event log), PIDS.
    fn command(&self, node: &str, tag: &str, extra: &[&str], script: &str) -> Command {
        let mut c = Command::new(BIN);
        c.arg("run-locked")
            .arg("--config")
            .arg(self.path(&format!("{node}.toml")))
            .args(extra)
            .args(["--", "/bin/sh", "-c", script])
            .env("GO", self.path(&format!("go-{tag}")))
            .env("LOG", self.log())
            .env("PIDFILE", self.path(&format!("pids/{tag}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Starts a program that logs acquire, waits for its go file, logs
    /// release; returns its index in `children`.
    fn start(&mut self, node: &str, tag: &str, extra: &[&str]) -> usize {
        let script = format!(
            "echo $$ > \"$PIDFILE\"; echo \"$DLM_ELECTD_NODE acquire $DLM_ELECTD_LOCK\" >> \"$LOG\"; {UNTIL_GO}; echo \"$DLM_ELECTD_NODE release $DLM_ELECTD_LOCK\" >> \"$LOG\""
        );
        let child = self
            .command(node, tag, extra, &script)
            .spawn()
            .expect("run-locked");
        self.children.push(child);
        self.children.len() - 1
    }

    /// The exit code of child `i`, waiting at most `limit`.
    fn exit_code(&mut self, i: usize, limit: Duration) -> Option<i32> {
        let c = &mut self.children[i];
        wait_for(limit, "run-locked to exit", || c.try_wait().unwrap()).code()
    }

    fn stderr(&mut self, i: usize) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.children[i].stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Whether child `i` has exited by now.
    fn exited(&mut self, i: usize) -> bool {
        self.children[i].try_wait().unwrap().is_some()
    }

    /// One quick `run-locked NAME -- true` as `node`: its exit code.
    fn quick(&self, node: &str, name: &str) -> i32 {
        let out = Command::new(BIN)
            .args(["run-locked", "--config"])
            .arg(self.path(&format!("{node}.toml")))
            .args([name, "--", "true"])
            .output()
            .unwrap();
        out.status.code().unwrap()
    }

    fn started(&self, node: &str) -> bool {
        read_events(&self.log()).contains(&format!("{node} acquire vm1"))
    }
}

fn pid_of(lab: &Lab, tag: &str) -> i32 {
    wait_for(WAIT, "the program's pid file", || {
        fs::read_to_string(lab.path(&format!("pids/{tag}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn started_on_two_nodes_at_once_it_runs_on_exactly_one() {
    let mut lab = Lab::new();
    let rounds = 15;
    for round in 0..rounds {
        let (ta, tb) = (format!("a{round}"), format!("b{round}"));
        let a = lab.start("a", &ta, &["vm1"]);
        let b = lab.start("b", &tb, &["vm1"]);
        // One gives up busy at once; the other's program is running.
        let (loser, winner, wtag) = wait_for(WAIT, "one run-locked to exit", || {
            if lab.exited(a) {
                Some((a, b, tb.clone()))
            } else if lab.exited(b) {
                Some((b, a, ta.clone()))
            } else {
                None
            }
        });
        assert_eq!(
            lab.exit_code(loser, WAIT),
            Some(75),
            "{}",
            lab.stderr(loser)
        );
        assert!(lab.stderr(loser).contains("busy"));
        lab.go(&wtag);
        assert_eq!(
            lab.exit_code(winner, WAIT),
            Some(0),
            "{}",
            lab.stderr(winner)
        );
    }
    let events = read_events(&lab.log());
    assert_eq!(events.len(), 2 * rounds, "{events:?}");
    assert_never_two_masters(&events);
}

#[test]
fn two_on_the_same_node_exclude_each_other() {
    let mut lab = Lab::new();
    let first = lab.start("a", "1", &["vm1"]);
    wait_for(WAIT, "the first program", || lab.started("a").then_some(()));
    assert_eq!(lab.quick("a", "vm1"), 75);
    // Another name is independent.
    assert_eq!(lab.quick("a", "vm2"), 0);
    lab.go("1");
    assert_eq!(lab.exit_code(first, WAIT), Some(0));
    assert_eq!(lab.quick("a", "vm1"), 0);
}

#[test]
fn program_end_frees_the_lock_at_once_and_a_waiter_gets_it_within_a_poll() {
    let mut lab = Lab::new();
    let a = lab.start("a", "a", &["vm1"]);
    wait_for(WAIT, "a's program", || lab.started("a").then_some(()));
    let b = lab.start("b", "b", &["--wait", "60s", "vm1"]);
    // b polls (every 100ms) while a runs.
    assert!(!lab.exited(b));
    assert!(!lab.started("b"));
    lab.go("a");
    assert_eq!(lab.exit_code(a, WAIT), Some(0));
    let freed = Instant::now();
    wait_for(WAIT, "b's program", || lab.started("b").then_some(()));
    let took = freed.elapsed();
    eprintln!("waiter started {took:?} after the holder's run-locked exited");
    // One poll (100ms) plus process start-up, with room for a loaded box.
    assert!(took < Duration::from_secs(5), "{took:?}");
    lab.go("b");
    assert_eq!(lab.exit_code(b, WAIT), Some(0));
    // Ended: free for anyone at once.
    assert_eq!(lab.quick("a", "vm1"), 0);
    assert_never_two_masters(&read_events(&lab.log()));
}

#[test]
fn a_sigkilled_run_locked_cannot_free_the_lock_while_its_program_runs() {
    let mut lab = Lab::new();
    let a = lab.start("a", "a", &["vm1"]);
    let prog = pid_of(&lab, "a");
    wait_for(WAIT, "a's program", || lab.started("a").then_some(()));
    lab.children[a].kill().unwrap();
    lab.children[a].wait().unwrap();
    assert!(alive(prog), "the program died with run-locked");
    // The program holds the inherited lock fds: busy on both nodes, and
    // `cleanup` (ExecStopPost of the daemon) leaves it alone.
    assert_eq!(lab.quick("b", "vm1"), 75);
    assert_eq!(lab.quick("a", "vm1"), 75);
    let out = Command::new(BIN)
        .arg("cleanup")
        .arg("--config")
        .arg(lab.path("a.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lab.quick("b", "vm1"), 75);
    // The program ends: the lock goes with it.
    lab.go("a");
    wait_for(WAIT, "the program to end", || (!alive(prog)).then_some(()));
    assert_eq!(lab.quick("b", "vm1"), 0);
}

#[test]
fn exit_status_env_and_signals_are_passed_through() {
    let mut lab = Lab::new();
    let out = lab
        .command(
            "a",
            "x",
            &["vm1"],
            "echo \"$DLM_ELECTD_LOCK $DLM_ELECTD_NODE ${DLM_ELECTD_EPOCH-none} $DLM_ELECTD_LOCK_FDS\"; exit 7",
        )
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[..3], ["vm1", "a", "none"], "{line}");
    assert_eq!(f.len(), 5, "two lock fds: {line}");
    // SIGTERM to run-locked, as soon as the program runs, reaches the
    // program; 128+15, lock freed.
    for round in 0..5 {
        let tag = format!("t{round}");
        let t = lab.start("a", &tag, &["vm1"]);
        let prog = pid_of(&lab, &tag);
        kill(Pid::from_raw(lab.children[t].id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(lab.exit_code(t, WAIT), Some(143));
        assert!(!alive(prog));
        // Free once the program's last child (its `sleep 0.05`, which
        // inherited the lock fds too) is gone.
        wait_for(WAIT, "the lock to be free", || {
            (lab.quick("b", "vm1") == 0).then_some(())
        });
    }
}

#[test]
fn a_bounded_wait_gives_up_busy_and_stays_killable() {
    let mut lab = Lab::new();
    let a = lab.start("a", "a", &["vm1"]);
    wait_for(WAIT, "a's program", || lab.started("a").then_some(()));
    let t0 = Instant::now();
    let b = lab.start("b", "b", &["--wait", "1s", "vm1"]);
    assert_eq!(lab.exit_code(b, WAIT), Some(75));
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(lab.stderr(b).contains("still held after 1s"));
    let c = lab.start("b", "c", &["--wait", "60s", "vm1"]);
    kill(Pid::from_raw(lab.children[c].id() as i32), Signal::SIGTERM).unwrap();
    let t1 = Instant::now();
    wait_for(WAIT, "the waiter to die", || lab.exited(c).then_some(()));
    assert!(t1.elapsed() < Duration::from_secs(5));
    assert!(!lab.started("b"));
    lab.go("a");
    assert_eq!(lab.exit_code(a, WAIT), Some(0));
}

#[test]
fn bad_input_is_refused_clearly_and_locks_nothing() {
    let lab = Lab::new();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["run-locked", "--config"])
            .arg(lab.path("a.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    let cases: &[(&[&str], i32, &str)] = &[
        (&["a/b", "--", "true"], 2, "'/' is not allowed"),
        (&["$x", "--", "true"], 2, "'$' is not allowed"),
        (&["", "--", "true"], 2, "1 to 30 bytes"),
        (&[&"v".repeat(31), "--", "true"], 2, "1 to 30 bytes"),
        (&["vm1"], 2, "<PROGRAM>"),
        (&["--wait", "2h", "vm1", "--", "true"], 2, "at most 60m"),
        (&["--wait", "soon", "vm1", "--", "true"], 2, "--wait"),
        (
            &["vm1", "--", "/nonexistent/prog"],
            127,
            "/nonexistent/prog: no such program",
        ),
        (
            &["vm1", "--", "no-such-program-xyz"],
            127,
            "no such program",
        ),
    ];
    for (args, code, msg) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // Nothing was locked, nor even created.
    assert!(!lab.path("locks").exists());
    assert!(!lab.path("run-a").exists());
    // A bad config: exit 78 naming file and line, nothing locked.
    fs::write(lab.path("bad.toml"), "[lock]\nbackend = \"zookeeper\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["run-locked", "--config"])
        .arg(lab.path("bad.toml"))
        .args(["vm1", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:2:11"));
    assert!(!Path::new(&lab.path("locks")).exists());
}

/// `dlm-electd ARGS --config NODE.toml`: (exit code, stdout, stderr).
fn electd(lab: &Lab, node: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(lab.path(&format!("{node}.toml")))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The holders `lock` left, killed when a test fails.
struct Holders(Vec<i32>);

impl Drop for Holders {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

fn holder_pid(lab: &Lab, node: &str, name: &str) -> Option<i32> {
    let (_, out, _) = electd(lab, node, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["workload_locks"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name && r["holder_alive"] == true)?["pid"]
        .as_i64()
        .map(|p| p as i32)
}

#[test]
fn lock_holds_for_the_node_until_unlock_and_survives_what_a_unit_stop_does() {
    let lab = Lab::new();
    let mut holders = Holders(vec![]);
    let (rc, out, err) = electd(&lab, "a", &["lock", "--by", "test harness", "vm1"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("vm1: locked"), "{out}");
    let pid = holder_pid(&lab, "a", "vm1").expect("status lists the holder");
    holders.0.push(pid);
    // Listed with who asked and since when, without a daemon (exit 1).
    let (rc, out, err) = electd(&lab, "a", &["status"]);
    assert_eq!(rc, 1);
    assert!(err.contains("not running"), "{err}");
    assert!(
        out.contains("WORKLOAD LOCK") && out.contains("test harness"),
        "{out}"
    );
    // A holder of its own: own session, not our child any more.
    let (_, ppid, sid) = support::proc_stat(pid).unwrap();
    assert_eq!(sid, pid);
    assert_ne!(ppid, std::process::id() as i32);
    // Busy for the other node and for this one, for lock and run-locked.
    assert_eq!(electd(&lab, "b", &["lock", "vm1"]).0, 75);
    let (rc, _, err) = electd(&lab, "a", &["lock", "vm1"]);
    assert_eq!(rc, 75);
    assert!(
        err.contains(&format!("already held on this node (holder pid {pid}")),
        "{err}"
    );
    assert_eq!(lab.quick("b", "vm1"), 75);
    // A unit stop's SIGTERM/SIGHUP/SIGINT, and the daemon's cleanup
    // (ExecStopPost after `systemctl kill -s KILL dlm-electd`), keep it.
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        kill(Pid::from_raw(pid), sig).unwrap();
    }
    assert_eq!(electd(&lab, "a", &["cleanup"]).0, 0);
    assert!(alive(pid));
    assert_eq!(lab.quick("b", "vm1"), 75);
    // unlock on a node that does not hold it touches nothing, and says so
    // (not "unlocked": the lock is still held elsewhere).
    let (rc, out, _) = electd(&lab, "b", &["unlock", "vm1"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("vm1: not held on this node by `lock`; nothing to do"),
        "{out}"
    );
    assert!(alive(pid));
    assert_eq!(lab.quick("b", "vm1"), 75);
    // unlock where it is held: the holder ends, the lock is free at once.
    let (rc, out, err) = electd(&lab, "a", &["unlock", "vm1"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("vm1: unlocked (its holder, pid"), "{out}");
    assert!(!alive(pid));
    assert_eq!(holder_pid(&lab, "a", "vm1"), None);
    assert_eq!(electd(&lab, "b", &["lock", "vm1"]).0, 0);
    holders.0.push(holder_pid(&lab, "b", "vm1").unwrap());
    assert_eq!(electd(&lab, "b", &["unlock", "vm1"]).0, 0);
    assert_eq!(lab.quick("a", "vm1"), 0);
}

#[test]
fn unlock_leaves_a_run_locked_program_alone() {
    let mut lab = Lab::new();
    let a = lab.start("a", "a", &["vm1"]);
    wait_for(WAIT, "a's program", || lab.started("a").then_some(()));
    let (rc, _, err) = electd(&lab, "a", &["unlock", "vm1"]);
    assert_eq!(rc, 1);
    assert!(err.contains("not by `lock`: left alone"), "{err}");
    assert_eq!(lab.quick("b", "vm1"), 75);
    lab.go("a");
    assert_eq!(lab.exit_code(a, WAIT), Some(0));
}

/// The shipped libvirt hook, called as libvirt calls it (`qemu GUEST
/// prepare begin -`, the domain XML on stdin, then `release end -`), on
/// both nodes.
#[test]
fn the_libvirt_hook_refuses_a_guest_running_on_the_other_node() {
    let lab = Lab::new();
    let mut holders = Holders(vec![]);
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/libvirt-qemu-hook");
    let call = |node: &str, op: &str, sub: &str| {
        let mut c = Command::new("/bin/sh")
            .arg(&hook)
            .args(["guest1", op, sub, "-"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DLM_ELECTD", BIN)
            .env("DLM_ELECTD_CONFIG", lab.path(&format!("{node}.toml")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(b"<domain type='kvm'><name>guest1</name></domain>\n")
            .unwrap();
        let out = c.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Other operations are no-ops.
    assert_eq!(call("b", "start", "begin").0, 0);
    assert_eq!(call("a", "prepare", "begin").0, 0);
    let pid = holder_pid(&lab, "a", "guest1").unwrap();
    holders.0.push(pid);
    let (_, out, _) = electd(&lab, "a", &["status"]);
    assert!(out.contains("libvirt qemu hook, guest guest1"), "{out}");
    // The same guest on the other node: libvirt is told to refuse it.
    let (rc, err) = call("b", "prepare", "begin");
    assert_eq!(rc, 75, "{err}");
    assert!(err.contains("busy"), "{err}");
    // b's release after the refused start leaves a's lock alone.
    assert_eq!(call("b", "release", "end").0, 0);
    assert!(alive(pid));
    assert_eq!(call("b", "prepare", "begin").0, 75);
    // The guest stops on a: released; now b may start it.
    assert_eq!(call("a", "release", "end").0, 0);
    assert!(!alive(pid));
    assert_eq!(call("b", "prepare", "begin").0, 0);
    holders.0.push(holder_pid(&lab, "b", "guest1").unwrap());
    assert_eq!(call("a", "prepare", "begin").0, 75);
    assert_eq!(call("b", "release", "end").0, 0);
    assert_eq!(lab.quick("a", "guest1"), 0);
}

/// A unit stop's SIGTERM may come right after `lock` returned: the holder
/// ignores it from its first instruction on, not only once it runs.
#[test]
fn the_holder_ignores_sigterm_from_the_moment_lock_returns() {
    let lab = Lab::new();
    let mut holders = Holders(vec![]);
    for _ in 0..5 {
        assert_eq!(electd(&lab, "a", &["lock", "vm1"]).0, 0);
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(lab.path("run-a/workload/vm1.held")).unwrap())
                .unwrap();
        let pid = rec["pid"].as_i64().unwrap() as i32;
        holders.0.push(pid);
        for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
            kill(Pid::from_raw(pid), sig).unwrap();
        }
        assert_eq!(lab.quick("b", "vm1"), 75);
        assert!(alive(pid));
        assert_eq!(electd(&lab, "a", &["unlock", "vm1"]).0, 0);
    }
}

/// What an admin trying it found: `--by` cannot forge or colour `status`
/// rows; a killed holder's record is cleared by `cleanup` (file: its lock
/// went with it); `unlock` of a name never locked here says so and leaves
/// no file; the hidden holder command run by hand refuses instead of
/// waiting for ever holding nothing.
#[test]
fn status_cleanup_unlock_and_the_holder_command_stay_honest() {
    let lab = Lab::new();
    let mut holders = Holders(vec![]);
    let by = format!("x\nFAKE-LOCK 1 999d root\x1b[31m{}", "y".repeat(5000));
    let (rc, _, err) = electd(&lab, "a", &["lock", "--by", &by, "vm3"]);
    assert_eq!(rc, 0, "{err}");
    let pid = holder_pid(&lab, "a", "vm3").unwrap();
    holders.0.push(pid);
    let (_, out, _) = electd(&lab, "a", &["status"]);
    assert!(!out.contains('\x1b'), "no escape sequence: {out:?}");
    assert!(
        !out.lines().any(|l| l.starts_with("FAKE-LOCK")),
        "no forged row: {out}"
    );
    assert!(out.contains("x\\u{a}FAKE-LOCK"), "escaped: {out}");
    assert!(out.len() < 1000, "bounded: {} bytes", out.len());

    // A killed holder: on `file` the lock is free at once; cleanup clears
    // the record that still says "gone".
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_for(WAIT, "holder gone", || (!alive(pid)).then_some(()));
    let (_, out, _) = electd(&lab, "a", &["status"]);
    assert!(out.contains("gone"), "{out}");
    assert_eq!(electd(&lab, "a", &["cleanup"]).0, 0);
    let (_, out, _) = electd(&lab, "a", &["status"]);
    assert!(!out.contains("vm3"), "record cleared: {out}");

    // unlock of a name never locked here.
    let (rc, out, _) = electd(&lab, "a", &["unlock", "never"]);
    assert_eq!(rc, 0);
    assert!(out.contains("not held on this node"), "{out}");
    assert!(!lab.path("run-a/workload/never.lock").exists());

    // The holder command by hand: refused at once, exit 2.
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["hold-workload-lock", "vm9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("started by `dlm-electd lock` only"));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// Issue 19 item 15: the holder keeps nothing of its caller but the lock:
/// a caller that passed a pipe down (a hook runner waiting for EOF on its
/// children's output) sees EOF once `lock` returned.
#[test]
fn the_holder_keeps_none_of_the_callers_fds() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let lab = Lab::new();
    let mut holders = Holders(Vec::new());
    let (mut rx, tx) = std::io::pipe().unwrap();
    let fd = tx.as_raw_fd();
    let mut cmd = Command::new(BIN);
    cmd.args(["lock", "vm9", "--config"])
        .arg(lab.path("a.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: fcntl(2) only, async-signal-safe, on an fd the parent keeps.
    unsafe {
        cmd.pre_exec(move || {
            // Passed down like a caller's pipe: not close-on-exec.
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert_eq!(status.code(), Some(0));
    holders
        .0
        .push(holder_pid(&lab, "a", "vm9").expect("a holder"));
    drop(tx);
    let (done, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = done.send(rx.read_to_end(&mut buf).map(|_| buf.len()));
    });
    let eof = got.recv_timeout(Duration::from_secs(10));
    assert!(
        matches!(eof, Ok(Ok(0))),
        "the caller's pipe stayed open in the holder: {eof:?}"
    );
    assert_eq!(electd(&lab, "a", &["unlock", "vm9"]).0, 0);
}
