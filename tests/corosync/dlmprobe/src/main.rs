//! dlmprobe: one lock through the kernel's DLM device, with the daemon's
//! own binding (src/lock/dlm), for tests/corosync/probe.sh on real nodes.
//!
//!   dlmprobe [OPTIONS] LOCKSPACE RESOURCE
//!     --mode ex|pr|nl      the mode asked (default ex)
//!     --wait               queue for the lock (default: a NOQUEUE trylock)
//!     --cancel-after SECS  with --wait: cancel the request if not granted
//!     --hold SECS|stdin|forever
//!                          once granted, hold SECS (default 0), until
//!                          stdin reaches EOF, or until killed; then unlock
//!     --noqueuebast        a trylock that sends the holders a BAST
//!     --no-bast            ask for no blocking ASTs
//!     --persistent         a PERSISTENT lock (an orphan if we die holding)
//!     --stay               keep our create of the lockspace at exit
//!     --keeper             once granted, fork a child that keeps the
//!                          lockspace fd (and so the lock) and sleeps
//!                          until killed; the parent exits at once,
//!                          without unlocking (a daemon dying, its keeper
//!                          alive)
//!     --adopt              instead of a request, adopt this node's orphan
//!                          (a PERSISTENT lock whose holder died) in the
//!                          mode asked, then hold and unlock it
//!     --purge              unlock every orphan of this node in the
//!                          lockspace, and exit
//!     --second-fd RES2     once granted, open the lockspace device again,
//!                          trylock RES2 through that second fd, then close
//!                          the first fd without unlocking and hold RES2
//!
//! One line per event on stdout, `HH:MM:SS.mmm EVENT key=value...` (UTC):
//! JOINED, REQUESTED, GRANTED, BUSY, WAITING, BAST, CANCEL, CANCELLED,
//! UNLOCKED, KEEPER, ADOPTED, NO-ORPHAN, PURGED, LEFT, ERROR. Exit: 0
//! granted (and unlocked), 1 busy (trylock), 3 cancelled, 4 no orphan to
//! adopt, 2 any error.

#[path = "../../../../src/lock/dlm/mod.rs"]
#[allow(dead_code, unused_imports)]
mod dlm;

use dlm::{Ask, Event, Flags, Lockspace, Mode, Paths, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::AsFd;
use std::process::exit;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq)]
enum Hold {
    For(Duration),
    Stdin,
    Forever,
}

struct Opts {
    lockspace: String,
    resource: String,
    mode: Mode,
    wait: bool,
    cancel_after: Option<Duration>,
    hold: Hold,
    noqueuebast: bool,
    bast: bool,
    persistent: bool,
    stay: bool,
    keeper: bool,
    adopt: bool,
    purge: bool,
    second_fd: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: dlmprobe [--mode ex|pr|nl] [--wait [--cancel-after SECS]] [--hold SECS|stdin|forever] [--noqueuebast] [--no-bast] [--persistent] [--stay] [--keeper] [--adopt | --purge] [--second-fd RES2] LOCKSPACE RESOURCE"
    );
    exit(2)
}

fn secs(v: Option<String>) -> Duration {
    match v.and_then(|s| s.parse::<f64>().ok()) {
        Some(s) if s >= 0.0 => Duration::from_secs_f64(s),
        _ => usage(),
    }
}

fn parse() -> Opts {
    let mut o = Opts {
        lockspace: String::new(),
        resource: String::new(),
        mode: Mode::Ex,
        wait: false,
        cancel_after: None,
        hold: Hold::For(Duration::ZERO),
        noqueuebast: false,
        bast: true,
        persistent: false,
        stay: false,
        keeper: false,
        adopt: false,
        purge: false,
        second_fd: None,
    };
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => {
                o.mode = match args.next().as_deref() {
                    Some("ex") => Mode::Ex,
                    Some("pr") => Mode::Pr,
                    Some("nl") => Mode::Nl,
                    _ => usage(),
                }
            }
            "--wait" => o.wait = true,
            "--cancel-after" => o.cancel_after = Some(secs(args.next())),
            "--hold" => {
                o.hold = match args.next().as_deref() {
                    Some("stdin") => Hold::Stdin,
                    Some("forever") => Hold::Forever,
                    v => Hold::For(secs(v.map(str::to_string))),
                }
            }
            "--noqueuebast" => o.noqueuebast = true,
            "--no-bast" => o.bast = false,
            "--persistent" => o.persistent = true,
            "--stay" => o.stay = true,
            "--keeper" => o.keeper = true,
            "--adopt" => o.adopt = true,
            "--purge" => o.purge = true,
            "--second-fd" => o.second_fd = Some(args.next().unwrap_or_else(|| usage())),
            s if s.starts_with("--") => usage(),
            _ => rest.push(a),
        }
    }
    if rest.len() != 2 || (o.cancel_after.is_some() && !o.wait) {
        usage();
    }
    o.resource = rest.pop().unwrap();
    o.lockspace = rest.pop().unwrap();
    o
}

