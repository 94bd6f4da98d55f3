//! Reading and checking the config: in-process through
//! `dlm_electd::config` (every bad input, the filesystem checks, the files
//! we ship), and the CLI for what an admin sees (exit 78, file:line:col).
//! As root: real directories, owners, modes, symlinks and fifos.

mod support;

use dlm_electd::config::{self, check};
use dlm_electd::lock::file::FileBackend;
use dlm_electd::lock::{LockBackend, TryLock};
use nix::unistd::{Gid, Uid, chown};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::lab::Lab;
use support::{BIN, cli, write_config};

/// An unprivileged uid and gid that own nothing of ours (nobody/nogroup).
const OTHER: u32 = 65534;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

fn write(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) -> PathBuf {
    fs::create_dir_all(path).unwrap();
    chmod(path, mode);
    path.to_path_buf()
}

/// The messages of a config that must not load.
fn load_errors(cfg: &Path) -> Vec<String> {
    match config::load(cfg) {
        Ok(_) => panic!(
            "{} loaded:\n{}",
            cfg.display(),
            fs::read_to_string(cfg).unwrap()
        ),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// The messages of a config that loads but must not pass `load_checked`.
fn check_errors(cfg: &Path) -> Vec<String> {
    match config::load_checked(cfg) {
        Ok(_) => panic!(
            "{} passed:\n{}",
            cfg.display(),
            fs::read_to_string(cfg).unwrap()
        ),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every bad input is refused with a message naming file:line:col and the
/// key (or the table) at fault.
#[test]
fn bad_input_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let head = |extra: &str| format!("[lock]\nbackend = \"file\"\ndir = \"/nonexistent\"\n{extra}");
    let vip = |keys: &str| {
        head(&format!(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\n{keys}"
        ))
    };
    // (what, config text, expected line:col, expected text)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("malformed", "[[resource]\nname = \"x\"".into(), ":1:", "unclosed"),
        ("unknown top key", "bogus = 1\n".into(), ":1:1:", "bogus"),
        ("unknown nested key", head("[daemon]\npoll_intervall = \"1s\"\n"), ":5:1:", "poll_intervall"),
        ("unknown action key", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\nretries = 3\n"), ":9:1:", "retries"),
        ("wrong type", head("[[resource]]\nname = 5\n"), ":5:8:", "name"),
        ("missing name", head("[[resource]]\nlock = \"x\"\n"), ":4:", "no `name`"),
        ("dot-dot name", head("[[resource]]\nname = \"..\"\nlock = \"d\"\n"), ":5:8:", "not . or .."),
        ("duplicate name", head("[[resource]]\nname = \"w\"\n[[resource]]\nname = \"w\"\n"), ":7:8:", "duplicate resource name"),
        ("duplicate lock", head("[[resource]]\nname = \"w\"\n[[resource]]\nname = \"v\"\nlock = \"w\"\n"), ":8:8:", "already used"),
        ("empty argv", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = []\n"), ":8:11:", "empty command"),
        ("bad duration", head("[daemon]\npoll_interval = \"3 fortnights\"\n"), ":5:17:", "poll_interval"),
        ("zero poll", head("[[resource]]\nname = \"w\"\npoll_interval = \"0s\"\n"), ":6:17:", "greater than zero"),
        ("unknown backend", "[lock]\nbackend = \"zookeeper\"\n".into(), ":2:11:", "zookeeper"),
        ("unknown action type", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"pray\"\n"), ":7:8:", "pray"),
        ("dlmfs lock too long", "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"w\"\nlock = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n".into(), ":5:8:", "1 to 31 bytes"),
        ("lock with the workload prefix", head("[[resource]]\nname = \"w\"\nlock = \"@vm1\"\n"), ":6:8:", "reserved for workload locks"),
        ("dlmfs lock with $", "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"w\"\nlock = \"$RECOVERY\"\n".into(), ":5:8:", "'$'"),
        ("dlmfs domain too long", format!("[lock]\nbackend = \"dlmfs\"\ndomain = \"{}\"\n", "d".repeat(64)), ":3:10:", "1 to 63 bytes"),
        ("exec without commands", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\n"), ":6:", "needs `acquire`"),
        ("vip bad address", vip("address = \"198.18.0.300/24\"\ninterface = \"eth0\"\n"), ":8:11:", "key `address`"),
        ("vip burst too long", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\nannounce_count = 100\nannounce_interval = \"1s\"\n"), ":10:18:", "does not fit"),
        ("vip bad prefix", vip("address = \"198.18.0.3/33\"\ninterface = \"eth0\"\n"), ":8:11:", "prefix length"),
        ("vip bad interface", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0:1\"\n"), ":9:13:", "key `interface`"),
        ("same vip in two resources", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\n[[resource]]\nname = \"v\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.18.0.3/24\"\ninterface = \"eth0\"\n"), ":14:11:", "one address, one action"),
        ("same vip twice, other prefix", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.18.0.3/25\"\ninterface = \"eth0\"\n"), ":12:11:", "already the VIP of the action at"),
        ("dlmfs standby wait", "[lock]\nbackend = \"dlmfs\"\nstandby = \"wait\"\n".into(), ":3:11:", "key `standby`"),
        ("unknown standby", "[lock]\nstandby = \"sleep\"\n".into(), ":2:11:", "sleep"),
        ("relative lock dir", "[lock]\ndir = \"locks\"\n".into(), ":2:7:", "key `dir`"),
        ("relative mount", "[lock]\nbackend = \"dlmfs\"\nmount = \"dlm\"\n".into(), ":3:9:", "key `mount`"),
        ("relative runtime dir", "[daemon]\nruntime_dir = \"run\"\n".into(), ":2:15:", "key `runtime_dir`"),
        ("poll in ms for s", head("[daemon]\npoll_interval = \"1ms\"\n"), ":5:17:", "below the 10ms minimum"),
        ("op_timeout in ms", head("[daemon]\nop_timeout = \"1ms\"\n"), ":5:14:", "key `op_timeout`"),
        ("resource poll in ms", head("[[resource]]\nname = \"w\"\npoll_interval = \"1ms\"\n"), ":6:17:", "key `poll_interval`"),
        ("poll of days", head("[daemon]\npoll_interval = \"100d\"\n"), ":5:17:", "at most 24h"),
        ("vip refresh of centuries", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\nrefresh = \"300000000000years\"\n"), ":10:11:", "key `refresh`: at most 24h"),
        ("check hold_off of days", head("[[resource]]\nname = \"w\"\n[resource.check]\nexec = [\"/bin/true\"]\nhold_off = \"2d\"\n"), ":8:12:", "key `hold_off`: at most 24h"),
        ("check interval in ms", head("[[resource]]\nname = \"w\"\n[resource.check]\nexec = [\"/bin/true\"]\ninterval = \"1ms\"\n"), ":8:12:", "key `interval`: 1ms is below the 100ms minimum"),
        ("check timeout in ms", head("[[resource]]\nname = \"w\"\n[resource.check]\nexec = [\"/bin/true\"]\ntimeout = \"1ms\"\n"), ":8:11:", "key `timeout`: 1ms is below the 100ms minimum"),
        ("exec timeout in ms", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\ntimeout = \"1ms\"\n"), ":9:11:", "key `timeout`: 1ms is below the 100ms minimum"),
        ("vip refresh in ms", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\nrefresh = \"1ms\"\n"), ":10:11:", "key `refresh`"),
        ("vip announce flood", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\nannounce_count = 1000000\n"), ":10:18:", "at most 100"),
        ("vip announce interval in us", vip("address = \"198.18.0.3/24\"\ninterface = \"eth0\"\nannounce_interval = \"1ms\"\n"), ":10:21:", "key `announce_interval`"),
        ("relative program", head("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nrelease = [\"bin/down\"]\n"), ":8:11:", "key `release`"),
    ];
    for (what, text, pos, needle) in cases {
        let cfg = write(
            &dir.path().join(format!("{}.toml", what.replace(' ', "-"))),
            &text,
        );
        let errs = load_errors(&cfg);
        let first = &errs[0];
        assert!(
            first.starts_with(&format!("{}{pos}", cfg.display())),
            "{what}: expected {pos} in {errs:?}"
        );
        assert!(
            first.contains(needle),
            "{what}: expected {needle:?} in {errs:?}"
        );
    }
    let good = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n",
    );
    config::load(&good).unwrap();
}

