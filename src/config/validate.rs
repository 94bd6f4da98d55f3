//! Raw config → validated `Config`: defaults, cross-checks, and names the
//! chosen lock backend can take. Pure apart from reading the hostname
//! default: whatever needs the filesystem is `check`'s, which gets the
//! places of what it judges from here. The name rules are `names`, the
//! action tables `actions`.

use super::actions::action;
use super::ctx::{Ctx, at_least, at_most_a_day, poll};
use super::defaults::*;
use super::error::ConfigError;
use super::model::{RawCheck, RawConfig, RawDropIn, RawResource};
use super::names::{
    domain_problem, lock_name_problem, parse_listen, program_problem, resource_name_problem,
};
use super::source::Source;
use super::spec::{
    ActionSpec, CheckSpec, Config, DaemonConfig, LockConfig, MetricsConfig, Places, ProgramPlace,
    ResourceSpec,
};
use crate::lock::{Backend, Standby};
use std::collections::HashMap;
use toml::Spanned;

pub fn validate(
    main: &Source,
    raw: RawConfig,
    drop_ins: Vec<(Source, RawDropIn)>,
) -> Result<(Config, Places), Vec<ConfigError>> {
    let mut cx = Ctx {
        errors: Vec::new(),
        src: main,
        programs: Vec::new(),
        interfaces: Vec::new(),
        units: Vec::new(),
        vips: Vec::new(),
    };

    let node = match raw.node.name {
        Some(n) => {
            let v = n.get_ref().clone();
            if v.is_empty()
                || v.len() > 64
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                cx.err(
                    &n,
                    "key `name`: node names are 1 to 64 characters without spaces",
                );
            }
            v
        }
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    };

    let backend = raw
        .lock
        .backend
        .as_ref()
        .map(|b| *b.get_ref())
        .unwrap_or_default();
    let domain = match raw.lock.domain {
        Some(d) => {
            if let Some(p) = domain_problem(d.get_ref()) {
                cx.err(&d, format!("key `domain`: {p}"));
            }
            d.into_inner()
        }
        None => DEFAULT_DOMAIN.into(),
    };
    let (dir, lock_dir_at) = cx.abs_path("dir", raw.lock.dir, DEFAULT_LOCK_DIR);
    let (mount, _) = cx.abs_path("mount", raw.lock.mount, DEFAULT_MOUNT);
    let (runtime_dir, runtime_dir_at) =
        cx.abs_path("runtime_dir", raw.daemon.runtime_dir, DEFAULT_RUNTIME_DIR);
    let standby = match (&raw.lock.standby, backend) {
        (None, Backend::File) => Standby::Wait,
        (None, Backend::Dlmfs) => Standby::Poll,
        (Some(s), Backend::Dlmfs) if *s.get_ref() == Standby::Wait => {
            cx.err(
                s,
                "key `standby`: \"wait\" needs the file backend; dlmfs standbys poll (a blocking dlmfs open can sleep unkillably while the DLM recovers a dead node, see docs/dlmfs.md)",
            );
            Standby::Poll
        }
        (Some(s), _) => *s.get_ref(),
    };
    let lock = LockConfig {
        backend,
        dir,
        mount,
        domain,
        standby,
        trust_filesystem: raw
            .lock
            .trust_filesystem
            .as_ref()
            .is_some_and(|t| *t.get_ref()),
    };
    let daemon = DaemonConfig {
        runtime_dir,
        poll_interval: poll(&mut cx, raw.daemon.poll_interval.as_ref()).unwrap_or(DEFAULT_POLL),
        op_timeout: at_least(
            &mut cx,
            raw.daemon.op_timeout.as_ref(),
            "op_timeout",
            MIN_OP_TIMEOUT,
        )
        .unwrap_or(DEFAULT_OP_TIMEOUT),
    };

    let metrics = MetricsConfig {
        listen: raw
            .metrics
            .listen
            .and_then(|l| match parse_listen(l.get_ref()) {
                Ok(a) => Some(a),
                Err(e) => {
                    cx.err(&l, format!("key `metrics.listen`: {e}"));
                    None
                }
            }),
    };

    let mut files = vec![main.path.clone()];
    let mut resources = Vec::new();
    // name/lock → where first seen, to point at both places of a duplicate.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut locks: HashMap<String, String> = HashMap::new();
    let mut all = vec![(main, &raw.resource)];
    for (src, d) in &drop_ins {
        files.push(src.path.clone());
        all.push((src, &d.resource));
    }
    for (src, list) in all {
        cx.src = src;
        for res in list {
            if let Some(spec) = resource(&mut cx, res, &daemon, backend) {
                let here = {
                    let e = src.error(Some(res.span()), "");
                    format!("{}:{}", e.path.display(), e.pos.map(|p| p.0).unwrap_or(0))
                };
                let name_at = res.get_ref().name.as_ref().unwrap();
                if let Some(first) = names.insert(spec.name.clone(), here.clone()) {
                    cx.err(
                        name_at,
                        format!(
                            "duplicate resource name {:?} (first defined at {first})",
                            spec.name
                        ),
                    );
                } else if let Some(first) = locks.insert(spec.lock.clone(), here) {
                    let at = res.get_ref().lock.as_ref().unwrap_or(name_at);
                    cx.err(
                        at,
                        format!(
                            "lock {:?} is already used by the resource at {first}",
                            spec.lock
                        ),
                    );
                }
                resources.push(spec);
            }
        }
    }
    // A candidate lock (preferred nodes) must not be another resource's lock.
    for r in &resources {
        for i in 0..r.prefer.len() {
            let c = r.candidate_lock(i);
            if let Some(at) = locks.get(&c) {
                // `at` is "FILE:LINE" of that resource's table.
                let (path, line) = at.rsplit_once(':').unwrap_or((at.as_str(), ""));
                cx.errors.push(ConfigError {
                    path: path.into(),
                    pos: line.parse().ok().map(|l| (l, 1)),
                    msg: format!(
                        "lock {c:?} is also the candidate lock of resource {:?}'s preferred node {:?}: rename one",
                        r.name, r.prefer[i]
                    ),
                });
            }
        }
    }
    if cx.errors.is_empty() {
        let places = Places {
            lock_dir: lock_dir_at,
            runtime_dir: runtime_dir_at,
            programs: cx.programs,
            interfaces: cx.interfaces,
            units: cx.units,
            vips: cx.vips,
        };
        let cfg = Config {
            node,
            lock,
            daemon,
            metrics,
            resources,
            files,
        };
        Ok((cfg, places))
    } else {
        Err(cx.errors)
    }
}

