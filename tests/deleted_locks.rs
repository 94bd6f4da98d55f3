//! Deleting lock files (an admin's `rm`, systemd-tmpfiles aging, `rm -rf`
//! of the lock dir) on the `file` backend never gives two holders of one
//! lock: real daemons and `run-locked` processes on one lock dir, 50
//! rounds each, with an event log whose release lines are written only
//! once the release step has finished (it sleeps first), so an acquire
//! before them is an overlap.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::lab::{Lab, exec_resource};
use support::{BIN, WAIT, assert_never_two_masters, log_hook, wait_for};

const ROUNDS: usize = 50;

/// Resource `web` whose release takes 0.2 s before it logs: a node
/// acquiring before the old master's release line is an overlap.
fn slow_release(lab: &Lab) -> String {
    let log = lab.events_log();
    exec_resource("web", &log_hook("", &log), &log_hook("sleep 0.2; ", &log))
}

/// Starts `node` on the lab's lock dir with `standby` ("wait" or "poll").
fn start(lab: &mut Lab, node: &str, standby: &str) -> usize {
    let resources = slow_release(lab);
    let config = lab.config(node, &resources);
    let text = fs::read_to_string(&config).unwrap().replace(
        "backend = \"file\"\n",
        &format!("backend = \"file\"\nstandby = \"{standby}\"\n"),
    );
    fs::write(&config, text).unwrap();
    let stderr = lab.stderr_path(node);
    lab.spawn(node, &[], config, stderr)
}

fn main_name(lab: &Lab) -> std::path::PathBuf {
    lab.path("locks/web.lock")
}

fn twin_name(lab: &Lab) -> std::path::PathBuf {
    lab.path("locks/.web.lock.twin")
}

/// Both names exist and name one inode.
fn names_whole(lab: &Lab) -> bool {
    match (
        fs::symlink_metadata(main_name(lab)),
        fs::symlink_metadata(twin_name(lab)),
    ) {
        (Ok(m), Ok(t)) => m.ino() == t.ino(),
        _ => false,
    }
}

/// Whether two nodes were master at once in `events` (the check of
/// `assert_never_two_masters`, without panicking).
fn overlapped(events: &[String]) -> bool {
    let mut master = std::collections::HashMap::new();
    events.iter().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match (f.first(), f.get(1), f.get(2)) {
            (Some(node), Some(&"acquire"), Some(res)) => {
                master.insert(*res, *node).is_some_and(|o| o != *node)
            }
            (Some(node), Some(&"release"), Some(res)) => {
                if master.get(res) == Some(node) {
                    master.remove(res);
                }
                false
            }
            _ => false,
        }
    })
}

fn acquires(lab: &Lab) -> usize {
    lab.events()
        .iter()
        .filter(|l| l.contains(" acquire "))
        .count()
}

/// The master keeps its lock through `delete` (the deleted name is put
/// back), `rounds` times, while the others stand by; no overlap ever.
fn deleted_name_rounds(lab: &mut Lab, delete: impl Fn(&Lab), newcomer: Option<&str>) {
    let m = lab.sole_master("web");
    let before = acquires(lab);
    for round in 0..ROUNDS {
        delete(lab);
        if let Some(node) = newcomer {
            // A node started right after the deletion: it must find the
            // lock busy, whatever the master has put back yet.
            let c = start(lab, node, "poll");
            wait_for(
                WAIT,
                &format!("round {round}: newcomer standing by"),
                || {
                    (lab.daemons[c].state("web").as_deref() == Some("standby")
                        || overlapped(&lab.events()))
                    .then_some(())
                },
            );
            lab.daemons[c].stop();
        }
        // (An overlap ends the wait too, to be reported below.)
        wait_for(WAIT, &format!("round {round}: names put back"), || {
            (names_whole(lab) || overlapped(&lab.events())).then_some(())
        });
        assert_never_two_masters(&lab.events());
    }
    assert_eq!(lab.daemons[m].state("web").as_deref(), Some("master"));
    assert_eq!(acquires(lab), before, "no handover: {:?}", lab.events());
}

#[test]
fn rm_of_the_lock_file_with_a_waiting_standby_never_overlaps() {
    let mut lab = Lab::new();
    start(&mut lab, "a", "wait");
    lab.sole_master("web");
    start(&mut lab, "b", "wait");
    deleted_name_rounds(
        &mut lab,
        |lab| {
            let _ = fs::remove_file(main_name(lab));
        },
        None,
    );
}