/// What an admin sees: exit 78 and `FILE:LINE:COL: message` from both
/// commands that read the config.
#[test]
fn cli_refuses_bad_config_with_exit_78_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir.path().join("bad.toml"),
        "[lock]\nbackend = \"file\"\ndir = \"locks\"\n",
    );
    for cmd in ["check-config", "run"] {
        let out = cli(&cfg, &[cmd]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {err}");
        assert!(
            err.starts_with(&format!(
                "{}:3:7: key `dir`: \"locks\" is a relative path",
                cfg.display()
            )),
            "{cmd}: {err}"
        );
    }
    let good = write_config(dir.path(), "a", &dir.path().join("locks"), "");
    let out = cli(&good, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

/// A VIP refresh beyond the clock's range (issue #19, item 3) is a config
/// error at its key, as every other duration past 24h is, not a panic of
/// the runner once the node becomes master.
#[test]
fn check_config_refuses_a_refresh_past_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.18.0.3/24\"\ninterface = \"lo\"\nrefresh = \"300000000000years\"\n",
    );
    let out = cli(&cfg, &["check-config"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:15:11: key `refresh`: at most 24h, not ",
            cfg.display()
        )),
        "{err}"
    );
}

/// A health check written "1ms" for "1s" (issue #19, item 5) forked its
/// program hundreds of times a second: check-config refuses it at its key.
#[test]
fn check_config_refuses_a_check_interval_in_ms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n[resource.check]\nexec = [\"/bin/true\"]\ninterval = \"1ms\"\n",
    );
    let out = cli(&cfg, &["check-config"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:13:12: key `interval`: 1ms is below the 100ms minimum",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn drop_in_errors_point_into_the_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"web\"\n",
    );
    let conf_d = mkdir(&dir.path().join("conf.d"), 0o755);
    write(
        &conf_d.join("10-mail.toml"),
        "[[resource]]\nname = \"mail\"\n",
    );
    assert_eq!(config::load(&cfg).unwrap().resources.len(), 2);
    let dup = write(
        &conf_d.join("20-dup.toml"),
        "\n[[resource]]\nname = \"web\"\n",
    );
    let errs = load_errors(&cfg);
    assert!(
        errs[0].starts_with(&format!("{}:3:8: duplicate", dup.display())),
        "{errs:?}"
    );
    write(&dup, "[node]\nname = \"x\"\n");
    let errs = load_errors(&cfg);
    assert!(
        errs[0].starts_with(&format!("{}:1:", dup.display())) && errs[0].contains("node"),
        "{errs:?}"
    );
    assert!(
        errs[0].contains("a drop-in may only add [[resource]] tables"),
        "says why: {errs:?}"
    );
}

