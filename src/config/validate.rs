//! Raw config → validated `Config`: defaults, cross-checks, and names the
//! chosen lock backend can take. Pure apart from reading the hostname
//! default: whatever needs the filesystem is `check`'s, which gets the
//! places of what it judges from here.

use super::model::{
    ActionType, Argv, Backend, Duration0, Interval, MAX_INTERVAL, RawAction, RawCheck, RawConfig,
    RawDropIn, RawResource, Standby,
};
use super::source::{Place, Source};
use super::{
    ActionSpec, CheckSpec, Config, ConfigError, DaemonConfig, ExecSpec, LockConfig, MetricsConfig,
    Places, ProgramPlace, ResourceSpec, UnitSpec, VipSpec,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

pub const DEFAULT_LOCK_DIR: &str = "/var/lib/dlm-electd/locks";
pub const DEFAULT_MOUNT: &str = "/dlm";
pub const DEFAULT_DOMAIN: &str = "dlm-electd";
pub const DEFAULT_RUNTIME_DIR: &str = "/run/dlm-electd";
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Above o2cb's default recovery window (~60 s dead time plus recovery), so a
/// trylock that waits out a node death is "slow", not "stalled".
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(120);
/// Below these a setting only burns CPU or fails every call: typos for
/// "1s" and the like.
pub const MIN_POLL: Duration = Duration::from_millis(10);
pub const MIN_OP_TIMEOUT: Duration = Duration::from_millis(100);
pub const MIN_VIP_REFRESH: Duration = Duration::from_millis(100);
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10);
/// Each run forks a program: at "1ms" (for "1s") the daemon forked it
/// hundreds of times a second.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Below this a check, or an action step, cannot even start its program
/// reliably, so every run would fail.
pub const MIN_CHECK_TIMEOUT: Duration = Duration::from_millis(100);
pub const MIN_ACTION_TIMEOUT: Duration = Duration::from_millis(100);
/// More gratuitous ARPs than this on one takeover is a flood, not an
/// announcement.
pub const MAX_ANNOUNCE_COUNT: u32 = 100;
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_FALL: u32 = 3;
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_HOLD_OFF: Duration = Duration::from_secs(30);
/// Bounds of `fall` and `rise`: beyond 100 runs a check stops meaning
/// anything an admin would wait for.
pub const MAX_CHECK_COUNT: i64 = 100;
/// Same bound as `release --hold-off`, and as every other duration.
pub const MAX_CHECK_HOLD_OFF: Duration = MAX_INTERVAL;
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_VIP_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 5;
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);
/// Zero: no periodic re-announce.
pub const DEFAULT_VIP_REFRESH: Duration = Duration::ZERO;
/// Above systemd's default start and stop timeouts (90 s), so that systemd
/// normally judges a slow unit first and says why (result `timeout`).
pub const DEFAULT_UNIT_TIMEOUT: Duration = Duration::from_secs(120);
/// The unit types a start job makes sense for (not `.device`, `.scope`).
pub const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "target",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
];

/// Why `name` cannot be a unit action's unit, or None: a full unit name
/// (systemd does not guess the type over D-Bus), not a path, at most 255
/// bytes, and an instance rather than a template.
pub fn unit_name_problem(name: &str) -> Option<String> {
    if name.len() > 255 {
        return Some(format!(
            "unit names are at most 255 bytes, this one has {}",
            name.len()
        ));
    }
    if name.contains('/') {
        return Some(format!(
            "{name:?} is a path: write the unit's name, like \"nginx.service\""
        ));
    }
    let Some((stem, _)) = name
        .rsplit_once('.')
        .filter(|(_, s)| UNIT_SUFFIXES.contains(s))
    else {
        return Some(format!(
            "{name:?} does not end in the type of a unit that can be started: write the full name, like \"nginx.service\" (.{})",
            UNIT_SUFFIXES.join(" .")
        ));
    };
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
    {
        return Some(format!(
            "{name:?}: unit names are made of A-Z a-z 0-9 and : - _ . @ \\"
        ));
    }
    if let Some((prefix, instance)) = stem.split_once('@')
        && (prefix.is_empty() || instance.is_empty())
    {
        return Some(format!(
            "{name:?} is a template or has no name before '@': name an instance, like \"getty@tty1.service\""
        ));
    }
    None
}