#[test]
fn rm_of_the_lock_file_with_a_polling_standby_never_overlaps() {
    let mut lab = Lab::new();
    start(&mut lab, "a", "poll");
    lab.sole_master("web");
    start(&mut lab, "b", "poll");
    // Half the rounds the main name, half the hidden twin.
    let n = std::cell::Cell::new(0);
    deleted_name_rounds(
        &mut lab,
        |lab| {
            n.set(n.get() + 1);
            let victim = if n.get() % 2 == 1 {
                main_name(lab)
            } else {
                twin_name(lab)
            };
            let _ = fs::remove_file(victim);
        },
        None,
    );
}

#[test]
fn rm_of_the_lock_file_with_a_newcomer_starting_never_overlaps() {
    let mut lab = Lab::new();
    start(&mut lab, "a", "wait");
    lab.sole_master("web");
    deleted_name_rounds(
        &mut lab,
        |lab| {
            let _ = fs::remove_file(main_name(lab));
        },
        Some("c"),
    );
}

/// `rm -rf` of the lock dir: both names gone, the master cannot put them
/// back; it must release before anyone else acquires, every round.
#[test]
fn rm_rf_of_the_lock_dir_hands_over_only_after_the_release() {
    let mut lab = Lab::new();
    start(&mut lab, "a", "wait");
    lab.sole_master("web");
    start(&mut lab, "b", "poll");
    start(&mut lab, "c", "wait");
    for round in 0..ROUNDS {
        let m = lab.sole_master("web");
        let released = format!("{} release web", lab.node(m));
        let count = |lab: &Lab, line: &str| lab.events().iter().filter(|l| *l == line).count();
        let (before, releases) = (acquires(&lab), count(&lab, &released));
        // A contender may be creating its fresh inode in there meanwhile:
        // remove until it is gone.
        wait_for(WAIT, "the lock dir removed", || {
            let _ = fs::remove_dir_all(lab.path("locks"));
            (!lab.path("locks").exists()).then_some(())
        });
        wait_for(WAIT, &format!("round {round}: a new master"), || {
            (acquires(&lab) > before && main_name(&lab).exists()).then_some(())
        });
        assert_never_two_masters(&lab.events());
        wait_for(WAIT, "both names", || names_whole(&lab).then_some(()));
        assert_eq!(
            count(&lab, &released),
            releases + 1,
            "round {round}: the old master released"
        );
    }
    assert_never_two_masters(&lab.events());
}

// ---- workload locks ----

fn node_config(dir: &Path, node: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{node}.toml"));
    fs::write(
        &path,
        format!(
            "[node]\nname = \"{node}\"\n[lock]\nbackend = \"file\"\ndir = \"{}\"\n[daemon]\nruntime_dir = \"{}\"\npoll_interval = \"100ms\"\n",
            dir.join("locks").display(),
            dir.join(format!("run-{node}")).display()
        ),
    )
    .unwrap();
    path
}