/// A program that cannot be executed is refused at its key, in the file
/// that names it, whoever runs the check.
#[test]
fn programs_that_cannot_run_are_refused_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(&dir.path().join("plain.txt"), "not a program\n");
    chmod(&plain, 0o644);
    let res = format!(
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"{}\"]\nrelease = [\"/usr/bin\"]\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"no-such-program-anywhere\"]\nrelease = [\"/bin/true\"]\n",
        plain.display()
    );
    let cfg = write_config(dir.path(), "a", &dir.path().join("locks"), &res);
    // The resources start on line 9 of what write_config writes.
    let at = |line: usize| format!("{}:{line}:11: ", cfg.display());
    let conf_d = mkdir(&dir.path().join("conf.d"), 0o755);
    let drop_in = write(
        &conf_d.join("10-x.toml"),
        "[[resource]]\nname = \"x\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/nonexistent/up\"]\n",
    );
    let errs = check_errors(&cfg);
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(
        errs[0].starts_with(&at(13))
            && errs[0].contains("key `acquire` of resource \"w\"")
            && errs[0].contains("not executable"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(&at(14))
            && errs[1].contains("key `release`")
            && errs[1].contains("not a regular file"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with(&at(17)) && errs[2].contains("not found in PATH"),
        "{errs:?}"
    );
    assert!(
        errs[3].starts_with(&format!(
            "{}:5:11: key `acquire` of resource \"x\"",
            drop_in.display()
        )),
        "{errs:?}"
    );
    // The CLI prints them with the same positions.
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr_of(&out).contains(&errs[3]), "{}", stderr_of(&out));
}