/// Why a lock name cannot be used with a backend, or None if it can.
pub fn lock_name_problem(backend: Backend, name: &str) -> Option<String> {
    if name.contains('/') || name.contains('\0') {
        return Some("must not contain '/' or NUL".into());
    }
    if name.starts_with(crate::lock::WORKLOAD_PREFIX) {
        return Some(format!(
            "must not start with '{}' (reserved for workload locks, `dlm-electd run-locked`)",
            crate::lock::WORKLOAD_PREFIX
        ));
    }
    match backend {
        Backend::Dlmfs if name.is_empty() || name.len() > 31 => Some(format!(
            "dlmfs lock names are 1 to 31 bytes, {:?} has {}",
            name,
            name.len()
        )),
        Backend::Dlmfs if name.starts_with('$') => {
            Some("dlmfs lock names must not start with '$' (reserved by the DLM)".into())
        }
        Backend::File if name.is_empty() || name.len() > 250 => Some(format!(
            "lock names are 1 to 250 bytes, {:?} has {}",
            name,
            name.len()
        )),
        Backend::File if name.starts_with('.') => Some("must not start with '.'".into()),
        _ => None,
    }
}

/// Why a dlmfs domain name cannot be used, or None if it can.
pub fn domain_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 63 {
        return Some(format!(
            "dlmfs domain names are 1 to 63 bytes, {:?} has {}",
            name,
            name.len()
        ));
    }
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Some("must be a plain directory name".into());
    }
    // OCFS2 volumes use their 32-hex-digit UUID as DLM domain; sharing one
    // would tie us to that volume's heartbeat region (docs/dlmfs.md §1.6).
    if name.len() == 32 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(
            "must not be a 32-hex-digit string (that is how OCFS2 volumes name their domains)"
                .into(),
        );
    }
    None
}

fn resource_name_problem(name: &str) -> Option<String> {
    // The name also names the resource's applied record file in the
    // runtime dir, so it must be a plain file name.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    (!ok).then(|| {
        "resource names are 1 to 64 characters from A-Z a-z 0-9 - _ . : @, and not . or ..".into()
    })
}

fn interface_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    (!ok).then(|| "interface names are 1 to 15 bytes without '/', ':' or spaces".into())
}

/// Parses "ADDR/PREFIX" (or a bare address, meaning a host route).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => return Err(format!("prefix length {p:?} is not between 1 and {max}")),
        },
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!(
            "{addr} cannot be a virtual IP (unspecified, multicast or loopback)"
        ));
    }
    Ok((addr, prefix))
}

/// `metrics.listen`: an IP address and a port, nothing looked up. A host
/// name could resolve to more than one address, or to another one after a
/// DNS change, and the endpoint must listen exactly where it is written.
/// Port 0 would pick a random port no scraper could find.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = s.parse().map_err(|_| {
        format!(
            "{s:?} is not an IP address and port: write e.g. \"127.0.0.1:9477\" or \"[::1]:9477\""
        )
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "{s:?}: port 0 would pick a random port; give the one Prometheus scrapes, e.g. 9477"
        ));
    }
    Ok(addr)
}

/// Why a program path cannot be used, or None. A relative path with a `/`
/// would be looked up from the daemon's working directory, which differs
/// between a unit and a shell; a bare name is looked up in PATH, like exec.
fn program_problem(prog: &str) -> Option<String> {
    (prog.contains('/') && !prog.starts_with('/')).then(|| {
        format!(
            "{prog:?} is a relative path: write an absolute path, or a bare name to look up in PATH"
        )
    })
}

