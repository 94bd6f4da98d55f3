//! The Prometheus endpoint of a real daemon holding real locks (file
//! backend), scraped over 127.0.0.1 and parsed line by line with the
//! `prometheus-parse` crate.

mod support;

use prometheus_parse::{LineInfo, Scrape, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::lab::Lab;
use support::{WAIT, cli_ok, wait_for};

/// A port nobody listens on right now (the kernel's pick).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn metrics_section(addr: SocketAddr) -> String {
    format!("[metrics]\nlisten = \"{addr}\"\n")
}

/// One HTTP/1.1 request; (status line, headers, body), or None if nothing
/// listens.
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(String, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP reply");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Some((status.into(), headers.to_lowercase(), body.into()))
}

/// Scrapes `/metrics`: checks the reply and that every line is a HELP,
/// TYPE or sample line, and returns the parsed samples.
fn scrape(addr: SocketAddr) -> Scrape {
    let (status, headers, body) = wait_for(WAIT, "the metrics endpoint", || {
        http(addr, "GET", "/metrics")
    });
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    for line in body.lines() {
        assert!(
            matches!(
                LineInfo::parse(line),
                LineInfo::Doc { .. } | LineInfo::Type { .. } | LineInfo::Sample { .. }
            ),
            "not a HELP, TYPE or sample line: {line:?}\n{body}"
        );
    }
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric}: not a number: {other:?}"),
        })
}

fn get(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?}"))
}

fn state(s: &Scrape, resource: &str, state: &str) -> f64 {
    get(
        s,
        "dlm_electd_resource_state",
        &[("resource", resource), ("state", state)],
    )
}

/// The bucket counts of a histogram series; the +Inf bucket is the count.
fn histogram_count(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let h = s
        .samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    let Value::Histogram(buckets) = &h.value else {
        panic!("{metric}: not a histogram")
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "{metric}: bucket counts must not fall: {buckets:?}"
    );
    assert_eq!(
        get(s, &format!("{metric}_count"), labels),
        inf.count,
        "{metric}: _count is the +Inf bucket"
    );
    inf.count
}