/// Not only as root: an unprivileged check-config refuses a missing program
/// too (it used to skip every program check).
#[test]
fn unprivileged_check_config_refuses_a_missing_program() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/nonexistent/up\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .uid(OTHER)
        .gid(OTHER)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("{}:13:11: key `acquire`", cfg.display())),
        "{err}"
    );
}

/// A vip interface missing on this host is a warning with its position,
/// not an error: it may appear later.
#[test]
fn a_missing_interface_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let vip = |iface: &str| {
        format!(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.7/24\"\ninterface = \"{iface}\"\n"
        )
    };
    let cfg = write_config(dir.path(), "a", &dir.path().join("locks"), &vip("nosuch0"));
    let loaded = config::load_checked(&cfg).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "{}:14:13: key `interface`: no interface \"nosuch0\"",
            cfg.display()
        )),
        "{warnings:?}"
    );
    // check-config prints it and still passes.
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("warning: {}", warnings[0])),
        "{}",
        stderr_of(&out)
    );
    let cfg = write_config(dir.path(), "a", &dir.path().join("locks"), &vip("lo"));
    assert!(config::load_checked(&cfg).unwrap().warnings.is_empty());
}

/// As root, the lock dir and the runtime dir must be root's alone, like the
/// config files: otherwise anyone could plant lock files or a control
/// socket there.
#[test]
fn as_root_lock_dir_and_runtime_dir_must_be_roots_alone() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let locks = mkdir(&dir.path().join("locks"), 0o777);
    chown(
        &locks,
        Some(Uid::from_raw(OTHER)),
        Some(Gid::from_raw(OTHER)),
    )
    .unwrap();
    let cfg = write_config(dir.path(), "a", &locks, "");
    // write_config: `dir` on line 5, `runtime_dir` on line 7.
    let out = cli(&cfg, &["check-config"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:5:7: key `lock.dir`: refusing directory as root: {} is owned by uid {OTHER}",
            cfg.display(),
            locks.display()
        )),
        "{err}"
    );
    chown(&locks, Some(Uid::from_raw(0)), Some(Gid::from_raw(0))).unwrap();
    assert!(check_errors(&cfg)[0].contains("writable by group or others (mode 777)"));
    chmod(&locks, 0o700);
    config::load_checked(&cfg).unwrap();

    // A sticky world-writable dir is fine above, not as the lock dir itself.
    let sticky = mkdir(&dir.path().join("sticky"), 0o1777);
    let cfg = write_config(dir.path(), "a", &sticky, "");
    assert!(check_errors(&cfg)[0].contains("key `lock.dir`"));
    let cfg = write_config(dir.path(), "a", &sticky.join("new/locks"), "");
    config::load_checked(&cfg).unwrap();

    // A dir that does not exist yet: judged by its nearest existing ancestor.
    let theirs = mkdir(&dir.path().join("theirs"), 0o755);
    chown(&theirs, Some(Uid::from_raw(OTHER)), None).unwrap();
    let cfg = write_config(dir.path(), "a", &theirs.join("a/b"), "");
    assert!(
        check_errors(&cfg)[0].contains(&format!("{} is owned by uid {OTHER}", theirs.display()))
    );

    // The runtime dir, at its key.
    let run = mkdir(&dir.path().join("run"), 0o770);
    let cfg = write_config(dir.path(), "a", &locks, "");
    let errs = check_errors(&cfg);
    assert!(
        errs[0].starts_with(&format!(
            "{}:7:15: key `daemon.runtime_dir`:",
            cfg.display()
        )) && errs[0].contains("writable"),
        "{errs:?}"
    );
    chmod(&run, 0o700);

    // Only the backend in use is judged: dlmfs does not use `lock.dir`.
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace("backend = \"file\"", "backend = \"dlmfs\"");
    write(
        &cfg,
        &text.replace(&locks.display().to_string(), &theirs.display().to_string()),
    );
    config::load_checked(&cfg).unwrap();
}

