//! The vip action against the real kernel: addresses through netlink and
//! announcements captured off the wire, in network namespaces the tests
//! create (see support/netns.rs). Needs root; skipped otherwise.

mod support;

use dlm_electd::action::{Step, vip};
use dlm_electd::config::VipSpec;
use std::io;
use std::mem;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use support::netns::{HOST_IF, Netns, PEER_IF, Veth, can_run};
use support::packets::{self, ETH_P_ALL, link_addr, packet_socket};

fn spec(address: &str, prefix_len: u8, interface: &str) -> VipSpec {
    VipSpec {
        address: address.parse().unwrap(),
        prefix_len,
        interface: interface.into(),
        announce_count: 3,
        announce_interval: Duration::from_millis(20),
        refresh: Duration::ZERO,
        timeout: Duration::from_secs(5),
        track_link: true,
    }
}

fn run(ns: &Netns, spec: &VipSpec, step: Step) -> Result<(), String> {
    ns.block_on(|| async { vip::run(spec, step).await.map_err(|e| e.to_string()) })
}

fn present(ns: &Netns, spec: &VipSpec) -> Result<bool, String> {
    ns.block_on(|| async { vip::present(spec).await.map_err(|e| e.to_string()) })
}

async fn announce(spec: &VipSpec) -> Result<(), String> {
    vip::announce(spec).await.map_err(|e| e.to_string())
}

/// Acquires `s` on HOST_IF twice (the second finds it present), has `check`
/// look at the address as `ip` sees it, then releases it twice (the second
/// finds it absent).
fn add_and_remove_twice(ns: &Netns, s: &VipSpec, check: impl FnOnce(&serde_json::Value)) {
    let addr = s.address.to_string();
    assert_eq!(run(ns, s, Step::Acquire), Ok(()));
    assert_eq!(run(ns, s, Step::Acquire), Ok(()), "present already");
    check(&ip_sees(ns, HOST_IF, &addr).expect("added"));
    assert_eq!(present(ns, s), Ok(true));

    assert_eq!(run(ns, s, Step::Release), Ok(()));
    assert_eq!(run(ns, s, Step::Release), Ok(()), "absent already");
    assert_eq!(ip_sees(ns, HOST_IF, &addr), None);
    assert_eq!(present(ns, s), Ok(false));
}

/// The address as `ip` sees it, if it is on the interface.
fn ip_sees(ns: &Netns, iface: &str, addr: &str) -> Option<serde_json::Value> {
    ns.addresses(iface)
        .into_iter()
        .find(|a| a["local"].as_str() == Some(addr))
}

#[test]
fn ipv4_add_and_remove_are_idempotent() {
    if !can_run("ipv4_add_and_remove_are_idempotent") {
        return;
    }
    let net = Veth::new();
    let s = spec("198.18.0.10", 24, HOST_IF);
    assert_eq!(present(&net.host, &s), Ok(false));
    add_and_remove_twice(&net.host, &s, |a| {
        assert_eq!(a["prefixlen"], 24);
        assert_eq!(a["family"], "inet");
        assert_eq!(
            net.host.addresses(HOST_IF).len(),
            1 + ipv6_link_local(&net.host)
        );
    });
}

#[test]
fn ipv6_add_and_remove_are_idempotent_and_skip_dad() {
    if !can_run("ipv6_add_and_remove_are_idempotent_and_skip_dad") {
        return;
    }
    let net = Veth::new();
    let s = spec("2001:db8::10", 64, HOST_IF);
    add_and_remove_twice(&net.host, &s, |a| {
        assert_eq!(a["prefixlen"], 64);
        assert_eq!(a["nodad"], true, "{a}");
        assert!(a.get("tentative").is_none(), "usable at once: {a}");
    });
}

