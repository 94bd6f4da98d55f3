//! The systemd notify protocol without systemd: a datagram socket stands in
//! for the service manager's NOTIFY_SOCKET, so READY, STATUS, WATCHDOG and
//! STOPPING are read exactly as systemd would read them.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::lab::{Lab, bare_resources};
use support::{Daemon, WAIT};

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

/// CLOCK_MONOTONIC in microseconds, the clock MONOTONIC_USEC= is read on.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// The reload is framed: RELOADING=1 with a current MONOTONIC_USEC= in one
/// datagram, then READY=1 only after the reload finished.
fn assert_framed(sock: &UnixDatagram, d: &Daemon, done_line: &str) {
    let before = monotonic_usec();
    d.signal(Signal::SIGHUP);
    let got = read_until(sock, "RELOADING=1");
    let after = monotonic_usec();
    let msg = got.last().unwrap();
    let usec: u64 = msg
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC= with RELOADING=1: {msg:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} not between {before} and {after}"
    );
    assert!(
        !got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 before RELOADING=1: {got:?}"
    );
    read_until(sock, "READY=1");
    assert!(
        d.log().contains(done_line),
        "READY=1 came before the reload ended ({done_line:?}):\n{}",
        d.log()
    );
}

/// SIGHUP as systemd's `Type=notify-reload` expects it: RELOADING=1 with
/// MONOTONIC_USEC= when the reload starts, READY=1 once it is over (applied
/// or refused).
#[test]
fn a_reload_is_framed_by_reloading_and_ready() {
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab, Duration::from_millis(200));
    let web = "[[resource]]\nname = \"web\"\n";
    let i = lab.start_under("a", &["/usr/bin/env", notify.as_str()], web);
    read_until(&sock, "READY=1");

    // A good reload: a resource is added.
    let config = lab.config("a", &format!("{web}[[resource]]\nname = \"db\"\n"));
    assert_framed(&sock, &lab.daemons[i], "reloaded");

    // A refused reload ends too, as far as systemd is concerned.
    std::fs::write(&config, "[daemon]\nno_such_key = 1\n").unwrap();
    assert_framed(&sock, &lab.daemons[i], "reload refused");

    lab.daemons[i].stop();
}

/// A service manager that reads late (systemd busy at boot) must still get
/// READY=1: a burst of status changes from 1,000 resources starting once
/// filled the daemon's bounded queue and dropped it, and systemd would
/// have killed the daemon at TimeoutStartSec. The manager here drains its
/// socket only every 200 ms, so the socket fills and the daemon's sender
/// blocks between drains; it does drain, since each lock won waits for the
/// manager to take its fd into the fd store (FDSTORE=1), as under systemd.
#[test]
fn ready_survives_a_burst_of_status_changes_read_late() {
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab, Duration::from_millis(200));
    sock.set_nonblocking(true).unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (got, stop) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Every 200 ms: the queue (max_dgram_qlen, 10 here) fills
                // between drains, and 1,000 FDSTORE=1 messages still get
                // through in well under the limit on a loaded machine
                // (drained once a second they took 50-60 s of its 60).
                std::thread::sleep(Duration::from_millis(200));
                while let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    got.lock().unwrap().push(msg);
                }
            }
        })
    };
    let res = bare_resources(1000);
    let i = lab.start_under("a", &["/usr/bin/env", notify.as_str()], &res);
    support::wait_for(Duration::from_secs(60), "1000 masters", || {
        let s = lab.daemons[i].status()?;
        let rs = s["resources"].as_array()?;
        (rs.len() == 1000 && rs.iter().all(|r| r["state"] == "master")).then_some(())
    });
    support::wait_for(WAIT, "READY=1 read", || {
        got.lock()
            .unwrap()
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1"))
            .then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
}

/// Past 10 resources STATUS= counts them per state, with a few example
/// names, instead of naming every one: the line stays short enough to read
/// in `systemctl status` at 10,000 resources (see docs/operating.md, STATUS=).
#[test]
fn many_resources_are_counted_in_status() {
    let mut lab = Lab::new();
    let res = bare_resources(40);
    let (sock_a, notify_a) = notify_socket(&lab, Duration::from_millis(200));
    let a = lab.start_under("a", &["/usr/bin/env", notify_a.as_str()], &res);
    let got = read_until(&sock_a, "READY=1");
    assert!(
        got.last()
            .unwrap()
            .lines()
            .any(|l| l == "STATUS=master: 40 (r0, r1, r10, …)"),
        "{got:?}"
    );
    // The second node: one resource of its own, the 40 held by a.
    let path_b = lab.path("notify-b.sock");
    let sock_b = UnixDatagram::bind(&path_b).unwrap();
    sock_b
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify_b = format!("NOTIFY_SOCKET={}", path_b.display());
    let own = "[[resource]]\nname = \"x\"\n";
    let b = lab.start_under(
        "b",
        &["/usr/bin/env", notify_b.as_str()],
        &format!("{res}{own}"),
    );
    let got = read_until(&sock_b, "READY=1");
    assert!(
        got.last()
            .unwrap()
            .lines()
            .any(|l| l == "STATUS=master: 1 (x); standby: 40 (r0, r1, r10, …)"),
        "{got:?}"
    );
    // Each held lock's fd goes to the fd store on these sockets: keep
    // reading, or the daemons block on a full socket on their way out.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for sock in [&sock_a, &sock_b] {
            s.spawn(|| {
                let mut buf = [0u8; 4096];
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = sock.recv(&mut buf);
                }
            });
        }
        // Set even when a stop panics, or the scope would never end.
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _done = Done(&done);
        lab.daemons[b].stop();
        lab.daemons[a].stop();
    });
}
