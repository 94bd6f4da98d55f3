//! VIP failover end to end: two real `dlm-electd run` daemons, each in a
//! network namespace of its own, sharing a lock directory on the `file`
//! backend, with one resource `web` whose actions are an exec hook (logging
//! `node event resource`) and a vip action for 198.18.0.100/24 on eth0. An
//! observer in a third namespace, on the same bridge (in a fourth, "switch"
//! namespace), ARP-probes the VIP every 10 ms and records which MACs answer
//! each probe: no probe may ever be answered by both nodes, and after each
//! move the new master's MAC must answer, and the old one no longer.
//!
//! Each probe asks from a sender IP of its own (one of 64, in turn), and a
//! reply goes to the sender IP it answers, so every reply is counted against
//! the probe it answers however late it arrives: two MACs in one round means
//! both kernels held the VIP when that one request reached them.
//!
//! Like tests/keeper.rs, this runs its daemons in a `support::lab::Lab`:
//! this process is a child subreaper, so the keeper of a killed daemon
//! becomes our child, and the Lab's Drop kills and reaps every daemon,
//! keeper and hook even when a test fails. Needs root;
//! skipped otherwise.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fs;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::lab::Lab;
use support::netns::{Netns, can_run};
use support::packets::{self, ETH_P_ARP, link_addr, packet_socket};
use support::{
    WAIT, alive, assert_never_two_masters, cli, cli_ok, cmdline, wait_exit_of, wait_for,
};

const IF: &str = "eth0";
const VIP: [u8; 4] = [198, 18, 0, 100];
const VIP_TEXT: &str = "198.18.0.100";
const ROUND: Duration = Duration::from_millis(10);
/// Probes ask from 198.18.0.128 + (round % SOURCES).
const SOURCES: u64 = 64;

type Mac = [u8; 6];