fn resource(
    cx: &mut Ctx,
    res: &Spanned<RawResource>,
    daemon: &DaemonConfig,
    backend: Backend,
) -> Option<ResourceSpec> {
    let r = res.get_ref();
    let Some(name) = &r.name else {
        cx.err(res, "[[resource]] has no `name`");
        return None;
    };
    let before = cx.errors.len();
    if let Some(p) = resource_name_problem(name.get_ref()) {
        cx.err(name, format!("key `name`: {p}"));
    }
    let lock = r.lock.as_ref().unwrap_or(name);
    if let Some(p) = lock_name_problem(backend, lock.get_ref()) {
        let key = if r.lock.is_some() {
            "key `lock`"
        } else {
            "key `name` (the lock defaults to it)"
        };
        cx.err(lock, format!("{key}: {p}"));
    }
    let actions: Vec<ActionSpec> = r
        .action
        .iter()
        .filter_map(|a| action(cx, a, name.get_ref()))
        .collect();
    let check = r.check.as_ref().and_then(|c| check(cx, c, name.get_ref()));
    let prefer = prefer(cx, r, backend, lock.get_ref());
    (cx.errors.len() == before).then(|| ResourceSpec {
        name: name.get_ref().clone(),
        lock: lock.get_ref().clone(),
        poll_interval: poll(cx, r.poll_interval.as_ref()).unwrap_or(daemon.poll_interval),
        actions,
        check,
        prefer,
        preempt: r.preempt.as_ref().is_some_and(|p| *p.get_ref()),
    })
}

