//! `vip` actions: a virtual IP added with netlink and announced with
//! gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6).
//!
//! Needs CAP_NET_ADMIN (addresses) and CAP_NET_RAW (announcements) only.
//! Every call opens its own rtnetlink connection: calls are rare (takeover,
//! release, refresh) and a private connection cannot be left in a bad state
//! by an earlier call that timed out halfway.

use super::announce::{self, AnnounceError, Link};
use super::step::Step;
use crate::config::VipSpec;
use futures::TryStreamExt;
use humantime::format_duration;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{AddressMessageBuilder, Handle};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The address protocol (IFA_PROTO, Linux 5.18+) every VIP is added with,
/// and the only thing that lets a release remove an address: the daemon
/// never removes an address it did not add (a management IP that happens
/// to equal a misconfigured VIP). The mark lives in the kernel with the
/// address, so it also recognises what a crashed run, or the other
/// instance's keeper, added. `ip addr` (iproute2 6.3+) shows `proto 0xd1` (name
/// it in /etc/iproute2/rt_addrprotos). Values 0..3 are the kernel's own.
pub const PROTO: u8 = 0xd1;

/// Why a vip step, announcement or look failed.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The announce burst cannot fit in the timeout: refused before
    /// anything changes.
    #[error(
        "announcing {count} times every {} takes {}, which does not fit in the \
         timeout of {}",
        format_duration(*interval),
        format_duration(*burst),
        format_duration(*timeout)
    )]
    BurstTooLong {
        count: u32,
        interval: Duration,
        burst: Duration,
        timeout: Duration,
    },
    /// The step (`what`) did not finish within the action's timeout.
    #[error("{what} timed out after {}", format_duration(*limit))]
    Timeout { what: &'static str, limit: Duration },
    #[error("interface {0:?} not found")]
    NoInterface(String),
    /// A refresh found the address gone: announcing it would draw its
    /// traffic here only to be dropped.
    #[error("{address} is no longer on interface {interface:?}; not announcing it")]
    Gone { address: IpAddr, interface: String },
    /// The address is on the interface without our mark: the node's own,
    /// which a takeover refuses (it would be removed at release).
    #[error(
        "{address}/{prefix_len} is already on {interface} and was not added by dlm-electd: \
         a VIP must be an address no node configures itself"
    )]
    Foreign {
        address: IpAddr,
        prefix_len: u8,
        interface: String,
    },
    /// The kernel dropped our mark (before Linux 5.18): refused, as the
    /// daemon could not tell its VIPs from addresses it must not remove.
    #[error(
        "the kernel did not keep the address protocol (IFA_PROTO, Linux 5.18+) on {0}; \
         without it dlm-electd cannot tell its VIPs from addresses it must not remove"
    )]
    NoMark(IpAddr),
    /// A delete that matched nothing (another prefix length).
    #[error(
        "{address}/{prefix_len} is still on interface {interface:?} after deleting {address}/{deleted}"
    )]
    StillThere {
        address: IpAddr,
        prefix_len: u8,
        interface: String,
        deleted: u8,
    },
    /// A netlink request failed: `what` was being done, `detail` is the
    /// kernel's answer (with the capability it needs, when that was it).
    #[error("{what}: {detail}")]
    Netlink { what: String, detail: String },
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    /// A failed acquire whose removal of the address failed as well.
    #[error("{error}; removing the address again failed too: {removal}")]
    RollbackFailed {
        error: Box<VipError>,
        removal: Box<VipError>,
    },
}

impl VipError {
    fn netlink(what: impl Into<String>, detail: String) -> VipError {
        VipError::Netlink {
            what: what.into(),
            detail,
        }
    }
}

/// Acquire: add the address marked with [`PROTO`] (present already and so
/// marked is fine: a crashed run's; present unmarked is refused), then announce it
/// `announce_count` times. Release: delete it if it carries the mark
/// (absent already is fine; present unmarked is left alone, with a warning),
/// then check it is really gone. Each is bounded by `spec.timeout`.
///
/// The whole announce burst runs inside acquire, so a successful acquire
/// means the link has been told, and nothing keeps announcing after a
/// release that follows. A burst that cannot fit in the timeout is refused
/// before anything changes (rather than cut short, which would fail every
/// takeover after adding the address).
///
/// A failed acquire removes the address again, even a marked one that was
/// there before: the caller reverts only the actions before this one, and
/// a node that failed to take over must not keep the VIP. That removal has
/// a timeout of its own, so a failed acquire can take up to twice `timeout`.
pub async fn run(spec: &VipSpec, step: Step) -> Result<(), VipError> {
    match step {
        Step::Acquire => {
            let burst = spec.burst();
            if burst >= spec.timeout {
                return Err(VipError::BurstTooLong {
                    count: spec.announce_count,
                    interval: spec.announce_interval,
                    burst,
                    timeout: spec.timeout,
                });
            }
            let added = AtomicBool::new(false);
            let acquired = bounded(spec.timeout, "adding and announcing", acquire(spec, &added));
            if let Err(e) = acquired.await {
                if !added.load(Ordering::Relaxed) {
                    return Err(e);
                }
                return match bounded(spec.timeout, "removing", release(spec)).await {
                    Ok(_) => Err(e),
                    Err(r) => Err(VipError::RollbackFailed {
                        error: Box::new(e),
                        removal: Box::new(r),
                    }),
                };
            }
            tracing::info!(
                "added {}/{} on {} and announced it {} times",
                spec.address,
                spec.prefix_len,
                spec.interface,
                spec.announce_count
            );
            Ok(())
        }
        Step::Release => {
            if bounded(spec.timeout, "removing", release(spec)).await? {
                tracing::info!("removed {} from {}", spec.address, spec.interface);
            }
            Ok(())
        }
    }
}

