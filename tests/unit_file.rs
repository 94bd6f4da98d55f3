//! The shipped systemd unit (systemd/dlm-electd.service) and its example
//! drop-ins, checked by systemd's own tools: `systemd-analyze verify` must
//! be silent and `systemd-analyze security --offline=yes` must rate the
//! unit at most 2.5. Needs `systemd-analyze` (Debian package `systemd`,
//! which scripts/test-all installs; systemd need not be PID 1). Also
//! checks the settings that the stop and crash design relies on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dlm-electd");
const MAX_EXPOSURE: f64 = 2.5;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install Debian's `systemd` package")
        })
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ty.is_dir() {
            copy_dir(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A root for `systemd-analyze verify --root`: the host's stock units (for
/// multi-user.target and friends), the shipped unit where the package puts
/// it, our binary at the path the unit runs, and `extra` files. verify
/// checks that every Exec program exists, so the test cannot use the unit
/// as is on a host where the package is not installed.
fn root_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    copy_dir(
        Path::new("/usr/lib/systemd/system"),
        &r.join("usr/lib/systemd/system"),
    );
    fs::copy(
        repo("systemd/dlm-electd.service"),
        r.join("usr/lib/systemd/system/dlm-electd.service"),
    )
    .unwrap();
    fs::create_dir_all(r.join("usr/sbin")).unwrap();
    // A hard link where it can (the debug binary is ~100 MB).
    let sbin = r.join("usr/sbin/dlm-electd");
    if fs::hard_link(BIN, &sbin).is_err() {
        fs::copy(BIN, &sbin).unwrap();
    }
    fs::create_dir_all(r.join("bin")).unwrap();
    for prog in ["kill", "true"] {
        let host = ["/bin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(prog))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {prog} on this host"));
        fs::copy(host, r.join("bin").join(prog)).unwrap();
    }
    for (path, body) in extra {
        let p = r.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
    root
}

/// `systemd-analyze verify` exits 0 even on an unknown key or a bad value
/// ("…, ignoring"): any output at all counts as a failure.
fn assert_verifies(root: &Path, unit: &str) {
    let o = analyze(&[
        "verify",
        "--man=no",
        &format!("--root={}", root.display()),
        unit,
    ]);
    let out = text(&o);
    assert!(
        o.status.success() && out.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{out}",
        o.status
    );
}

#[test]
fn the_unit_verifies_clean() {
    assert_verifies(root_with(&[]).path(), "dlm-electd.service");
}

/// The check above is not blind: a misspelt key makes it fail.
#[test]
fn verify_catches_an_unknown_key() {
    let unit = fs::read_to_string(repo("systemd/dlm-electd.service")).unwrap();
    let root = root_with(&[(
        "etc/systemd/system/dlm-electd.service",
        &unit.replace("KillMode=mixed", "KilMode=mixed"),
    )]);
    let o = analyze(&[
        "verify",
        "--man=no",
        &format!("--root={}", root.path().display()),
        "dlm-electd.service",
    ]);
    assert!(text(&o).contains("KilMode"), "{}", text(&o));
}

/// The example drop-ins, every commented setting of hooks.conf switched
/// on, stay valid (o2cb, dlm and corosync are stubs: the host has no
/// cluster stack).
#[test]
fn the_example_drop_ins_verify_clean() {
    let switched_on = |text: String| -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(s) if s.starts_with(|c: char| c.is_ascii_uppercase()) => s,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let all_on = switched_on(fs::read_to_string(repo("systemd/hooks.conf.example")).unwrap());
    assert!(all_on.contains("\nNoNewPrivileges=no"), "{all_on}");
    let dlmfs = fs::read_to_string(repo("systemd/dlmfs.conf.example")).unwrap();
    // Its lines for a Pacemaker-run dlm_controld too.
    let dlm = switched_on(fs::read_to_string(repo("systemd/dlm.conf.example")).unwrap());
    assert!(dlm.contains("\nPartOf=pacemaker.service"), "{dlm}");
    let metrics = fs::read_to_string(repo("systemd/metrics.conf.example")).unwrap();
    let d = "etc/systemd/system/dlm-electd.service.d";
    let stub = "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n";
    let root = root_with(&[
        (&format!("{d}/hooks.conf"), &all_on),
        (&format!("{d}/dlmfs.conf"), &dlmfs),
        (&format!("{d}/dlm.conf"), &dlm),
        (&format!("{d}/metrics.conf"), &metrics),
        ("etc/systemd/system/o2cb.service", stub),
        ("etc/systemd/system/dlm.service", stub),
        ("etc/systemd/system/corosync.service", stub),
        ("etc/systemd/system/pacemaker.service", stub),
    ]);
    assert_verifies(root.path(), "dlm-electd.service");
}

/// The workload-lock drop-in, applied to a plain service, verifies clean.
#[test]
fn the_workload_lock_drop_in_verifies_clean() {
    let drop_in = fs::read_to_string(repo("systemd/workload-lock.conf.example")).unwrap();
    let root = root_with(&[
        (
            "etc/systemd/system/foo.service",
            "[Service]\nExecStart=/bin/true\n",
        ),
        (
            "etc/systemd/system/foo.service.d/workload-lock.conf",
            &drop_in,
        ),
    ]);
    assert_verifies(root.path(), "foo.service");
}

#[test]
fn the_unit_is_hardened() {
    let unit = repo("systemd/dlm-electd.service");
    let o = analyze(&[
        "security",
        "--offline=yes",
        "--no-pager",
        unit.to_str().unwrap(),
    ]);
    let out = text(&o);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    let exposure: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{out}"
    );
    // Independent of how the line is worded: systemd-analyze's own verdict
    // (its threshold is the exposure × 10).
    let o = analyze(&[
        "security",
        "--offline=yes",
        "--threshold=25",
        unit.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `Key=value` lines of the shipped unit (the last one wins, as in systemd,
/// except for keys that accumulate).
fn settings() -> Vec<(String, String)> {
    fs::read_to_string(repo("systemd/dlm-electd.service"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn get(key: &str) -> Vec<String> {
    settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// What docs/systemd.md promises about stop, crash and reload under systemd.
#[test]
fn the_unit_keeps_the_stop_and_crash_design() {
    // SIGTERM to the daemon alone: its release hooks must not be killed.
    assert_eq!(get("KillMode"), ["mixed"]);
    assert_eq!(get("Type"), ["notify"]);
    assert_eq!(get("NotifyAccess"), ["main"]);
    assert_eq!(get("RestartPreventExitStatus"), ["78"]);
    // The file backend's lock fds outlive a kill of the whole service.
    let store: u32 = get("FileDescriptorStoreMax")[0].parse().unwrap();
    assert!(store >= 64, "room for a lock fd per resource");
    assert_eq!(get("Restart"), ["on-failure"]);
    assert_eq!(get("ExecStopPost"), ["/usr/sbin/dlm-electd cleanup"]);
    assert_eq!(get("ExecStartPre"), ["/usr/sbin/dlm-electd check-config"]);
    assert_eq!(
        get("ExecReload"),
        [
            "/usr/sbin/dlm-electd check-config",
            "/bin/kill -HUP $MAINPID"
        ]
    );
    // Applied records must outlive a stop: cleanup and the next start
    // read them.
    assert_eq!(get("RuntimeDirectory"), ["dlm-electd"]);
    assert_eq!(get("RuntimeDirectoryPreserve"), ["yes"]);
    assert_eq!(get("StateDirectory"), ["dlm-electd"]);
    let secs = |v: &str| humantime::parse_duration(v).unwrap().as_secs();
    // Room for an exec release (30 s) after a vip release (10 s), plus 3 s
    // for a cancelled acquire step.
    assert!(secs(&get("TimeoutStopSec")[0]) >= 60);
    // READY=1 may wait for a lock call up to op_timeout (default 2m).
    assert!(secs(&get("TimeoutStartSec")[0]) > 120);
    let wd = secs(&get("WatchdogSec")[0]);
    assert!((10..=120).contains(&wd), "WatchdogSec {wd}s");
    let caps = get("CapabilityBoundingSet");
    assert_eq!(caps, ["CAP_NET_ADMIN CAP_NET_RAW"]);
}

/// The dlm backend inside the capability bounding set the unit leaves
/// (CAP_NET_ADMIN CAP_NET_RAW) is refused before anything starts, exit 78,
/// at `lock.backend`, naming the drop-in that adds what it needs; `cleanup`
/// warns and leaves the lockspace alone; with the drop-in's CAP_SYS_ADMIN
/// that check passes. Run as systemd would run it,
/// with setpriv (root: it needs CAP_SETPCAP).
#[test]
fn the_dlm_backend_in_the_units_sandbox_names_the_drop_in() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (setpriv --bounding-set)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dlm-electd.toml");
    fs::write(
        &cfg,
        format!(
            "[node]\nname = \"n1\"\n[lock]\nbackend = \"dlm\"\n[daemon]\nruntime_dir = \"{}\"\n[[resource]]\nname = \"a\"\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let under = |bounding: &str, cmd: &str| {
        let out = Command::new("setpriv")
            .args(["--bounding-set", bounding, BIN, cmd, "--config"])
            .arg(&cfg)
            .output()
            .expect("setpriv (util-linux)");
        (out.status.code(), text(&out))
    };
    let at = format!(
        "{}:4:11: key `lock.backend`: the dlm backend needs CAP_SYS_ADMIN",
        cfg.display()
    );
    for cmd in ["check-config", "run"] {
        let (code, out) = under("-all,+net_admin,+net_raw", cmd);
        assert_eq!(code, Some(78), "{cmd}: {out}");
        assert!(out.contains(&at), "{cmd}: {out}");
        assert!(out.contains("examples/dlm.conf.example"), "{cmd}: {out}");
        assert!(!dir.path().join("run").exists(), "{cmd} started something");
    }
    // ExecStopPost's cleanup in the same sandbox: a warning, the release
    // steps, and no attempt at the lockspace (which would fail).
    let (code, out) = under("-all,+net_admin,+net_raw", "cleanup");
    assert_eq!(code, Some(0), "cleanup: {out}");
    assert!(out.contains(&at), "cleanup: {out}");
    assert_eq!(
        out.lines().count(),
        1,
        "cleanup said more (tried the lockspace?): {out}"
    );
    let (_, out) = under("-all,+net_admin,+net_raw,+sys_admin", "check-config");
    assert!(!out.contains("needs CAP_SYS_ADMIN"), "{out}");
}

/// ExecStopPost's `cleanup` after a dlm-backend daemon that left its
/// lockspace on the way out (no `dlm-lockspace-joined` marker) does no lock
/// work: on a node that lost quorum a join would wait `op_timeout` (the
/// corosync tier saw a clean stop take 120 s longer). With the marker (a
/// killed daemon's) it does try the lockspace, which this host, without a
/// DLM, refuses: the contrast shows the skip is the marker's doing.
#[test]
fn cleanup_after_the_dlm_backend_left_its_lockspace_skips_the_lock_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = dir.path().join("dlm-electd.toml");
    fs::write(
        &cfg,
        format!(
            "[node]\nname = \"n1\"\n[lock]\nbackend = \"dlm\"\n[daemon]\nruntime_dir = \"{}\"\nop_timeout = \"2s\"\n[[resource]]\nname = \"a\"\n",
            run.display()
        ),
    )
    .unwrap();
    let cleanup = || {
        let out = Command::new(BIN)
            .args(["cleanup", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let (code, out) = cleanup();
    assert_eq!(code, Some(0), "no marker: {out}");
    assert!(!out.contains("lockspace"), "no marker, yet it tried: {out}");
    if Path::new("/dev/misc/dlm-control").exists() {
        eprintln!("skipped the contrast: this host has a DLM");
        return;
    }
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("dlm-lockspace-joined"), "dlm-electd\n").unwrap();
    let (code, out) = cleanup();
    assert_ne!(
        code,
        Some(0),
        "with the marker it must try the lockspace: {out}"
    );
}
