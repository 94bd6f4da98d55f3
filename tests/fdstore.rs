//! systemd's fd store for the `file` backend, without systemd: a datagram
//! socket stands in for the service manager's NOTIFY_SOCKET and keeps the
//! lock fds the daemon stores there (SCM_RIGHTS), as systemd would, and a
//! restart gets them back the way systemd passes them (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`, `LISTEN_PID`, fds from 3).
//!
//! One test, its steps in order: the stored fd is passed to a child without
//! close-on-exec, which must not leak into another test's daemons (tests in
//! one binary run on parallel threads).

mod support;

use nix::cmsg_space;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::{WAIT, alive, wait_for};

/// The stand-in service manager: its socket, and the `NOTIFY_SOCKET=`
/// setting naming it.
fn notify_socket(lab: &Lab) -> (UnixDatagram, String) {
    let path = lab.path("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (sock, format!("NOTIFY_SOCKET={}", path.display()))
}

/// Reads datagrams until one has the line `want`; returns its lines and
/// the fds that came with it.
fn read_until(sock: &UnixDatagram, want: &str) -> (Vec<String>, Vec<OwnedFd>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        assert!(start.elapsed() < WAIT, "no {want:?} in {seen:?}");
        let mut buf = [0u8; 4096];
        let mut cmsg = cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => panic!("recvmsg: {e}"),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: just received; ours alone.
                fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        let lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect();
        if lines.iter().any(|l| l == want) {
            return (lines, fds);
        }
        seen.push(lines);
    }
}

fn field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Whether someone else could take the lock on `path` now (a contender's
/// own OFD lock, let go at once).
fn free(path: &Path) -> bool {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    dlm_electd::lock::file::ofd_setlk(&f, true).is_ok()
}

/// Kills daemon `i` and its keeper together, as `systemctl kill -s KILL`
/// does (the keeper is frozen first, so it cannot start releasing in
/// between), and waits until both are gone.
fn kill_both(lab: &mut Lab, i: usize) {
    let keeper = lab.keeper(i);
    kill(Pid::from_raw(keeper), Signal::SIGSTOP).unwrap();
    lab.daemons[i].signal(Signal::SIGKILL);
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    lab.daemons[i].wait_exit();
    // Orphaned, the keeper became our child (Lab makes us a subreaper).
    wait_for(WAIT, "the keeper to die", || {
        match waitpid(Pid::from_raw(keeper), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(_) => Some(()),
            Err(_) => (!alive(keeper)).then_some(()),
        }
    });
}

/// The wrapper that hands `fd` (named `name`) to the daemon as systemd
/// passes a stored fd to the restarted main process.
fn listen_wrapper(fd: RawFd, name: &str) -> Vec<String> {
    let script = format!(
        "exec 3<&{fd} {fd}<&-; export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES={name}; exec \"$@\""
    );
    ["/bin/bash", "-c", &script, "bash"]
        .map(str::to_string)
        .to_vec()
}

/// `fd` duplicated without close-on-exec, for the wrapper to inherit.
fn inheritable(fd: &OwnedFd) -> OwnedFd {
    // SAFETY: dup of an fd we own; dup never sets FD_CLOEXEC.
    let raw = unsafe { libc::dup(fd.as_raw_fd()) };
    assert!(raw >= 0);
    // SAFETY: dup returned a new fd, ours alone.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

#[test]
fn a_stored_lock_outlives_daemon_and_keeper_and_the_restart_resumes_or_undoes() {
    let mut lab = Lab::new();
    let (sock, notify) = notify_socket(&lab);
    let web = lab.logging("web");
    let lock = lab.path("locks").join("web.lock");

    // Master: the lock fd reaches the store, named by lock and inode.
    let a = lab.start_under("a", &["/usr/bin/env", &notify], &web);
    let (lines, mut fds) = read_until(&sock, "FDSTORE=1");
    assert_eq!(fds.len(), 1, "{lines:?}");
    let stored = fds.pop().unwrap();
    let ino = std::fs::metadata(&lock).unwrap().ino();
    assert_eq!(
        File::from(stored.try_clone().unwrap())
            .metadata()
            .unwrap()
            .ino(),
        ino
    );
    let name = field(&lines, "FDNAME=").to_string();
    assert_eq!(name, format!("lock.web.{ino}"));
    assert!(lines.iter().any(|l| l == "FDPOLL=0"), "{lines:?}");
    lab.daemons[a].wait_state("web", "master");

    // Daemon and keeper killed together: the store's copy keeps the lock.
    kill_both(&mut lab, a);
    assert!(!free(&lock), "the lock went with daemon and keeper");
    assert_eq!(lab.count("a release web"), 0);

    // The restart gets the fd back and resumes as master: acquire steps
    // again (idempotent), the lock never free in between.
    // (FDSTORE=0: systemd 254+ saying the store takes no fd; only warned
    // about, the stand-in keeps them anyway.)
    let pass = inheritable(&stored);
    let wrapper = listen_wrapper(pass.as_raw_fd(), &name);
    let mut w: Vec<&str> = vec!["/usr/bin/env", &notify, "FDSTORE=0"];
    w.extend(wrapper.iter().map(String::as_str));
    let b = lab.start_under("a", &w, &web);
    drop(pass);
    lab.daemons[b].wait_state("web", "master");
    let log = lab.daemons[b].log();
    assert!(log.contains("resuming as its holder"), "{log}");
    assert!(log.contains("raise FileDescriptorStoreMax="), "{log}");
    assert_eq!(lab.count("a acquire web"), 2);
    // Stored again under the same name (systemd keeps one copy).
    let (lines, _) = read_until(&sock, "FDSTORE=1");
    assert_eq!(field(&lines, "FDNAME="), name);

    // A stop releases: unlocked (for the store's copy too), then removed.
    lab.daemons[b].signal(Signal::SIGTERM);
    let (lines, _) = read_until(&sock, "FDSTOREREMOVE=1");
    assert_eq!(field(&lines, "FDNAME="), name);
    assert_eq!(lab.daemons[b].wait_exit(), Some(0));
    assert!(free(&lock), "released although the store kept its fd");
    assert_eq!(lab.count("a release web"), 1);
    drop(stored);

    // Master again, killed; then restarted with "web" gone from the config:
    // its release steps run (from the applied record) before the stored
    // lock is let go and removed from the store.
    let c = lab.start_under("a", &["/usr/bin/env", &notify], &web);
    let (lines, mut fds) = read_until(&sock, "FDSTORE=1");
    let stored = fds.pop().unwrap();
    let name = field(&lines, "FDNAME=").to_string();
    lab.daemons[c].wait_state("web", "master");
    kill_both(&mut lab, c);
    assert!(!free(&lock));
    let record = lab.path("a/run/applied/web");
    assert!(record.exists(), "the killed master's applied record");
    let pass = inheritable(&stored);
    let wrapper = listen_wrapper(pass.as_raw_fd(), &name);
    let mut w: Vec<&str> = vec!["/usr/bin/env", &notify];
    w.extend(wrapper.iter().map(String::as_str));
    let d = lab.start_under("a", &w, "");
    drop(pass);
    let (lines, _) = read_until(&sock, "FDSTOREREMOVE=1");
    assert_eq!(field(&lines, "FDNAME="), name);
    assert_eq!(lab.count("a release web"), 2, "{}", lab.daemons[d].log());
    assert!(!record.exists(), "undone, so the record is gone");
    assert!(free(&lock), "let go although the store kept its fd");
    drop(stored);
    lab.daemons[d].signal(Signal::SIGTERM);
    assert_eq!(lab.daemons[d].wait_exit(), Some(0));
}
