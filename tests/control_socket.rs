//! The control socket's limits, against real daemons: an endless request is
//! cut off without growing the daemon, idle and never-reading clients are
//! dropped at their deadline, a flood of idle connections or running out of
//! fds does not stop `status`.

mod support;

use dlm_electd::control::{self, CLIENT_TIME, MAX_REQUEST};
use dlm_electd::election::{Board, ResourceStatus, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, wait_for};

/// A lab whose daemon 0 (node a, under `wrapper`) is master of `web` (no
/// actions).
fn daemon(wrapper: &[&str]) -> Lab {
    let mut lab = Lab::new();
    let a = lab.start_under("a", wrapper, "[[resource]]\nname = \"web\"\n");
    lab.daemons[a].wait_state("web", "master");
    lab
}

fn connect(lab: &Lab) -> UnixStream {
    UnixStream::connect(control::socket_path(&lab.path("a/run"))).expect("connect")
}

/// `/proc/PID/status` field `key` (e.g. VmRSS, in kB).
fn proc_status_kb(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after comm, which may contain spaces: utime and stime are the
    // 14th and 15th fields, the 12th and 13th after ')'.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_endless_request_is_cut_off_and_the_daemon_stays_small() {
    let lab = daemon(&[]);
    let d = &lab.daemons[0];
    let mut s = connect(&lab);
    let mut w = s.try_clone().unwrap();
    // 80 MiB without a newline, until the daemon hangs up.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 80 << 20 {
            match w.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => return (sent, Some(e)),
            }
        }
        (sent, None)
    });
    assert!(d.status().is_some(), "status while a client streams");
    let (sent, err) = writer.join().unwrap();
    assert!(
        err.is_some() && sent < 8 << 20,
        "the daemon took {sent} bytes of one request (write error: {err:?})"
    );
    // The error reply was sent before the daemon closed.
    let mut reply = Vec::new();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.contains(&format!("request longer than {MAX_REQUEST} bytes")),
        "reply: {reply:?}"
    );
    let rss = proc_status_kb(d.pid().as_raw(), "VmRSS");
    assert!(rss < 40 * 1024, "daemon RSS {rss} kB");
    assert!(d.status().is_some(), "status after the endless request");
}

#[test]
fn an_idle_connection_is_closed_at_its_deadline() {
    let lab = daemon(&[]);
    let mut s = connect(&lab);
    s.set_read_timeout(Some(CLIENT_TIME + Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let r = s.read(&mut [0u8; 64]);
    assert!(
        matches!(r, Ok(0)),
        "idle connection after {:?}: {r:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < CLIENT_TIME + Duration::from_secs(2));
}

#[test]
fn status_answers_while_200_connections_sit_idle() {
    let lab = daemon(&[]);
    let d = &lab.daemons[0];
    let start = Instant::now();
    let idle: Vec<UnixStream> = (0..200).map(|_| connect(&lab)).collect();
    assert!(d.status().is_some(), "status with 200 idle connections");
    // Answered while they were all still open, not after they timed out.
    assert!(start.elapsed() < CLIENT_TIME, "took {:?}", start.elapsed());
    drop(idle);
}

/// In-process, since the reply must outgrow the socket buffer: a status
/// of 4 MiB to a client that sends its request and never reads. The
/// daemon's side must hang up at the deadline rather than wait forever.
#[test]
fn a_client_that_never_reads_its_reply_is_dropped_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let board = Board::default();
    board.publish(ResourceStatus {
        last_error: Some("e".repeat(4 << 20)),
        settled: true,
        ..ResourceStatus::new("web", "web", Status::Backoff, 0)
    });
    let (release, _rx) = tokio::sync::mpsc::channel(1);
    let listener = rt.block_on(async { control::bind(dir.path()) }).unwrap();
    rt.spawn(control::serve(listener, "a".into(), board, release));
    let mut s = UnixStream::connect(control::socket_path(dir.path())).unwrap();
    s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let start = Instant::now();
    // POLLHUP comes when the daemon closed its end; we read nothing.
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::empty())];
    let limit = CLIENT_TIME + Duration::from_secs(5);
    let n = poll(&mut fds, PollTimeout::try_from(limit).unwrap()).unwrap();
    let hup = fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLHUP));
    assert!(
        n == 1 && hup,
        "connection still open after {:?}",
        start.elapsed()
    );
}

/// Out of fds, accept fails at once as long as connections are queued:
/// the daemon must pause between attempts (measured as its CPU time) and
/// answer `status` again once fds are free.
#[test]
fn accept_failing_for_lack_of_fds_backs_off_and_recovers() {
    // `sh -c '...' BIN run --config ...`: BIN is $0.
    let wrapper = ["/bin/sh", "-c", "ulimit -n 48 && exec \"$0\" \"$@\""];
    let lab = daemon(&wrapper);
    let d = &lab.daemons[0];
    let pid = d.pid().as_raw();
    let mut conns: Vec<UnixStream> = (0..100).map(|_| connect(&lab)).collect();
    d.wait_log("control socket: accept failed");
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1)); // a measuring window
    let used = cpu_ticks(pid) - before;
    // Spinning on accept burns the whole second (about 100 ticks).
    assert!(used < 30, "{used} ticks of CPU in 1 s while out of fds");
    conns.clear();
    wait_for(WAIT, "status after the fds came back", || d.status());
    let log = d.log();
    assert_eq!(
        log.matches("control socket: accept failed").count(),
        1,
        "logged once, not on every retry:\n{log}"
    );
}

/// One raw request line, and the daemon's reply as JSON.
fn raw_request(lab: &Lab, line: &str) -> serde_json::Value {
    let mut s = connect(lab);
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

/// The daemon applies the CLI's hold-off bounds itself (issue #19, item
/// 4): a raw `hold_off_ms` of u64::MAX wrapped the status's end time
/// ("0s left") while keeping the node out for good; 0 let it win its own
/// lock straight back. Both are refused and nothing changes.
#[test]
fn a_release_hold_off_outside_the_clis_bounds_is_refused() {
    let lab = daemon(&[]);
    let d = &lab.daemons[0];
    for (ms, why) in [
        (u64::MAX, "at most 24h"),
        (24 * 3600 * 1000 + 1, "at most 24h"),
        (0, "must be more than 0s"),
    ] {
        let reply = raw_request(
            &lab,
            &format!("{{\"cmd\":\"release\",\"resource\":\"web\",\"hold_off_ms\":{ms}}}\n"),
        );
        let err = reply["error"].as_str().unwrap_or_default();
        assert!(
            err.starts_with(&format!("refused: hold_off_ms {ms}: ")) && err.contains(why),
            "{ms}: {reply}"
        );
        let st = d.status().expect("status");
        let web = &st["resources"][0];
        assert_eq!(web["state"], "master", "{ms}: {st}");
        assert!(web.get("hold_off_until_ms").is_none(), "{ms}: {st}");
    }
    // The largest allowed one is taken as asked.
    let reply = raw_request(
        &lab,
        "{\"cmd\":\"release\",\"resource\":\"web\",\"hold_off_ms\":86400000}\n",
    );
    assert!(reply.get("error").is_none(), "{reply}");
    let st = d.status().expect("status");
    let web = &st["resources"][0];
    let left = web["hold_off_until_ms"].as_u64().unwrap() - st["now_ms"].as_u64().unwrap();
    assert!(
        (86_400_000 - 60_000..=86_400_000).contains(&left),
        "{left} ms left: {st}"
    );
}
