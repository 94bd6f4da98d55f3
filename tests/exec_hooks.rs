//! exec hooks and their output: whatever a hook prints (bytes that are not
//! UTF-8, binary, an endless line) never changes its outcome, and a
//! background process holding the hook's pipes delays it only once.

mod support;

use dlm_electd::action::exec::{self, MAX_LINE};
use dlm_electd::action::{Cancel, Ctx, Step};
use dlm_electd::config::ExecSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::env_dump;
use support::lab::Lab;

#[test]
fn hooks_printing_latin1_binary_or_an_endless_line_still_make_a_master() {
    let exec = |acquire: &str| {
        format!(
            "[[resource.action]]\ntype = \"exec\"\ntimeout = \"20s\"\nacquire = [\"/bin/sh\", \"-c\", \"{acquire}\"]\n"
        )
    };
    let res = [
        "[[resource]]\nname = \"web\"\n".to_string(),
        // One Latin-1 byte (é), written as an octal escape by printf.
        exec(r"printf 'caf\\351\\n'"),
        // More binary than a pipe holds, so a reader that stops early
        // would kill the hook with SIGPIPE.
        exec("head -c 100000 /dev/urandom"),
        // 1 MiB without a newline, then one more line on stderr.
        exec("head -c 1048576 /dev/zero | tr '\\\\0' x; echo done >&2"),
    ]
    .concat();
    let mut lab = Lab::new();
    let a = lab.start("a", &res);
    let d = &lab.daemons[a];
    d.wait_state("web", "master");
    let log = d.log();
    assert!(log.contains("caf\u{fffd}"), "no lossy line in\n{log}");
    let cut = format!("{} … (line cut at {MAX_LINE} bytes)", "x".repeat(MAX_LINE));
    assert!(
        log.lines().any(|l| l.contains(&cut)),
        "no cut line in the log"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(" done")),
        "the stderr line after the long one is missing"
    );
    // Nothing near the 1 MiB line reached the log; a lossy line of random
    // bytes may triple (each bad byte becomes a 3-byte U+FFFD).
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 3 * MAX_LINE + 512,
        "a log line of {longest} bytes"
    );
}

/// Kills the process group named in a file (the hook wrote its pid, which
/// is its group's id), so the hook's background sleep dies even when the
/// test fails.
struct KillGroup(PathBuf);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pgid) = fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[tokio::test]
async fn a_grandchild_holding_both_pipes_costs_one_drain_not_two() {
    let dir = tempfile::tempdir().unwrap();
    let pgid = dir.path().join("pgid");
    let _kill = KillGroup(pgid.clone());
    let spec = ExecSpec {
        acquire: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo $$ > {}; sleep 30 & echo up", pgid.display()),
        ]),
        release: None,
        timeout: Duration::from_secs(10),
        env: Default::default(),
    };
    let ctx = Ctx {
        resource: "web".into(),
        node: "a".into(),
    };
    let start = Instant::now();
    let r = exec::run(&spec, Step::Acquire, &ctx, Cancel::never()).await;
    let took = start.elapsed();
    assert_eq!(r.map_err(|e| e.to_string()), Ok(()));
    // A bound, not a benchmark: the hook exits at once and the sleep holds
    // stdout and stderr; one drain of both takes 0.5 s, two take 1 s.
    assert!(
        took < Duration::from_millis(900),
        "run() took {took:?} for a hook that exits at once"
    );
}

/// A hook printing without end floods neither the log nor the stop: its
/// first MAX_LINES lines per stream are logged, the rest counted.
#[test]
fn a_hook_printing_300000_lines_logs_a_thousand_and_says_how_many_more() {
    use dlm_electd::action::exec::MAX_LINES;
    let res = "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\ntimeout = \"60s\"\nacquire = [\"/bin/sh\", \"-c\", \"seq 300000\"]\n";
    let mut lab = Lab::new();
    let a = lab.start("a", res);
    let d = &lab.daemons[a];
    d.wait_state("web", "master");
    let log = d.log();
    let printed = log
        .lines()
        .filter(|l| l.contains("event=\"acquire\"") && !l.contains("not logged"))
        .count();
    assert!(
        (MAX_LINES..MAX_LINES + 50).contains(&printed),
        "{printed} numbered lines logged"
    );
    assert!(
        log.contains(&format!(
            "{} more stdout lines not logged",
            300_000 - MAX_LINES
        )),
        "no count of the rest"
    );
}

