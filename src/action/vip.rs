//! `vip` actions: a virtual IP added with netlink and announced with
//! gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6).

use super::{Ctx, Step};
use crate::config::VipSpec;

pub async fn run(spec: &VipSpec, step: Step, _ctx: &Ctx) -> Result<(), String> {
    Err(format!(
        "vip {} {}: not implemented yet",
        spec.address,
        step.as_str()
    ))
}

pub async fn announce(spec: &VipSpec) -> Result<(), String> {
    Err(format!(
        "vip {}: announce not implemented yet",
        spec.address
    ))
}