/// One announcement, for the periodic refresh while master. Refuses when
/// the address is no longer on the interface: advertising it would draw
/// its traffic here only to be dropped.
pub async fn announce(spec: &VipSpec) -> Result<(), VipError> {
    bounded(spec.timeout, "announcing", async {
        let nl = Netlink::open()?;
        let iface = nl
            .interface(&spec.interface)
            .await?
            .ok_or_else(|| not_found(spec))?;
        if nl.find(iface.index, spec.address).await?.is_none() {
            return Err(VipError::Gone {
                address: spec.address,
                interface: spec.interface.clone(),
            });
        }
        announce_on(&iface, spec.address, 1, Duration::ZERO).await
    })
    .await
}

/// Whether the address is on the interface (with any prefix length). An
/// interface that does not exist holds nothing, so that is `false`.
pub async fn present(spec: &VipSpec) -> Result<bool, VipError> {
    bounded(spec.timeout, "looking for the address", async {
        let nl = Netlink::open()?;
        match nl.interface(&spec.interface).await? {
            None => Ok(false),
            Some(iface) => Ok(nl.find(iface.index, spec.address).await?.is_some()),
        }
    })
    .await
}

/// The prefix length of `addr` on `interface` if it is there without our
/// mark: the node's own address, which a takeover would refuse. For
/// check-config; bounded by `limit`.
pub async fn foreign(
    addr: IpAddr,
    interface: &str,
    limit: Duration,
) -> Result<Option<u8>, VipError> {
    bounded(limit, "looking for the address", async {
        let nl = Netlink::open()?;
        let Some(iface) = nl.interface(interface).await? else {
            return Ok(None);
        };
        Ok(nl
            .find(iface.index, addr)
            .await?
            .filter(|f| f.proto != Some(PROTO))
            .map(|f| f.prefix_len))
    })
    .await
}

/// Sets `added` once the address is on, so that a failure (or timeout)
/// afterwards knows to take it off again.
async fn acquire(spec: &VipSpec, added: &AtomicBool) -> Result<(), VipError> {
    let nl = Netlink::open()?;
    let iface = nl
        .interface(&spec.interface)
        .await?
        .ok_or_else(|| not_found(spec))?;
    let new = nl.add(iface.index, spec).await?;
    added.store(true, Ordering::Relaxed);
    if new {
        // Ours for sure: removed unmarked if the kernel dropped the mark
        // (the rollback's release would leave an unmarked address).
        if nl
            .find(iface.index, spec.address)
            .await?
            .and_then(|a| a.proto)
            != Some(PROTO)
        {
            nl.delete(iface.index, spec).await?;
            return Err(VipError::NoMark(spec.address));
        }
    }
    announce_on(
        &iface,
        spec.address,
        spec.announce_count,
        spec.announce_interval,
    )
    .await
}

/// True if it removed the address, false if there was nothing of ours.
/// Releasing from an interface that is gone succeeds: the address went
/// with it, and failing would block the startup cleanup for good.
async fn release(spec: &VipSpec) -> Result<bool, VipError> {
    let nl = Netlink::open()?;
    let Some(iface) = nl.interface(&spec.interface).await? else {
        tracing::warn!(
            "interface {:?} not found; {} cannot be on it",
            spec.interface,
            spec.address
        );
        return Ok(false);
    };
    match nl.find(iface.index, spec.address).await? {
        None => return Ok(false),
        Some(found) if found.proto != Some(PROTO) => {
            // Not ours: acquire refused it, so nothing of ours is there.
            tracing::warn!(
                "{}/{} is on interface {:?} but was not added by dlm-electd; leaving it",
                spec.address,
                found.prefix_len,
                spec.interface
            );
            return Ok(false);
        }
        Some(_) => {}
    }
    nl.delete(iface.index, spec).await?;
    // A delete can "succeed" without removing it: our prefix length differs
    // from the one it was added with, so the kernel matched nothing.
    match nl.find(iface.index, spec.address).await? {
        None => Ok(true),
        Some(Found { prefix_len, .. }) => Err(VipError::StillThere {
            address: spec.address,
            prefix_len,
            interface: spec.interface.clone(),
            deleted: spec.prefix_len,
        }),
    }
}

