//! The `file` backend's lock keeper, end to end: real `dlm-electd run`
//! daemons and their `keep-locks` processes, real OFD locks in a shared
//! directory, exec actions that append "node event resource" to one log.
//! The release hook sleeps a second before it logs, so a keeper that let the
//! lock go before the release actions finished would show as the new
//! master's `acquire` line coming first.
//!
//! `Lab` makes this test process a child subreaper, so the keeper of a
//! killed daemon becomes our child: we can read its exit status, and the
//! Drop of `Lab` kills and reaps every keeper (and whatever its hooks
//! started, by session) even when a test fails.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::lab::{Lab, exec_resource};
use support::{alive, cli_ok, log_hook, proc_stat, wait_exit_of};

/// Starts node `node` with one resource `web` whose exec action logs
/// `node event resource`, the release side after a second's sleep; returns
/// its index once its keeper runs.
fn start(lab: &mut Lab, node: &str) -> usize {
    let log = lab.events_log();
    let web = exec_resource("web", &log_hook("", &log), &log_hook("sleep 1; ", &log));
    let i = lab.start(node, &web);
    let keeper = lab.keeper(i);
    // Its own session: a Ctrl-C or a kill of our process group misses it.
    assert_eq!(proc_stat(keeper).unwrap().2, keeper, "keeper runs setsid");
    i
}

/// A lab with node a master of web, node b standing by, and their indexes.
fn master_and_standby() -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let b = start(&mut lab, "b");
    lab.daemons[b].wait_state("web", "standby");
    // b never applied web, so its startup undoes nothing (a holds it).
    assert_eq!(lab.count("b release web"), 0, "{:?}", lab.events());
    (lab, a, b)
}

#[test]
fn sigkill_of_master_keeps_the_lock_until_its_keeper_ran_release() {
    let (mut lab, a, b) = master_and_standby();
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
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let keeper = lab.daemons[a].keeper;
    lab.daemons[a].stop();
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
    let (mut lab, a, b) = master_and_standby();
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "60s"],
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
    let (mut lab, a, b) = master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGTERM).unwrap();
    lab.daemons[a].stop();
    assert!(!alive(keeper), "keeper exits with its daemon");
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
}

/// A keeper that dies loses nothing while its daemon lives: the daemon
/// still has its own fd, says so, and releases normally.
#[test]
fn killed_keeper_makes_its_daemon_release_in_order_and_exit() {
    let (mut lab, a, b) = master_and_standby();
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    // The daemon notices its keeper died: without one it may take no lock
    // (a standby could never become master), so it stops in order and
    // exits 1 for its service manager to start it again.
    lab.daemons[a].wait_log(&format!("lock keeper (pid {keeper}) exited"));
    assert_eq!(
        lab.daemons[a].wait_exit(),
        Some(1),
        "{}",
        lab.daemons[a].log()
    );
    lab.daemons[b].wait_state("web", "master");
    lab.assert_order("a release web", "b acquire web");
    // The same on a standby: it leaves rather than stand by uselessly
    // (it could never become master), and the master is untouched.
    let c = start(&mut lab, "c");
    lab.daemons[c].wait_state("web", "standby");
    let keeper = lab.daemons[c].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    assert_eq!(
        lab.daemons[c].wait_exit(),
        Some(1),
        "{}",
        lab.daemons[c].log()
    );
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("master"));
}

/// An acquire hook that ignores SIGTERM, has a grandchild and never ends
/// (the admin's `hang.sh`), and a release hook that logs whether any
/// process of the acquire's group still runs when it starts.
struct Hanging {
    pgid_file: std::path::PathBuf,
}

