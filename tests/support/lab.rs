//! `Lab`: `dlm-electd run` processes with their configs in one temp dir,
//! sharing a lock directory (`locks`) and an event log (`events.log`) that
//! their exec hooks append `node event resource` lines to.
//!
//! Dropping a `Lab` kills every daemon and every lock keeper, with the
//! keeper's whole session (the hooks it started), and reaps them, even when
//! the test failed: each keeper runs in a session of its own and outlives a
//! SIGKILLed daemon, so killing daemons alone would leave keepers (and
//! their hooks) running after the test.

use super::{
    Daemon, WAIT, assert_never_two_masters, cmdline, keeper_of, log_hook, pids, position,
    read_events, reap_with_keepers, wait_for, write_config_with,
};
use std::fs;
use std::path::{Path, PathBuf};

pub struct Lab {
    pub daemons: Vec<Daemon>,
    pub dir: tempfile::TempDir,
    /// Each node's config names a state dir of its own (`NODE/state`),
    /// for tests that drain: else the default one, shared with the host.
    pub state_dirs: bool,
}

impl Lab {
    /// An empty lab. Makes this test process a child subreaper, so the
    /// keeper of a killed daemon becomes our child (tests can read its exit
    /// status, and `Drop` reaps it).
    pub fn new() -> Lab {
        super::become_subreaper();
        Lab {
            daemons: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            state_dirs: false,
        }
    }