/// A `run-locked` child: on drop its program is told to end (its go
/// file), and run-locked is killed if it has not exited within WAIT.
struct Running(std::process::Child, std::path::PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = fs::write(&self.1, "");
        let start = std::time::Instant::now();
        while start.elapsed() < WAIT {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rm` of a workload lock's file(s) while its program runs, then
/// `run-locked` of the same name on another node: busy (75), every round.
#[test]
fn rm_of_a_workload_lock_file_while_its_program_runs_leaves_it_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node_config(dir.path(), "a"), node_config(dir.path(), "b"));
    let log = dir.path().join("events");
    for round in 0..ROUNDS {
        let name = format!("vm{round}");
        let go = dir.path().join(format!("go-{round}"));
        let script = format!(
            "echo \"a acquire $DLM_ELECTD_LOCK\" >> {log}; n=0; while [ ! -e {go} ] && [ $n -lt 600 ]; do sleep 0.02; n=$((n+1)); done; echo \"a release $DLM_ELECTD_LOCK\" >> {log}",
            log = log.display(),
            go = go.display()
        );
        let a_err = dir.path().join(format!("a-{round}.stderr"));
        let child = Command::new(BIN)
            .args(["run-locked", "--config"])
            .arg(&a)
            .args([&name, "--", "/bin/sh", "-c", &script])
            .stderr(fs::File::create(&a_err).unwrap())
            .spawn()
            .unwrap();
        let running = Running(child, go);
        let started = format!("a acquire {name}");
        wait_for(WAIT, "a's program to start", || {
            support::read_events(&log).contains(&started).then_some(())
        });
        // Rounds take turns: the file, its hidden twin, both (as `rm -rf`).
        let locks = dir.path().join("locks");
        let main = locks.join(format!("@{name}.lock"));
        let twin = locks.join(format!(".@{name}.lock.twin"));
        match round % 3 {
            0 => fs::remove_file(&main).unwrap(),
            1 => fs::remove_file(&twin).unwrap(),
            _ => {
                fs::remove_file(&main).unwrap();
                // (Also on a version without twins, to show it overlap.)
                let _ = fs::remove_file(&twin);
            }
        }
        let out = Command::new(BIN)
            .args(["run-locked", "--config"])
            .arg(&b)
            .args([
                &name,
                "--",
                "/bin/sh",
                "-c",
                &format!("echo \"b acquire {name}\" >> {}", log.display()),
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(75),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // a's run-locked watches its names: a single deleted one is put
        // back, both gone is said loudly.
        if round % 3 == 2 {
            wait_for(WAIT, "a's run-locked to say so", || {
                fs::read_to_string(&a_err)
                    .ok()?
                    .contains("are both gone")
                    .then_some(())
            });
        } else {
            wait_for(WAIT, "the name put back", || {
                let (m, t) = (fs::metadata(&main).ok()?, fs::metadata(&twin).ok()?);
                (m.ino() == t.ino()).then_some(())
            });
        }
        drop(running);
        assert_never_two_masters(&support::read_events(&log));
    }
    let events = support::read_events(&log);
    assert!(!events.iter().any(|l| l.starts_with("b ")), "{events:?}");
}

/// The same with `lock` (its holder process keeps the lock): `run-locked`
/// on another node is busy, and the holder puts a deleted name back.
#[test]
fn rm_of_a_workload_lock_file_held_by_lock_leaves_it_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node_config(dir.path(), "a"), node_config(dir.path(), "b"));
    let cli = |config: &Path, args: &[&str]| {
        // The subcommand, --config, then its arguments (which may end
        // with `-- PROGRAM`).
        Command::new(BIN)
            .arg(args[0])
            .arg("--config")
            .arg(config)
            .args(&args[1..])
            .output()
            .unwrap()
    };
    /// Unlocks on drop: the holder is SIGKILLed even when a round fails.
    struct Unlock<'a>(&'a dyn Fn());
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    for round in 0..ROUNDS {
        let name = format!("vm{round}");
        let out = cli(&a, &["lock", &name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unlock = || {
            let _ = cli(&a, &["unlock", &name]);
        };
        let _unlock = Unlock(&unlock);
        let locks = dir.path().join("locks");
        let main = locks.join(format!("@{name}.lock"));
        let twin = locks.join(format!(".@{name}.lock.twin"));
        match round % 3 {
            0 => fs::remove_file(&main).unwrap(),
            1 => fs::remove_file(&twin).unwrap(),
            _ => {
                fs::remove_file(&main).unwrap();
                fs::remove_file(&twin).unwrap();
            }
        }
        let out = cli(&b, &["run-locked", &name, "--", "true"]);
        assert_eq!(
            out.status.code(),
            Some(75),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if round % 3 != 2 {
            wait_for(WAIT, "the holder to put the name back", || {
                let (m, t) = (fs::metadata(&main).ok()?, fs::metadata(&twin).ok()?);
                (m.ino() == t.ino()).then_some(())
            });
        }
    }
}

/// The runtime dir removed under a running daemon: a second daemon with
/// the same config is refused.
#[test]
fn a_removed_runtime_dir_lets_no_second_instance_start() {
    let mut lab = Lab::new();
    let first = start(&mut lab, "a", "wait");
    lab.sole_master("web");
    fs::remove_dir_all(lab.path("a/run")).unwrap();
    // The first says so within a poll.
    lab.daemons[first].wait_log("was deleted under the running daemon");
    let config = lab.daemons[first].config.clone();
    let stderr = lab.stderr_path("a");
    let second = lab.spawn("a", &[], config, stderr);
    let code = lab.daemons[second].wait_exit();
    assert_ne!(code, Some(0));
    let log = lab.daemons[second].log();
    assert!(log.contains("another dlm-electd instance"), "{log}");
    assert!(support::alive(lab.daemons[first].pid().as_raw()));
}