fn stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

macro_rules! say {
    ($($arg:tt)*) => {{
        println!("{} {}", stamp(), format!($($arg)*));
    }};
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    say!("ERROR {what}: {e}");
    exit(2)
}

fn mode_name(raw: u8) -> String {
    Mode::from_raw(raw).map_or_else(|| raw.to_string(), |m| m.to_string())
}

/// Prints an event that is not the one awaited (a BAST while waiting).
fn note(ev: &Event) {
    match ev {
        Event::Blocking { lkid, mode, .. } => say!("BAST lkid={lkid:#x} mode={}", mode_name(*mode)),
        Event::Completion { lkid, status, .. } => {
            say!("COMPLETION lkid={lkid:#x} status={status:?}")
        }
    }
}

/// Waits for the completion of `lkid`, printing whatever else comes, up to
/// `timeout` (None: forever). None when the time ran out.
fn completion(ls: &Lockspace, lkid: u32, timeout: Option<Duration>) -> Option<Status> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return None;
        }
        match ls.next_event(left) {
            Ok(Some(Event::Completion {
                lkid: l, status, ..
            })) if l == lkid => return Some(status),
            Ok(Some(ev)) => note(&ev),
            // The time ran out, or a signal: the loop looks again.
            Ok(None) => {}
            Err(e) => fail("read", e),
        }
    }
}

/// Holds the granted lock as `hold` says, printing BASTs as they come.
fn hold(ls: &Lockspace, hold: Hold) {
    let deadline = match hold {
        Hold::For(d) => Some(Instant::now() + d),
        _ => None,
    };
    let stdin = std::io::stdin();
    loop {
        while let Some(ev) = ls.read_event().unwrap_or_else(|e| fail("read", e)) {
            note(&ev);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return;
        }
        let timeout = left.map_or(PollTimeout::NONE, |l| {
            PollTimeout::try_from(l).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = vec![PollFd::new(ls.as_fd(), PollFlags::POLLIN)];
        if hold == Hold::Stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => fail("poll", e),
        }
        let stdin_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if stdin_ready {
            let mut buf = [0u8; 512];
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    say!("STDIN-EOF");
                    return;
                }
                Ok(_) => {}
            }
        }
    }
}