struct Ctx<'a> {
    errors: Vec<ConfigError>,
    src: &'a Source,
    programs: Vec<ProgramPlace>,
    interfaces: Vec<(String, Place)>,
    units: Vec<(String, Place)>,
    /// Each VIP's address and interface, with where its `address` is.
    vips: Vec<(IpAddr, String, Place)>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        self.errors.push(self.src.error(Some(at.span()), msg));
    }

    fn place<T>(&self, at: &Spanned<T>) -> Place {
        self.src.place(Some(at.span()))
    }

    /// The absolute path written for `key`, or `default`, with its place.
    /// Relative paths are refused: they would follow the working directory,
    /// so two starts from different directories would use different locks
    /// (or runtime dirs) and both become master.
    fn abs_path(
        &mut self,
        key: &str,
        value: Option<Spanned<PathBuf>>,
        default: &str,
    ) -> (PathBuf, Place) {
        match value {
            None => (default.into(), self.src.place(None)),
            Some(v) => {
                if !v.get_ref().is_absolute() {
                    self.err(
                        &v,
                        format!(
                            "key `{key}`: {:?} is a relative path: write an absolute one (relative paths would follow the daemon's working directory)",
                            v.get_ref()
                        ),
                    );
                }
                let place = self.place(&v);
                (v.into_inner(), place)
            }
        }
    }
}

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

/// `prefer` (node names, most preferred first) and `preempt`.
/// An interval given at `at`, if any and not below `min` (an error at the
/// key otherwise).
fn at_least(
    cx: &mut Ctx,
    at: Option<&Spanned<Interval>>,
    key: &str,
    min: Duration,
) -> Option<Duration> {
    let at = at?;
    let d = at.get_ref().0;
    if d < min {
        cx.err(
            at,
            format!("key `{key}`: {d:?} is below the {min:?} minimum (a typo for seconds?)"),
        );
    }
    Some(d)
}

/// A duration that may be zero ("off"), if not above `MAX_INTERVAL` (an
/// error at the key otherwise). The others are bounded where they are
/// parsed (`Interval`); these need the same bound, or a value like
/// "300000000000years" reaches the runner's clock arithmetic.
fn at_most_a_day(cx: &mut Ctx, at: &Spanned<Duration0>, key: &str) -> Option<Duration> {
    let d = at.get_ref().0;
    if d > MAX_INTERVAL {
        cx.err(
            at,
            format!(
                "key `{key}`: at most {}h, not {}",
                MAX_INTERVAL.as_secs() / 3600,
                humantime::format_duration(d)
            ),
        );
        return None;
    }
    Some(d)
}