/// A symlink on the way is judged where it sits too: its directory's owner
/// could re-point it after the check.
#[test]
fn as_root_a_dir_reached_through_someone_elses_symlink_is_refused() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let locks = mkdir(&dir.path().join("locks"), 0o700);
    let theirs = mkdir(&dir.path().join("theirs"), 0o755);
    chown(&theirs, Some(Uid::from_raw(OTHER)), None).unwrap();
    symlink(&locks, theirs.join("locks")).unwrap();
    let cfg = write_config(dir.path(), "a", &theirs.join("locks"), "");
    let errs = check_errors(&cfg);
    assert!(
        errs[0].contains("key `lock.dir`")
            && errs[0].contains(&format!("{} is owned by uid {OTHER}", theirs.display())),
        "{errs:?}"
    );
    // The same link in a directory of root's is fine.
    symlink(&locks, dir.path().join("link")).unwrap();
    let cfg = write_config(dir.path(), "a", &dir.path().join("link"), "");
    config::load_checked(&cfg).unwrap();
}

/// A defaulted dir has no position, but the message still names the key.
#[test]
fn as_root_a_defaulted_dir_is_named_by_its_key() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir.path().join("c.toml"), "[node]\nname = \"a\"\n");
    let (mut c, places) = config::load_placed(&cfg).unwrap();
    // Stand in for a bad default: the real one is a system path.
    let bad = mkdir(&dir.path().join("open"), 0o777);
    c.lock.dir = bad.clone();
    let errs = check::check(&c, &places, true).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        format!(
            "{}: key `lock.dir` (default {}): refusing directory as root: {} is writable by group or others (mode 777)",
            cfg.display(),
            bad.display(),
            bad.display()
        )
    );
}

/// A lock file is opened without following symlinks and must be a regular
/// file: a planted `web.lock -> /etc/hostname` must not make the daemon
/// open and lock that file.
#[test]
fn lock_files_that_are_symlinks_or_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = write(&dir.path().join("hostname"), "node-a\n");
    symlink(&target, dir.path().join("web.lock")).unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("db.lock"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let backend = FileBackend::new(dir.path().to_path_buf(), dlm_electd::config::Standby::Poll);
    for (lock, why) in [("web", "symbolic link"), ("db", "fifo")] {
        match backend.try_lock(lock) {
            Ok(TryLock::Acquired(_)) => panic!("{lock}: locked through {why}"),
            Ok(TryLock::Busy) => panic!("{lock}: busy"),
            Err(e) => assert!(e.to_string().contains(why), "{lock}: {e}"),
        }
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "node-a\n");
    // A regular lock file still works.
    assert!(matches!(backend.try_lock("mail"), Ok(TryLock::Acquired(_))));
}