/// Writes an executable script `dir/name` that appends `TAG ARGS` to `log`.
fn tagged_script(dir: &std::path::Path, name: &str, tag: &str, log: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    // Written under another name and renamed, so the daemon never sees a
    // half-written script.
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(
        &tmp,
        format!("#!/bin/sh\necho \"{tag} $*\" >> {}\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&tmp, &path).unwrap();
}

/// A hook or health check named without a path runs the file PATH gave
/// at load, which the config check judged: a program planted later in a
/// directory earlier in PATH (one others can write to, as in a daemon
/// started by hand) never runs.
#[test]
fn a_program_named_without_a_path_runs_the_file_found_at_load() {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new();
    let log = lab.path("ran.log");
    let early = lab.path("early");
    let late = lab.path("late");
    fs::create_dir(&early).unwrap();
    fs::create_dir(&late).unwrap();
    fs::set_permissions(&early, fs::Permissions::from_mode(0o777)).unwrap();
    tagged_script(&late, "hook", "late", &log);
    tagged_script(&late, "probe", "late", &log);
    let res = "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\n\
               acquire = [\"hook\", \"acquire\"]\nrelease = [\"hook\", \"release\"]\n\
               [resource.check]\nexec = [\"probe\", \"check\"]\ninterval = \"100ms\"\n";
    let path = format!(
        "PATH={}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
        early.display(),
        late.display()
    );
    let a = lab.start_under("a", &["/usr/bin/env", &path], res);
    lab.daemons[a].wait_state("web", "master");
    let ran = || fs::read_to_string(&log).unwrap_or_default();
    tagged_script(&early, "hook", "early", &log);
    tagged_script(&early, "probe", "early", &log);
    // Two more check runs after the plant: any of them would have found it.
    let checks = ran().matches("check").count();
    support::wait_for(support::WAIT, "two more check runs", || {
        (ran().matches("check").count() >= checks + 2).then_some(())
    });
    lab.daemons[a].stop();
    let ran = ran();
    assert!(!ran.contains("early"), "the planted program ran:\n{ran}");
    assert!(
        ran.contains("late acquire\n") && ran.contains("late release\n"),
        "{ran}"
    );
}

/// Hooks and health checks see a minimal environment, not the daemon's:
/// a fixed PATH, the locale and time zone, and the DLM_ELECTD_* variables.
/// What the daemon was started with for debugging (`RUST_LOG`, here set
/// by the test harness, a secret in the shell) stays with the daemon.
#[test]
fn hooks_and_checks_get_a_minimal_environment() {
    let mut lab = Lab::new();
    let hook_env = lab.path("hook.env");
    let check_env = lab.path("check.env");
    let res = format!(
        "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\n\
         acquire = [\"/bin/sh\", \"-c\", \"env > {}\"]\n\
         [resource.check]\nexec = [\"/bin/sh\", \"-c\", \"env > {}.tmp && mv {}.tmp {}\"]\ninterval = \"100ms\"\n",
        hook_env.display(),
        check_env.display(),
        check_env.display(),
        check_env.display()
    );
    let a = lab.start_under(
        "a",
        &[
            "/usr/bin/env",
            "DEBUG_SECRET=leak",
            "LANG=C.UTF-8",
            "TZ=UTC",
            "PATH=/nonexistent-dlm-electd:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
        &res,
    );
    lab.daemons[a].wait_state("web", "master");
    support::wait_for(support::WAIT, "a check run's env dump", || {
        check_env.exists().then_some(())
    });
    // What a shell adds by itself.
    let shell = ["PWD", "OLDPWD", "SHLVL", "_"];
    for (dump, event) in [(&hook_env, "acquire"), (&check_env, "check")] {
        let env = env_dump(dump);
        for (k, v) in [
            ("PATH", exec::HOOK_PATH),
            ("LANG", "C.UTF-8"),
            ("TZ", "UTC"),
            ("DLM_ELECTD_EVENT", event),
            ("DLM_ELECTD_RESOURCE", "web"),
            ("DLM_ELECTD_NODE", "a"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:?}");
        }
        let others: Vec<&String> = env
            .keys()
            .filter(|k| {
                !["PATH", "LANG", "TZ"].contains(&k.as_str())
                    && !k.starts_with("DLM_ELECTD_")
                    && !shell.contains(&k.as_str())
            })
            .collect();
        assert!(others.is_empty(), "{event}: also got {others:?}");
    }
    lab.daemons[a].stop();
}

/// A bare name found through a relative PATH entry (`bin`) runs from the
/// absolute path it had at load, not from wherever the working directory
/// points later.
#[test]
fn a_program_found_through_a_relative_path_entry_is_made_absolute() {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = Lab::new();
    let log = lab.path("ran.log");
    let home = lab.path("home");
    fs::create_dir_all(home.join("bin")).unwrap();
    let hook = home.join("bin/hook");
    // $0 is the path the hook was run as.
    fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$0\" >> {}\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let res = "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\n\
               acquire = [\"hook\"]\n";
    // Started in `home` with PATH=bin:…; the wrapper execs the daemon.
    let cd = format!(
        "cd {} && PATH=bin:/usr/bin:/bin exec \"$0\" \"$@\"",
        home.display()
    );
    let a = lab.start_under("a", &["/bin/sh", "-c", &cd], res);
    lab.daemons[a].wait_state("web", "master");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("{}\n", hook.display())
    );
    lab.daemons[a].stop();
}

/// The runtime dir deleted under a running master (an admin's `rm -rf
/// /run/dlm-electd`): its hooks still run, so SIGTERM releases (the
/// release step runs) and the daemon exits cleanly. Before, every hook
/// failed to register in the gone hooks dir ("cannot run ...: No such
/// file or directory") and the master kept its lock for good.
#[test]
fn a_deleted_runtime_dir_does_not_stop_hooks_from_running() {
    let mut lab = support::lab::Lab::new();
    let res = lab.logging("web");
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    std::fs::remove_dir_all(lab.path("a/run")).unwrap();
    lab.daemons[a].stop();
    assert_eq!(lab.count("a release web"), 1, "{}", lab.daemons[a].log());
}
