//! Helpers shared by the integration tests: polling, the CLI, `dlm-electd
//! run` processes and their lock keepers, the event log the tests' exec
//! hooks write, a lab of daemons (`lab`), raw packet sockets (`packets`),
//! network namespaces (`netns`). Each test binary compiles this module on
//! its own and uses only part of it.
#![allow(dead_code)]

pub mod lab;
pub mod netns;
pub mod packets;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dlm-electd");
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` until it returns Some, or panics after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// `NAME=value` lines of an `env` dump (what a hook saw).
pub fn env_dump(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run dlm-electd")
}

// ---- processes ----

/// `/proc/PID/stat` as (state, ppid, session); None if there is no such
/// process.
pub fn proc_stat(pid: i32) -> Option<(char, i32, i32)> {
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

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Alive: exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _, _)| state != 'Z')
}

/// Makes this test process a child subreaper, so the keeper of a killed
/// daemon becomes our child.
pub fn become_subreaper() {
    // SAFETY: a plain prctl on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Waits for `pid` (a keeper) to exit and returns its exit code when we
/// reaped it ourselves (it was reparented to us), None when someone else
/// did (its daemon).
pub fn wait_exit_of(pid: i32, what: &str) -> Option<i32> {
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

// ---- daemons ----

/// Writes `<dir>/dlm-electd.toml` for node `node` on the `file` backend
/// with lock directory `locks`, runtime directory `<dir>/run`, then
/// `resources`; returns its path. (Tests assert positions in it: the
/// resources start on line 9.)
pub fn write_config(dir: &Path, node: &str, locks: &Path, resources: &str) -> PathBuf {
    write_config_with(dir, node, locks, "", resources)
}

/// `write_config` with more `[daemon]` keys (`daemon`: whole lines), after
/// `runtime_dir`.
pub fn write_config_with(
    dir: &Path,
    node: &str,
    locks: &Path,
    daemon: &str,
    resources: &str,
) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("dlm-electd.toml");
    let text = format!(
        "[node]\nname = \"{node}\"\n[lock]\nbackend = \"file\"\ndir = \"{}\"\n[daemon]\nruntime_dir = \"{}\"\n{daemon}poll_interval = \"100ms\"\n{resources}",
        locks.display(),
        dir.join("run").display(),
    );
    fs::write(&cfg, text).unwrap();
    cfg
}

/// The shell command of an exec hook that appends
/// `node event resource` to `log`, as a TOML string (quotes included);
/// `prefix` runs first (e.g. `"sleep 1; "`).
pub fn log_hook(prefix: &str, log: &Path) -> String {
    format!(
        r#"["/bin/sh", "-c", "{prefix}echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {}"]"#,
        log.display()
    )
}

/// A `dlm-electd run` process. Dropping it kills and reaps the daemon, not
/// its keeper: start daemons in a `lab::Lab`, whose Drop does both.
pub struct Daemon {
    pub node: String,
    pub config: PathBuf,
    pub stderr: PathBuf,
    pub child: Option<Child>,
    /// Its `keep-locks` process, once found (0 until then).
    pub keeper: i32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Daemon {
    /// Starts `<wrapper...> dlm-electd run --config <config>` with debug
    /// logging to `stderr`. A wrapper must exec the daemon itself, so the
    /// child is the daemon.
    pub fn spawn(node: &str, wrapper: &[&str], config: PathBuf, stderr: PathBuf) -> Daemon {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            node: node.into(),
            config,
            stderr,
            child: Some(child),
            keeper: 0,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// Waits for exit and returns the exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let c = self.child.as_mut().expect("running");
        let st = wait_for(WAIT, "daemon exit", || c.try_wait().unwrap());
        // Only now: a daemon that did not exit stays ours to kill on drop.
        self.child = None;
        st.code()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn status(&self) -> Option<Value> {
        let out = cli(&self.config, &["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("status JSON"))
    }

    pub fn state(&self, resource: &str) -> Option<String> {
        let s = self.status()?;
        s["resources"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == resource)
            .map(|r| r["state"].as_str().unwrap().to_string())
    }

    pub fn wait_state(&self, resource: &str, state: &str) {
        wait_for(
            WAIT,
            &format!("{} {resource} {state}\n{}", self.node, self.log()),
            || (self.state(resource).as_deref() == Some(state)).then_some(()),
        )
    }

    /// Waits for the daemon's `keep-locks` child and returns its pid.
    pub fn find_keeper(&self) -> i32 {
        let daemon = self.pid().as_raw();
        wait_for(WAIT, &format!("{}'s keeper", self.node), || {
            keeper_of(daemon)
        })
    }
}

/// Kills and reaps every daemon, then every keeper's whole session. The
/// keeper runs in its own session (setsid), and so do the hooks it starts:
/// kill that session, keeper first.
pub fn reap_with_keepers(daemons: &mut [Daemon]) {
    // Killed together, as systemd's final SIGKILL does: keepers are frozen
    // first, so none can start releasing in the moment between its
    // daemon's death and its own.
    for d in daemons.iter() {
        if d.keeper != 0 && cmdline(d.keeper).contains("keep-locks") {
            let _ = kill(Pid::from_raw(d.keeper), Signal::SIGSTOP);
        }
    }
    for d in daemons.iter_mut() {
        if let Some(mut c) = d.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    for d in daemons.iter() {
        if d.keeper == 0 {
            continue;
        }
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

// ---- the event log ----

/// The lines of event log `log` (none if it does not exist yet).
pub fn read_events(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Index of the last `line` in `events`; panics if there is none.
pub fn position(events: &[String], line: &str) -> usize {
    events
        .iter()
        .rposition(|l| l == line)
        .unwrap_or_else(|| panic!("no {line:?} in\n{}", events.join("\n")))
}

/// Replays the event log (`node event resource` lines) and fails if two
/// nodes were ever master of one resource at once: an acquire while
/// another node's acquire of it was not yet followed by its release.
pub fn assert_never_two_masters(events: &[String]) {
    let mut master: HashMap<&str, &str> = HashMap::new();
    for (n, line) in events.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [node, event, res] = f[..] else {
            panic!("bad event line {line:?}");
        };
        match event {
            "acquire" => {
                if let Some(other) = master.insert(res, node) {
                    assert!(
                        other == node,
                        "line {}: {node} acquired {res} while {other} was master:\n{}",
                        n + 1,
                        events.join("\n")
                    );
                }
            }
            "release" => {
                if master.get(res) == Some(&node) {
                    master.remove(res);
                }
            }
            _ => panic!("bad event line {line:?}"),
        }
    }
}

/// The `keep-locks` child of daemon `pid`, if it has one now.
pub fn keeper_of(pid: i32) -> Option<i32> {
    pids().into_iter().find(|&p| {
        proc_stat(p).is_some_and(|(_, ppid, _)| ppid == pid) && cmdline(p).contains(" keep-locks ")
    })
}

/// Runs the CLI and asserts that it succeeded, showing its stderr if not.
pub fn cli_ok(config: &Path, args: &[&str]) -> Output {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Daemon {
    /// SIGTERM, then asserts a clean exit (code 0), showing the log if not.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let code = self.wait_exit();
        assert_eq!(code, Some(0), "{}", self.log());
    }

    /// Waits until the daemon's log contains `text`.
    pub fn wait_log(&self, text: &str) {
        wait_for(WAIT, &format!("{text:?} in {}'s log", self.node), || {
            self.log().contains(text).then_some(())
        })
    }

    /// The `last_error` of `resource` in status, None while it has none;
    /// panics if the daemon does not answer or has no such resource.
    pub fn last_error(&self, resource: &str) -> Option<String> {
        let s = self.status().expect("status");
        let r = s["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == resource))
            .unwrap_or_else(|| panic!("no resource {resource} in {s}"));
        r["last_error"].as_str().map(str::to_string)
    }
}

/// Whether someone holds a write lock on `path` (a read-lock probe, as
/// the daemon probes candidate locks; it leaves nothing behind).
pub fn held(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid whole-file lock request.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a plain fcntl on our fd with a valid flock.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) != 0 }
}
