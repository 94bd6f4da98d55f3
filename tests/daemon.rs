//! The daemon end to end on the `file` backend: real `dlm-electd run`
//! processes holding real OFD locks in a shared directory, exec actions that
//! append "node event resource" lines to one log, the CLI as a user runs it.

mod support;

use std::fs;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, assert_never_two_masters, cli, cli_ok, position, wait_for};

/// The usual resources: `web` and `db`, each with an exec action that logs
/// both steps to the lab's event log.
fn web_and_db(lab: &Lab) -> String {
    format!("{}\n{}", lab.logging("web"), lab.logging("db"))
}

/// Starts node `node` with `web_and_db`.
fn start(lab: &mut Lab, node: &str) -> usize {
    let res = web_and_db(lab);
    lab.start(node, &res)
}

/// Nodes a and b started; returns the lab and the index of web's master.
/// a master of both resources, then b standing by: the tests below move
/// both at once, so a must hold both (started together, they may split).
fn a_and_b() -> (Lab, usize) {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    start(&mut lab, "b");
    let m = lab.sole_master("web");
    (lab, m)
}

#[test]
fn exactly_one_master_per_resource_among_three() {
    let mut lab = Lab::new();
    for n in ["a", "b", "c"] {
        start(&mut lab, n);
    }
    for res in ["web", "db"] {
        let m = lab.sole_master(res);
        let acquires: Vec<_> = lab
            .events()
            .into_iter()
            .filter(|l| l.ends_with(&format!("acquire {res}")))
            .collect();
        assert_eq!(acquires, vec![format!("{} acquire {res}", lab.node(m))]);
    }
    // The standbys cleared leftovers once at startup and stand by.
    let events = lab.events();
    assert_never_two_masters(&events);
    let status = lab.daemons[0].status().unwrap();
    assert_eq!(status["node"], "a");
    for r in status["resources"].as_array().unwrap() {
        assert!(r["since_ms"].as_u64().unwrap() > 0);
        assert!(r["last_error"].is_null());
    }
}

#[test]
fn sigterm_of_master_releases_before_another_acquires() {
    let (mut lab, m) = a_and_b();
    let old = lab.node(m).to_string();
    lab.daemons[m].stop();
    let n = lab.sole_master("web");
    assert_ne!(n, m);
    let new = lab.node(n).to_string();
    for res in ["web", "db"] {
        lab.daemons[n].wait_state(res, "master");
        lab.assert_order(
            &format!("{old} release {res}"),
            &format!("{new} acquire {res}"),
        );
    }
    assert_never_two_masters(&lab.events());
}

#[test]
fn sigkill_of_master_lets_another_take_over() {
    let (mut lab, m) = a_and_b();
    lab.daemons[m].signal(nix::sys::signal::Signal::SIGKILL);
    lab.daemons[m].wait_exit();
    let n = lab.sole_master("web");
    assert_ne!(n, m);
    lab.daemons[n].wait_state("db", "master");
}

#[test]
fn release_with_hold_off_switches_over_and_stays_out() {
    let (mut lab, m) = a_and_b();
    let other = 1 - m;
    let hold = Duration::from_secs(3);
    // Taken before asking: the hold-off starts after this instant, so the
    // lower bound below cannot be met early by a slow reply.
    let released = Instant::now();
    cli_ok(
        &lab.daemons[m].config,
        &["release", "web", "--hold-off", "3s"],
    );
    assert_eq!(lab.daemons[m].state("web").as_deref(), Some("standby"));
    lab.daemons[other].wait_state("web", "master");
    // Take the new master away: the old one must still wait out its hold-off.
    lab.daemons[other].signal(nix::sys::signal::Signal::SIGTERM);
    lab.daemons[other].wait_exit();
    lab.daemons[m].wait_state("web", "master");
    assert!(
        released.elapsed() >= hold,
        "came back after {:?}, hold-off was {hold:?}",
        released.elapsed()
    );
    let (old, new) = (lab.node(m), lab.node(other));
    lab.assert_order(&format!("{old} release web"), &format!("{new} acquire web"));
}

