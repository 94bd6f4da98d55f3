//! `[[resource.action]]` tables → `ActionSpec`: which keys fit which
//! action type, defaults, bounds, and the places of programs, interfaces,
//! VIPs and units for `check`.

use super::ctx::{Ctx, at_least, at_most_a_day};
use super::defaults::*;
use super::model::{ActionType, Argv, RawAction};
use super::names::{interface_problem, parse_cidr, unit_name_problem};
use super::source::Place;
use super::spec::{ActionSpec, ExecSpec, UnitSpec, VipSpec};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use toml::Spanned;

/// One action table of `resource`; None after errors (each at its key).
/// `env` is the resource's `env`, which its exec steps get.
pub fn action(
    cx: &mut Ctx,
    a: &Spanned<RawAction>,
    resource: &str,
    env: &BTreeMap<String, String>,
) -> Option<ActionSpec> {
    let r = a.get_ref();
    let kind = *r.kind.get_ref();
    let before = cx.errors.len();
    let timeout = at_least(cx, r.timeout.as_ref(), "timeout", MIN_ACTION_TIMEOUT);
    foreign_keys(cx, r, kind);
    let spec = match kind {
        ActionType::Exec => ActionSpec::Exec(exec(cx, a, resource, env, timeout)),
        ActionType::Vip => ActionSpec::Vip(vip(cx, a, timeout)),
        ActionType::Unit => ActionSpec::Unit(unit(cx, a, timeout)),
    };
    (cx.errors.len() == before).then_some(spec)
}

/// Keys of another action type are mistakes worth naming.
fn foreign_keys(cx: &mut Ctx, r: &RawAction, kind: ActionType) {
    fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
        v.as_ref().map(|s| s.span())
    }
    use ActionType::{Exec, Unit, Vip};
    let keys = [
        ("acquire", Exec, span(&r.acquire)),
        ("release", Exec, span(&r.release)),
        ("address", Vip, span(&r.address)),
        ("interface", Vip, span(&r.interface)),
        ("announce_count", Vip, span(&r.announce_count)),
        ("announce_interval", Vip, span(&r.announce_interval)),
        ("refresh", Vip, span(&r.refresh)),
        ("track_link", Vip, span(&r.track_link)),
        ("unit", Unit, span(&r.unit)),
    ];
    let type_name = match kind {
        ActionType::Exec => "exec",
        ActionType::Vip => "vip",
        ActionType::Unit => "unit",
    };
    for (key, owner, span) in keys {
        if owner != kind
            && let Some(span) = span
        {
            cx.errors.push(cx.src.error(
                Some(span),
                format!("key `{key}` does not apply to {type_name} actions"),
            ));
        }
    }
}

fn exec(
    cx: &mut Ctx,
    a: &Spanned<RawAction>,
    resource: &str,
    env: &BTreeMap<String, String>,
    timeout: Option<Duration>,
) -> ExecSpec {
    let r = a.get_ref();
    if r.acquire.is_none() && r.release.is_none() {
        cx.err(a, "exec action needs `acquire`, `release` or both");
    }
    for (key, argv) in [("acquire", &r.acquire), ("release", &r.release)] {
        if let Some(argv) = argv {
            cx.program(resource, key, key, argv);
        }
    }
    let argv = |x: &Option<Spanned<Argv>>| x.as_ref().map(|s| s.get_ref().0.clone());
    ExecSpec {
        acquire: argv(&r.acquire),
        release: argv(&r.release),
        timeout: timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
        env: env.clone(),
    }
}