fn mac_text(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---- the observer's ARP prober ----

#[derive(Debug, Clone)]
struct Round {
    /// When its request went out.
    at: Instant,
    /// Sender MACs of the ARP replies that answered it.
    macs: BTreeSet<Mac>,
}

/// Sends an ARP request for the VIP every `ROUND` from the observer and
/// records, per request, which MACs answered.
struct Prober {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    fn start(obs: &Netns, iface: &str) -> Prober {
        let mac = obs.mac(iface);
        // A socket belongs to the namespace it was created in: open it on a
        // thread inside the observer namespace, use it from any thread.
        let (fd, to) = obs.enter(|| {
            let fd = packet_socket(ETH_P_ARP);
            let to = link_addr(iface, ETH_P_ARP);
            packets::bind(&fd, &to);
            (fd, to)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || probe_loop(fd, to, mac, &stop, &rounds))
        };
        Prober {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    /// Completed rounds whose request went out at or after `since`.
    fn rounds_since(&self, since: Instant) -> Vec<Round> {
        let now = Instant::now();
        self.rounds
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.at >= since && r.at + ROUND <= now)
            .cloned()
            .collect()
    }

    /// Waits for a round after `since` answered by `mac` alone.
    fn wait_answered_by(&self, since: Instant, mac: &Mac, what: &str) {
        wait_for(WAIT, &format!("the VIP answered by {what} alone"), || {
            self.rounds_since(since)
                .iter()
                .any(|r| r.macs.len() == 1 && r.macs.contains(mac))
                .then_some(())
        });
    }

    /// Rounds answered by more than one MAC, with their times since `t0`.
    fn conflicts(&self, t0: Instant) -> Vec<(Duration, Vec<String>)> {
        self.rounds_since(t0)
            .into_iter()
            .filter(|r| r.macs.len() > 1)
            .map(|r| (r.at - t0, r.macs.iter().map(mac_text).collect()))
            .collect()
    }

    fn assert_never_two_macs(&self, t0: Instant) {
        let all = self.rounds_since(t0);
        let answered = all.iter().filter(|r| !r.macs.is_empty()).count();
        assert!(
            answered > 0,
            "no probe was ever answered: the prober is broken"
        );
        let by = |m: &Mac| all.iter().filter(|r| r.macs.contains(m)).count();
        let macs: BTreeSet<Mac> = all.iter().flat_map(|r| r.macs.clone()).collect();
        eprintln!(
            "{} probe rounds, {answered} answered: {:?}",
            all.len(),
            macs.iter()
                .map(|m| format!("{} x{}", mac_text(m), by(m)))
                .collect::<Vec<_>>()
        );
        let conflicts = self.conflicts(t0);
        assert!(
            conflicts.is_empty(),
            "{} of {} probe rounds were answered by two MACs: {conflicts:?}",
            conflicts.len(),
            all.len()
        );
    }

    fn assert_not_answered_by(&self, since: Instant, mac: &Mac, what: &str) {
        let bad: Vec<Duration> = self
            .rounds_since(since)
            .iter()
            .filter(|r| r.macs.contains(mac))
            .map(|r| r.at - since)
            .collect();
        assert!(
            bad.is_empty(),
            "{what} ({}) still answered for the VIP at {bad:?}",
            mac_text(mac)
        );
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe_loop(
    fd: OwnedFd,
    to: libc::sockaddr_ll,
    mac: Mac,
    stop: &AtomicBool,
    rounds: &Mutex<Vec<Round>>,
) {
    let mut buf = [0u8; 2048];
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        let src = [198, 18, 0, 128 + (k % SOURCES) as u8];
        rounds.lock().unwrap().push(Round {
            at,
            macs: BTreeSet::new(),
        });
        packets::send(&fd, &arp_request(mac, src, VIP), &to, "ARP probe");
        let end = at + ROUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: left.as_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd and ts are live for the call.
            let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if rc <= 0 {
                continue;
            }
            while let Some(f) = packets::recv(&fd, &mut buf, libc::MSG_DONTWAIT) {
                if let Some((sender, round)) = reply_to(f, mac, k)
                    && let Some(r) = rounds.lock().unwrap().get_mut(round as usize)
                {
                    r.macs.insert(sender);
                }
            }
        }
        k += 1;
    }
}

/// An ARP request from `mac`/`src` for `target`, padded to 60 bytes.
fn arp_request(mac: Mac, src: [u8; 4], target: [u8; 4]) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&src);
    f[38..42].copy_from_slice(&target);
    f
}

/// If `f` is an ARP reply for the VIP to one of our probes: the replier's
/// MAC and the round it answers (the latest up to `current` that asked from
/// the address the reply is sent to).
fn reply_to(f: &[u8], mac: Mac, current: u64) -> Option<(Mac, u64)> {
    if f.len() < 42
        || f[12..14] != ETH_P_ARP.to_be_bytes()
        || f[14..22] != [0, 1, 8, 0, 6, 4, 0, 2]
        || f[28..32] != VIP
        || f[32..38] != mac
        || f[38..41] != [198, 18, 0]
        || !(128..128 + SOURCES).contains(&u64::from(f[41]))
    {
        return None;
    }
    let slot = u64::from(f[41]) - 128;
    let round = current.checked_sub((current + SOURCES - slot) % SOURCES)?;
    Some((f[22..28].try_into().unwrap(), round))
}

// ---- the lab ----

/// The daemons (a `Lab`, which it derefs to); the two nodes' namespaces,
/// the observer's, and the switch joining them; the prober. Fields drop in
/// order: the `Lab` kills and reaps every daemon and keeper (and their
/// hooks, by session), then the prober stops, then the namespaces go.
struct VipLab {
    lab: Lab,
    prober: Option<Prober>,
    /// a, b, observer.
    nodes: Vec<Netns>,
    switch: Netns,
    t0: Instant,
}

impl Deref for VipLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for VipLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

const A: usize = 0;
const B: usize = 1;
const OBS: usize = 2;