fn main() {
    let o = parse();
    let paths = Paths::default();
    let t0 = Instant::now();
    let ls = Lockspace::join(&o.lockspace, &paths).unwrap_or_else(|e| fail("join", e));
    say!(
        "JOINED ls={} minor={} ms={}",
        o.lockspace,
        ls.minor(),
        t0.elapsed().as_millis()
    );
    if o.purge {
        ls.purge_orphans(0).unwrap_or_else(|e| fail("purge", e));
        say!("PURGED ls={}", o.lockspace);
        leave(ls, &paths, &o);
        exit(0)
    }
    let mut flags = Flags::NONE;
    if !o.wait {
        flags = flags | Flags::NOQUEUE;
    }
    if o.noqueuebast {
        flags = flags | Flags::NOQUEUE | Flags::NOQUEUEBAST;
    }
    if o.persistent {
        flags = flags | Flags::PERSISTENT;
    }
    let ask = Ask {
        mode: o.mode,
        flags,
        tag: std::process::id() as u64,
        bast: o.bast,
    };
    let t1 = Instant::now();
    if o.adopt {
        match ls.adopt(&ask, o.resource.as_bytes()) {
            Ok(Some(lkid)) => {
                say!(
                    "ADOPTED lkid={lkid:#x} mode={} resource={}",
                    o.mode,
                    o.resource
                );
                hold_and_unlock(&ls, lkid, &o);
                leave(ls, &paths, &o);
                exit(0)
            }
            Ok(None) => {
                say!("NO-ORPHAN resource={}", o.resource);
                leave(ls, &paths, &o);
                exit(4)
            }
            Err(e) => fail("adopt", e),
        }
    }
    let lkid = ls
        .request(&ask, o.resource.as_bytes())
        .unwrap_or_else(|e| fail("request", e));
    say!(
        "REQUESTED lkid={lkid:#x} mode={} flags={:#x} resource={}",
        o.mode,
        flags.0,
        o.resource
    );
    let mut code = 0;
    let status = if o.wait {
        // A queued request: the first completion may take long; say so.
        match completion(&ls, lkid, Some(Duration::from_millis(500))) {
            Some(s) => s,
            None => {
                say!("WAITING lkid={lkid:#x}");
                let left = o.cancel_after.map(|c| c.saturating_sub(t1.elapsed()));
                match completion(&ls, lkid, left) {
                    Some(s) => s,
                    None => {
                        say!("CANCEL lkid={lkid:#x}");
                        ls.cancel(lkid).unwrap_or_else(|e| fail("cancel", e));
                        completion(&ls, lkid, None).unwrap()
                    }
                }
            }
        }
    } else {
        completion(&ls, lkid, None).unwrap()
    };
    match status {
        Status::Granted => {
            say!("GRANTED lkid={lkid:#x} ms={}", t1.elapsed().as_millis());
            if o.keeper {
                keep(ls);
            }
            if let Some(res2) = &o.second_fd {
                second_fd(ls, &paths, &ask, res2, &o);
            }
            hold_and_unlock(&ls, lkid, &o);
        }
        Status::Busy => {
            say!("BUSY lkid={lkid:#x} ms={}", t1.elapsed().as_millis());
            code = 1;
        }
        Status::Cancelled => {
            say!("CANCELLED lkid={lkid:#x} ms={}", t1.elapsed().as_millis());
            code = 3;
        }
        s => fail("request", format!("status {s:?}")),
    }
    leave(ls, &paths, &o);
    exit(code)
}

/// Takes `res2` through a second open of the lockspace device, closes the
/// first (its lock goes with it: nothing else holds that file), holds
/// `res2` and unlocks it; exits.
fn second_fd(ls: Lockspace, paths: &Paths, ask: &Ask, res2: &str, o: &Opts) -> ! {
    let ls2 = ls
        .open_again(paths)
        .unwrap_or_else(|e| fail("open again", e));
    let ask2 = Ask {
        flags: Flags::NOQUEUE,
        ..*ask
    };
    let lkid2 = ls2
        .request(&ask2, res2.as_bytes())
        .unwrap_or_else(|e| fail("request", e));
    match completion(&ls2, lkid2, None).unwrap() {
        Status::Granted => say!("GRANTED2 lkid={lkid2:#x} resource={res2}"),
        s => fail("second request", format!("status {s:?}")),
    }
    drop(ls);
    say!("CLOSED-FIRST fd without unlocking {}", o.resource);
    hold_and_unlock(&ls2, lkid2, o);
    leave(ls2, paths, o);
    exit(0)
}

fn hold_and_unlock(ls: &Lockspace, lkid: u32, o: &Opts) {
    hold(ls, o.hold);
    ls.unlock(lkid, Flags::NONE, None)
        .unwrap_or_else(|e| fail("unlock", e));
    match completion(ls, lkid, None).unwrap() {
        Status::Unlocked => say!("UNLOCKED lkid={lkid:#x}"),
        s => fail("unlock", format!("status {s:?}")),
    }
}

fn leave(ls: Lockspace, paths: &Paths, o: &Opts) {
    if o.stay {
        return;
    }
    // Forced: our locks are gone, and a plain last leave fails EBUSY while
    // this node masters other nodes' locks (release_lockspace).
    match ls.leave(paths, true) {
        Ok(()) => say!("LEFT ls={}", o.lockspace),
        Err(e) => say!("ERROR leave: {e}"),
    }
}

/// Forks a child that keeps the lockspace fd open until it is killed: the
/// open file, and so the lock, outlives the parent, which exits at once
/// without unlocking or leaving (as a daemon killed beside its keeper).
fn keep(ls: Lockspace) -> ! {
    // SAFETY: single-threaded here; the child only prints, sleeps and
    // exits by a signal.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            say!("KEEPER pid={} keeps the lockspace fd", std::process::id());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            say!("EXIT without unlock; keeper pid={child}");
            // Our fd closes with us; the keeper's copy keeps the file.
            drop(ls);
            exit(0)
        }
        Err(e) => fail("fork", e),
    }
}