fn poll(cx: &mut Ctx, at: Option<&Spanned<Interval>>) -> Option<Duration> {
    at_least(cx, at, "poll_interval", MIN_POLL)
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

fn action(cx: &mut Ctx, a: &Spanned<RawAction>, resource: &str) -> Option<ActionSpec> {
    let r = a.get_ref();
    let kind = *r.kind.get_ref();
    let before = cx.errors.len();
    let timeout = at_least(cx, r.timeout.as_ref(), "timeout", MIN_ACTION_TIMEOUT);
    // Keys of another action type are mistakes worth naming.
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
    let spec = match kind {
        ActionType::Exec => {
            if r.acquire.is_none() && r.release.is_none() {
                cx.err(a, "exec action needs `acquire`, `release` or both");
            }
            for (key, argv) in [("acquire", &r.acquire), ("release", &r.release)] {
                let Some(argv) = argv else { continue };
                let program = argv.get_ref().0[0].clone();
                if let Some(p) = program_problem(&program) {
                    cx.err(argv, format!("key `{key}`: {p}"));
                }
                let at = cx.place(argv);
                cx.programs.push(ProgramPlace {
                    resource: resource.into(),
                    key,
                    program,
                    at,
                });
            }
            let argv = |x: &Option<Spanned<Argv>>| x.as_ref().map(|s| s.get_ref().0.clone());
            ActionSpec::Exec(ExecSpec {
                acquire: argv(&r.acquire),
                release: argv(&r.release),
                timeout: timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            })
        }
        ActionType::Vip => {
            let (address, prefix_len) = match &r.address {
                None => {
                    cx.err(a, "vip action needs `address`, like \"198.51.100.10/24\"");
                    (IpAddr::from([0, 0, 0, 0]), 0)
                }
                Some(s) => parse_cidr(s.get_ref()).unwrap_or_else(|e| {
                    cx.err(s, format!("key `address`: {e}"));
                    (IpAddr::from([0, 0, 0, 0]), 0)
                }),
            };
            let interface = match &r.interface {
                None => {
                    cx.err(a, "vip action needs `interface`, like \"eth0\"");
                    String::new()
                }
                Some(s) => {
                    if let Some(p) = interface_problem(s.get_ref()) {
                        cx.err(s, format!("key `interface`: {p}"));
                    }
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
            };
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
            // Releasing either would remove the address while the other
            // still needs it. Any prefix length: it is the same address.
            if let (Some(addr), Some(_)) = (&r.address, &r.interface) {
                let same = |(a, i, _): &&(IpAddr, String, Place)| {
                    *a == spec.address && *i == spec.interface
                };
                if let Some((_, _, first)) = cx.vips.iter().find(same) {
                    let first =
                        format!("{}:{}", first.path.display(), first.pos.map_or(0, |p| p.0));
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
            ActionSpec::Vip(spec)
        }
        ActionType::Unit => {
            let unit = match &r.unit {
                None => {
                    cx.err(a, "unit action needs `unit`, like \"nginx.service\"");
                    String::new()
                }
                Some(u) => {
                    if let Some(p) = unit_name_problem(u.get_ref()) {
                        cx.err(u, format!("key `unit`: {p}"));
                    }
                    // A standby stops the unit whoever started it, so two
                    // resources managing one unit would stop each other's.
                    let at = cx.place(u);
                    if let Some((_, first)) = cx.units.iter().find(|(n, _)| n == u.get_ref()) {
                        let first =
                            format!("{}:{}", first.path.display(), first.pos.map_or(0, |p| p.0));
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
            ActionSpec::Unit(UnitSpec {
                unit,
                timeout: timeout.unwrap_or(DEFAULT_UNIT_TIMEOUT),
            })
        }
    };
    (cx.errors.len() == before).then_some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_text(text: &str) -> Result<(Config, Places), Vec<ConfigError>> {
        let src = Source::new("/etc/x.toml".into(), text.into());
        let raw = src.parse().map_err(|e| vec![e])?;
        validate(&src, raw, Vec::new())
    }

    fn errors(text: &str) -> Vec<String> {
        match validate_text(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_an_exact_address() {
        let (cfg, _) = validate_text("").unwrap();
        assert_eq!(cfg.metrics.listen, None);
        let (cfg, _) = validate_text("[metrics]\nlisten = \"127.0.0.1:9477\"\n").unwrap();
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
        let (cfg, _) = validate_text("[metrics]\nlisten = \"[::1]:9100\"\n").unwrap();
        assert_eq!(cfg.metrics.listen, Some("[::1]:9100".parse().unwrap()));
        for (bad, why) in [
            ("localhost:9477", "is not an IP address and port"),
            ("127.0.0.1", "is not an IP address and port"),
            ("127.0.0.1:0", "port 0 would pick a random port"),
            ("127.0.0.1:99999", "is not an IP address and port"),
        ] {
            let e = errors(&format!(
                "[node]\nname = \"a\"\n[metrics]\nlisten = \"{bad}\"\n"
            ));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("/etc/x.toml:4:10: key `metrics.listen`: ") && e[0].contains(why),
                "{bad}: {e:?}"
            );
        }
        let e = errors("[metrics]\nport = 9477\n");
        assert!(e[0].contains("unknown field `port`"), "{e:?}");
    }

    #[test]
    fn relative_paths_are_refused_at_their_key() {
        let e =
            errors("[lock]\ndir = \"locks\"\nmount = \"dlm\"\n[daemon]\nruntime_dir = \"run\"\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("/etc/x.toml:2:7: key `dir`: \"locks\" is a relative path"));
        assert!(e[1].starts_with("/etc/x.toml:3:9: key `mount`:"));
        assert!(e[2].starts_with("/etc/x.toml:5:15: key `runtime_dir`:"));
        assert!(validate_text("[lock]\ndir = \"/x/locks\"\n").is_ok());
    }

    #[test]
    fn relative_program_paths_are_refused() {
        let e = errors(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"bin/up\"]\n",
        );
        assert!(
            e[0].starts_with("/etc/x.toml:5:11: key `acquire`: \"bin/up\" is a relative path"),
            "{e:?}"
        );
        // A bare name is looked up in PATH, like exec does.
        assert!(validate_text("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"true\"]\n").is_ok());
    }

    #[test]
    fn places_of_dirs_programs_and_interfaces() {
        let (_, places) = validate_text(
            "[lock]\ndir = \"/l\"\n[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nrelease = [\"/bin/down\", \"x\"]\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth9\"\n",
        )
        .unwrap();
        assert_eq!(places.lock_dir.pos, Some((2, 7)));
        assert_eq!(places.runtime_dir.pos, None, "defaulted");
        assert_eq!(places.runtime_dir.path, PathBuf::from("/etc/x.toml"));
        let p = &places.programs[0];
        assert_eq!(
            (p.resource.as_str(), p.key, p.program.as_str(), p.at.pos),
            ("w", "release", "/bin/down", Some((7, 11)))
        );
        assert_eq!(places.interfaces[0].0, "eth9");
        assert_eq!(places.interfaces[0].1.pos, Some((11, 13)));
    }

    /// Reload restarts the resources whose specs differ: one that only
    /// moved in the file must compare equal.
    #[test]
    fn specs_do_not_depend_on_where_they_were_written() {
        let res = "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/up\"]\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth0\"\n";
        let (a, pa) = validate_text(res).unwrap();
        let (b, pb) = validate_text(&format!("\n\n# moved\n{res}")).unwrap();
        assert_eq!(a.resources, b.resources);
        assert_ne!(pa.programs, pb.programs);
    }

    #[test]
    fn vip_defaults_are_the_named_ones() {
        let (c, _) = validate_text("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"198.51.100.1\"\ninterface = \"eth0\"\n").unwrap();
        let ActionSpec::Vip(v) = &c.resources[0].actions[0] else {
            panic!()
        };
        assert_eq!(
            (v.announce_count, v.announce_interval, v.refresh, v.timeout),
            (
                DEFAULT_ANNOUNCE_COUNT,
                DEFAULT_ANNOUNCE_INTERVAL,
                DEFAULT_VIP_REFRESH,
                DEFAULT_VIP_TIMEOUT
            )
        );
        assert_eq!(
            (v.address.to_string(), v.prefix_len),
            ("198.51.100.1".into(), 32)
        );
    }

    /// A refresh of centuries used to pass and overflow the runner's clock
    /// when the node became master (issue #19, item 3).
    #[test]
    fn vip_refresh_is_at_most_a_day() {
        let vip = |refresh: &str| {
            format!(
                "{}refresh = \"{refresh}\"\n",
                vip_res("w", "198.51.100.1", "eth0")
            )
        };
        let e = errors(&vip("300000000000years"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:7:11: key `refresh`: at most 24h, not "),
            "{e:?}"
        );
        let e = errors(&vip("25h"));
        assert_eq!(
            e,
            ["/etc/x.toml:7:11: key `refresh`: at most 24h, not 1day 1h"]
        );
        let (c, _) = validate_text(&vip("24h")).unwrap();
        let ActionSpec::Vip(v) = &c.resources[0].actions[0] else {
            panic!()
        };
        assert_eq!(v.refresh, MAX_INTERVAL);
        assert!(validate_text(&vip("0s")).is_ok(), "0s is off");
    }

    /// Every action type's `timeout` has the same floor.
    #[test]
    fn action_timeouts_have_a_floor() {
        for (kind, keys) in [
            ("exec", "acquire = [\"/bin/true\"]"),
            (
                "vip",
                "address = \"198.51.100.1\"\ninterface = \"eth0\"\nannounce_count = 0",
            ),
            ("unit", "unit = \"a.service\""),
        ] {
            let res = format!(
                "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"{kind}\"\ntimeout = \"1ms\"\n{keys}\n"
            );
            let e = errors(&res);
            assert_eq!(
                e,
                [
                    "/etc/x.toml:5:11: key `timeout`: 1ms is below the 100ms minimum (a typo for seconds?)"
                ],
                "{kind}"
            );
            assert!(
                validate_text(&res.replace("1ms", "100ms")).is_ok(),
                "{kind}"
            );
        }
    }

    #[test]
    fn unit_names() {
        for ok in [
            "nginx.service",
            "getty@tty1.service",
            "a-b_c.d:e.timer",
            "var-lib\\x2dx.mount",
            "multi-user.target",
        ] {
            assert_eq!(unit_name_problem(ok), None, "{ok}");
        }
        let long = format!("{}.service", "a".repeat(248));
        assert_eq!(long.len(), 256);
        assert_eq!(unit_name_problem(&long[1..]), None, "255 bytes");
        for (bad, why) in [
            ("nginx", "does not end in the type"),
            ("nginx.serv", "does not end in the type"),
            ("sda.device", "does not end in the type"),
            ("session-1.scope", "does not end in the type"),
            ("/etc/systemd/system/nginx.service", "is a path"),
            ("../nginx.service", "is a path"),
            (".service", "made of"),
            ("a b.service", "made of"),
            ("a$b.service", "made of"),
            ("getty@.service", "template"),
            ("@tty1.service", "template"),
            (long.as_str(), "at most 255 bytes"),
        ] {
            let p = unit_name_problem(bad).unwrap_or_else(|| panic!("accepted {bad:?}"));
            assert!(p.contains(why), "{bad:?}: {p}");
        }
    }

    fn unit_res(name: &str, unit: &str) -> String {
        format!(
            "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"unit\"\nunit = \"{unit}\"\n"
        )
    }

    #[test]
    fn unit_action_defaults_and_places() {
        let (c, places) = validate_text(&unit_res("w", "nginx.service")).unwrap();
        assert_eq!(
            c.resources[0].actions,
            vec![ActionSpec::Unit(UnitSpec {
                unit: "nginx.service".into(),
                timeout: DEFAULT_UNIT_TIMEOUT
            })]
        );
        assert_eq!(places.units[0].0, "nginx.service");
        assert_eq!(places.units[0].1.pos, Some((5, 8)));
        assert_eq!(c.resources[0].actions[0].to_string(), "unit nginx.service");
    }

    #[test]
    fn unit_action_errors_name_their_place_and_key() {
        let e = errors(&unit_res("w", "nginx"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:5:8: key `unit`: \"nginx\" does not end in the type"),
            "{e:?}"
        );
        let e = errors("[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"unit\"\n");
        assert!(
            e[0].starts_with("/etc/x.toml:3:1: unit action needs `unit`"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{}interface = \"eth0\"\nacquire = [\"/bin/true\"]\n",
            unit_res("w", "a.service")
        ));
        assert_eq!(
            e,
            [
                "/etc/x.toml:7:11: key `acquire` does not apply to unit actions",
                "/etc/x.toml:6:13: key `interface` does not apply to unit actions",
            ]
        );
        let e = errors(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\nunit = \"a.service\"\n",
        );
        assert_eq!(
            e,
            ["/etc/x.toml:6:8: key `unit` does not apply to exec actions"]
        );
    }

    fn check_res(check: &str) -> String {
        format!(
            "[[resource]]\nname = \"w\"\n[[resource.action]]\ntype = \"exec\"\nacquire = [\"/bin/true\"]\n[resource.check]\n{check}"
        )
    }

    #[test]
    fn check_defaults_and_program_place() {
        let (c, places) = validate_text(&check_res("exec = [\"/bin/healthy\", \"-q\"]\n")).unwrap();
        assert_eq!(
            c.resources[0].check,
            Some(CheckSpec {
                exec: vec!["/bin/healthy".into(), "-q".into()],
                interval: DEFAULT_CHECK_INTERVAL,
                timeout: DEFAULT_CHECK_TIMEOUT,
                fall: DEFAULT_CHECK_FALL,
                rise: DEFAULT_CHECK_RISE,
                hold_off: DEFAULT_CHECK_HOLD_OFF,
            })
        );
        let p = places
            .programs
            .iter()
            .find(|p| p.key == "check.exec")
            .unwrap();
        assert_eq!(
            (p.program.as_str(), p.at.pos),
            ("/bin/healthy", Some((7, 8)))
        );
        let (c, _) = validate_text(&check_res(
            "exec = [\"/bin/h\"]\ninterval = \"1s\"\ntimeout = \"500ms\"\nfall = 1\nrise = 5\nhold_off = \"0s\"\n",
        ))
        .unwrap();
        let k = c.resources[0].check.clone().unwrap();
        assert_eq!(
            (k.interval, k.timeout, k.fall, k.rise, k.hold_off),
            (
                Duration::from_secs(1),
                Duration::from_millis(500),
                1,
                5,
                Duration::ZERO
            )
        );
        assert_eq!(
            validate_text(&check_res("exec = [\"/bin/h\"]\n"))
                .unwrap()
                .0
                .resources
                .len(),
            1
        );
    }

    #[test]
    fn check_errors_name_their_place_and_key() {
        let e = errors(&check_res("interval = \"1s\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:6:1: [resource.check] needs `exec`"),
            "{e:?}"
        );
        let e = errors(&check_res(
            "exec = [\"bin/h\"]\nfall = 0\nrise = 101\nhold_off = \"25h\"\n",
        ));
        assert_eq!(
            e,
            [
                "/etc/x.toml:7:8: key `exec`: \"bin/h\" is a relative path: write an absolute path, or a bare name to look up in PATH",
                "/etc/x.toml:8:8: key `fall`: must be between 1 and 100 (checks in a row), not 0",
                "/etc/x.toml:9:8: key `rise`: must be between 1 and 100 (checks in a row), not 101",
                "/etc/x.toml:10:12: key `hold_off`: at most 24h, not 1day 1h",
            ]
        );
        let e = errors(&check_res("exec = [\"/bin/h\"]\ntimeout = \"0s\"\n"));
        assert!(
            e[0].starts_with("/etc/x.toml:8:11: key `timeout`: must be greater than zero"),
            "{e:?}"
        );
        // "1ms" for "1s" forked the check hundreds of times a second
        // (issue #19, item 5).
        let e = errors(&check_res(
            "exec = [\"/bin/h\"]\ninterval = \"1ms\"\ntimeout = \"5ms\"\n",
        ));
        assert_eq!(
            e,
            [
                "/etc/x.toml:8:12: key `interval`: 1ms is below the 100ms minimum (a typo for seconds?)",
                "/etc/x.toml:9:11: key `timeout`: 5ms is below the 100ms minimum (a typo for seconds?)",
            ]
        );
        assert!(
            validate_text(&check_res(
                "exec = [\"/bin/h\"]\ninterval = \"100ms\"\ntimeout = \"100ms\"\n"
            ))
            .is_ok()
        );
        let e = errors(&check_res("exec = [\"/bin/h\"]\nfails = 3\n"));
        assert!(
            e[0].starts_with("/etc/x.toml:8:1: unknown field `fails`"),
            "{e:?}"
        );
    }

    #[test]
    fn prefer_and_preempt() {
        let res = "[[resource]]\nname = \"w\"\n";
        let (c, _) = validate_text(res).unwrap();
        assert_eq!(
            (c.resources[0].prefer.len(), c.resources[0].preempt),
            (0, false)
        );
        let (c, _) =
            validate_text(&format!("{res}prefer = [\"b\", \"a\"]\npreempt = true\n")).unwrap();
        let r = &c.resources[0];
        assert_eq!(
            (r.prefer.clone(), r.preempt),
            (vec!["b".into(), "a".into()], true)
        );
        assert_eq!((r.rank("a"), r.rank("c")), (Some(1), None));
        assert_eq!(r.candidate_lock(1), "w.c1");
        let e = errors(&format!("{res}preempt = true\n"));
        assert_eq!(
            e,
            ["/etc/x.toml:3:11: key `preempt`: needs `prefer`, the nodes in order of preference"]
        );
        let e = errors(&format!("{res}prefer = [\"a\", \"a b\", \"a\"]\n"));
        assert_eq!(
            e,
            [
                "/etc/x.toml:3:16: key `prefer`: node names are 1 to 64 characters without spaces",
                "/etc/x.toml:3:23: key `prefer`: \"a\" is listed twice",
            ]
        );
        let e = errors(&format!(
            "{res}prefer = [\"a\"]\n[[resource]]\nname = \"v\"\nlock = \"w.c0\"\n"
        ));
        assert_eq!(
            e,
            [
                "/etc/x.toml:4:1: lock \"w.c0\" is also the candidate lock of resource \"w\"'s preferred node \"a\": rename one"
            ]
        );
        let e = errors(&format!("{res}prefer = []\n"));
        assert!(
            e[0].starts_with("/etc/x.toml:3:10: key `prefer`: list at least one"),
            "{e:?}"
        );
        let long = "[lock]\nbackend = \"dlmfs\"\n[[resource]]\nname = \"w\"\nlock = \"abcdefghijabcdefghijabcdefghi\"\nprefer = [\"a\"]\n";
        let e = errors(long);
        assert!(
            e[0].starts_with("/etc/x.toml:6:10: key `prefer`: the candidate lock \"abcdefghijabcdefghijabcdefghi.c0\" cannot be used"),
            "{e:?}"
        );
    }

    fn vip_res(name: &str, address: &str, interface: &str) -> String {
        format!(
            "[[resource]]\nname = \"{name}\"\n[[resource.action]]\ntype = \"vip\"\naddress = \"{address}\"\ninterface = \"{interface}\"\n"
        )
    }

    /// Releasing one would remove the address the other still holds.
    #[test]
    fn one_vip_is_managed_once() {
        let e = errors(&format!(
            "{}{}",
            vip_res("a", "198.18.0.1/24", "eth0"),
            vip_res("b", "198.18.0.1/24", "eth0")
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:11:11: key `address`: 198.18.0.1 on \"eth0\" is already the VIP of the action at /etc/x.toml:5; one address, one action"),
            "{e:?}"
        );
        // The same address on another interface, or another address, is fine.
        for (addr, iface) in [("198.18.0.1/24", "eth1"), ("198.18.0.2/24", "eth0")] {
            assert!(
                validate_text(&format!(
                    "{}{}",
                    vip_res("a", "198.18.0.1/24", "eth0"),
                    vip_res("b", addr, iface)
                ))
                .is_ok()
            );
        }
    }

    /// A standby stops the unit whoever started it: two resources managing
    /// one unit would stop each other's.
    #[test]
    fn one_unit_is_managed_once() {
        let e = errors(&format!(
            "{}{}",
            unit_res("a", "web.service"),
            unit_res("b", "web.service")
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("/etc/x.toml:10:8: key `unit`: \"web.service\" is already managed by the action at /etc/x.toml:5"),
            "{e:?}"
        );
        assert!(
            validate_text(&format!(
                "{}{}",
                unit_res("a", "web.service"),
                unit_res("b", "db.service")
            ))
            .is_ok()
        );
    }
}
