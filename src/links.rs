//! Link tracking: which network interfaces have carrier, kept current from
//! rtnetlink's link events (no polling), for the VIP actions that track
//! their interface (`track_link`, on by default).
//!
//! A master whose VIP's interface lost carrier (a pulled cable, a switch
//! port down, a VM's vNIC unplugged) holds a VIP nobody can reach through
//! it: the lock still says it is master, so no other node takes over. With
//! tracking, that node gives mastership up and competes for none of the
//! resources using the interface until the carrier is back (keepalived's
//! `track_interface`). "Carrier" is the kernel's IFF_LOWER_UP: the link is
//! administratively up and its lower layer (cable, peer) is there.

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::constants::RTMGRP_LINK;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Interface name → has carrier, for every interface of this network
/// namespace.
pub type Carriers = Arc<HashMap<String, bool>>;

/// A handle on the watch; cheap to clone, one per resource.
#[derive(Clone)]
pub struct Links(watch::Receiver<Carriers>);

#[derive(Debug, thiserror::Error)]
#[error("cannot watch network links: {0}")]
pub struct LinksError(String);

/// Starts the daemon's one link watch: subscribes to link events, then
/// reads every link (events that race the dump are applied after it).
pub async fn watch() -> Result<Links, LinksError> {
    let (mut conn, handle, mut events) =
        rtnetlink::new_connection().map_err(|e| LinksError(e.to_string()))?;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))
        .map_err(|e| LinksError(format!("subscribing to link events: {e}")))?;
    tokio::spawn(conn);
    let mut by_index: HashMap<u32, (String, bool)> = HashMap::new();
    let mut dump = handle.link().get().execute();
    while let Some(msg) = dump.next().await {
        let msg = msg.map_err(|e| LinksError(format!("reading links: {e}")))?;
        apply(&mut by_index, &msg, true);
    }
    let (tx, rx) = watch::channel(carriers(&by_index));
    tokio::spawn(async move {
        // Keeps the handle (and so the connection) alive with the task.
        let _handle = handle;
        while let Some((msg, _)) = events.next().await {
            let (msg, present) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => (m, true),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => (m, false),
                _ => continue,
            };
            apply(&mut by_index, &msg, present);
            let now = carriers(&by_index);
            tx.send_if_modified(|old| {
                let changed = **old != *now;
                if changed {
                    *old = now;
                }
                changed
            });
        }
        tracing::error!("link events stopped: link tracking no longer follows carrier changes");
    });
    Ok(Links(rx))
}

/// A link message: the interface (by index, so a rename replaces the old
/// name) with its carrier, or gone.
fn apply(by_index: &mut HashMap<u32, (String, bool)>, msg: &LinkMessage, present: bool) {
    let index = msg.header.index;
    let name = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    });
    match (present, name) {
        (true, Some(name)) => {
            let carrier = msg.header.flags.contains(LinkFlags::LowerUp);
            by_index.insert(index, (name, carrier));
        }
        // A change without a name: the flags of the one we know.
        (true, None) => {
            if let Some((_, c)) = by_index.get_mut(&index) {
                *c = msg.header.flags.contains(LinkFlags::LowerUp);
            }
        }
        (false, _) => {
            by_index.remove(&index);
        }
    }
}

fn carriers(by_index: &HashMap<u32, (String, bool)>) -> Carriers {
    Arc::new(by_index.values().cloned().collect())
}

impl Links {
    /// Why this node cannot serve `interfaces` now (the first without
    /// carrier, or missing), None if all have carrier.
    pub fn down(&self, interfaces: &[String]) -> Option<String> {
        down_in(&self.0.borrow(), interfaces)
    }

    /// Resolves at the next change of any carrier (never, if the watch
    /// ended).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Pure: the first of `interfaces` without carrier in `carriers`.
fn down_in(carriers: &HashMap<String, bool>, interfaces: &[String]) -> Option<String> {
    interfaces.iter().find_map(|i| match carriers.get(i) {
        Some(true) => None,
        Some(false) => Some(format!("interface {i} has no carrier")),
        None => Some(format!("interface {i} does not exist")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_interface_without_carrier_or_missing_says_why() {
        let c: HashMap<String, bool> = [("eth0".into(), true), ("eth1".into(), false)].into();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(down_in(&c, &names(&["eth0"])), None);
        assert_eq!(down_in(&c, &[]), None);
        assert_eq!(
            down_in(&c, &names(&["eth0", "eth1"])).as_deref(),
            Some("interface eth1 has no carrier")
        );
        assert_eq!(
            down_in(&c, &names(&["eth9"])).as_deref(),
            Some("interface eth9 does not exist")
        );
    }

    #[test]
    fn messages_track_carrier_by_index_through_a_rename_and_removal() {
        let msg = |index: u32, name: Option<&str>, up: bool| {
            let mut m = LinkMessage::default();
            m.header.index = index;
            if up {
                m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
            }
            if let Some(n) = name {
                m.attributes.push(LinkAttribute::IfName(n.into()));
            }
            m
        };
        let mut by = HashMap::new();
        apply(&mut by, &msg(2, Some("eth0"), true), true);
        assert_eq!(carriers(&by).get("eth0"), Some(&true));
        apply(&mut by, &msg(2, None, false), true);
        assert_eq!(carriers(&by).get("eth0"), Some(&false));
        apply(&mut by, &msg(2, Some("lan0"), true), true);
        assert_eq!(carriers(&by).get("eth0"), None, "renamed");
        assert_eq!(carriers(&by).get("lan0"), Some(&true));
        apply(&mut by, &msg(2, None, false), false);
        assert!(carriers(&by).is_empty());
    }
}