/// The same through a real daemon: the resource shows why and never
/// becomes master.
#[test]
fn daemon_does_not_become_master_through_a_planted_symlink() {
    let mut lab = Lab::new();
    let locks = mkdir(&lab.path("locks"), 0o700);
    let target = write(&lab.path("hostname"), "node-a\n");
    symlink(&target, locks.join("web.lock")).unwrap();
    let a = lab.start("a", "[[resource]]\nname = \"web\"\n");
    lab.daemons[a].wait_state("web", "backoff");
    let err = lab.daemons[a].last_error("web").unwrap_or_default();
    assert!(
        err.contains("web.lock") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "node-a\n");
}

/// Every config we ship passes every check as whoever runs the tests (as
/// root in CI). Warnings are allowed: their interfaces (eth0) may be
/// missing here. Whether the checkout itself is root's alone is not the
/// files' business, so `check::config_files` is left out.
#[test]
fn shipped_configs_pass_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let as_root = nix::unistd::geteuid().is_root();
    for f in files {
        let (cfg, places) = config::load_placed(&f).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = check::check(&cfg, &places, as_root) {
            panic!("{}", config::ConfigErrors(e));
        }
    }
}

/// The reference config's commented-out example resource stays valid
/// (its programs are placeholders, so it is only validated, not checked).
#[test]
fn reference_config_example_validates_when_uncommented() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dlm-electd.toml");
    let text = fs::read_to_string(reference).unwrap();
    let uncommented: Vec<&str> = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir.path().join("ref.toml"), &uncommented.join("\n"));
    let c = config::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.resources.len(), 1);
    // vip, exec and unit: every action type is shown.
    assert_eq!(c.resources[0].actions.len(), 3);
    assert!(c.resources[0].check.is_some(), "[resource.check] too");
    assert_eq!(c.resources[0].prefer, ["node-a", "node-b"]);
    // Every key, its default written out: preempt_delay too.
    assert!(c.resources[0].preempt_delay.is_zero());
    // [cluster] nodes lists this node (node-a); prefer = "spread" over it
    // validates too.
    let spread = uncommented
        .join("\n")
        .replace("prefer = [\"node-a\", \"node-b\"]", "prefer = \"spread\"");
    let cfg = write(&dir.path().join("spread.toml"), &spread);
    let c = config::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let mut order = c.resources[0].prefer.clone();
    order.sort();
    assert_eq!(order, ["node-a", "node-b"]);
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
}

#[test]
fn runtime_dir_hint_reads_one_key_leniently() {
    let dir = tempfile::tempdir().unwrap();
    let default = PathBuf::from(config::defaults::DEFAULT_RUNTIME_DIR);
    let cfg = dir.path().join("c.toml");
    assert_eq!(config::runtime_dir_hint(&cfg), default, "missing file");
    write(
        &cfg,
        "[daemon]\nruntime_dir = \"/run/x\"\n[[resource]]\nbogus = 1\n",
    );
    assert_eq!(
        config::runtime_dir_hint(&cfg),
        PathBuf::from("/run/x"),
        "invalid elsewhere"
    );
    write(&cfg, "[daemon]\nruntime_dir = \"run\"\n");
    assert_eq!(config::runtime_dir_hint(&cfg), default, "relative");
    write(&cfg, "[daemon\n");
    assert_eq!(config::runtime_dir_hint(&cfg), default, "not TOML");
}

