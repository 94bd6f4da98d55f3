//! The systemd notify protocol without systemd: a datagram socket stands in
//! for the service manager's NOTIFY_SOCKET, so READY, STATUS, WATCHDOG and
//! STOPPING are read exactly as systemd would read them.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Daemon, WAIT, write_config};

/// Reads notify datagrams until one contains `want`; returns all read.
fn read_until(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(start.elapsed() < WAIT, "no {want:?} in {got:?}");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = msg.lines().any(|l| l == want);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let env_dump = dir.path().join("hook.env");
    let res = format!(
        "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/sh\", \"-c\", \"env > {}; echo hook says hello\"]\n",
        env_dump.display()
    );
    let config = write_config(&dir.path().join("a"), "a", &dir.path().join("locks"), &res);
    let stderr = dir.path().join("a.stderr");
    let notify = format!("NOTIFY_SOCKET={}", sock_path.display());
    // WATCHDOG_USEC 400 ms: fed every 200 ms while every runner answers.
    let wrapper = ["/usr/bin/env", notify.as_str(), "WATCHDOG_USEC=400000"];
    let mut d = Daemon::spawn("a", &wrapper, config, stderr);
    let got = read_until(&sock, "READY=1");
    let ready = got.last().unwrap();
    assert!(ready.lines().any(|l| l == "STATUS=master: web"), "{got:?}");
    // Two watchdog pings after READY: it is fed periodically.
    read_until(&sock, "WATCHDOG=1");
    read_until(&sock, "WATCHDOG=1");
    d.signal(Signal::SIGTERM);
    let got = read_until(&sock, "STOPPING=1");
    assert!(got.last().unwrap().contains("STATUS=stopping"), "{got:?}");
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log());

    // The hook talked to nobody: no notify or watchdog variables, ours set.
    let env = std::fs::read_to_string(&env_dump).unwrap();
    for gone in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(
            !env.lines().any(|l| l.starts_with(gone)),
            "hook saw {gone}\n{env}"
        );
    }
    for set in [
        "DLM_ELECTD_RESOURCE=web",
        "DLM_ELECTD_EVENT=acquire",
        "DLM_ELECTD_NODE=a",
    ] {
        assert!(env.lines().any(|l| l == set), "hook lacks {set}\n{env}");
    }
    // Its output is in the daemon's log, tagged with the resource.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("hook says hello") && l.contains("resource=web")),
        "{log}"
    );
}

/// A reload that releases a resource whose release hook is slow must not
/// starve the watchdog while the other runners answer.
#[test]
fn watchdog_is_fed_during_a_slow_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let slow = "[[resource]]\nname = \"slow\"\n[[resource.action]]\ntype = \"exec\"\nrelease = [\"/bin/sleep\", \"2\"]\n";
    let keep = "[[resource]]\nname = \"keep\"\n";
    let locks = dir.path().join("locks");
    let config = write_config(&dir.path().join("a"), "a", &locks, &format!("{slow}{keep}"));
    let notify = format!("NOTIFY_SOCKET={}", sock_path.display());
    let wrapper = ["/usr/bin/env", notify.as_str(), "WATCHDOG_USEC=400000"];
    let mut d = Daemon::spawn("a", &wrapper, config.clone(), dir.path().join("a.stderr"));
    read_until(&sock, "READY=1");
    write_config(&dir.path().join("a"), "a", &locks, keep);
    d.signal(Signal::SIGHUP);
    // Count pings until the reload is done (the slow hook takes 2 s).
    let mut pings = 0;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !d.log().contains("reloaded") {
        assert!(start.elapsed() < WAIT, "reload did not finish: {}", d.log());
        if let Ok(n) = sock.recv(&mut buf) {
            pings += String::from_utf8_lossy(&buf[..n])
                .lines()
                .filter(|l| *l == "WATCHDOG=1")
                .count();
        }
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "the slow release hook ran"
    );
    assert!(
        pings >= 3,
        "only {pings} watchdog pings during a 2 s reload"
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log());
}

/// The package's default config has no resources: a `Type=notify` start of
/// it must still get READY=1, or systemd times the start out.
#[test]
fn ready_with_zero_resources() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = write_config(&dir.path().join("a"), "a", &dir.path().join("locks"), "");
    let notify = format!("NOTIFY_SOCKET={}", sock_path.display());
    let mut d = Daemon::spawn(
        "a",
        &["/usr/bin/env", notify.as_str()],
        config,
        dir.path().join("a.stderr"),
    );
    let got = read_until(&sock, "READY=1");
    assert!(
        got.last()
            .unwrap()
            .lines()
            .any(|l| l == "STATUS=no resources configured"),
        "{got:?}"
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log());
}
