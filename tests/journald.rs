//! Logging to the journal, read as journald would read it: in a private
//! mount namespace a directory of ours is mounted over /run/systemd/journal,
//! so the daemon's native-protocol datagrams reach a socket this test
//! bound. As root only (mounts).

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{Daemon, WAIT};

/// One journal entry: its fields in order (a name may repeat).
type Entry = Vec<(String, String)>;

/// Parses the journal native protocol: `NAME=value\n`, or
/// `NAME\n<u64 LE length><value>\n` for values that may hold newlines.
fn parse(mut d: &[u8]) -> Entry {
    let mut fields = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        let rest = &d[(nl + 1).min(d.len())..];
        let (name, value, next) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], &line[eq + 1..], rest),
            None => {
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                (line, &rest[8..8 + len], &rest[(9 + len).min(rest.len())..])
            }
        };
        fields.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        d = next;
    }
    fields
}

fn field<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
    e.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A stand-in journald socket, and a daemon that sees it at
/// /run/systemd/journal/socket with JOURNAL_STREAM set by `stream` from
/// its stderr's (dev, ino).
struct JournalLab {
    lab: Lab,
    journal: UnixDatagram,
}

impl JournalLab {
    fn daemon(&self) -> &Daemon {
        &self.lab.daemons[0]
    }
}

fn start(stream: impl Fn(u64, u64) -> String) -> JournalLab {
    let mut lab = Lab::new();
    // Mounting over /run (below) would hide a test dir under it.
    assert!(!lab.dir.path().starts_with("/run"), "TMPDIR under /run");
    let jdir = lab.path("journal");
    fs::create_dir(&jdir).unwrap();
    let journal = UnixDatagram::bind(jdir.join("socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let res = "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/sh\", \"-c\", \"echo hello from the hook\"]\n";
    let config = lab.config("node-a", res);
    // Daemon::spawn truncates this file, keeping its inode.
    let stderr = lab.stderr_path("node-a");
    let meta = fs::File::create(&stderr).unwrap().metadata().unwrap();
    // Mount points must exist: a tmpfs over the nearest existing parent
    // makes them without touching the host's /run.
    let script = format!(
        "set -e; j=/run/systemd/journal; \
         if [ ! -d $j ]; then \
           if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; else mount -t tmpfs tmpfs /run; fi; \
           mkdir -p $j; \
         fi; \
         mount --bind {} $j; \
         JOURNAL_STREAM={} exec \"$0\" \"$@\"",
        jdir.display(),
        stream(meta.dev(), meta.ino())
    );
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        &script,
    ];
    lab.spawn("node-a", &wrapper, config, stderr);
    JournalLab { lab, journal }
}

/// Reads journal entries until `done` says the last one is enough.
fn read_until(j: &UnixDatagram, what: &str, done: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    let start = Instant::now();
    let mut got = Vec::new();
    // Lines stay far below the datagram limit, so no entry comes as a
    // memfd (tracing-journald's way for payloads that do not fit).
    let mut buf = vec![0u8; 1 << 20];
    loop {
        assert!(start.elapsed() < WAIT, "no {what} in {got:#?}");
        match j.recv(&mut buf) {
            // tracing-journald probes the socket with an empty datagram.
            Ok(0) => {}
            Ok(n) => {
                let e = parse(&buf[..n]);
                let stop = done(&e);
                got.push(e);
                if stop {
                    return got;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root to mount a stand-in journal socket");
    false
}

#[test]
fn fields_reach_the_journal_unprefixed_when_stderr_is_the_journal() {
    if !is_root() {
        return;
    }
    let lab = start(|dev, ino| format!("{dev}:{ino}"));
    let got = read_until(&lab.journal, "STATE=master for web", |e| {
        field(e, "STATE") == Some("master") && field(e, "RESOURCE") == Some("web")
    });
    assert!(
        got.iter().any(|e| field(e, "NODE") == Some("node-a")),
        "no NODE=node-a in {got:#?}"
    );
    let master = got.last().unwrap();
    assert_eq!(field(master, "MESSAGE"), Some("state master"));
    assert_eq!(field(master, "SYSLOG_IDENTIFIER"), Some("dlm-electd"));
    let hook = got
        .iter()
        .find(|e| field(e, "MESSAGE") == Some("hello from the hook"))
        .unwrap_or_else(|| panic!("no hook line in {got:#?}"));
    assert_eq!(field(hook, "EVENT"), Some("acquire"));
    assert_eq!(field(hook, "PROGRAM"), Some("/bin/sh"));
    // Named once, by the resource span, in both.
    for e in [master, hook] {
        let names: Vec<&str> = e
            .iter()
            .filter(|(n, _)| n == "RESOURCE")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(names, ["web"], "{e:#?}");
    }
    for e in &got {
        assert!(
            !e.iter().any(|(n, _)| n.starts_with("F_")),
            "prefixed field in {e:#?}"
        );
    }
    assert!(
        !lab.daemon().log().contains("state master"),
        "the journal lines went to stderr too:\n{}",
        lab.daemon().log()
    );
}

#[test]
fn a_journal_stream_naming_another_file_means_plain_stderr() {
    if !is_root() {
        return;
    }
    // An inode that is not stderr's: JOURNAL_STREAM inherited from a
    // parent whose stderr was the journal, ours redirected to a file.
    let lab = start(|dev, ino| format!("{dev}:{}", ino + 1));
    lab.daemon().wait_log("state master");
    let log = lab.daemon().log();
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("resource=web")),
        "not readable lines:\n{log}"
    );
    // Nothing, not even the layer's empty probe, reached the journal.
    let mut buf = [0u8; 64];
    let r = lab.journal.recv(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the journal got a datagram: {r:?}"
    );
}