#[test]
fn release_on_a_non_master_is_an_error() {
    let (lab, m) = a_and_b();
    let out = cli(&lab.daemons[1 - m].config, &["release", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not master"));
    let out = cli(&lab.daemons[m].config, &["release", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no resource named"));
}

#[test]
fn failing_acquire_rolls_back_and_another_node_takes_over() {
    let mut lab = Lab::new();
    // Action 2 fails on node "a" only; action 1 must be rolled back there.
    let res = format!(
        "{}\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/sh\", \"-c\", \"echo \\\"$DLM_ELECTD_NODE acquire2 web\\\" >> {}; test $DLM_ELECTD_NODE != a\"]\n",
        lab.logging("web"),
        lab.events_log().display()
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "backoff");
    let err = lab.daemons[a].last_error("web").unwrap();
    assert!(err.contains("action 2"), "{err}");
    let ev = lab.events();
    assert!(
        position(&ev, "a acquire2 web") < position(&ev, "a release web"),
        "rolled back:\n{}",
        ev.join("\n")
    );
    let b = lab.start("b", &res);
    lab.daemons[b].wait_state("web", "master");
    let ev = lab.events();
    assert!(ev.contains(&"b acquire2 web".to_string()));
}

#[test]
fn hanging_action_and_its_grandchild_are_killed_at_timeout() {
    let mut lab = Lab::new();
    let pids = lab.path("pids");
    let res = format!(
        "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\ntimeout = \"1s\"\nacquire = [\"/bin/sh\", \"-c\", \"sleep 1000 & echo $$ $! > {}; wait\"]\n",
        pids.display()
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "backoff");
    let text = fs::read_to_string(&pids).unwrap();
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "hook and grandchild");
    for pid in pids {
        // Gone, or at most a zombie of a dead parent being reaped by init.
        wait_for(WAIT, &format!("pid {pid} to die"), || {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")).then_some(())
        });
    }
    let err = lab.daemons[a].last_error("web").unwrap();
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn second_instance_on_a_runtime_dir_is_refused() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let out = cli(&lab.daemons[a].config, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another dlm-electd instance"), "{err}");
    // cleanup refuses too while the daemon runs.
    assert_eq!(
        cli(&lab.daemons[a].config, &["cleanup"]).status.code(),
        Some(1)
    );
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
}

/// Issue #19, item 14: a runtime_dir naming an existing directory others
/// may enter (`/run` by mistake) was chmodded to 0700, locking other
/// services out. `run` and `cleanup` now refuse it (78, at the config key)
/// and leave its mode alone; `check-config` says so beforehand.
#[test]
fn a_shared_runtime_dir_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    // write_config: `runtime_dir` (`<dir>/run`) on line 7.
    let cfg = support::write_config(dir.path(), "a", &dir.path().join("locks"), "");
    for cmd in ["check-config", "run", "cleanup"] {
        let out = cli(&cfg, &[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "{}:7:15: key `daemon.runtime_dir`: runtime dir {} is not private",
                cfg.display(),
                run.display()
            )) && err.contains("mode 755"),
            "{cmd}: {err}"
        );
        let mode = fs::metadata(&run).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{cmd}: left as it was");
    }
    assert!(!run.join("instance.lock").exists());
    // Made private by its admin, it is used.
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    cli_ok(&cfg, &["cleanup"]);
}

#[test]
fn startup_leaves_another_instances_resources_alone() {
    // Two instances on one host sharing a lock dir (the demo): the second
    // one's startup must not run its release steps against the first one's
    // live resources (it would remove the master's VIP).
    let mut lab = Lab::new();
    start(&mut lab, "a");
    lab.sole_master("web");
    let b = start(&mut lab, "b");
    for res in ["web", "db"] {
        lab.daemons[b].wait_state(res, "standby");
    }
    let st = lab.daemons[b].status().unwrap();
    assert!(
        st["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["last_error"].is_null())
    );
    let ev = lab.events();
    assert!(
        !ev.iter().any(|l| l.starts_with("b release")),
        "b undid what a holds:\n{}",
        ev.join("\n")
    );
}

#[test]
fn restart_after_daemon_and_keeper_killed_together_undoes_what_it_left() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.sole_master("web");
    lab.daemons[a].wait_state("db", "master");
    // systemd's final SIGKILL: daemon and keeper die together, the kernel
    // drops the locks, and "a"'s side effects still stand.
    lab.keeper(a);
    support::reap_with_keepers(&mut lab.daemons[a..=a]);
    // `status` says what may be left, not only "not running".
    let out = support::cli(&lab.daemons[a].config, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not running") && err.contains("applied records are left for: db, web"),
        "{err}"
    );
    let b = start(&mut lab, "b");
    lab.daemons[b].wait_state("web", "master");
    lab.daemons[b].wait_state("db", "master");
    // "a" comes back: the lock is busy, but its applied records say it may
    // have left something: it undoes that, once.
    let a2 = start(&mut lab, "a");
    for res in ["web", "db"] {
        lab.daemons[a2].wait_state(res, "standby");
        wait_for(WAIT, &format!("a's release of {res}"), || {
            lab.events()
                .contains(&format!("a release {res}"))
                .then_some(())
        });
    }
    // A second restart finds nothing left to undo.
    lab.daemons[a2].stop();
    let before = lab.events().len();
    let a3 = start(&mut lab, "a");
    lab.daemons[a3].wait_state("web", "standby");
    lab.daemons[a3].wait_state("db", "standby");
    assert_eq!(lab.events().len(), before, "{}", lab.events().join("\n"));
}

#[test]
fn cleanup_undoes_only_what_this_instance_applied() {
    let mut lab = Lab::new();
    let cfg = lab.config("a", &web_and_db(&lab));
    // Nothing applied yet: nothing to undo (another instance may hold it).
    cli_ok(&cfg, &["cleanup"]);
    assert_eq!(lab.events(), Vec::<String>::new());
    // Master, then killed together with its keeper: cleanup undoes it.
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    lab.keeper(a);
    support::reap_with_keepers(&mut lab.daemons[a..=a]);
    cli_ok(&cfg, &["cleanup"]);
    let ev = lab.events();
    assert_eq!(
        &ev[ev.len() - 2..],
        ["a release web", "a release db"],
        "{}",
        ev.join("\n")
    );
    // Safe to run again: nothing is left.
    let n = ev.len();
    assert!(cli(&cfg, &["cleanup"]).status.success());
    assert_eq!(lab.events().len(), n);
}

/// `cleanup -v` says "cleaned up" once per resource it undid, and not at
/// all where it did nothing (issue #19, item 11: it logged it once per
/// lock dropped, the candidate lock too, whether or not anything was
/// there).
#[test]
fn cleanup_logs_once_per_resource_it_undid() {
    let mut lab = Lab::new();
    // web with a candidate lock of ours (`prefer`): two locks to drop.
    let web =
        lab.logging("web")
            .replacen("name = \"web\"\n", "name = \"web\"\nprefer = [\"a\"]\n", 1);
    let res = format!("{web}\n{}", lab.logging("db"));
    let cfg = lab.config("a", &res);
    // One `cleanup -v`: its "cleaned up" lines for web and for db.
    let cleaned = || -> (usize, usize) {
        let out = cli_ok(&cfg, &["cleanup", "-v"]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let n = |r: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("resource={r}")) && l.contains("cleaned up"))
                .count()
        };
        (n("web"), n("db"))
    };
    // Nothing applied: nothing done, nothing claimed.
    assert_eq!(cleaned(), (0, 0));
    assert_eq!(lab.events(), Vec::<String>::new());
    // Master of both, killed together with its keeper: both undone, each
    // said once.
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    lab.keeper(a);
    support::reap_with_keepers(&mut lab.daemons[a..=a]);
    assert_eq!(cleaned(), (1, 1));
    let ev = lab.events();
    assert_eq!(&ev[ev.len() - 2..], ["a release web", "a release db"]);
    // And again: nothing left, nothing claimed.
    assert_eq!(cleaned(), (0, 0));
}

