//! The first thing a node in doubt does (see `membership`): it may have
//! been declared dead while it did not run, and another node may already
//! be master and announcing the same VIPs. Every VIP this daemon recorded
//! as applied is dropped at once, on the watcher's thread, before the
//! runners are told and start their release steps.
//!
//! This is the one place the release order is not the reverse of the
//! acquire order: the runners' steps (hooks forked one after another on a
//! busy node, units stopped) can take seconds across many resources, and a
//! VIP answering ARP on two nodes is the split brain clients see. Each
//! runner's own VIP step then finds the address gone, which is a success.

use crate::action::{Step, vip};
use crate::config::ActionSpec;
use std::path::Path;
use std::time::Duration;

/// All of them together, at most this long: the runners are told after.
const LIMIT: Duration = Duration::from_secs(1);

/// Drops every VIP in the applied records of `runtime_dir`. Runs on a
/// plain thread (the membership watcher): a runtime of its own, so it
/// waits for no task of the daemon's.
pub(super) fn drop_vips(runtime_dir: &Path) {
    let vips = recorded_vips(runtime_dir);
    if vips.is_empty() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("in doubt: cannot drop the VIPs first ({e}); the release steps will");
            return;
        }
    };
    let all = futures::future::join_all(vips.iter().map(|v| vip::run(v, Step::Release)));
    match rt.block_on(async { tokio::time::timeout(LIMIT, all).await }) {
        Err(_) => tracing::error!(
            "in doubt: dropping {} VIP(s) took over {LIMIT:?}; the release steps go on",
            vips.len()
        ),
        Ok(results) => {
            for (v, r) in vips.iter().zip(results) {
                if let Err(e) = r {
                    tracing::error!("in doubt: cannot drop {}: {e}", v.address);
                }
            }
        }
    }
}

/// The VIP steps of every readable record: one that
/// cannot be read is left for the runner's release (and `cleanup`).
fn recorded_vips(runtime_dir: &Path) -> Vec<crate::config::VipSpec> {
    crate::instance::records_in(runtime_dir)
        .into_iter()
        .filter_map(|(_, record)| record.read().ok())
        .flat_map(|applied| applied.actions)
        .filter_map(|a| match a {
            ActionSpec::Vip(v) => Some(v),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Applied, RECORDS, Record};

    #[test]
    fn the_vips_of_every_record_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORDS);
        let vip = |a: &str| {
            ActionSpec::Vip(crate::config::VipSpec {
                address: a.parse().unwrap(),
                prefix_len: 24,
                interface: "eth0".into(),
                announce_count: 1,
                announce_interval: Duration::from_millis(100),
                refresh: Duration::ZERO,
                timeout: Duration::from_secs(5),
                track_link: true,
            })
        };
        let exec = ActionSpec::Exec(crate::config::ExecSpec {
            acquire: Some(vec!["/bin/true".into()]),
            release: None,
            timeout: Duration::from_secs(5),
            env: Default::default(),
        });
        for (name, actions) in [
            ("web", vec![exec.clone(), vip("198.18.0.10")]),
            ("db", vec![exec.clone()]),
            ("two", vec![vip("198.18.0.11"), exec, vip("2001:db8::11")]),
        ] {
            let applied = Applied {
                lock: name.into(),
                actions,
            };
            Record::at(records.join(name)).mark(&applied).unwrap();
        }
        std::fs::write(records.join("damaged"), b"{").unwrap();
        let got: Vec<String> = recorded_vips(dir.path())
            .iter()
            .map(|v| v.address.to_string())
            .collect();
        assert_eq!(got, ["198.18.0.11", "2001:db8::11", "198.18.0.10"]);
        assert!(recorded_vips(&dir.path().join("none")).is_empty());
    }
}
