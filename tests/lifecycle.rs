//! A resource's life with a real daemon on the `file` backend, where it
//! went wrong before: a release that fails at shutdown or on request, a
//! reload that only changes intervals, a lock file deleted under a master,
//! signals keepalived admins send, a stop during a long acquire step.

mod support;

use nix::sys::signal::Signal;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::lab::{Lab, exec_resource};
use support::{BIN, WAIT, assert_never_two_masters, log_hook, wait_for};

/// A lab with node a master of the resources `config` writes (`web`
/// among them), and a's index.
fn master_of(config: impl FnOnce(&Lab) -> String) -> (Lab, usize) {
    let mut lab = Lab::new();
    let res = config(&lab);
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    (lab, a)
}

/// One resource `web` whose exec action logs its acquire step, and whose
/// release step is `/bin/false`.
fn web_failing_release(lab: &Lab) -> String {
    let hook = log_hook("", &lab.events_log());
    exec_resource("web", &hook, r#"["/bin/false"]"#)
}

/// Runs the CLI, killing it if it has not finished within `limit`.
fn cli_within(limit: Duration, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            return (st.code(), text);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, format!("still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failed_release_at_shutdown_exits_non_zero_and_says_what_is_left() {
    let (mut lab, a) = master_of(web_failing_release);
    lab.keeper(a);
    lab.daemons[a].signal(Signal::SIGTERM);
    let code = lab.daemons[a].wait_exit();
    let log = lab.daemons[a].log();
    assert_eq!(code, Some(1), "{log}");
    assert!(!log.contains("stopped cleanly"), "{log}");
    assert!(
        log.contains("not released") && log.contains("web (releasing"),
        "names what is left:\n{log}"
    );
}

#[test]
fn release_request_returns_at_once_when_a_release_step_fails() {
    let (lab, a) = master_of(web_failing_release);
    let cfg = lab.daemons[a].config.clone();
    let (code, out) = cli_within(WAIT, &cfg, &["release", "web"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("/bin/false") && !out.contains("no answer"),
        "names the failing release program:\n{out}"
    );
    // The daemon goes on retrying, keeping the lock.
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("releasing"));
}

#[test]
fn reload_of_intervals_keeps_the_master_in_place() {
    let (lab, a) = master_of(|lab| lab.logging("web"));
    let since = lab.daemons[a].status().unwrap()["resources"][0]["since_ms"].clone();
    let before = lab.events();
    // Only [daemon] poll_interval and op_timeout change.
    let cfg = lab.daemons[a].config.clone();
    let text = fs::read_to_string(&cfg).unwrap().replace(
        "poll_interval = \"100ms\"",
        "poll_interval = \"300ms\"\nop_timeout = \"30s\"",
    );
    fs::write(&cfg, text).unwrap();
    lab.daemons[a].signal(Signal::SIGHUP);
    lab.daemons[a].wait_log("reloaded");
    let st = lab.daemons[a].status().unwrap();
    assert_eq!(st["resources"][0]["state"], "master");
    assert_eq!(st["resources"][0]["since_ms"], since, "not re-acquired");
    assert_eq!(lab.events(), before, "no release, no acquire");
    assert!(lab.daemons[a].log().contains("apply in place"));
}

#[test]
fn deleted_lock_file_makes_the_master_give_up_and_compete_again() {
    let (mut lab, a) = master_of(|lab| lab.logging("web"));
    // tmpfiles aging, an admin's rm -rf: both names of the held lock file
    // go away (one alone is put back: tests/deleted_locks.rs).
    fs::remove_file(lab.path("locks").join("web.lock")).unwrap();
    fs::remove_file(lab.path("locks").join(".web.lock.twin")).unwrap();
    let res = lab.logging("web");
    lab.start("b", &res);
    wait_for(WAIT, "a to notice and release", || {
        lab.events()
            .contains(&"a release web".to_string())
            .then_some(())
    });
    assert!(
        lab.daemons[a].log().contains("are both gone"),
        "{}",
        lab.daemons[a].log()
    );
    // Exactly one master again, and it stays so.
    lab.one_master("web", &["standby", "backoff"]);
}

#[test]
fn sigusr1_logs_the_status_and_usr2_does_not_kill() {
    let (mut lab, a) = master_of(|lab| lab.logging("web"));
    lab.daemons[a].signal(Signal::SIGUSR1);
    lab.daemons[a].wait_log("status: master");
    lab.daemons[a].signal(Signal::SIGUSR2);
    lab.daemons[a].wait_log("SIGUSR2 ignored");
    assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
    assert!(
        lab.daemons[a]
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none()
    );
    assert_never_two_masters(&lab.events());
}

/// The syscall the main thread of `pid` is in, if one: `/proc/PID/syscall`
/// starts with its number.
fn syscall_of(pid: i32) -> Option<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Whether syscall `nr` is a sleep (`std::thread::sleep`).
fn sleeping(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_nanosleep {
        return true;
    }
    nr == libc::SYS_clock_nanosleep
}

/// Starts node a (one logging resource `web`) and returns its index once
/// it is held at a known point of its start: reading a config file that
/// keeps changing, it waits for the file to settle (a sleep).
fn start_held_reading_config(lab: &mut Lab) -> usize {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let config = lab.config("a", &lab.logging("web"));
    let touching = Arc::new(AtomicBool::new(true));
    let toucher = {
        let (touching, config) = (touching.clone(), config.clone());
        std::thread::spawn(move || {
            let file = fs::File::open(&config).unwrap();
            let end = Instant::now() + WAIT;
            while touching.load(Ordering::SeqCst) && Instant::now() < end {
                file.set_modified(std::time::SystemTime::now()).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let stderr = lab.stderr_path("a");
    let a = lab.spawn("a", &[], config, stderr);
    let pid = lab.daemons[a].pid().as_raw();
    wait_for(WAIT, "the daemon waiting for its config to settle", || {
        syscall_of(pid).filter(|&nr| sleeping(nr)).map(|_| ())
    });
    touching.store(false, Ordering::SeqCst);
    toucher.join().unwrap();
    a
}

/// A SIGHUP, SIGUSR1 or SIGUSR2 that meets the daemon still starting is
/// no death: it comes up and takes its lock. The nemesis run found a daemon
/// restarted under load and sent a reload soon after gone without a word
/// (the default action of SIGHUP ends a process).
#[test]
fn signals_while_starting_do_not_kill_the_daemon() {
    let mut lab = Lab::new();
    let a = start_held_reading_config(&mut lab);
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        lab.daemons[a].signal(sig);
    }
    lab.daemons[a].wait_state("web", "master");
    let child = lab.daemons[a].child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(lab.count("a acquire web"), 1);
    assert_never_two_masters(&lab.events());
}

/// A SIGTERM while the config is read ends the start there, exit 0,
/// before any lock is tried: nothing was acquired, so nothing released.
#[test]
fn sigterm_while_reading_the_config_exits_before_competing() {
    let mut lab = Lab::new();
    let a = start_held_reading_config(&mut lab);
    lab.daemons[a].signal(Signal::SIGTERM);
    assert_eq!(lab.daemons[a].wait_exit(), Some(0));
    assert!(lab.daemons[a].log().contains("exiting before competing"));
    assert!(lab.events().is_empty(), "{:?}", lab.events());
    assert!(
        !support::held(&lab.path("locks").join("web")),
        "the lock is held"
    );
}

#[test]
fn stop_during_a_long_acquire_step_cancels_it_and_rolls_back() {
    let mut lab = Lab::new();
    let (log, pid) = (lab.events_log(), lab.path("hook.pid"));
    let res = format!(
        r#"[[resource]]
name = "web"
[[resource.action]]
type = "exec"
timeout = "60s"
acquire = ["/bin/sh", "-c", "echo $$ > {pid}; echo \"$DLM_ELECTD_NODE acquire-start web\" >> {log}; sleep 20"]
release = {release}
"#,
        pid = pid.display(),
        log = log.display(),
        release = log_hook("", &log),
    );
    let a = lab.start("a", &res);
    wait_for(WAIT, "the acquire step to start", || {
        lab.events()
            .contains(&"a acquire-start web".to_string())
            .then_some(())
    });
    let hook: i32 = fs::read_to_string(&pid).unwrap().trim().parse().unwrap();
    let stopped = Instant::now();
    lab.daemons[a].signal(Signal::SIGTERM);
    let code = lab.daemons[a].wait_exit();
    let took = stopped.elapsed();
    assert_eq!(code, Some(0), "{}", lab.daemons[a].log());
    // The step alone had 20 s to go: a stop costs only the release.
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert!(!support::alive(hook), "the hook's group was killed");
    assert_eq!(
        lab.events().last().map(String::as_str),
        Some("a release web"),
        "the interrupted step was rolled back: {:?}",
        lab.events()
    );
}

#[test]
fn hold_off_shows_in_status_and_resume_ends_it() {
    let (lab, a) = master_of(|lab| lab.logging("web"));
    let cfg = lab.daemons[a].config.clone();
    let (code, out) = cli_within(WAIT, &cfg, &["release", "web", "--hold-off", "1h"]);
    assert_eq!(code, Some(0), "{out}");
    let st = lab.daemons[a].status().unwrap();
    let r = &st["resources"][0];
    assert_eq!(r["state"], "standby");
    let until = r["hold_off_until_ms"].as_u64().expect("hold-off shown");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        until > now + 3_500_000 && until <= now + 3_600_000,
        "{until} vs {now}"
    );
    let (_, table) = cli_within(WAIT, &cfg, &["status"]);
    // The HOLD-OFF column: 1h less the moments since, rounded up.
    assert!(
        table.contains("  1h left  ") || table.contains("  59m"),
        "{table}"
    );
    // Ended early: competes at once, and nobody else holds it.
    let (code, out) = cli_within(WAIT, &cfg, &["resume", "web"]);
    assert_eq!(code, Some(0), "{out}");
    lab.daemons[a].wait_state("web", "master");
    assert!(lab.daemons[a].status().unwrap()["resources"][0]["hold_off_until_ms"].is_null());
    let (code, out) = cli_within(WAIT, &cfg, &["resume", "web"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not holding off"), "{out}");
}

#[test]
fn status_to_a_full_disk_is_an_error_not_a_panic() {
    let (lab, a) = master_of(|lab| lab.logging("web"));
    let out = std::process::Command::new(support::BIN)
        .args(["status", "--json", "--config"])
        .arg(&lab.daemons[a].config)
        .stdout(fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the status"), "{err}");
}

/// A second SIGTERM (or Ctrl-C) while the release steps run is answered in
/// the log and changes nothing: the release finishes in order, exit 0.
#[test]
fn a_second_sigterm_while_releasing_is_logged_and_the_release_finishes() {
    let (lab, a) = master_of(|lab| {
        let go = lab.path("go");
        let started = lab.path("releasing");
        let release = format!(
            r#"["/bin/sh", "-c", "touch {}; n=0; while [ ! -e {} ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done"]"#,
            started.display(),
            go.display()
        );
        exec_resource("web", r#"["/bin/true"]"#, &release)
    });
    let mut lab = lab;
    lab.daemons[a].signal(Signal::SIGTERM);
    wait_for(WAIT, "the release step", || {
        lab.path("releasing").exists().then_some(())
    });
    lab.daemons[a].signal(Signal::SIGTERM);
    lab.daemons[a].signal(Signal::SIGINT);
    wait_for(WAIT, "the answer in the log", || {
        (lab.daemons[a].log().matches("already stopping").count() == 2).then_some(())
    });
    fs::write(lab.path("go"), "").unwrap();
    assert_eq!(lab.daemons[a].wait_exit(), Some(0));
    assert!(lab.daemons[a].log().contains("stopped cleanly"));
}

/// `release` while the daemon stops (issue #19, item 10) used to get no
/// answer until the daemon exited ("bad answer from the daemon: EOF while
/// parsing a value"); now it is told at once that the daemon is stopping
/// and what it does, and exits 1.
#[test]
fn release_while_stopping_says_the_daemon_is_stopping() {
    let (mut lab, a) = master_of(|lab| {
        let release = format!(
            r#"["/bin/sh", "-c", "touch {}; n=0; while [ ! -e {} ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done"]"#,
            lab.path("releasing").display(),
            lab.path("go").display()
        );
        exec_resource("web", r#"["/bin/true"]"#, &release)
    });
    lab.daemons[a].signal(Signal::SIGTERM);
    wait_for(WAIT, "the release step", || {
        lab.path("releasing").exists().then_some(())
    });
    let cfg = lab.daemons[a].config.clone();
    let (code, out) = cli_within(Duration::from_secs(10), &cfg, &["release", "web"]);
    let (resume_code, resume_out) = cli_within(Duration::from_secs(10), &cfg, &["resume", "web"]);
    // Let the release step end whatever the answers were.
    fs::write(lab.path("go"), "").unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with(
            "dlm-electd: release web: the daemon is stopping: it releases every resource, then exits (web is releasing now)"
        ),
        "{out}"
    );
    assert_eq!(resume_code, Some(1), "{resume_out}");
    assert!(
        resume_out.starts_with("dlm-electd: resume web: the daemon is stopping"),
        "{resume_out}"
    );
    assert_eq!(lab.daemons[a].wait_exit(), Some(0));
}