/// A resource removed from the config after a crash is still undone by
/// `cleanup`: its applied record holds its release steps.
#[test]
fn cleanup_undoes_a_resource_gone_from_the_config() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    lab.keeper(a);
    support::reap_with_keepers(&mut lab.daemons[a..=a]);
    let record = lab.path("a/run/applied/web");
    assert!(record.exists());
    let cfg = lab.config("a", "");
    cli_ok(&cfg, &["cleanup"]);
    assert_eq!(lab.count("a release web"), 1, "{}", lab.events().join("\n"));
    assert!(!record.exists(), "undone, so the record is gone");
}

#[test]
fn status_without_daemon_says_so() {
    let lab = Lab::new();
    let cfg = lab.config("a", "");
    let out = cli(&cfg, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn status_table_for_humans() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("db", "master");
    let out = cli(&lab.daemons[a].config, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("RESOURCE")
            && text
                .lines()
                .any(|l| l.starts_with("web") && l.contains("master")),
        "{text}"
    );
}

#[test]
fn unusable_lock_dir_shows_in_status_and_retries() {
    let mut lab = Lab::new();
    // A file where the lock directory should be.
    fs::write(lab.path("locks"), "not a dir").unwrap();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "backoff");
    let err = lab.daemons[a].last_error("web").unwrap();
    assert!(err.contains("lock"), "{err}");
    fs::remove_file(lab.path("locks")).unwrap();
    lab.daemons[a].wait_state("web", "master");
}