#[test]
fn release_removes_an_address_a_crashed_run_left() {
    if !can_run("release_removes_an_address_a_crashed_run_left") {
        return;
    }
    let net = Veth::new();
    // What a crashed instance leaves behind, for the startup cleanup: added
    // by an acquire that was never released, so it carries our mark (the
    // kernel keeps it with the address) and is ours to take over and remove.
    // (iproute2 before 6.3 cannot add an address with a protocol itself.)
    let s = spec("198.18.0.10", 24, HOST_IF);
    assert_eq!(run(&net.host, &s, Step::Acquire), Ok(()));
    assert_eq!(present(&net.host, &s), Ok(true));
    assert_eq!(run(&net.host, &s, Step::Acquire), Ok(()), "taken over");
    assert_eq!(run(&net.host, &s, Step::Release), Ok(()));
    assert_eq!(ip_sees(&net.host, HOST_IF, "198.18.0.10"), None);
}

#[test]
fn an_address_the_node_configured_is_never_taken_over_nor_removed() {
    if !can_run("an_address_the_node_configured_is_never_taken_over_nor_removed") {
        return;
    }
    let net = Veth::new();
    // The node's own (management) address, configured as a VIP by mistake.
    net.host
        .ip(&["addr", "add", "198.18.0.10/24", "dev", HOST_IF]);
    let s = spec("198.18.0.10", 24, HOST_IF);
    let e = run(&net.host, &s, Step::Acquire).unwrap_err();
    assert!(
        e.contains("198.18.0.10/24 is already on") && e.contains("was not added by dlm-electd"),
        "{e}"
    );
    assert!(ip_sees(&net.host, HOST_IF, "198.18.0.10").is_some(), "kept");
    // Release (the rollback of that acquire, a stop, the startup cleanup)
    // leaves it alone too.
    assert_eq!(run(&net.host, &s, Step::Release), Ok(()));
    let a = ip_sees(&net.host, HOST_IF, "198.18.0.10").expect("kept");
    assert_eq!(a["prefixlen"], 24);
}

#[test]
fn release_fails_when_the_address_stays() {
    if !can_run("release_fails_when_the_address_stays") {
        return;
    }
    let net = Veth::new();
    // Same address, other prefix: the kernel deletes nothing for our /24,
    // and only the check afterwards notices. (Added by us, so marked: an
    // unmarked one would be left alone before any delete.)
    assert_eq!(
        run(&net.host, &spec("198.18.0.10", 25, HOST_IF), Step::Acquire),
        Ok(())
    );
    let s = spec("198.18.0.10", 24, HOST_IF);
    let e = run(&net.host, &s, Step::Release).unwrap_err();
    assert!(e.contains("198.18.0.10/25 is still on"), "{e}");
    assert!(ip_sees(&net.host, HOST_IF, "198.18.0.10").is_some());
}

#[test]
fn failed_acquire_leaves_no_address_behind() {
    if !can_run("failed_acquire_leaves_no_address_behind") {
        return;
    }
    let net = Veth::new();
    // A down link takes the address but not the announcement.
    net.host.ip(&["link", "set", HOST_IF, "down"]);
    for (addr, prefix) in [("198.18.0.10", 24), ("2001:db8::10", 64)] {
        let s = spec(addr, prefix, HOST_IF);
        let e = run(&net.host, &s, Step::Acquire).unwrap_err();
        assert!(e.contains("sending"), "{e}");
        assert_eq!(ip_sees(&net.host, HOST_IF, addr), None, "rolled back");
    }
}