fn vip(cx: &mut Ctx, a: &Spanned<RawAction>, timeout: Option<Duration>) -> VipSpec {
    let r = a.get_ref();
    let (address, prefix_len) = cx
        .required(
            a,
            &r.address,
            "vip action needs `address`, like \"198.51.100.10/24\"",
        )
        .and_then(|s| {
            parse_cidr(s.get_ref())
                .map_err(|e| cx.err(s, format!("key `address`: {e}")))
                .ok()
        })
        .unwrap_or((IpAddr::from([0, 0, 0, 0]), 0));
    let interface = match cx.required(
        a,
        &r.interface,
        "vip action needs `interface`, like \"eth0\"",
    ) {
        None => String::new(),
        Some(s) => {
            cx.judge(s, "interface", interface_problem(s.get_ref()));
            let at = cx.place(s);
            cx.interfaces.push((s.get_ref().clone(), at));
            s.get_ref().clone()
        }
    };
    let spec = VipSpec {
        address,
        prefix_len,
        interface,
        announce_count: r
            .announce_count
            .as_ref()
            .map(|c| *c.get_ref())
            .unwrap_or(DEFAULT_ANNOUNCE_COUNT),
        announce_interval: r
            .announce_interval
            .as_ref()
            .map(|d| d.get_ref().0)
            .unwrap_or(DEFAULT_ANNOUNCE_INTERVAL),
        refresh: r
            .refresh
            .as_ref()
            .map(|d| d.get_ref().0)
            .unwrap_or(DEFAULT_VIP_REFRESH),
        timeout: timeout.unwrap_or(DEFAULT_VIP_TIMEOUT),
        track_link: r.track_link.as_ref().is_none_or(|t| *t.get_ref()),
    };
    vip_bounds(cx, r);
    vip_once(cx, r, &spec);
    // The whole burst runs inside acquire, under its timeout: say so
    // now rather than fail every takeover.
    if spec.burst() >= spec.timeout {
        let at = r
            .announce_count
            .as_ref()
            .map(|s| s.span())
            .or(r.announce_interval.as_ref().map(|s| s.span()));
        cx.errors.push(cx.src.error(
            at.or(Some(a.span())),
            format!(
                "the announce burst ({} x {:?}) does not fit in the action's timeout ({:?}): lower announce_count or announce_interval, or raise timeout",
                spec.announce_count, spec.announce_interval, spec.timeout
            ),
        ));
    }
    spec
}

/// `announce_count`, `announce_interval` and `refresh` within their bounds.
fn vip_bounds(cx: &mut Ctx, r: &RawAction) {
    if let Some(c) = &r.announce_count
        && *c.get_ref() > MAX_ANNOUNCE_COUNT
    {
        cx.err(
            c,
            format!("key `announce_count`: at most {MAX_ANNOUNCE_COUNT}"),
        );
    }
    at_least(
        cx,
        r.announce_interval.as_ref(),
        "announce_interval",
        MIN_ANNOUNCE_INTERVAL,
    );
    if let Some(f) = &r.refresh
        && !f.get_ref().0.is_zero()
        && f.get_ref().0 < MIN_VIP_REFRESH
    {
        cx.err(
            f,
            format!("key `refresh`: \"0s\" (off) or at least {MIN_VIP_REFRESH:?}"),
        );
    }
    if let Some(f) = &r.refresh {
        at_most_a_day(cx, f, "refresh");
    }
}

/// Releasing either of two actions with one VIP would remove the address
/// while the other still needs it. Any prefix length: it is the same
/// address.
fn vip_once(cx: &mut Ctx, r: &RawAction, spec: &VipSpec) {
    let (Some(addr), Some(_)) = (&r.address, &r.interface) else {
        return;
    };
    let same = |(a, i, _): &&(IpAddr, String, Place)| *a == spec.address && *i == spec.interface;
    if let Some((_, _, first)) = cx.vips.iter().find(same) {
        let first = format!("{}:{}", first.path.display(), first.pos.map_or(0, |p| p.0));
        cx.err(
            addr,
            format!(
                "key `address`: {} on {:?} is already the VIP of the action at {first}; one address, one action",
                spec.address, spec.interface
            ),
        );
    }
    let at = cx.place(addr);
    cx.vips.push((spec.address, spec.interface.clone(), at));
}

fn unit(cx: &mut Ctx, a: &Spanned<RawAction>, timeout: Option<Duration>) -> UnitSpec {
    let r = a.get_ref();
    let unit = match cx.required(
        a,
        &r.unit,
        "unit action needs `unit`, like \"nginx.service\"",
    ) {
        None => String::new(),
        Some(u) => {
            cx.judge(u, "unit", unit_name_problem(u.get_ref()));
            // A standby stops the unit whoever started it, so two
            // resources managing one unit would stop each other's.
            let at = cx.place(u);
            if let Some((_, first)) = cx.units.iter().find(|(n, _)| n == u.get_ref()) {
                let first = format!("{}:{}", first.path.display(), first.pos.map_or(0, |p| p.0));
                cx.err(
                    u,
                    format!(
                        "key `unit`: {:?} is already managed by the action at {first}; one unit, one action",
                        u.get_ref()
                    ),
                );
            }
            cx.units.push((u.get_ref().clone(), at));
            u.get_ref().clone()
        }
    };
    UnitSpec {
        unit,
        timeout: timeout.unwrap_or(DEFAULT_UNIT_TIMEOUT),
    }
}