/// The `file` backend refuses a lock dir on a filesystem whose locks may
/// stay on the node, in every command that takes locks, with exit 78 and
/// the key's position (issue 25). /proc stands in for one dlm-electd does
/// not know (like FUSE or 9p): the decision table itself is unit-tested in
/// `lock::filesystem` on stand-in mountinfo lines.
#[test]
fn a_lock_dir_on_an_unknown_filesystem_is_refused_unless_trusted() {
    let dir = tempfile::tempdir().unwrap();
    // Not there yet: judged by its nearest existing ancestor, /proc.
    let cfg = write_config(
        dir.path(),
        "a",
        Path::new("/proc/dlm-electd-test/locks"),
        "[[resource]]\nname = \"w\"\n",
    );
    let want = format!(
        "{}:5:7: key `lock.dir`: refusing the `file` backend here: the lock dir is on proc at /proc: not a local filesystem dlm-electd knows",
        cfg.display()
    );
    for args in [
        &["check-config"][..],
        &["run"],
        &["run-locked", "job", "--", "/bin/true"],
        &["lock", "job"],
    ] {
        // --config first: after run-locked's `--` it would be the program's.
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert!(err.contains("trust_filesystem = true"), "{args:?}: {err}");
    }
    // Giving locks up is not refused: `cleanup` must still undo what a
    // daemon left (the filesystem is a warning there).
    let out = cli(&cfg, &["cleanup"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // The admin's word admits it, and check-config says so.
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace("[lock]\n", "[lock]\ntrust_filesystem = true\n");
    write(&cfg, &text);
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\nlocks: cluster-wide as trust_filesystem says (proc at /proc)"),
        "{stdout}"
    );
}

/// A local lock dir passes, and check-config says its locks are
/// host-local; `trust_filesystem` must be a boolean, named at its place.
#[test]
fn a_local_lock_dir_is_host_local_and_trust_filesystem_is_a_boolean() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "a", &dir.path().join("locks"), "");
    let out = cli(&cfg, &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let locks = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        locks.starts_with("locks: host-local (")
            && locks.ends_with("): locks exclude processes of this host only"),
        "{stdout}"
    );
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace("[lock]\n", "[lock]\ntrust_filesystem = \"yes\"\n");
    write(&cfg, &text);
    let errs = load_errors(&cfg);
    assert!(
        errs[0].starts_with(&format!("{}:4:20:", cfg.display())) && errs[0].contains("bool"),
        "{errs:?}"
    );
}

/// A bare program name (hook or health check) is resolved once, at load:
/// the config the daemon runs on names the absolute path that was
/// checked, the same file for every use of the name.
#[test]
fn bare_program_names_are_resolved_to_the_checked_path_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"true\"]\nrelease = [\"true\", \"x\"]\n[resource.check]\nexec = [\"true\"]\n",
    );
    let loaded = config::load_checked(&cfg).unwrap();
    let r = &loaded.config.resources[0];
    let config::ActionSpec::Exec(e) = &r.actions[0] else {
        panic!("{:?}", r.actions[0])
    };
    let acquire = &e.acquire.as_ref().unwrap()[0];
    assert!(
        Path::new(acquire).is_absolute() && acquire.ends_with("/true"),
        "{acquire}"
    );
    assert_eq!(&e.release.as_ref().unwrap()[..], [acquire.as_str(), "x"]);
    assert_eq!(&r.check.as_ref().unwrap().exec[0], acquire);
    // A name PATH does not have is refused at its place.
    let cfg = write_config(
        dir.path(),
        "a",
        &dir.path().join("locks"),
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"no-such-program-dlm\"]\n",
    );
    let e = config::load_checked(&cfg).unwrap_err().to_string();
    assert!(
        e.contains(
            ":13:11: key `acquire` of resource \"w\": \"no-such-program-dlm\" not found in PATH"
        ),
        "{e}"
    );
}