#[test]
fn sighup_reload_applies_a_good_config_and_keeps_a_bad_one_out() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("db", "master");
    let cfg = lab.daemons[a].config.clone();
    let good = fs::read_to_string(&cfg).unwrap();
    // Bad: nothing changes, the daemon keeps running both resources.
    fs::write(&cfg, format!("{good}\n[[resource]]\nname = \"web\"\n")).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_log("reload refused");
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
    // Good: drop db (released), add mail.
    let without_db = good
        .split("[[resource]]\nname = \"db\"")
        .next()
        .unwrap()
        .to_string();
    fs::write(&cfg, format!("{without_db}\n{}", lab.logging("mail"))).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_state("mail", "master");
    wait_for(WAIT, "db gone", || {
        (lab.daemons[a].state("db").is_none()).then_some(())
    });
    assert!(lab.events().contains(&"a release db".to_string()));
    assert_eq!(
        lab.daemons[a].state("web").as_deref(),
        Some("master"),
        "{}",
        lab.daemons[a].log()
    );
}

/// A reload whose lock dir is on a filesystem the `file` backend refuses
/// (issue 25; /proc stands in for one it does not know) is refused whole:
/// nothing of it applies, though `[lock]` itself needs a restart.
#[test]
fn a_reload_onto_a_refused_filesystem_changes_nothing() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("db", "master");
    let cfg = lab.daemons[a].config.clone();
    let good = fs::read_to_string(&cfg).unwrap();
    let moved: String = good
        .lines()
        .map(|l| match l.starts_with("dir = ") {
            true => "dir = \"/proc/dlm-electd-test/locks\"".to_string(),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(moved, good.trim_end());
    fs::write(&cfg, format!("{moved}\n{}", lab.logging("mail"))).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_log("reload refused");
    let log = lab.daemons[a].log();
    assert!(
        log.contains(
            "key `lock.dir`: refusing the `file` backend here: the lock dir is on proc at /proc"
        ),
        "{log}"
    );
    assert_eq!(lab.daemons[a].state("mail"), None);
    assert_eq!(lab.daemons[a].state("db").as_deref(), Some("master"));
    // status still says how far the running config's locks reach.
    let text = String::from_utf8(cli_ok(&cfg, &["status"]).stdout).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("locks: host-local (")),
        "{text}"
    );
}