impl Hanging {
    /// Writes the hooks into the lab; returns the resource's TOML.
    fn resource(lab: &Lab) -> (String, Hanging) {
        let log = lab.events_log();
        let pgid_file = lab.path("hang.pgid");
        let script = lab.path("hang.sh");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
log={log}
if [ "$1" = up ]; then
    echo $$ > {pg}
    echo "$DLM_ELECTD_NODE acquire-start $DLM_ELECTD_RESOURCE" >> $log
    trap '' TERM
    sleep 1000 &
    wait
    echo "$DLM_ELECTD_NODE acquire-end $DLM_ELECTD_RESOURCE" >> $log
else
    # Killed processes may wait as zombies for a reaper: those run nothing.
    if ps -eo pgid=,stat= | awk -v g="$(cat {pg})" '$1 == g && $2 !~ /^Z/' | grep -q .; then
        echo "$DLM_ELECTD_NODE acquire-alive-at-release $DLM_ELECTD_RESOURCE" >> $log
    fi
    echo "$DLM_ELECTD_NODE release $DLM_ELECTD_RESOURCE" >> $log
fi
"#,
                log = log.display(),
                pg = pgid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let s = script.display();
        let toml = format!(
            "[[resource]]\nname = \"hang\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"{s}\", \"up\"]\nrelease = [\"{s}\", \"down\"]\ntimeout = \"60s\"\n"
        );
        (toml, Hanging { pgid_file })
    }

    /// The acquire hook's process group, once it started.
    fn pgid(&self) -> i32 {
        support::wait_for(support::WAIT, "the acquire hook to start", || {
            std::fs::read_to_string(&self.pgid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        })
    }

    /// Live (not zombie) processes of group `pgid`.
    fn members(pgid: i32) -> Vec<i32> {
        Hanging::group(pgid)
            .into_iter()
            .filter(|&p| proc_stat(p).is_some_and(|(state, _, _)| state != 'Z'))
            .collect()
    }

    /// Processes of group `pgid`, zombies included.
    fn group(pgid: i32) -> Vec<i32> {
        support::pids()
            .into_iter()
            .filter(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|t| {
                        let rest = t[t.rfind(')')? + 1..].to_string();
                        rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                    })
                    == Some(pgid)
            })
            .collect()
    }
}

impl Drop for Hanging {
    /// Even when the test fails: the hook's group must not outlive it.
    fn drop(&mut self) {
        if let Some(pg) = std::fs::read_to_string(&self.pgid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pg), Signal::SIGKILL);
            for p in Hanging::group(pg) {
                let _ = nix::sys::wait::waitpid(Pid::from_raw(p), None);
            }
        }
    }
}

#[test]
fn sigkill_during_a_hanging_acquire_kills_its_group_before_the_keepers_release() {
    let mut lab = Lab::new();
    let (toml, hang) = Hanging::resource(&lab);
    let a = lab.start("a", &toml);
    let keeper = lab.keeper(a);
    let pgid = hang.pgid();
    assert_eq!(Hanging::members(pgid).len(), 2, "the hook and its sleep");
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    assert_eq!(
        wait_exit_of(keeper, "a's keeper to exit"),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
    assert_eq!(
        Hanging::members(pgid),
        Vec::<i32>::new(),
        "the acquire hook's group outlived its daemon and keeper\n{}",
        lab.daemons[a].log()
    );
    assert_eq!(
        lab.events(),
        ["a acquire-start hang", "a release hang"],
        "the release ran once, after the acquire group was gone\n{}",
        lab.daemons[a].log()
    );
    let run = lab.path("a/run/hooks");
    assert_eq!(
        std::fs::read_dir(&run).unwrap().count(),
        0,
        "no hook tracked"
    );
}

/// Daemon and keeper killed together (outside systemd nobody kills the
/// daemon's hooks): `cleanup` kills the acquire's group before it undoes.
#[test]
fn cleanup_after_daemon_and_keeper_died_kills_the_hanging_acquire_first() {
    let mut lab = Lab::new();
    let (toml, hang) = Hanging::resource(&lab);
    let a = lab.start("a", &toml);
    let keeper = lab.keeper(a);
    let pgid = hang.pgid();
    // Frozen first, so the keeper cannot start its own release in between.
    kill(Pid::from_raw(keeper), Signal::SIGSTOP).unwrap();
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(Pid::from_raw(keeper), None);
    assert_eq!(
        Hanging::members(pgid).len(),
        2,
        "the hook runs on unwatched"
    );
    cli_ok(&lab.daemons[a].config, &["cleanup"]);
    assert_eq!(Hanging::members(pgid), Vec::<i32>::new());
    assert_eq!(lab.events(), ["a acquire-start hang", "a release hang"]);
}