#[test]
fn missing_interface_is_named_in_the_error() {
    if !can_run("missing_interface_is_named_in_the_error") {
        return;
    }
    let ns = Netns::new("m");
    for addr in ["198.18.0.10", "2001:db8::10"] {
        let s = spec(addr, 24, "eth9");
        let e = run(&ns, &s, Step::Acquire).unwrap_err();
        assert!(e.contains(r#"interface "eth9" not found"#), "{e}");
        let e = ns.block_on(|| announce(&s)).unwrap_err();
        assert!(e.contains(r#"interface "eth9" not found"#), "{e}");
        // Nothing can be on an interface that is not there.
        assert_eq!(run(&ns, &s, Step::Release), Ok(()));
        assert_eq!(present(&ns, &s), Ok(false));
    }
}

#[test]
fn ipv4_takeover_sends_a_gratuitous_arp_burst() {
    if !can_run("ipv4_takeover_sends_a_gratuitous_arp_burst") {
        return;
    }
    let net = Veth::new();
    let mac = net.host.mac(HOST_IF);
    let vip = [198, 18, 0, 10];
    let mut s = spec("198.18.0.10", 24, HOST_IF);
    s.announce_count = 4;
    let cap = Capture::open(&net.peer, PEER_IF);

    assert_eq!(run(&net.host, &s, Step::Acquire), Ok(()));
    let arps = cap.until_marker(&net.host, HOST_IF, is_arp_from(vip));
    assert_eq!(arps.len(), 4, "one per announce_count");
    for f in &arps {
        assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], &mac, "Ethernet source");
        assert_eq!(
            &f[14..22],
            &[0, 1, 8, 0, 6, 4, 0, 1],
            "Ethernet/IPv4 request"
        );
        assert_eq!(&f[22..28], &mac, "sender MAC");
        assert_eq!(&f[28..32], &vip, "sender IP");
        assert_eq!(&f[38..42], &vip, "target IP");
    }

    // The periodic refresh: a single announcement, while we hold it...
    assert_eq!(net.host.block_on(|| announce(&s)), Ok(()));
    let arps = cap.until_marker(&net.host, HOST_IF, is_arp_from(vip));
    assert_eq!(arps.len(), 1);
    assert_eq!(&arps[0][22..28], &mac);

    // ...and none once it is gone.
    assert_eq!(run(&net.host, &s, Step::Release), Ok(()));
    let e = net.host.block_on(|| announce(&s)).unwrap_err();
    assert!(e.contains("no longer on"), "{e}");
    assert_eq!(
        cap.until_marker(&net.host, HOST_IF, is_arp_from(vip)).len(),
        0
    );
}

#[test]
fn ipv6_takeover_sends_an_unsolicited_na_burst() {
    if !can_run("ipv6_takeover_sends_an_unsolicited_na_burst") {
        return;
    }
    let net = Veth::new();
    let mac = net.host.mac(HOST_IF);
    let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let mut s = spec("2001:db8::10", 64, HOST_IF);
    s.announce_count = 5;
    let cap = Capture::open(&net.peer, PEER_IF);

    assert_eq!(run(&net.host, &s, Step::Acquire), Ok(()));
    let nas = cap.until_marker(&net.host, HOST_IF, is_na_for(vip));
    assert_eq!(nas.len(), 5, "one per announce_count");
    for f in &nas {
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "all-nodes MAC");
        assert_eq!(&f[6..12], &mac, "Ethernet source");
        let ip = &f[14..];
        assert_eq!(ip[7], 255, "hop limit");
        assert_eq!(&ip[8..24], &vip.octets(), "source is the VIP");
        assert_eq!(
            &ip[24..40],
            &"ff02::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        let icmp = &ip[40..];
        assert_eq!(icmp.len(), 32);
        assert_eq!(icmp[1], 0, "code");
        assert_eq!(
            icmp[4] & 0xe0,
            0x20,
            "Override set; Router, Solicited clear"
        );
        assert_eq!(&icmp[8..24], &vip.octets(), "target");
        assert_eq!(&icmp[24..26], &[2, 1], "target link-layer address option");
        assert_eq!(&icmp[26..32], &mac);
        assert_eq!(icmpv6_sum(ip), 0xffff, "checksum filled in and valid");
    }

    assert_eq!(net.host.block_on(|| announce(&s)), Ok(()));
    assert_eq!(
        cap.until_marker(&net.host, HOST_IF, is_na_for(vip)).len(),
        1
    );
}

#[test]
fn needs_only_net_admin_and_net_raw() {
    if !can_run("needs_only_net_admin_and_net_raw") {
        return;
    }
    let net = Veth::new();
    for (addr, prefix) in [("198.18.0.10", 24), ("2001:db8::10", 64)] {
        let s = spec(addr, prefix, HOST_IF);
        let with = |caps: &[u32], step| {
            net.host.block_on(|| {
                limit_thread_caps(caps);
                let s = &s;
                async move { vip::run(s, step).await.map_err(|e| e.to_string()) }
            })
        };
        assert_eq!(with(&[CAP_NET_ADMIN, CAP_NET_RAW], Step::Acquire), Ok(()));
        assert!(ip_sees(&net.host, HOST_IF, addr).is_some());
        assert_eq!(with(&[CAP_NET_ADMIN], Step::Release), Ok(()));
        assert_eq!(ip_sees(&net.host, HOST_IF, addr), None);

        let e = with(&[CAP_NET_ADMIN], Step::Acquire).unwrap_err();
        assert!(e.contains("needs CAP_NET_RAW"), "{e}");
        assert_eq!(ip_sees(&net.host, HOST_IF, addr), None, "rolled back");
        let e = with(&[CAP_NET_RAW], Step::Acquire).unwrap_err();
        assert!(e.contains("needs CAP_NET_ADMIN"), "{e}");
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Leaves the calling thread (only: capabilities are per thread) with
/// exactly `caps`, effective and permitted.
fn limit_thread_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mask = caps.iter().fold(0u32, |m, c| m | 1 << c);
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    data[0].effective = mask;
    data[0].permitted = mask;
    // SAFETY: header and data have the kernel's layout and outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
}

/// The number of link-local IPv6 addresses on an interface (0 or 1,
/// depending on how far its setup has got), to count the others exactly.
fn ipv6_link_local(ns: &Netns) -> usize {
    ns.addresses(HOST_IF)
        .iter()
        .filter(|a| a["scope"] == "link")
        .count()
}

fn is_arp_from(ip: [u8; 4]) -> impl Fn(&[u8]) -> bool {
    move |f| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == ip
}

fn is_na_for(target: Ipv6Addr) -> impl Fn(&[u8]) -> bool {
    move |f| {
        f.len() >= 14 + 40 + 24
            && f[12..14] == [0x86, 0xdd]
            && f[14 + 6] == 58
            && f[54] == 136
            && f[62..78] == target.octets()
    }
}

/// Ones' complement sum over the pseudo-header and the ICMPv6 message of
/// an IPv6 packet; 0xffff when its checksum is right.
fn icmpv6_sum(ip: &[u8]) -> u16 {
    let payload = &ip[40..];
    let mut data = Vec::new();
    data.extend_from_slice(&ip[8..40]);
    data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(payload);
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Every frame that reaches an interface, from the moment it is opened.
struct Capture {
    fd: OwnedFd,
}

/// IEEE "local experimental" EtherType: nothing else on the link uses it.
const ETH_P_MARKER: u16 = 0x88b5;

impl Capture {
    fn open(ns: &Netns, iface: &str) -> Capture {
        ns.enter(|| {
            // Protocol 0 until bound, so nothing from other interfaces
            // slips in before the bind.
            let fd = packet_socket(0);
            packets::bind(&fd, &link_addr(iface, ETH_P_ALL));
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            // SAFETY: tv is a live timeval and its size is passed with it.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    mem::size_of::<libc::timeval>() as u32,
                )
            };
            assert_eq!(rc, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
            Capture { fd }
        })
    }

    /// The frames matching `keep` that arrive before a marker frame, which
    /// this sends from `ns`/`iface` first. Everything the code under test
    /// sent before returning is on the link ahead of the marker, so this
    /// counts exactly without waiting for a quiet period.
    fn until_marker(&self, ns: &Netns, iface: &str, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let token = NEXT
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
        send_marker(ns, iface, token);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut kept = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            assert!(Instant::now() < deadline, "marker never arrived");
            let Some(f) = packets::recv(&self.fd, &mut buf, 0) else {
                continue;
            };
            if f.len() >= 18 && f[12..14] == ETH_P_MARKER.to_be_bytes() && f[14..18] == token {
                return kept;
            }
            if keep(f) {
                kept.push(f.to_vec());
            }
        }
    }
}

fn send_marker(ns: &Netns, iface: &str, token: [u8; 4]) {
    ns.enter(|| {
        let fd = packet_socket(0);
        let to = link_addr(iface, ETH_P_MARKER);
        let mut frame = [0u8; 60];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[12..14].copy_from_slice(&ETH_P_MARKER.to_be_bytes());
        frame[14..18].copy_from_slice(&token);
        packets::send(&fd, &frame, &to, "marker");
    })
}

/// The admin's report, end to end: a real daemon in a namespace whose
/// interface already has the VIP's address (the node's own, in real life)
/// refuses to take it over, and a stop leaves it where it was.
#[test]
fn daemon_never_removes_the_nodes_own_address() {
    if !can_run("daemon_never_removes_the_nodes_own_address") {
        return;
    }
    let net = Veth::new();
    net.host
        .ip(&["addr", "add", "198.18.0.1/24", "dev", HOST_IF]);
    let mut lab = support::lab::Lab::new();
    let resources = format!(
        "[[resource]]\nname = \"web\"\n[[resource.action]]\ntype = \"vip\"\n\
         address = \"198.18.0.1/24\"\ninterface = \"{HOST_IF}\"\n"
    );
    // `ip netns exec` execs the command itself: the child is the daemon.
    let wrapper = ["ip", "netns", "exec", net.host.name.as_str()];
    let i = lab.start_under("a", &wrapper, &resources);
    // The takeover refused (check-config's warning at load has the same
    // words, before the daemon even handles signals: wait for the state).
    lab.daemons[i].wait_state("web", "backoff");
    assert!(
        lab.daemons[i].last_error("web").is_some_and(
            |e| e.contains("198.18.0.1/24 is already on vip0 and was not added by dlm-electd")
        ),
        "{}",
        lab.daemons[i].log()
    );
    assert!(
        ip_sees(&net.host, HOST_IF, "198.18.0.1").is_some(),
        "the failed acquire kept it"
    );
    lab.daemons[i].stop();
    let log = lab.daemons[i].log();
    assert!(!log.contains("removed 198.18.0.1"), "{log}");
    let a = ip_sees(&net.host, HOST_IF, "198.18.0.1").expect("still there after stop");
    assert_eq!(a["prefixlen"], 24);
}

/// check-config, run where the VIP's address is already the node's own,
/// warns at the `address` key (and still passes: the config is valid, the
/// host is what is wrong); our own marked VIP draws no warning.
#[test]
fn check_config_warns_about_a_vip_the_node_configured() {
    if !can_run("check_config_warns_about_a_vip_the_node_configured") {
        return;
    }
    let net = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let vip = |addr: &str| {
        format!(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\n\
             address = \"{addr}/24\"\ninterface = \"{HOST_IF}\"\n"
        )
    };
    let check = |addr: &str| {
        let cfg = support::write_config(dir.path(), "a", &dir.path().join("locks"), &vip(addr));
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.host.name,
                env!("CARGO_BIN_EXE_dlm-electd"),
            ])
            .arg("check-config")
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{err}");
        (cfg, err)
    };
    net.host
        .ip(&["addr", "add", "198.18.0.1/24", "dev", HOST_IF]);
    let (cfg, err) = check("198.18.0.1");
    assert!(
        err.contains(&format!(
            "warning: {}:13:11: key `address`: 198.18.0.1/24 is already on {HOST_IF} and was not added by dlm-electd",
            cfg.display()
        )),
        "{err}"
    );
    // Ours (marked), as on the master: nothing to say.
    assert_eq!(
        run(&net.host, &spec("198.18.0.2", 24, HOST_IF), Step::Acquire),
        Ok(())
    );
    let (_, err) = check("198.18.0.2");
    assert!(!err.contains("warning"), "{err}");
}