async fn announce_on(
    iface: &Interface,
    addr: IpAddr,
    count: u32,
    interval: Duration,
) -> Result<(), VipError> {
    match &iface.link {
        Some(link) => Ok(announce::burst(link, addr, count, interval).await?),
        None => {
            // No neighbour cache to update on links without ARP/ND
            // (tunnels, loopback): the address is all there is to do.
            tracing::debug!(
                "interface {:?} has no link-layer neighbours; not announcing",
                iface.name
            );
            Ok(())
        }
    }
}

fn not_found(spec: &VipSpec) -> VipError {
    VipError::NoInterface(spec.interface.clone())
}

async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    f: impl Future<Output = Result<T, VipError>>,
) -> Result<T, VipError> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or(Err(VipError::Timeout { what, limit }))
}

struct Interface {
    index: u32,
    name: String,
    /// None when the link has no neighbours to announce to.
    link: Option<Link>,
}

impl Interface {
    fn from_message(name: &str, msg: &LinkMessage) -> Interface {
        let mac = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => None,
        });
        let resolves = !msg
            .header
            .flags
            .intersects(LinkFlags::Noarp | LinkFlags::Loopback);
        Interface {
            index: msg.header.index,
            name: name.to_owned(),
            link: mac.filter(|_| resolves).map(|mac| Link {
                index: msg.header.index,
                name: name.to_owned(),
                mac,
            }),
        }
    }
}

/// An rtnetlink connection whose background task lives as long as it does.
struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    fn open() -> Result<Netlink, VipError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| VipError::netlink("opening rtnetlink", e.to_string()))?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    async fn interface(&self, name: &str) -> Result<Option<Interface>, VipError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(Interface::from_message(name, &msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(VipError::netlink(
                format!("looking up interface {name:?}"),
                describe(e),
            )),
        }
    }

    /// Adds the address with our mark: true if it was added, false if
    /// it was there already with our mark (a crashed run's).
    async fn add(&self, index: u32, spec: &VipSpec) -> Result<bool, VipError> {
        let mut req = self
            .handle
            .address()
            .add(index, spec.address, spec.prefix_len);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(PROTO)));
        if spec.address.is_ipv6() {
            // Duplicate address detection would hold the address tentative
            // (unusable) for a second or more, and would fail it outright
            // while the old master still answers for it.
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(true),
            // Present already: a crashed run's (marked) is ours to take
            // over; anything else belongs to the node, and taking it over
            // would mean removing it at release.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                match self.find(index, spec.address).await? {
                    Some(found) if found.proto == Some(PROTO) => Ok(false),
                    Some(found) => Err(VipError::Foreign {
                        address: spec.address,
                        prefix_len: found.prefix_len,
                        interface: spec.interface.clone(),
                    }),
                    None => Err(VipError::netlink(
                        "adding the address",
                        format!("{} (and it is not there)", describe_admin(e)),
                    )),
                }
            }
            Err(e) => Err(VipError::netlink("adding the address", describe_admin(e))),
        }
    }

    async fn delete(&self, index: u32, spec: &VipSpec) -> Result<(), VipError> {
        let msg = address_message(index, spec.address, spec.prefix_len);
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    errno(&e),
                    Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(VipError::netlink("deleting the address", describe_admin(e))),
        }
    }

    /// `addr` on the interface, if it is there.
    async fn find(&self, index: u32, addr: IpAddr) -> Result<Option<Found>, VipError> {
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr);
        // Only our family: the kernel filters dumps by family itself.
        req.message_mut().header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let mut found = req.execute();
        match found.try_next().await {
            Ok(msg) => Ok(msg.map(|m| Found {
                prefix_len: m.header.prefix_len,
                proto: m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Protocol(p) => Some(u8::from(*p)),
                    _ => None,
                }),
            })),
            Err(e) => Err(VipError::netlink("listing addresses", describe(e))),
        }
    }
}

/// An address found on an interface.
struct Found {
    prefix_len: u8,
    /// IFA_PROTO: absent on addresses added without one (and on kernels
    /// before 5.18).
    proto: Option<u8>,
}

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn describe(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        e => e.to_string(),
    }
}

fn describe_admin(e: rtnetlink::Error) -> String {
    let hint = if errno(&e) == Some(libc::EPERM) {
        " (needs CAP_NET_ADMIN)"
    } else {
        ""
    };
    format!("{}{hint}", describe(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_longer_than_timeout_is_refused_up_front() {
        let e = run(&VipSpec::example(6, 200, 1000), Step::Acquire)
            .await
            .unwrap_err();
        assert!(matches!(e, VipError::BurstTooLong { .. }), "{e}");
        assert!(e.to_string().contains("does not fit in the timeout"), "{e}");
    }
}
