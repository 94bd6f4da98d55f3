//! SIGHUP as systemd's `Type=notify-reload` expects it: RELOADING=1 with
//! MONOTONIC_USEC= when the reload starts, READY=1 once it is over (applied
//! or refused). A datagram socket stands in for NOTIFY_SOCKET.

mod support;

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Daemon, WAIT, write_config};

/// Reads notify datagrams until one has the line `want`; returns all read.
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

#[test]
fn a_reload_is_framed_by_reloading_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let locks = dir.path().join("locks");
    let home = dir.path().join("a");
    let web = "[[resource]]\nname = \"web\"\n";
    let config = write_config(&home, "a", &locks, web);
    let notify = format!("NOTIFY_SOCKET={}", sock_path.display());
    let mut d = Daemon::spawn(
        "a",
        &["/usr/bin/env", notify.as_str()],
        config.clone(),
        dir.path().join("a.stderr"),
    );
    read_until(&sock, "READY=1");

    // A good reload: a resource is added.
    write_config(
        &home,
        "a",
        &locks,
        &format!("{web}[[resource]]\nname = \"db\"\n"),
    );
    assert_framed(&sock, &d, "reloaded");

    // A refused reload ends too, as far as systemd is concerned.
    std::fs::write(&config, "[daemon]\nno_such_key = 1\n").unwrap();
    assert_framed(&sock, &d, "reload refused");

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), Some(0), "{}", d.log());
}