impl VipLab {
    fn new() -> VipLab {
        let lab = Lab::new();
        let switch = Netns::new("sw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for (tag, host) in [("a", 1), ("b", 2), ("obs", 3)] {
            let ns = Netns::new(tag);
            let port = format!("p-{tag}");
            ns.ip(&[
                "link",
                "add",
                IF,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &switch.name,
            ]);
            switch.ip(&["link", "set", &port, "master", "br0", "up"]);
            ns.ip(&["addr", "add", &format!("198.18.0.{host}/24"), "dev", IF]);
            ns.ip(&["link", "set", IF, "up"]);
            ns.ip(&["link", "set", "lo", "up"]);
            nodes.push(ns);
        }
        let mut lab = VipLab {
            lab,
            prober: None,
            nodes,
            switch,
            t0: Instant::now(),
        };
        lab.prober = Some(Prober::start(&lab.nodes[OBS], IF));
        lab
    }

    fn prober(&self) -> &Prober {
        self.prober.as_ref().unwrap()
    }

    fn mac(&self, node: usize) -> Mac {
        self.nodes[node].mac(IF)
    }

    /// Whether node `node`'s namespace has the VIP, per `ip -j addr`.
    fn has_vip(&self, node: usize) -> bool {
        self.nodes[node]
            .addresses(IF)
            .iter()
            .any(|a| a["local"].as_str() == Some(VIP_TEXT))
    }

    /// The nodes (a = 0, b = 1) whose namespace has the VIP.
    fn vip_holders(&self) -> Vec<usize> {
        [A, B].into_iter().filter(|&n| self.has_vip(n)).collect()
    }

    fn assert_sole_holder(&self, node: usize) {
        assert_eq!(
            self.vip_holders(),
            vec![node],
            "exactly one namespace should have the VIP\n{:?}",
            self.events()
        );
        assert!(!self.has_vip(OBS));
    }

    /// Starts the daemon of node `node` (a or b) in its namespace and
    /// returns its index in `daemons` once its keeper runs.
    fn start(&mut self, node: usize) -> usize {
        self.start_with(node, "")
    }

    /// `start`, with `vip_keys` added to the vip action.
    fn start_with(&mut self, node: usize, vip_keys: &str) -> usize {
        let name = ["a", "b"][node];
        // The hook first and the VIP second: acquiring logs before the VIP
        // goes up, releasing logs after it came down.
        let resources = format!(
            r#"{}
[[resource.action]]
type = "vip"
address = "{VIP_TEXT}/24"
interface = "{IF}"
announce_count = 3
announce_interval = "50ms"
{vip_keys}
"#,
            self.logging("web")
        );
        // `ip netns exec` execs the command itself: the child is the daemon.
        let wrapper = ["ip", "netns", "exec", &self.nodes[node].name];
        let i = self.lab.start_under(name, &wrapper, &resources);
        let daemon = self.daemons[i].pid().as_raw();
        self.lab.keeper(i);
        assert!(
            cmdline(daemon).contains(" run --config "),
            "pid {daemon} should be the daemon: {}",
            cmdline(daemon)
        );
        i
    }

    /// A lab with a master of web (its VIP answering the observer) and b
    /// standing by, and their indexes in `daemons`; None (the test is
    /// skipped) when `test` cannot create namespaces here.
    fn master_and_standby(test: &str) -> Option<(VipLab, usize, usize)> {
        if !can_run(test) {
            return None;
        }
        let mut lab = VipLab::new();
        let a = lab.start(A);
        lab.daemons[a].wait_state("web", "master");
        let b = lab.start(B);
        lab.daemons[b].wait_state("web", "standby");
        // b never applied web, so its startup undoes nothing (a holds it).
        assert_eq!(lab.count("b release web"), 0, "{:?}", lab.events());
        lab.assert_sole_holder(A);
        lab.prober()
            .wait_answered_by(Instant::now(), &lab.mac(A), "a");
        Some((lab, a, b))
    }