fn prefer(cx: &mut Ctx, r: &RawResource, backend: Backend, lock: &str) -> Vec<String> {
    let Some(list) = &r.prefer else {
        if let Some(p) = r.preempt.as_ref().filter(|p| *p.get_ref()) {
            cx.err(
                p,
                "key `preempt`: needs `prefer`, the nodes in order of preference",
            );
        }
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for n in list.get_ref() {
        let v = n.get_ref();
        if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            cx.err(
                n,
                "key `prefer`: node names are 1 to 64 characters without spaces",
            );
        } else if names.contains(v) {
            cx.err(n, format!("key `prefer`: {v:?} is listed twice"));
        }
        names.push(v.clone());
    }
    if names.is_empty() {
        cx.err(
            list,
            "key `prefer`: list at least one node name, most preferred first",
        );
    }
    // Each listed node has a candidate lock named after the lock and its
    // place: the longest must be a valid lock name too.
    let longest = format!("{lock}.c{}", names.len().saturating_sub(1));
    if let Some(p) = lock_name_problem(backend, &longest) {
        cx.err(
            list,
            format!("key `prefer`: the candidate lock {longest:?} cannot be used ({p}): shorten the lock name"),
        );
    }
    names
}

/// `[resource.check]`: defaults, bounds, and the program's place for
/// `check` (runnable, and as root the ownership rule, as for hooks).
fn check(cx: &mut Ctx, c: &Spanned<RawCheck>, resource: &str) -> Option<CheckSpec> {
    let r = c.get_ref();
    let before = cx.errors.len();
    let exec = match &r.exec {
        None => {
            cx.err(
                c,
                "[resource.check] needs `exec`, like [\"/usr/local/bin/healthy\"]",
            );
            Vec::new()
        }
        Some(argv) => {
            let program = argv.get_ref().0[0].clone();
            if let Some(p) = program_problem(&program) {
                cx.err(argv, format!("key `exec`: {p}"));
            }
            let at = cx.place(argv);
            cx.programs.push(ProgramPlace {
                resource: resource.into(),
                key: "check.exec",
                program,
                at,
            });
            argv.get_ref().0.clone()
        }
    };
    let mut count = |key: &str, v: &Option<Spanned<i64>>, default: u32| match v {
        None => default,
        Some(n) if (1..=MAX_CHECK_COUNT).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            cx.err(
                n,
                format!(
                    "key `{key}`: must be between 1 and {MAX_CHECK_COUNT} (checks in a row), not {}",
                    n.get_ref()
                ),
            );
            default
        }
    };
    let fall = count("fall", &r.fall, DEFAULT_CHECK_FALL);
    let rise = count("rise", &r.rise, DEFAULT_CHECK_RISE);
    let hold_off = match &r.hold_off {
        None => DEFAULT_CHECK_HOLD_OFF,
        Some(d) => at_most_a_day(cx, d, "hold_off").unwrap_or(DEFAULT_CHECK_HOLD_OFF),
    };
    let interval = at_least(cx, r.interval.as_ref(), "interval", MIN_CHECK_INTERVAL)
        .unwrap_or(DEFAULT_CHECK_INTERVAL);
    let timeout = at_least(cx, r.timeout.as_ref(), "timeout", MIN_CHECK_TIMEOUT)
        .unwrap_or(DEFAULT_CHECK_TIMEOUT);
    (cx.errors.len() == before).then_some(CheckSpec {
        exec,
        interval,
        timeout,
        fall,
        rise,
        hold_off,
    })
}
