//! `[[notify]]` and `[[resource.notify]]` tables → `NotifySpec`: the
//! program (checked like a hook's), its timeout, the states it is for.

use super::ctx::{Ctx, at_least};
use super::defaults::*;
use super::model::RawNotify;
use super::spec::NotifySpec;
use crate::state::Status;
use std::collections::BTreeMap;
use toml::Spanned;

/// One notify table; `resource`: whose (empty for the daemon-wide ones),
/// for the program's place. None after errors, each at its key.
pub fn notify(cx: &mut Ctx, n: &Spanned<RawNotify>, resource: &str) -> Option<NotifySpec> {
    let r = n.get_ref();
    let before = cx.errors.len();
    let exec = match &r.exec {
        None => {
            cx.err(
                n,
                "[[notify]] needs `exec`, the program to run at each state change, like [\"/usr/local/bin/alert\"]",
            );
            Vec::new()
        }
        Some(argv) => {
            cx.program(resource, "notify.exec", "exec", argv);
            argv.get_ref().0.clone()
        }
    };
    let timeout = at_least(cx, r.timeout.as_ref(), "timeout", MIN_ACTION_TIMEOUT)
        .unwrap_or(DEFAULT_NOTIFY_TIMEOUT);
    let states = r.states.as_ref().map(|list| {
        let mut states = Vec::new();
        for s in list.get_ref() {
            match Status::ALL.iter().find(|st| st.as_str() == s.get_ref()) {
                None => cx.err(
                    s,
                    format!(
                        "key `states`: {:?} is no state; states are {}",
                        s.get_ref(),
                        Status::ALL.map(Status::as_str).join(", ")
                    ),
                ),
                Some(st) if states.contains(st) => cx.err(
                    s,
                    format!("key `states`: {:?} is listed twice", s.get_ref()),
                ),
                Some(st) => states.push(*st),
            }
        }
        if list.get_ref().is_empty() {
            cx.err(
                list,
                "key `states`: list at least one state, or leave the key out for every state",
            );
        }
        states
    });
    (cx.errors.len() == before).then_some(NotifySpec {
        exec,
        timeout,
        states,
        env: BTreeMap::new(),
    })
}
