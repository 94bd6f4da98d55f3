//! The `file` backend's lock keeper, end to end: real `dlm-electd run`
//! daemons and their `keep-locks` processes, real OFD locks in a shared
//! directory, exec actions that append "node event resource" to one log.
//! The release hook sleeps a second before it logs, so a keeper that let the
//! lock go before the release actions finished would show as the new
//! master's `acquire` line coming first.
//!
//! This test process makes itself a child subreaper, so the keeper of a
//! killed daemon becomes our child: we can read its exit status, and the
//! Drop of `Lab` kills and reaps every keeper (and whatever its hooks
//! started, by session) even when a test fails.

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dlm-electd");
const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` until it returns Some, or panics after `limit` with `what`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run dlm-electd")
}

/// `/proc/PID/stat` as (state, ppid, session); None if there is no such
/// process.
fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces: the fields after it follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(1)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
    ))
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Alive: exists and is not a zombie.
fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z')
}

/// Waits for `pid` (a keeper) to exit and returns its exit code when we
/// reaped it ourselves (it was reparented to us), None when someone else
/// did (its daemon).
fn wait_exit_of(pid: i32, what: &str) -> Option<i32> {
    wait_for(WAIT, what, || {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => panic!("{what}: killed by {sig}"),
            Ok(_) => None,
            // Not our child: its daemon reaps it.
            Err(_) => (!alive(pid)).then_some(None),
        }
    })
}

struct Daemon {
    node: String,
    config: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
    /// Its `keep-locks` process.
    keeper: i32,
}

impl Daemon {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let mut c = self.child.take().expect("running");
        let st = wait_for(WAIT, "daemon exit", || c.try_wait().unwrap());
        st.code()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn state(&self, resource: &str) -> Option<String> {
        let out = cli(&self.config, &["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        let s: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        s["resources"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == resource)
            .map(|r| r["state"].as_str().unwrap().to_string())
    }

    fn wait_state(&self, resource: &str, state: &str) {
        wait_for(
            WAIT,
            &format!("{} {resource} {state}\n{}", self.node, self.log()),
            || (self.state(resource).as_deref() == Some(state)).then_some(()),
        )
    }
}

/// Daemons sharing a lock directory and an event log. Dropping it kills
/// the daemons, then every keeper's whole session, and reaps them.
struct Lab {
    daemons: Vec<Daemon>,
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if let Some(mut c) = d.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for d in &self.daemons {
            // The keeper runs in its own session (setsid), and so do the
            // hooks it starts: kill that session, keeper first.
            let session: Vec<i32> = std::iter::once(d.keeper)
                .chain(
                    pids()
                        .into_iter()
                        .filter(|&p| proc_stat(p).is_some_and(|(_, _, sid)| sid == d.keeper)),
                )
                .collect();
            for &p in &session {
                if p == d.keeper && !cmdline(p).contains("keep-locks") {
                    continue; // gone already, the pid may be someone else's
                }
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            for &p in &session {
                let _ = waitpid(Pid::from_raw(p), None);
            }
        }
    }
}

/// One resource `web` whose exec action logs `node event resource`; the
/// release side first sleeps a second.
fn resource(log: &Path) -> String {
    format!(
        r#"
[[resource]]
name = "web"
[[resource.action]]
type = "exec"
acquire = ["/bin/sh", "-c", "echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {0}"]
release = ["/bin/sh", "-c", "sleep 1; echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {0}"]
"#,
        log.display()
    )
}

impl Lab {
    fn new() -> Lab {
        // SAFETY: a plain prctl on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
        Lab {
            daemons: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn events(&self) -> Vec<String> {
        fs::read_to_string(self.path("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.events().iter().filter(|l| *l == line).count()
    }

    /// Starts node `node` and returns its index once its keeper runs.
    fn start(&mut self, node: &str) -> usize {
        let dir = self.path(node);
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("dlm-electd.toml");
        let text = format!(
            "[node]\nname = \"{node}\"\n[lock]\nbackend = \"file\"\ndir = \"{}\"\n[daemon]\nruntime_dir = \"{}\"\npoll_interval = \"100ms\"\n{}",
            self.path("locks").display(),
            dir.join("run").display(),
            resource(&self.path("events.log")),
        );
        fs::write(&config, text).unwrap();
        let stderr = self.path(&format!("{node}.stderr"));
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let daemon = child.id() as i32;
        // Recorded at once so that Drop cleans it up whatever happens next.
        self.daemons.push(Daemon {
            node: node.into(),
            config,
            stderr,
            child: Some(child),
            keeper: 0,
        });
        let keeper = wait_for(WAIT, &format!("{node}'s keeper"), || {
            pids().into_iter().find(|&p| {
                proc_stat(p).is_some_and(|(_, ppid, _)| ppid == daemon)
                    && cmdline(p).contains(" keep-locks ")
            })
        });
        let i = self.daemons.len() - 1;
        self.daemons[i].keeper = keeper;
        // Its own session: a Ctrl-C or a kill of our process group misses it.
        assert_eq!(proc_stat(keeper).unwrap().2, keeper, "keeper runs setsid");
        i
    }

    /// Node a master of web, node b standing by with its startup clean-up
    /// done. Returns their indexes.
    fn master_and_standby(&mut self) -> (usize, usize) {
        let a = self.start("a");
        self.daemons[a].wait_state("web", "master");
        let b = self.start("b");
        self.daemons[b].wait_state("web", "standby");
        wait_for(WAIT, "b's startup release", || {
            (self.count("b release web") == 1).then_some(())
        });
        (a, b)
    }

    /// `before` is in the event log before `after` (both present).
    fn assert_order(&self, before: &str, after: &str) {
        let ev = self.events();
        let pos = |line: &str| {
            ev.iter()
                .rposition(|l| l == line)
                .unwrap_or_else(|| panic!("no {line:?} in\n{}", ev.join("\n")))
        };
        assert!(
            pos(before) < pos(after),
            "{before:?} must come before {after:?}:\n{}",
            ev.join("\n")
        );
        assert_never_two_masters(&ev);
    }
}

/// Replays the event log and fails if two nodes were ever master at once.
fn assert_never_two_masters(events: &[String]) {
    let mut master: Option<&str> = None;
    for (n, line) in events.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[1] {
            "acquire" => {
                assert!(
                    master.is_none_or(|m| m == f[0]),
                    "line {}: {} acquired while {master:?} was master:\n{}",
                    n + 1,
                    f[0],
                    events.join("\n")
                );
                master = Some(f[0]);
            }
            "release" if master == Some(f[0]) => master = None,
            _ => {}
        }
    }
}

#[test]
fn sigkill_of_master_keeps_the_lock_until_its_keeper_ran_release() {
    let mut lab = Lab::new();
    let (a, b) = lab.master_and_standby();
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
    let a = lab.start("a");
    lab.daemons[a].wait_state("web", "master");
    let keeper = lab.daemons[a].keeper;
    lab.daemons[a].signal(Signal::SIGTERM);
    assert_eq!(
        lab.daemons[a].wait_exit(),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
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
    let mut lab = Lab::new();
    let (a, b) = lab.master_and_standby();
    let out = cli(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "60s"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    let mut lab = Lab::new();
    let (a, b) = lab.master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGTERM).unwrap();
    lab.daemons[a].signal(Signal::SIGTERM);
    assert_eq!(
        lab.daemons[a].wait_exit(),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
    assert!(!alive(keeper), "keeper exits with its daemon");
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
}

/// A keeper that dies loses nothing while its daemon lives: the daemon
/// still has its own fd, says so, and releases normally.
#[test]
fn killed_keeper_loses_nothing_while_the_daemon_lives() {
    let mut lab = Lab::new();
    let (a, b) = lab.master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    wait_for(WAIT, "the daemon to notice its keeper died", || {
        lab.daemons[a]
            .log()
            .contains(&format!("lock keeper (pid {keeper}) exited"))
            .then_some(())
    });
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("standby"));
    lab.daemons[a].signal(Signal::SIGTERM);
    assert_eq!(
        lab.daemons[a].wait_exit(),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
}