/// Unmounts (lazily) on drop, so a failing test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A filesystem mounted over the lock dir while the daemon runs was never
/// judged (issue 25): the master notices its lock file is gone from the
/// path, and no lock is taken on the new filesystem (tmpfs here stands in
/// for, say, an o2cb OCFS2 volume) until it is unmounted again.
#[test]
fn as_root_no_lock_is_taken_on_a_filesystem_mounted_over_the_lock_dir() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("web", "master");
    let locks = lab.path("locks");
    nix::mount::mount(
        Some("tmpfs"),
        &locks,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .unwrap();
    let mounted = Mounted(locks.clone());
    wait_for(WAIT, "web to lose its lock and fail to lock again", || {
        lab.daemons[a]
            .last_error("web")
            .filter(|e| e.contains("than the lock dir was judged on at start"))
    });
    assert_ne!(lab.daemons[a].state("web").as_deref(), Some("master"));
    drop(mounted);
    lab.daemons[a].wait_state("web", "master");
}

#[test]
fn as_root_refuses_files_others_can_write() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let cfg = lab.config("a", &web_and_db(&lab));
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o666)).unwrap();
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others"));
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
    let hook = lab.path("hook.sh");
    fs::write(&hook, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = lab.config("b", &format!("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"{}\"]\n", hook.display()));
    let out = cli(&cfg, &["run"]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hook.sh") && err.contains("writable"), "{err}");
}

/// Issue 19 item 6: a reload that reads the main file while its writer has
/// truncated it (an editor, `cp`) refuses it and releases nothing (reading
/// mid-write: `config::load`'s unit test).
#[test]
fn a_reload_of_a_truncated_config_releases_nothing() {
    let mut lab = Lab::new();
    let a = start(&mut lab, "a");
    lab.daemons[a].wait_state("db", "master");
    let cfg = lab.daemons[a].config.clone();
    let good = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, "").unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_log("the main config file is empty");
    // check-config says the same.
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    // (status reads the config too: ask once it is whole again)
    fs::write(&cfg, &good).unwrap();
    assert_eq!(lab.daemons[a].state("db").as_deref(), Some("master"));
    let log = lab.daemons[a].log();
    assert!(!log.contains("releas"), "nothing released:\n{log}");
    // A whole file again: applied.
    fs::write(&cfg, format!("{good}\n{}", lab.logging("mail"))).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_state("mail", "master");
    assert_eq!(lab.daemons[a].state("db").as_deref(), Some("master"));
}

/// Issue 19 item 1: a `NOTIFY_SOCKET` inherited from a shell or script that
/// points nowhere is no service manager: the daemon says so once and
/// becomes master with the keeper's protection alone (it used to give every
/// lock up, "backoff" for good).
#[test]
fn a_notify_socket_that_points_nowhere_does_not_keep_the_node_from_mastership() {
    let mut lab = Lab::new();
    let res = web_and_db(&lab);
    let a = lab.start_under(
        "a",
        &["env", "NOTIFY_SOCKET=/nonexistent/notify.sock"],
        &res,
    );
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_state("db", "master");
    let log = lab.daemons[a].log();
    assert!(log.contains("takes no message"), "{log}");
    assert!(!log.contains("did not take"), "{log}");
}

/// Issue 19 item 2: an applied record that names an exec step with no
/// program (damaged, hand-edited) panicked `cleanup` and `run` at every
/// start (exit 101, a crash loop). It is refused, left in place, and the
/// rest goes on.
#[test]
fn a_record_with_an_empty_argv_is_refused_not_run() {
    use dlm_electd::config::{ActionSpec, ExecSpec};
    use dlm_electd::instance::Applied;
    let mut lab = Lab::new();
    let res = lab.logging("db");
    let cfg = lab.config("a", &res);
    let records = lab.path("a/run/applied");
    // Private, as a daemon makes its runtime dir (a shared one is refused).
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(&records)
        .unwrap();
    let bad = Applied {
        lock: "web".into(),
        actions: vec![ActionSpec::Exec(ExecSpec {
            acquire: None,
            release: Some(vec![]),
            timeout: Duration::from_secs(3),
            env: Default::default(),
        })],
    };
    fs::write(records.join("web"), serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = cli(&cfg, &["cleanup"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("an exec step with no program"), "{err}");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("db", "master");
    assert!(records.join("web").exists(), "left in place for the admin");
}
