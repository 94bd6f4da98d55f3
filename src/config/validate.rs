//! Raw config → validated `Config`: defaults, cross-checks, and names the
//! chosen lock backend can take. Pure apart from reading the hostname
//! default: whatever needs the filesystem is `check`'s, which gets the
//! places of what it judges from here. The name rules are `names`, the
//! action tables `actions`.

use super::actions::action;
use super::alerts::notify;
use super::ctx::{Ctx, at_least, at_most_a_day, poll};
use super::defaults::*;
use super::error::ConfigError;
use super::model::{RawCheck, RawConfig, RawDropIn, RawEnv, RawLock, RawResource};
use super::names::{
    domain_problem, env_name_problem, lock_name_problem, node_name_problem, parse_listen,
    resource_name_problem,
};
use super::prefer::{cluster_nodes, preempt_delay, prefer};
use super::source::Place;
use super::source::Source;
use super::spec::{
    ActionSpec, CheckSpec, Config, DaemonConfig, FailureLimit, LockConfig, MetricsConfig,
    NotifySpec, Places, ResourceSpec,
};
use crate::lock::{Backend, Standby};
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

/// What validation made of a config: the `Config` (without the resources
/// that had errors), the places of what `check` judges, and every error.
/// Kept whole even with errors, so `load_checked` can still check the
/// programs that were written well and report all problems in one run.
pub struct Validated {
    pub config: Config,
    pub places: Places,
    pub errors: Vec<ConfigError>,
}

impl Validated {
    /// The config and its places, or every error.
    pub fn into_result(self) -> Result<(Config, Places), Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok((self.config, self.places))
        } else {
            Err(self.errors)
        }
    }
}

/// `validate_all`, as a result.
pub fn validate(
    main: &Source,
    raw: RawConfig,
    drop_ins: Vec<(Source, RawDropIn)>,
) -> Result<(Config, Places), Vec<ConfigError>> {
    validate_all(main, raw, drop_ins).into_result()
}