    /// An empty lab whose nodes have state dirs of their own.
    #[allow(dead_code)]
    pub fn with_state_dirs() -> Lab {
        let mut lab = Lab::new();
        lab.state_dirs = true;
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The event log the hooks of `logging` resources write.
    pub fn events_log(&self) -> PathBuf {
        self.path("events.log")
    }

    /// An exec hook argv (TOML) that appends `node event resource` to the
    /// event log (for the never-two-masters replay) and `MS node event` to
    /// `times.log` (for handover times on one clock).
    #[allow(dead_code)]
    pub fn timed_hook(&self) -> String {
        format!(
            r#"["/bin/sh", "-c", "echo \"$DLM_ELECTD_NODE $DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\" >> {}; echo \"$(date +%s%3N) $DLM_ELECTD_NODE $DLM_ELECTD_EVENT\" >> {}"]"#,
            self.events_log().display(),
            self.path("times.log").display()
        )
    }

    /// The `(ms, node, event)` lines `timed_hook` wrote.
    #[allow(dead_code)]
    pub fn times(&self) -> Vec<(u64, String, String)> {
        std::fs::read_to_string(self.path("times.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().unwrap(), f[1].into(), f[2].into())
            })
            .collect()
    }

    pub fn events(&self) -> Vec<String> {
        read_events(&self.events_log())
    }

    /// How many times `line` is in the event log.
    pub fn count(&self, line: &str) -> usize {
        self.events().iter().filter(|l| *l == line).count()
    }

    /// Resource `name` with one exec action that logs both its steps to
    /// the event log.
    pub fn logging(&self, name: &str) -> String {
        let hook = log_hook("", &self.events_log());
        exec_resource(name, &hook, &hook)
    }

    /// Writes node `node`'s config (in dir `node`, runtime dir `node/run`)
    /// with `resources`; returns its path.
    pub fn config(&self, node: &str, resources: &str) -> PathBuf {
        let dir = self.path(node);
        let daemon = if self.state_dirs {
            format!("state_dir = \"{}\"\n", dir.join("state").display())
        } else {
            String::new()
        };
        write_config_with(&dir, node, &self.path("locks"), &daemon, resources)
    }

    /// A stderr file for the next daemon of `node`: one of its own per
    /// start, so a restart's log does not overwrite the one before, and
    /// `Drop` can tell its keeper by it.
    pub fn stderr_path(&self, node: &str) -> PathBuf {
        let n = self.daemons.iter().filter(|d| d.node == node).count();
        self.path(&format!("{node}.{n}.stderr"))
    }

    /// Writes the config and starts `dlm-electd run` for `node`; returns
    /// its index in `daemons`.
    pub fn start(&mut self, node: &str, resources: &str) -> usize {
        self.start_under(node, &[], resources)
    }

    /// `start` under `wrapper` (see `Daemon::spawn`).
    pub fn start_under(&mut self, node: &str, wrapper: &[&str], resources: &str) -> usize {
        let config = self.config(node, resources);
        let stderr = self.stderr_path(node);
        self.spawn(node, wrapper, config, stderr)
    }

    /// Starts `<wrapper...> dlm-electd run --config <config>` (see
    /// `Daemon::spawn`); returns its index in `daemons`. Recorded at once,
    /// so that `Drop` cleans it up whatever happens next.
    pub fn spawn(
        &mut self,
        node: &str,
        wrapper: &[&str],
        config: PathBuf,
        stderr: PathBuf,
    ) -> usize {
        self.daemons
            .push(Daemon::spawn(node, wrapper, config, stderr));
        self.daemons.len() - 1
    }

    /// Waits for daemon `i`'s lock keeper, records it and returns its pid.
    pub fn keeper(&mut self, i: usize) -> i32 {
        let keeper = self.daemons[i].find_keeper();
        self.daemons[i].keeper = keeper;
        keeper
    }

    /// `before` and `after` are both in the event log, `before` first, and
    /// no two nodes were ever master of one resource at once.
    pub fn assert_order(&self, before: &str, after: &str) {
        let ev = self.events();
        assert!(
            position(&ev, before) < position(&ev, after),
            "{before:?} must come before {after:?}:\n{}",
            ev.join("\n")
        );
        assert_never_two_masters(&ev);
    }

    pub fn node(&self, i: usize) -> &str {
        &self.daemons[i].node
    }

    /// Index of the daemon that is master of `resource`, once exactly one
    /// of the running daemons reports it and all the others are standby.
    pub fn sole_master(&self, resource: &str) -> usize {
        self.one_master(resource, &["standby"])
    }

    /// Index of the daemon that is master of `resource`, once exactly one
    /// of the running daemons reports it and each other one is in one of
    /// the states `others`.
    pub fn one_master(&self, resource: &str, others: &[&str]) -> usize {
        wait_for(WAIT, &format!("one master of {resource}"), || {
            let states: Vec<(usize, String)> = self
                .daemons
                .iter()
                .enumerate()
                .filter(|(_, d)| d.child.is_some())
                .map(|(i, d)| (i, d.state(resource).unwrap_or_default()))
                .collect();
            let masters: Vec<usize> = states
                .iter()
                .filter(|(_, s)| s == "master")
                .map(|(i, _)| *i)
                .collect();
            let settled = states
                .iter()
                .all(|(_, s)| s == "master" || others.contains(&s.as_str()));
            (masters.len() == 1 && settled).then(|| masters[0])
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Find the keepers first: a live daemon's by parent pid (once the
        // daemon is killed it is reparented); a dead daemon's by its
        // stderr, which it inherited.
        for d in self.daemons.iter_mut().filter(|d| d.keeper == 0) {
            d.keeper = match &d.child {
                Some(_) => keeper_of(d.pid().as_raw()),
                None => orphan_keeper(&d.stderr),
            }
            .unwrap_or(0);
        }
        reap_with_keepers(&mut self.daemons);
        if std::thread::panicking() {
            for d in &self.daemons {
                eprintln!("---- {} stderr ----\n{}", d.node, d.log());
            }
            eprintln!("---- events ----\n{}", self.events().join("\n"));
        }
    }
}

/// A `keep-locks` process whose stderr is `stderr`: the keeper of a daemon
/// that wrote there and is gone.
fn orphan_keeper(stderr: &Path) -> Option<i32> {
    let stderr = fs::canonicalize(stderr).ok()?;
    pids().into_iter().find(|&p| {
        cmdline(p).contains(" keep-locks ")
            && fs::read_link(format!("/proc/{p}/fd/2")).is_ok_and(|l| l == stderr)
    })
}

/// `n` resources named r0, r1, ... without actions.
pub fn bare_resources(n: usize) -> String {
    (0..n)
        .map(|i| format!("[[resource]]\nname = \"r{i}\"\n"))
        .collect()
}

/// `[[resource]]` `name` with one exec action; `acquire` and `release` are
/// TOML arrays (see `log_hook`).
pub fn exec_resource(name: &str, acquire: &str, release: &str) -> String {
    format!(
        "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"exec\"\nacquire = {acquire}\nrelease = {release}\n"
    )
}