/// Every problem in one run (issue #19, item 9): check-config used to stop
/// at the first of several in these combinations. Each is reported at its
/// place, in one run, through the CLI an admin uses.
#[test]
fn check_config_reports_every_problem_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let stderr_lines = |cfg: &Path| {
        let out = cli(cfg, &["check-config"]);
        assert_eq!(out.status.code(), Some(78), "{}", stderr_of(&out));
        stderr_of(&out)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // A program missing from PATH, behind a relative path in the same
    // action.
    let cfg = write_config(
        dir.path(),
        "a",
        &locks,
        "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"bin/up\"]\nrelease = [\"no-such-program-dlm\"]\n",
    );
    let c = cfg.display();
    assert_eq!(
        stderr_lines(&cfg),
        [
            format!(
                "{c}:13:11: key `acquire`: \"bin/up\" is a relative path: write an absolute path, or a bare name to look up in PATH"
            ),
            format!(
                "{c}:14:11: key `release` of resource \"w\": \"no-such-program-dlm\" not found in PATH"
            ),
        ]
    );
    // A duplicate resource name behind a problem in the duplicate's own
    // table (the name was counted only once its table validated).
    let cfg = write_config(
        dir.path(),
        "b",
        &locks,
        "[[resource]]\nname = \"w\"\n[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"bin/up\"]\nrelease = [\"/bin/true\"]\n",
    );
    let c = cfg.display();
    assert_eq!(
        stderr_lines(&cfg),
        [
            format!("{c}:12:8: duplicate resource name \"w\" (first defined at {c}:9)"),
            format!(
                "{c}:15:11: key `acquire`: \"bin/up\" is a relative path: write an absolute path, or a bare name to look up in PATH"
            ),
        ]
    );
    // An unknown key behind a type error (serde reads a table's keys
    // before its values, so each hid the other), and more of both in
    // other tables, in the order written.
    let cfg = write(
        &dir.path().join("types.toml"),
        &format!(
            "[node]\nname = \"a\"\n[lock]\ndir = \"{}\"\n[daemon]\npoll_interval = 5\nbogus = 1\n[[resource]]\nname = \"w\"\ncolour = \"red\"\n[[resource.action]]\ntype = \"exec\"\nacquire = 1\n[resource.check]\nexec = [\"/bin/true\"]\nfails = 2\n",
            locks.display()
        ),
    );
    let c = cfg.display();
    assert_eq!(
        stderr_lines(&cfg),
        [
            format!("{c}:6:17: key `poll_interval`: invalid type: integer `5`, expected a string"),
            format!(
                "{c}:7:1: unknown field `bogus`, expected one of `runtime_dir`, `state_dir`, `poll_interval`, `op_timeout`"
            ),
            format!(
                "{c}:10:1: unknown field `colour`, expected one of `name`, `lock`, `poll_interval`, `action`, `check`, `prefer`, `preempt`, `preempt_delay`, `env`, `max_failures`, `failure_window`, `failure_timeout`, `notify`"
            ),
            format!("{c}:13:11: key `acquire`: invalid type: integer `1`, expected a sequence"),
            format!(
                "{c}:16:1: unknown field `fails`, expected one of `exec`, `interval`, `timeout`, `fall`, `rise`, `hold_off`"
            ),
        ]
    );
    // The same in [cluster], and a prefer of the wrong type beside it.
    let cfg = write(
        &dir.path().join("cluster.toml"),
        "[cluster]\nnodes = \"a\"\nnode = [\"a\"]\n[[resource]]\nname = \"w\"\nprefer = 1\n",
    );
    let c = cfg.display();
    assert_eq!(
        stderr_lines(&cfg),
        [
            format!("{c}:2:9: key `nodes`: invalid type: string \"a\", expected a sequence"),
            format!("{c}:3:1: unknown field `node`, expected `nodes`"),
            format!(
                "{c}:6:10: key `prefer`: invalid type: integer `1`, expected a list of node names, most preferred first, or \"spread\""
            ),
        ]
    );
    if !is_root() {
        return;
    }
    // As root: a drop-in root may not trust, behind a duplicate resource
    // name in it.
    let sub = mkdir(&dir.path().join("dup"), 0o755);
    let cfg = write_config(&sub, "a", &locks, "[[resource]]\nname = \"w\"\n");
    let drop_in = write(
        &mkdir(&sub.join("conf.d"), 0o755).join("w.toml"),
        "[[resource]]\nname = \"w\"\n",
    );
    chmod(&drop_in, 0o666);
    let d = drop_in.display();
    assert_eq!(
        stderr_lines(&cfg),
        [
            format!("{d}: refusing config as root: {d} is writable by group or others (mode 666)"),
            format!(
                "{d}:2:8: duplicate resource name \"w\" (first defined at {}:9)",
                cfg.display()
            ),
        ]
    );
}