pub fn validate_all(
    main: &Source,
    raw: RawConfig,
    drop_ins: Vec<(Source, RawDropIn)>,
) -> Validated {
    let mut cx = Ctx {
        errors: Vec::new(),
        src: main,
        programs: Vec::new(),
        interfaces: Vec::new(),
        units: Vec::new(),
        vips: Vec::new(),
    };
    let named = raw.node.name.is_some();
    let node = node_name(&mut cx, raw.node.name);
    let (mut lock, lock_dir_at, backend_at) = lock_config(&mut cx, &raw.lock);
    let (runtime_dir, runtime_dir_at) =
        cx.abs_path("runtime_dir", raw.daemon.runtime_dir, DEFAULT_RUNTIME_DIR);
    let (state_dir, _) = cx.abs_path("state_dir", raw.daemon.state_dir, DEFAULT_STATE_DIR);
    lock.standby = standby(&mut cx, raw.lock.standby.as_ref(), lock.backend);
    let daemon = DaemonConfig {
        runtime_dir,
        state_dir,
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
    let mut all = vec![(main, &raw.resource)];
    for (src, d) in &drop_ins {
        files.push(src.path.clone());
        all.push((src, &d.resource));
    }
    let alerts: Vec<NotifySpec> = raw
        .notify
        .iter()
        .filter_map(|n| notify(&mut cx, n, ""))
        .collect();
    let cluster = cluster_nodes(&mut cx, &raw.cluster, &node, named);
    let shared = Shared {
        daemon: &daemon,
        backend: lock.backend,
        cluster: cluster.as_deref(),
        alerts: &alerts,
    };
    let resources = resources(&mut cx, all, &shared);
    let places = Places {
        lock_dir: lock_dir_at,
        backend: backend_at,
        runtime_dir: runtime_dir_at,
        programs: cx.programs,
        interfaces: cx.interfaces,
        units: cx.units,
        vips: cx.vips,
    };
    let config = Config {
        node,
        lock,
        daemon,
        metrics,
        resources,
        files,
    };
    Validated {
        config,
        places,
        errors: cx.errors,
    }
}

/// `[node] name`, or the hostname.
fn node_name(cx: &mut Ctx, name: Option<Spanned<String>>) -> String {
    match name {
        Some(n) => {
            cx.judge(&n, "name", node_name_problem(n.get_ref()));
            n.into_inner()
        }
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    }
}

/// `[lock]`, with where its `dir` and `backend` were written.
fn lock_config(cx: &mut Ctx, raw: &RawLock) -> (LockConfig, Place, Place) {
    let backend = raw
        .backend
        .as_ref()
        .map(|b| *b.get_ref())
        .unwrap_or_default();
    let backend_at = match &raw.backend {
        Some(b) => cx.place(b),
        None => cx.src.place(None),
    };
    let domain = match &raw.domain {
        Some(d) => {
            cx.judge(d, "domain", domain_problem(d.get_ref()));
            d.get_ref().clone()
        }
        None => DEFAULT_DOMAIN.into(),
    };
    let lockspace = match &raw.lockspace {
        Some(l) => {
            let problem = crate::lock::dlm::wire::check_lockspace_name(l.get_ref())
                .err()
                .map(|_| {
                    format!(
                        "lockspace names are 1 to 64 bytes without '/' or NUL, and not \"plock\"; {:?} is not one",
                        l.get_ref()
                    )
                });
            cx.judge(l, "lockspace", problem);
            l.get_ref().clone()
        }
        None => DEFAULT_DOMAIN.into(),
    };
    let (dir, lock_dir_at) = cx.abs_path("dir", raw.dir.clone(), DEFAULT_LOCK_DIR);
    let (mount, _) = cx.abs_path("mount", raw.mount.clone(), DEFAULT_MOUNT);
    let lock = LockConfig {
        backend,
        dir,
        mount,
        domain,
        // `standby`, judged after `daemon.runtime_dir` (errors in the
        // order they always came).
        standby: Standby::Poll,
        trust_filesystem: raw.trust_filesystem.as_ref().is_some_and(|t| *t.get_ref()),
        lockspace,
        allow_unfenced: raw.allow_unfenced.as_ref().is_some_and(|t| *t.get_ref()),
    };
    (lock, lock_dir_at, backend_at)
}

/// `[lock] standby`: `wait` by default on the `file` and `dlm` backends,
/// `poll` (and only that) on dlmfs.
fn standby(cx: &mut Ctx, raw: Option<&Spanned<Standby>>, backend: Backend) -> Standby {
    match (raw, backend) {
        (None, Backend::File | Backend::Dlm) => Standby::Wait,
        (None, Backend::Dlmfs) => Standby::Poll,
        (Some(s), Backend::Dlmfs) if *s.get_ref() == Standby::Wait => {
            cx.err(
                s,
                "key `standby`: \"wait\" needs the file backend; dlmfs standbys poll (a blocking dlmfs open can sleep unkillably while the DLM recovers a dead node, see docs/dlmfs.md)",
            );
            Standby::Poll
        }
        (Some(s), _) => *s.get_ref(),
    }
}

/// Every resource of the main file and the drop-ins, in order; names and
/// locks used twice, and candidate locks that are another's lock, are
/// errors at the later place.
fn resources<'a>(
    cx: &mut Ctx<'a>,
    all: Vec<(&'a Source, &Vec<Spanned<RawResource>>)>,
    shared: &Shared,
) -> Vec<ResourceSpec> {
    let mut resources = Vec::new();
    // name/lock → where first seen, to point at both places of a duplicate.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut locks: HashMap<String, String> = HashMap::new();
    for (src, list) in all {
        cx.src = src;
        for res in list {
            let here = {
                let e = src.error(Some(res.span()), "");
                format!("{}:{}", e.path.display(), e.pos.map(|p| p.0).unwrap_or(0))
            };
            // Names are counted before the resource is validated, so a
            // duplicate is reported even when the table has problems of its
            // own (check-config shows every problem in one run).
            let name_at = res.get_ref().name.as_ref();
            let duplicate = name_at.and_then(|n| {
                let first = names.insert(n.get_ref().clone(), here.clone())?;
                cx.err(
                    n,
                    format!(
                        "duplicate resource name {:?} (first defined at {first})",
                        n.get_ref()
                    ),
                );
                Some(())
            });
            let Some(spec) = resource(cx, res, shared) else {
                continue;
            };
            if duplicate.is_none()
                && let Some(first) = locks.insert(spec.lock.clone(), here)
            {
                let at = res.get_ref().lock.as_ref().or(name_at).unwrap();
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
    candidate_clashes(cx, &resources, &locks);
    resources
}

/// A candidate lock (preferred nodes) must not be another resource's lock.
/// `locks`: each lock and the "FILE:LINE" of its resource's table.
fn candidate_clashes(cx: &mut Ctx, resources: &[ResourceSpec], locks: &HashMap<String, String>) {
    for r in resources {
        for i in 0..r.prefer.len() {
            let c = r.candidate_lock(i);
            if let Some(at) = locks.get(&c) {
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
}

/// What every resource's validation reads from the daemon-wide tables.
struct Shared<'a> {
    daemon: &'a DaemonConfig,
    /// The daemon-wide `[[notify]]` tables.
    alerts: &'a [NotifySpec],
    backend: Backend,
    /// `[cluster] nodes`, if given.
    cluster: Option<&'a [String]>,
}

fn resource(cx: &mut Ctx, res: &Spanned<RawResource>, shared: &Shared) -> Option<ResourceSpec> {
    let (daemon, backend) = (shared.daemon, shared.backend);
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
    let env = env(cx, r.env.as_ref());
    let actions: Vec<ActionSpec> = r
        .action
        .iter()
        .filter_map(|a| action(cx, a, name.get_ref(), &env))
        .collect();
    let check = r
        .check
        .as_ref()
        .and_then(|c| check(cx, c, name.get_ref(), &env));
    let prefer = prefer(
        cx,
        r,
        name.get_ref(),
        lock.get_ref(),
        backend,
        shared.cluster,
    );
    let preempt_delay = preempt_delay(cx, r);
    let failures = failures(cx, r);
    let own: Vec<NotifySpec> = r
        .notify
        .iter()
        .filter_map(|n| notify(cx, n, name.get_ref()))
        .collect();
    // The daemon-wide alerts, then the resource's own; each with the
    // resource's env, as its hooks get it.
    let notify = shared
        .alerts
        .iter()
        .chain(&own)
        .cloned()
        .map(|mut n| {
            n.env = env.clone();
            n
        })
        .collect();
    (cx.errors.len() == before).then(|| ResourceSpec {
        name: name.get_ref().clone(),
        lock: lock.get_ref().clone(),
        poll_interval: poll(cx, r.poll_interval.as_ref()).unwrap_or(daemon.poll_interval),
        actions,
        check,
        prefer,
        preempt: r.preempt.as_ref().is_some_and(|p| *p.get_ref()),
        preempt_delay,
        failures,
        notify,
    })
}

/// Fail counts: `max_failures`, with `failure_window` and
/// `failure_timeout` (which mean nothing without it: an error, not a
/// silently ignored key).
fn failures(cx: &mut Ctx, r: &RawResource) -> Option<FailureLimit> {
    let window = at_least(
        cx,
        r.failure_window.as_ref(),
        "failure_window",
        MIN_FAILURE_WINDOW,
    );
    let timeout = at_least(
        cx,
        r.failure_timeout.as_ref(),
        "failure_timeout",
        MIN_FAILURE_WINDOW,
    );
    let Some(max) = &r.max_failures else {
        for (key, at) in [
            ("failure_window", &r.failure_window),
            ("failure_timeout", &r.failure_timeout),
        ] {
            if let Some(at) = at {
                cx.err(
                    at,
                    format!("key `{key}`: has no effect without `max_failures` (failed acquires that keep this node out)"),
                );
            }
        }
        return None;
    };
    let n = *max.get_ref();
    if !(1..=MAX_FAILURES).contains(&n) {
        cx.err(
            max,
            format!("key `max_failures`: must be between 1 and {MAX_FAILURES} (failed acquires within failure_window), not {n}; leave it out for no limit"),
        );
        return None;
    }
    Some(FailureLimit {
        max: n as u32,
        window: window.unwrap_or(DEFAULT_FAILURE_WINDOW),
        timeout: timeout.unwrap_or(DEFAULT_FAILURE_TIMEOUT),
    })
}

/// `env`: variables the resource's hooks and health check get on top of
/// the minimal environment (`action::exec::base_env`), names and values
/// checked here so a hook never fails to start over one.
fn env(cx: &mut Ctx, raw: Option<&Spanned<RawEnv>>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    // In the order written, for the errors (the map sorts by name).
    let mut written: Vec<_> = raw
        .map(|e| e.get_ref().iter())
        .into_iter()
        .flatten()
        .collect();
    written.sort_by_key(|(name, _)| name.span().start);
    for (name, value) in written {
        cx.judge(name, "env", env_name_problem(name.get_ref()));
        if value.get_ref().contains('\0') {
            cx.err(
                value,
                format!(
                    "key `env`: the value of {} contains a NUL byte",
                    name.get_ref()
                ),
            );
        }
        env.insert(name.get_ref().clone(), value.get_ref().clone());
    }
    env
}

/// `[resource.check]`: defaults, bounds, and the program's place for
/// `check` (runnable, and as root the ownership rule, as for hooks).
fn check(
    cx: &mut Ctx,
    c: &Spanned<RawCheck>,
    resource: &str,
    env: &BTreeMap<String, String>,
) -> Option<CheckSpec> {
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
            cx.program(resource, "check.exec", "exec", argv);
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
        env: env.clone(),
    })
}