    /// After a move to `to` (whose daemon reports master): exactly its
    /// namespace has the VIP, the observer gets answers from its MAC, and
    /// from then on none from the old master's.
    fn assert_moved(&self, from: usize, to: usize) {
        let settled = Instant::now();
        self.assert_sole_holder(to);
        let names = ["a", "b"];
        self.prober()
            .wait_answered_by(settled, &self.mac(to), names[to]);
        self.prober()
            .assert_not_answered_by(settled, &self.mac(from), names[from]);
    }

    /// No two nodes were ever master of web by the event log, and no probe
    /// was ever answered by two MACs.
    fn assert_never_two(&self) {
        assert_never_two_masters(&self.events());
        self.prober().assert_never_two_macs(self.t0);
    }
}

// ---- the tests ----

/// Link tracking (on by default): the master's link loses carrier (its
/// switch port goes down), so it gives the VIP up and b takes over; with
/// the carrier back a competes again (and gets it once b releases).
#[test]
fn a_master_whose_link_loses_carrier_hands_the_vip_over_and_competes_again() {
    let Some((lab, a, b)) = VipLab::master_and_standby("link tracking") else {
        return;
    };
    lab.switch.ip(&["link", "set", "p-a", "down"]);
    lab.daemons[b].wait_state("web", "master");
    lab.daemons[a].wait_state("web", "standby");
    lab.assert_sole_holder(B);
    lab.assert_order("a release web", "b acquire web");
    let err = lab.daemons[a].last_error("web").unwrap_or_default();
    assert!(err.contains("interface eth0 has no carrier"), "{err}");
    lab.switch.ip(&["link", "set", "p-a", "up"]);
    lab.daemons[a].wait_log("no tracked link is down any more");
    cli_ok(
        &lab.daemons[b].config,
        &["release", "web", "--hold-off", "1m"],
    );
    lab.daemons[a].wait_state("web", "master");
    lab.assert_moved(B, A);
    lab.assert_never_two();
}

