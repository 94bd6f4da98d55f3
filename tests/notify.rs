//! The systemd notify protocol without systemd: a datagram socket stands in
//! for the service manager's NOTIFY_SOCKET, so READY, STATUS, WATCHDOG and
//! STOPPING are read exactly as systemd would read them.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::WAIT;
use support::lab::Lab;

/// A stand-in for the service manager's socket in `lab`'s dir, whose reads
/// time out after `timeout`, and the `NOTIFY_SOCKET=` setting naming it.
fn notify_socket(lab: &Lab, timeout: Duration) -> (UnixDatagram, String) {
    let path = lab.path("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(timeout)).unwrap();
    (sock, format!("NOTIFY_SOCKET={}", path.display()))
}

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
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab, Duration::from_millis(200));
    let env_dump = lab.path("hook.env");
    let res = format!(
        "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/sh\", \"-c\", \"env > {}; echo hook says hello\"]\n",
        env_dump.display()
    );
    // WATCHDOG_USEC 400 ms: fed every 200 ms while every runner answers.
    let wrapper = ["/usr/bin/env", notify.as_str(), "WATCHDOG_USEC=400000"];
    let i = lab.start_under("a", &wrapper, &res);
    let d = &mut lab.daemons[i];
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
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab, Duration::from_millis(100));
    let slow = "[[resource]]\nname = \"slow\"\n[[resource.action]]\ntype = \"exec\"\nrelease = [\"/bin/sleep\", \"2\"]\n";
    let keep = "[[resource]]\nname = \"keep\"\n";
    let wrapper = ["/usr/bin/env", notify.as_str(), "WATCHDOG_USEC=400000"];
    let i = lab.start_under("a", &wrapper, &format!("{slow}{keep}"));
    read_until(&sock, "READY=1");
    lab.config("a", keep);
    let d = &mut lab.daemons[i];
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
    d.stop();
}

/// The package's default config has no resources: a `Type=notify` start of
/// it must still get READY=1, or systemd times the start out.
#[test]
fn ready_with_zero_resources() {
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab, Duration::from_millis(200));
    let i = lab.start_under("a", &["/usr/bin/env", notify.as_str()], "");
    let d = &mut lab.daemons[i];
    let got = read_until(&sock, "READY=1");
    assert!(
        got.last()
            .unwrap()
            .lines()
            .any(|l| l == "STATUS=no resources configured"),
        "{got:?}"
    );
    d.stop();
}
