//! The config checks that ask the running system over netlink or D-Bus,
//! on top of `config::load_checked`'s filesystem checks: a VIP already on
//! its interface without dlm-electd's mark (the node's own), and a managed
//! systemd unit that is enabled, masked or not installed (skipped when no
//! service manager answers). Warnings only. Apart from `config` so that
//! `config` stays data and filesystem checks and imports neither `action`
//! nor `systemd`; run by `check-config`, `run`, `cleanup`, the workload
//! commands (through `commands`) and the daemon's reload, as before.

use crate::config::check::LockUse;
use crate::config::{self, ConfigError, ConfigErrors, Loaded, Place};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// `config::load_checked`, with the units' and VIPs' warnings.
pub fn load_checked(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_checked_as(path, LockUse::Take)
}

/// `config::load_checked_as`, with the units' and VIPs' warnings (after
/// the others, in that order).
pub fn load_checked_as(path: &Path, uses: LockUse) -> Result<Loaded, ConfigErrors> {
    let mut loaded = config::load_checked_as(path, uses)?;
    loaded.warnings.extend(unit_warnings(&loaded.places.units));
    loaded.warnings.extend(vip_warnings(&loaded.places.vips));
    Ok(loaded)
}

/// How long check-config waits for netlink's answer about one VIP.
const VIP_CHECK_LIMIT: Duration = Duration::from_secs(3);

/// VIPs already on their interface without dlm-electd's mark: the node's
/// own address, which every takeover here would refuse (see `action::vip`).
/// Asked on a thread of its own, with its own runtime: this also runs from
/// the daemon's reload, inside the async runtime.
fn vip_warnings(vips: &[(IpAddr, String, Place)]) -> Vec<ConfigError> {
    if vips.is_empty() {
        return Vec::new();
    }
    let vips = vips.to_vec();
    let asked = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let mut found = Vec::new();
        for (addr, iface, at) in vips {
            match rt.block_on(crate::action::vip::foreign(addr, &iface, VIP_CHECK_LIMIT)) {
                Ok(Some(prefix)) => found.push(at.error(format!(
                    "key `address`: {addr}/{prefix} is already on {iface} and was not added by \
                     dlm-electd: a VIP must be an address no node configures itself; a takeover \
                     on this node will fail"
                ))),
                Ok(None) => {}
                Err(e) => tracing::debug!("not checking whether {addr} is on {iface}: {e}"),
            }
        }
        Some(found)
    });
    asked.join().ok().flatten().unwrap_or_default()
}

/// How long check-config and startup wait for systemd's answers.
const UNIT_CHECK_LIMIT: Duration = Duration::from_secs(5);

/// Units whose state defeats the election or dooms their start. Without a
/// service manager to ask (no system bus, as in a container or a test),
/// nothing is said but a debug line.
fn unit_warnings(units: &[(String, Place)]) -> Vec<ConfigError> {
    if units.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = units.iter().map(|(u, _)| u.clone()).collect();
    let states = match crate::systemd::unit_file_states(&names, UNIT_CHECK_LIMIT) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("not checking the units' enablement: {e}");
            return Vec::new();
        }
    };
    units
        .iter()
        .zip(states)
        .filter_map(|((u, at), state)| {
            unit_state_warning(u, state.as_deref()).map(|w| at.error(format!("key `unit`: {w}")))
        })
        .collect()
}

/// What is worth a warning about a managed unit's file state (None: no
/// unit file). Pure.
pub fn unit_state_warning(unit: &str, state: Option<&str>) -> Option<String> {
    match state {
        Some("enabled" | "enabled-runtime") => Some(format!(
            "unit {unit} is enabled: it starts at boot on every node, which defeats the election; run systemctl disable {unit}"
        )),
        Some("masked" | "masked-runtime") => Some(format!(
            "unit {unit} is masked: it cannot be started on this node; run systemctl unmask {unit}"
        )),
        None => Some(format!(
            "no unit {unit} on this host (yet): it cannot be started until it is installed"
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_states_worth_a_warning() {
        let w = unit_state_warning("web.service", Some("enabled")).unwrap();
        assert_eq!(
            w,
            "unit web.service is enabled: it starts at boot on every node, which defeats the election; run systemctl disable web.service"
        );
        assert!(unit_state_warning("w.service", Some("enabled-runtime")).is_some());
        assert!(
            unit_state_warning("w.service", Some("masked"))
                .unwrap()
                .contains("systemctl unmask w.service")
        );
        assert!(
            unit_state_warning("w.service", None)
                .unwrap()
                .starts_with("no unit w.service on this host")
        );
        for quiet in ["disabled", "static", "indirect", "generated", "linked"] {
            assert_eq!(
                unit_state_warning("w.service", Some(quiet)),
                None,
                "{quiet}"
            );
        }
    }
}