/// `track_link = false`: the master keeps the VIP through a carrier loss.
#[test]
fn without_link_tracking_a_master_keeps_the_vip_through_a_carrier_loss() {
    if !can_run("track_link = false") {
        return;
    }
    let mut lab = VipLab::new();
    let a = lab.start_with(A, "track_link = false");
    lab.daemons[a].wait_state("web", "master");
    let b = lab.start_with(B, "track_link = false");
    lab.daemons[b].wait_state("web", "standby");
    lab.switch.ip(&["link", "set", "p-a", "down"]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        assert_eq!(lab.daemons[a].state("web").as_deref(), Some("master"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.vip_holders(), vec![A]);
}

/// Planned switchover both ways: `release web --hold-off 2s` on a moves
/// the VIP to b, then the same on b moves it back once a's hold-off is
/// over. No probe is ever answered by both.
#[test]
fn release_moves_the_vip_and_back_without_two_answers() {
    let Some((lab, a, b)) =
        VipLab::master_and_standby("release_moves_the_vip_and_back_without_two_answers")
    else {
        return;
    };
    for (from, to, d_from, d_to) in [(A, B, a, b), (B, A, b, a)] {
        cli_ok(
            &lab.daemons[d_from].config,
            &["release", "web", "--hold-off", "2s"],
        );
        // The new master's hold-off (from the move before) may still run:
        // its daemon takes over once that is over.
        lab.daemons[d_to].wait_state("web", "master");
        lab.assert_moved(from, to);
        lab.daemons[d_from].wait_state("web", "standby");
    }
    lab.assert_never_two();
}

/// SIGTERM of the master: it releases (VIP down) before unlocking, exits
/// 0, and b takes over.
#[test]
fn sigterm_of_master_moves_the_vip_without_two_answers() {
    let Some((mut lab, a, b)) =
        VipLab::master_and_standby("sigterm_of_master_moves_the_vip_without_two_answers")
    else {
        return;
    };
    lab.daemons[a].stop();
    lab.daemons[b].wait_state("web", "master");
    lab.assert_moved(A, B);
    lab.assert_never_two();
}

/// SIGKILL of the master daemon: its lock keeper (still in a's namespace)
/// removes the VIP before it lets the lock go, so b's takeover never
/// overlaps with a answering.
#[test]
fn sigkill_of_master_moves_the_vip_via_its_keeper_without_two_answers() {
    let Some((mut lab, a, b)) = VipLab::master_and_standby(
        "sigkill_of_master_moves_the_vip_via_its_keeper_without_two_answers",
    ) else {
        return;
    };
    let keeper = lab.daemons[a].keeper;
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    lab.daemons[b].wait_state("web", "master");
    lab.assert_moved(A, B);
    assert_eq!(
        wait_exit_of(keeper, "a's keeper to exit"),
        Some(0),
        "{}",
        lab.daemons[a].log()
    );
    assert_eq!(lab.count("a release web"), 1, "{:?}", lab.events());
    lab.assert_never_two();
}

/// Daemon and keeper killed together (systemd's final SIGKILL): the kernel
/// drops the lock with the VIP still up on a, and b takes over, so both
/// answer for a while (which the prober must see: it shows the check in
/// the other tests can fail). Restarting a finds the lock busy, and its
/// startup reconcile removes the leftover VIP.
#[test]
fn restart_after_crash_removes_the_leftover_vip() {
    let Some((mut lab, a, b)) =
        VipLab::master_and_standby("restart_after_crash_removes_the_leftover_vip")
    else {
        return;
    };
    let keeper = lab.daemons[a].keeper;
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    lab.daemons[a].signal(Signal::SIGKILL);
    lab.daemons[a].wait_exit();
    // Reaped by its daemon if it noticed first, else reparented to us.
    wait_for(WAIT, "a's keeper to die", || {
        match waitpid(Pid::from_raw(keeper), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(st) => {
                assert!(
                    matches!(st, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
                    "{st:?}"
                );
                Some(())
            }
            Err(_) => (!alive(keeper)).then_some(()),
        }
    });
    lab.daemons[b].wait_state("web", "master");
    assert_eq!(lab.vip_holders(), vec![A, B], "a's VIP is left behind");
    assert_eq!(lab.count("a release web"), 0, "{:?}", lab.events());
    let t = Instant::now();
    let both = wait_for(WAIT, "a probe answered by both a and b", || {
        let c = lab.prober().conflicts(t);
        (!c.is_empty()).then_some(c)
    });
    eprintln!("while both hold the VIP: {both:?}");

    let a2 = lab.start(A);
    // Its startup reconcile: release actions (VIP down, then the log line).
    wait_for(WAIT, "a's startup release", || {
        (lab.count("a release web") == 1).then_some(())
    });
    lab.daemons[a2].wait_state("web", "standby");
    lab.assert_moved(A, B);
    assert_eq!(lab.daemons[b].state("web").as_deref(), Some("master"));
    assert_eq!(lab.count("b acquire web"), 1, "{:?}", lab.events());
}

/// config/vip-failover.toml is valid as shipped (as root, copied to a
/// root-owned directory, mode 0644, so the security check passes).
#[test]
fn vip_failover_example_config_is_valid() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vip-failover.toml");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dlm-electd.toml");
    let mut text = fs::read_to_string(&src).unwrap();
    if !Path::new("/usr/bin/systemctl").exists() {
        // The program check needs it to exist; a host without systemd
        // still checks everything else.
        eprintln!("no /usr/bin/systemctl here: checking with /bin/true in its place");
        text = text.replace("/usr/bin/systemctl", "/bin/true");
    }
    fs::write(&cfg, text).unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli(&cfg, &["check-config"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok, 1 resource(s)"), "{stdout}");
    assert!(stdout.contains("dlmfs backend"), "{stdout}");
}
