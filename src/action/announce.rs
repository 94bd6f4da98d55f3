//! Telling the link that a VIP has moved here: gratuitous ARP for IPv4,
//! unsolicited neighbour advertisements for IPv6. Without them, neighbours
//! and switches keep sending to the old master until their caches expire.
//!
//! Both need only CAP_NET_RAW: an AF_PACKET socket for ARP (ARP has no
//! socket of its own), a raw ICMPv6 socket for the advertisement (the kernel
//! fills in the IPv6 header and the ICMPv6 checksum).

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Why a burst of announcements failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The socket could not be opened (`hint`: the capability it needs,
    /// when that was the cause).
    #[error("opening a socket to announce on {interface:?}: {source}{hint}")]
    Open {
        interface: String,
        source: io::Error,
        hint: &'static str,
    },
    /// One packet could not be sent.
    #[error("sending {what} on {interface:?}: {source}")]
    Send {
        what: &'static str,
        interface: String,
        source: io::Error,
    },
}

/// What announcing needs to know about the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
}

pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETH_P_ARP: u16 = 0x0806;
const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINK_ADDR: u8 = 2;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An ARP announcement (RFC 5227 §2.3): a broadcast request whose sender
/// and target addresses are both the VIP. A request rather than a reply
/// because every common stack updates its cache from either, and some
/// ignore unsolicited replies. Padded to the Ethernet minimum, because
/// virtual links such as veth do not pad for us.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target hardware address stays zero: RFC 5227 says it is ignored.
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The ICMPv6 part of an unsolicited neighbour advertisement (RFC 4861
/// §7.2.6): Override set so receivers replace the old master's address,
/// Solicited clear as required for a multicast destination, and the target
/// link-layer address option that carries our MAC. The checksum is left
/// zero for the kernel to fill in.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    p[4] = NA_FLAG_OVERRIDE;
    p[8..24].copy_from_slice(&target.octets());
    p[24] = ND_OPT_TARGET_LINK_ADDR;
    p[25] = 1; // option length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// Sends `count` announcements of `addr` on `link`, `interval` apart (the
/// first at once). Sockets are opened once per burst, not kept between
/// bursts: a burst happens on takeover and on refresh, rarely enough that
/// holding sockets (and their receive queues) open for the daemon's life
/// would cost more than it saves.
pub async fn burst(
    link: &Link,
    addr: IpAddr,
    count: u32,
    interval: Duration,
) -> Result<(), AnnounceError> {
    if count == 0 {
        return Ok(());
    }
    let sender = Sender::open(link, addr)?;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        sender.send()?;
    }
    Ok(())
}

struct Sender {
    fd: OwnedFd,
    packet: Vec<u8>,
    to: Dest,
    what: &'static str,
    name: String,
}

enum Dest {
    Link(libc::sockaddr_ll),
    Inet6(libc::sockaddr_in6),
}

impl Dest {
    fn raw(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            Dest::Link(sa) => (
                (sa as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ),
            Dest::Inet6(sa) => (
                (sa as *const libc::sockaddr_in6).cast(),
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

impl Sender {
    fn open(link: &Link, addr: IpAddr) -> Result<Sender, AnnounceError> {
        match addr {
            IpAddr::V4(ip) => Self::open_arp(link, ip),
            IpAddr::V6(ip) => Self::open_na(link, ip),
        }
        .map_err(|source| AnnounceError::Open {
            interface: link.name.clone(),
            hint: if source.raw_os_error() == Some(libc::EPERM) {
                " (needs CAP_NET_RAW)"
            } else {
                ""
            },
            source,
        })
    }

    fn open_arp(link: &Link, ip: Ipv4Addr) -> io::Result<Sender> {
        // Protocol 0: this socket only sends, so it must not receive a copy
        // of every frame on the host.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ARP.to_be();
        to.sll_ifindex = link.index as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&BROADCAST_MAC);
        Ok(Sender {
            fd,
            packet: gratuitous_arp(link.mac, ip).to_vec(),
            to: Dest::Link(to),
            what: "gratuitous ARP",
            name: link.name.clone(),
        })
    }

    fn open_na(link: &Link, ip: Ipv6Addr) -> io::Result<Sender> {
        let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
        let raw = fd.as_raw_fd();
        // Receivers drop neighbour discovery with any other hop limit
        // (RFC 4861 §7.1.2): it proves the packet was not routed.
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255i32)?;
        setsockopt(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            link.index as i32,
        )?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0i32)?;
        let mut name = [0u8; libc::IFNAMSIZ];
        let len = link.name.len().min(libc::IFNAMSIZ - 1);
        name[..len].copy_from_slice(&link.name.as_bytes()[..len]);
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name)?;
        // The VIP as source: right after a link comes up its link-local
        // address may still be tentative, leaving the kernel no source to
        // pick, while the VIP (added with nodad) is usable at once.
        bind6(raw, &sockaddr6(ip, link.index))?;
        Ok(Sender {
            fd,
            packet: unsolicited_na(link.mac, ip).to_vec(),
            to: Dest::Inet6(sockaddr6(ALL_NODES, link.index)),
            what: "neighbour advertisement",
            name: link.name.clone(),
        })
    }

    fn send(&self) -> Result<(), AnnounceError> {
        let (to, to_len) = self.to.raw();
        // SAFETY: packet and to are live for the call, with their lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                self.packet.as_ptr().cast(),
                self.packet.len(),
                0,
                to,
                to_len,
            )
        };
        if n < 0 {
            return Err(AnnounceError::Send {
                what: self.what,
                interface: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned only once it is known valid.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: T) -> io::Result<()> {
    // SAFETY: value lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind6(fd: i32, addr: &libc::sockaddr_in6) -> io::Result<()> {
    // SAFETY: addr is a live sockaddr_in6 and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd,
            (addr as *const libc::sockaddr_in6).cast(),
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Scoped to the interface: the kernel needs that for link-local and
/// multicast addresses and ignores it for global ones.
fn sockaddr6(ip: Ipv6Addr, index: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = ip.octets();
    sa.sin6_scope_id = index;
    sa
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn arp_announcement_layout() {
        let ip = Ipv4Addr::new(198, 18, 0, 10);
        let f = gratuitous_arp(MAC, ip);
        assert_eq!(&f[0..6], &BROADCAST_MAC);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &MAC, "sender MAC");
        assert_eq!(&f[28..32], &ip.octets(), "sender IP");
        assert_eq!(&f[32..38], &[0; 6], "target MAC");
        assert_eq!(&f[38..42], &ip.octets(), "target IP");
        assert!(f[42..].iter().all(|&b| b == 0), "padding");
    }

    #[test]
    fn neighbour_advertisement_layout() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let p = unsolicited_na(MAC, ip);
        assert_eq!(&p[0..4], &[136, 0, 0, 0], "type, code, checksum");
        assert_eq!(&p[4..8], &[0x20, 0, 0, 0], "only Override set");
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1], "target link-layer option, 8 bytes");
        assert_eq!(&p[26..32], &MAC);
    }

    #[tokio::test]
    async fn empty_burst_opens_nothing() {
        let link = Link {
            index: 0,
            name: "none".into(),
            mac: MAC,
        };
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10));
        let sent = burst(&link, ip, 0, Duration::ZERO).await;
        assert_eq!(sent.map_err(|e| e.to_string()), Ok(()));
    }
}