#[test]
fn scraped_metrics_follow_a_switchover() {
    let mut lab = Lab::new();
    let addr = free_port();
    let res = format!("{}{}", metrics_section(addr), lab.logging("web"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    let s = scrape(addr);
    assert_eq!(state(&s, "web", "master"), 1.0);
    for other in ["standby", "acquiring", "releasing", "backoff", "stalled"] {
        assert_eq!(state(&s, "web", other), 0.0, "{other}");
    }
    let became_master = || {
        value(
            &scrape(addr),
            "dlm_electd_resource_transitions_total",
            &[("resource", "web"), ("state", "master")],
        )
    };
    assert_eq!(became_master(), Some(1.0));
    let since = get(
        &s,
        "dlm_electd_resource_last_transition_timestamp_seconds",
        &[("resource", "web")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(since > now - 60.0 && since <= now + 1.0, "{since} vs {now}");
    let acquires = |s: &Scrape, outcome| {
        histogram_count(
            s,
            "dlm_electd_action_run_duration_seconds",
            &[
                ("resource", "web"),
                ("run", "acquire"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(acquires(&s, "ok"), 1.0);
    assert!(
        histogram_count(
            &s,
            "dlm_electd_lock_call_duration_seconds",
            &[("resource", "web"), ("call", "try_lock")]
        ) >= 1.0
    );
    assert_eq!(get(&s, "dlm_electd_keeper_up", &[]), 1.0);
    assert_eq!(
        get(
            &s,
            "dlm_electd_lock_call_stalls_total",
            &[("resource", "web")]
        ),
        0.0
    );
    assert_eq!(
        get(
            &s,
            "dlm_electd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // A switchover: a releases, b takes over.
    let plain = lab.logging("web");
    let b = lab.start("b", &plain);
    lab.daemons[b].wait_state("web", "standby");
    cli_ok(
        &lab.daemons[a].config,
        &["release", "web", "--hold-off", "1h"],
    );
    lab.daemons[b].wait_state("web", "master");
    let s = scrape(addr);
    assert_eq!(state(&s, "web", "master"), 0.0);
    assert_eq!(state(&s, "web", "standby"), 1.0);
    for (entered, n) in [("releasing", 1.0), ("master", 1.0)] {
        assert_eq!(
            get(
                &s,
                "dlm_electd_resource_transitions_total",
                &[("resource", "web"), ("state", entered)]
            ),
            n,
            "{entered}"
        );
    }
    assert!(
        get(
            &s,
            "dlm_electd_resource_transitions_total",
            &[("resource", "web"), ("state", "standby")]
        ) >= 1.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "dlm_electd_action_run_duration_seconds",
            &[("resource", "web"), ("run", "release"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "dlm_electd_lock_call_duration_seconds",
            &[("resource", "web"), ("call", "unlock")]
        ),
        1.0
    );
    assert!(
        get(
            &s,
            "dlm_electd_resource_last_transition_timestamp_seconds",
            &[("resource", "web")]
        ) >= since
    );

    // The rest of the endpoint.
    let (status, _, _) = http(addr, "GET", "/nope").unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = http(addr, "POST", "/metrics").unwrap();
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");

    // b has no [metrics]: it listens on no TCP port at all.
    assert_eq!(tcp_listeners(lab.daemons[b].pid().as_raw()), 0);
    assert_eq!(tcp_listeners(lab.daemons[a].pid().as_raw()), 1);
}

/// How many listening TCP sockets (v4 or v6) process `pid` has open.
fn tcp_listeners(pid: i32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let l = std::fs::read_link(e.ok()?.path()).ok()?;
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).unwrap_or_default())
        .collect::<String>()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // st 0A is LISTEN; field 9 the inode.
            f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.iter().any(|x| x == i))
        })
        .count()
}

#[test]
fn a_taken_port_does_not_stop_the_election_and_is_retried() {
    let mut lab = Lab::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let res = format!("{}{}", metrics_section(addr), lab.logging("web"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    lab.daemons[a].wait_log(&format!("metrics: cannot listen on {addr}"));
    drop(taken);
    // Retried every 10 s.
    let s = wait_for(
        Duration::from_secs(40),
        "the endpoint after the port was freed",
        || http(addr, "GET", "/metrics").map(|_| scrape(addr)),
    );
    assert_eq!(state(&s, "web", "master"), 1.0);
}

/// Connections that send nothing (a port scan, a stuck client) hold their
/// slot only briefly: with all 16 slots taken by idle connections, a scrape
/// still gets through within a few seconds (it waited 10 s before).
#[test]
fn idle_connections_do_not_keep_a_scraper_out() {
    let mut lab = Lab::new();
    let addr = free_port();
    let res = format!("{}{}", metrics_section(addr), lab.logging("web"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    scrape(addr);
    // From 16 addresses: one host alone gets only its share of the slots.
    let idle: Vec<TcpStream> = (0..16)
        .map(|i| connect_from(std::net::Ipv4Addr::new(127, 0, 0, 10 + i), addr).unwrap())
        .collect();
    // Accepted by now: a fresh connection is turned away while all are held.
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    // A turned-away connection is closed unanswered (or reset).
    let fetch = || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        raw.starts_with("HTTP/1.1 200").then_some(raw)
    };
    wait_for(
        Duration::from_secs(30),
        "a scrape past idle connections",
        fetch,
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "scrape got through only after {:?}",
        t.elapsed()
    );
    drop(idle);
}

/// A bad `listen` is refused with its place, by check-config (exit 78) and
/// by a reload (the running endpoint stays); a good new one needs a
/// restart, and says so; a resource removed by a reload loses its series.
#[test]
fn bad_listen_is_refused_and_changes_nothing_running() {
    let mut lab = Lab::new();
    let addr = free_port();
    let res = format!(
        "{}{}{}",
        metrics_section(addr),
        lab.logging("web"),
        lab.logging("db")
    );
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("db", "master");
    assert_eq!(state(&scrape(addr), "db", "master"), 1.0);
    let cfg = lab.daemons[a].config.clone();
    let good = std::fs::read_to_string(&cfg).unwrap();
    let line = good
        .lines()
        .position(|l| l.starts_with("listen = "))
        .unwrap()
        + 1;

    let bad = good.replace(&addr.to_string(), "localhost:9477");
    std::fs::write(&cfg, &bad).unwrap();
    let out = support::cli(&cfg, &["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{}:{line}:10: key `metrics.listen`: \"localhost:9477\" is not an IP address and port",
            cfg.display()
        )),
        "{err}"
    );
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_log("reload refused");
    assert_eq!(state(&scrape(addr), "db", "master"), 1.0);

    // A valid new address: needs a restart; the old one keeps serving.
    let other = free_port();
    let moved = good.replace(&addr.to_string(), &other.to_string());
    // ...and db goes: its series go with it.
    let moved = moved
        .split("[[resource]]\nname = \"db\"")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&cfg, moved).unwrap();
    lab.daemons[a].signal(nix::sys::signal::Signal::SIGHUP);
    lab.daemons[a].wait_log("[metrics], daemon.runtime_dir or daemon.state_dir need a restart");
    wait_for(WAIT, "db gone", || {
        lab.daemons[a].state("db").is_none().then_some(())
    });
    let s = scrape(addr);
    assert_eq!(state(&s, "web", "master"), 1.0);
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.get("resource") != Some("db")),
        "db's series are gone"
    );
    assert!(http(other, "GET", "/metrics").is_none());
}

/// A TCP connection from `src` (any 127.0.0.0/8 address is this host's) to
/// `to`: one test client can then look like several hosts.
fn connect_from(src: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrStorage, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
    )?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(to))?;
    Ok(TcpStream::from(fd))
}

/// One host that holds connections open with partial headers, and opens
/// a new one as soon as one is closed, takes at most its share of the
/// connection slots: every scrape from another host gets through (before,
/// it held all 16 and 0 of 20 scrapes did).
#[test]
fn one_host_holding_connections_open_does_not_keep_scrapers_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut lab = Lab::new();
    let addr = free_port();
    let res = format!("{}{}", metrics_section(addr), lab.logging("web"));
    let a = lab.start("a", &res);
    lab.daemons[a].wait_state("web", "master");
    scrape(addr);
    let attacker: std::net::Ipv4Addr = "127.0.0.2".parse().unwrap();
    let scraper: std::net::Ipv4Addr = "127.0.0.3".parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    // Stops the attack however the test ends, and waits for its threads
    // (each is at most one read timeout away from seeing the flag).
    struct Attack(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);
    impl Drop for Attack {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            for t in self.1.drain(..) {
                let _ = t.join();
            }
        }
    }
    let threads = (0..20)
        .map(|_| {
            let (stop, attempts) = (stop.clone(), attempts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut s) = connect_from(attacker, addr) {
                        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
                        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                        // Until the daemon closes it (or the timeout).
                        let _ = s.read(&mut [0u8; 64]);
                    }
                    // Pacing: a connection closed at once is retried at
                    // this rate, not in a busy loop.
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    let attack = Attack(stop, threads);
    // Every thread connected, and the ones over the limit were turned
    // away and came back: the slots are as full as this host can make them.
    wait_for(WAIT, "the attack to be under way", || {
        (attempts.load(Ordering::SeqCst) >= 40).then_some(())
    });
    let fetch = || -> Option<()> {
        let mut s = connect_from(scraper, addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        raw.starts_with("HTTP/1.1 200").then_some(())
    };
    let ok = (0..20).filter(|_| fetch().is_some()).count();
    drop(attack);
    assert_eq!(
        ok, 20,
        "scrapes that got through while one host held connections"
    );
}
