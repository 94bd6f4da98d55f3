//! Prometheus metrics: what the daemon counts (`Metrics`, fed by the
//! runners and the supervisor) and the endpoint that serves them
//! (`serve`, only when `[metrics] listen` is set).
//!
//! The format is the Prometheus text format 0.0.4, written by the
//! `prometheus-client` crate; the HTTP side is hyper's HTTP/1 server, one
//! request per connection, each connection bounded in time and number, so a
//! scraper (or anyone else who can reach the port) cannot hold the daemon's
//! memory or tasks. Every name is documented in docs/metrics.md.

use crate::state::Status;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Lock calls take microseconds on the `file` backend and milliseconds on
/// dlmfs, up to minutes while the DLM recovers a dead node (`op_timeout`
/// is 2 min by default).
const LOCK_CALL_BUCKETS: [f64; 12] = [
    0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Acquire and release runs: hooks, VIPs with their announce burst, unit
/// jobs (timeouts of 10 s to 2 min by default).
const ACTION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every state, in a fixed order, for the state gauge: each resource has
/// one series per state, 1 for the current one and 0 for the others, so an
/// alert can test a state that is not current (`== 0`) as well.
const STATES: [Status; 8] = Status::ALL;

/// Position in `STATES`. No wildcard arm: a new state does not compile
/// until it has its series.
fn state_index(s: Status) -> usize {
    match s {
        Status::Standby => 0,
        Status::Acquiring => 1,
        Status::Master => 2,
        Status::Releasing => 3,
        Status::Backoff => 4,
        Status::Stalled => 5,
        Status::Failed => 6,
        Status::Drained => 7,
    }
}

/// Acquire or release steps.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Run {
    acquire,
    release,
}

/// A lock backend call.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LockCall {
    try_lock,
    unlock,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    ok,
    failed,
}

impl From<bool> for Outcome {
    fn from(ok: bool) -> Self {
        if ok { Outcome::ok } else { Outcome::failed }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Res {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResState {
    resource: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResRun {
    resource: String,
    run: Run,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResCall {
    resource: String,
    call: LockCall,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResResult {
    resource: String,
    result: Outcome,
}

#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrainReason {
    reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's metrics. Always kept (a few hundred bytes per resource);
/// served only where `[metrics] listen` says.
pub struct Metrics {
    registry: Registry,
    state: Family<ResState, Gauge>,
    transitions: Family<ResState, Counter>,
    last_transition: Family<Res, Gauge<f64, AtomicU64>>,
    actions: Histograms<ResRun>,
    lock_calls: Histograms<ResCall>,
    stalled: Family<Res, Gauge>,
    stalls: Family<Res, Counter>,
    checks: Family<ResResult, Counter>,
    check_ok: Family<Res, Gauge>,
    keeper_up: Gauge,
    drained: Family<DrainReason, Gauge>,
    /// Each resource's current state, to clear its old series.
    current: Mutex<HashMap<String, Status>>,
}

impl Metrics {
    /// `keeper`: the `file` backend's lock keeper runs (its gauge is only
    /// registered then).
    pub fn new(keeper: bool) -> Metrics {
        let mut r = Registry::with_prefix("dlm_electd");
        let m = Metrics {
            state: Family::default(),
            transitions: Family::default(),
            last_transition: Family::default(),
            actions: Family::new_with_constructor(|| Histogram::new(ACTION_BUCKETS)),
            lock_calls: Family::new_with_constructor(|| Histogram::new(LOCK_CALL_BUCKETS)),
            stalled: Family::default(),
            stalls: Family::default(),
            checks: Family::default(),
            check_ok: Family::default(),
            keeper_up: Gauge::default(),
            drained: Family::default(),
            current: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        r.register(
            "build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "resource_state",
            "1 for the resource's current state, 0 for the others",
            m.state.clone(),
        );
        r.register(
            "resource_transitions",
            "State changes since the daemon started, by the state entered",
            m.transitions.clone(),
        );
        r.register_with_unit(
            "resource_last_transition_timestamp",
            "When the resource entered its current state (Unix time)",
            Unit::Seconds,
            m.last_transition.clone(),
        );
        r.register_with_unit(
            "action_run_duration",
            "How long a run of a resource's acquire or release steps took, by outcome",
            Unit::Seconds,
            m.actions.clone(),
        );
        r.register_with_unit(
            "lock_call_duration",
            "How long a lock backend call took on the blocking pool (measured when it returns)",
            Unit::Seconds,
            m.lock_calls.clone(),
        );
        r.register(
            "lock_call_stalled",
            "1 while the resource's lock call runs past op_timeout",
            m.stalled.clone(),
        );
        r.register(
            "lock_call_stalls",
            "Lock calls that ran past op_timeout",
            m.stalls.clone(),
        );
        r.register(
            "health_checks",
            "Health check results, by result",
            m.checks.clone(),
        );
        r.register(
            "health_check_ok",
            "1 if the resource's last health check passed, 0 if it failed",
            m.check_ok.clone(),
        );
        m.drained.get_or_create(&DrainReason::default()).set(0);
        r.register(
            "node_drained",
            "1 while the node is drained (`dlm-electd drain`), with its reason; 0 (reason \"\") when not",
            m.drained.clone(),
        );
        if keeper {
            m.keeper_up.set(1);
            r.register(
                "keeper_up",
                "1 while the file backend's lock keeper runs",
                m.keeper_up.clone(),
            );
        }
        // The families are shared handles: the registry reads what `m` writes.
        Metrics { registry: r, ..m }
    }

    /// The resource entered `state` (also its first state, at start):
    /// `at` is when, as Unix time in seconds.
    pub fn state(&self, resource: &str, state: Status, at: f64) {
        let old = self
            .current
            .lock()
            .unwrap()
            .insert(resource.to_string(), state);
        if old == Some(state) {
            return;
        }
        for s in STATES {
            self.state
                .get_or_create(&res_state(resource, s))
                .set(i64::from(s == state));
        }
        if old.is_some() {
            self.transitions
                .get_or_create(&res_state(resource, state))
                .inc();
        } else {
            // Series that exist from the start, so that an alert or a
            // rate() sees 0 rather than nothing.
            self.stalled.get_or_create(&res(resource)).set(0);
            let _ = self.stalls.get_or_create(&res(resource));
        }
        self.last_transition.get_or_create(&res(resource)).set(at);
    }

    /// A lock call of `resource` ran past `op_timeout` (`true`), or a call
    /// that had returned (`false`).
    pub fn stalled(&self, resource: &str, stalled: bool) {
        self.stalled
            .get_or_create(&res(resource))
            .set(i64::from(stalled));
        if stalled {
            self.stalls.get_or_create(&res(resource)).inc();
        }
    }

    /// Wraps a lock call for the blocking pool: times the call itself, so a
    /// call that outlives its deadline is counted in full when it returns.
    pub fn time_lock_call<T, F: FnOnce() -> T>(
        self: &std::sync::Arc<Self>,
        resource: &str,
        call: LockCall,
        f: F,
    ) -> impl FnOnce() -> T + use<T, F> {
        let (m, labels) = (
            self.clone(),
            ResCall {
                resource: resource.to_string(),
                call,
            },
        );
        move || {
            let t = Instant::now();
            let r = f();
            m.lock_calls
                .get_or_create(&labels)
                .observe(t.elapsed().as_secs_f64());
            r
        }
    }

    /// The histogram of `resource`'s try-lock calls, for a caller that
    /// times many of them (a polling standby: no label lookup per try).
    pub fn try_lock_calls(&self, resource: &str) -> Histogram {
        self.lock_calls
            .get_or_create(&ResCall {
                resource: resource.to_string(),
                call: LockCall::try_lock,
            })
            .clone()
    }

    /// Runs a resource's acquire or release steps, timing them; `ok` says
    /// from what they return whether they succeeded. (A plain predicate
    /// rather than the election's event: metrics sit below the election.)
    pub async fn time_run<T>(
        &self,
        resource: &str,
        run: Run,
        steps: impl Future<Output = T>,
        ok: impl FnOnce(&T) -> bool,
    ) -> T {
        let t = Instant::now();
        let done = steps.await;
        let labels = ResRun {
            resource: resource.to_string(),
            run,
            outcome: ok(&done).into(),
        };
        self.actions
            .get_or_create(&labels)
            .observe(t.elapsed().as_secs_f64());
        done
    }

    /// A health check of `resource` finished: passed (`ok`) or failed
    /// (including a timeout). For the health checks to call.
    pub fn check_result(&self, resource: &str, ok: bool) {
        let labels = ResResult {
            resource: resource.to_string(),
            result: ok.into(),
        };
        self.checks.get_or_create(&labels).inc();
        self.check_ok
            .get_or_create(&res(resource))
            .set(i64::from(ok));
    }

    /// The node's drain: `Some(reason)` while drained ("" without one).
    pub fn drained(&self, reason: Option<&str>) {
        self.drained.clear();
        let label = DrainReason {
            reason: reason.unwrap_or_default().to_string(),
        };
        self.drained
            .get_or_create(&label)
            .set(i64::from(reason.is_some()));
    }

    /// The lock keeper died.
    pub fn keeper_died(&self) {
        self.keeper_up.set(0);
    }

    /// A resource left the config (reload): its series go, so a dashboard
    /// does not show a resource that no longer exists.
    pub fn forget(&self, resource: &str) {
        self.current.lock().unwrap().remove(resource);
        for s in STATES {
            self.state.remove(&res_state(resource, s));
            self.transitions.remove(&res_state(resource, s));
        }
        for f in [&self.stalled, &self.check_ok] {
            f.remove(&res(resource));
        }
        self.stalls.remove(&res(resource));
        self.last_transition.remove(&res(resource));
        for outcome in [Outcome::ok, Outcome::failed] {
            for run in [Run::acquire, Run::release] {
                self.actions.remove(&ResRun {
                    resource: resource.to_string(),
                    run,
                    outcome,
                });
            }
            self.checks.remove(&ResResult {
                resource: resource.to_string(),
                result: outcome,
            });
        }
        for call in [LockCall::try_lock, LockCall::unlock] {
            self.lock_calls.remove(&ResCall {
                resource: resource.to_string(),
                call,
            });
        }
    }

    /// The exposition, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn res(resource: &str) -> Res {
    Res {
        resource: resource.to_string(),
    }
}

fn res_state(resource: &str, s: Status) -> ResState {
    ResState {
        resource: resource.to_string(),
        state: STATES[state_index(s)].as_str(),
    }
}

// ---- the endpoint ----

/// Connections served at once; more are closed at once (a scraper needs one).
const MAX_CONNECTIONS: usize = 16;
/// Connections one peer (see `peer_key`) may hold at once. A scraper needs
/// one, an HA pair of them two hosts; the cap leaves most slots to others,
/// so one host that holds connections open (partial headers, reconnecting
/// as soon as one is closed) cannot keep every scraper out.
const MAX_PER_PEER: usize = 4;
/// All the time one connection gets: request and reply.
const CONNECTION_TIME: Duration = Duration::from_secs(10);
/// For the request's headers: a connection that sends nothing frees its
/// slot after this, so idle connections cannot keep a scraper out for long.
const HEADER_TIME: Duration = Duration::from_secs(2);
/// Between two attempts to listen when the address is taken or missing.
const BIND_RETRY: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `addr` until the task is aborted. The election
/// does not depend on it: if the address cannot be bound (taken by another
/// program, an address not up yet), that is logged and retried every 10 s
/// while the daemon runs on.
pub async fn serve(addr: SocketAddr, metrics: std::sync::Arc<Metrics>) {
    let listener = bind(addr).await;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers = std::sync::Arc::new(Peers::new(MAX_PER_PEER));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of fds: pause rather than spin.
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The peer's own cap first: a peer at its cap must not take one of
        // the shared slots, not even for a moment.
        let Some(peer_slot) = peers.take(peer.ip()) else {
            tracing::debug!(
                "metrics: {} has {MAX_PER_PEER} connections open; closing a new one",
                peer.ip()
            );
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let reply = respond(&m, &req);
                async move { Ok::<_, std::convert::Infallible>(reply) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIME)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIME, conn).await {
                tracing::debug!("metrics connection: {e}");
            }
            drop(slot);
            drop(peer_slot);
        });
    }
}

/// A peer, as the per-peer cap counts it: its IPv4 address, or its IPv6
/// /64 (a host usually has a whole /64 to pick source addresses from, so
/// counting single IPv6 addresses would cap nobody). An IPv4 client of an
/// IPv6 socket (`::ffff:a.b.c.d`) is its IPv4 address.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Open connections per peer, each held by a `PeerSlot`.
struct Peers {
    open: Mutex<HashMap<IpAddr, usize>>,
    cap: usize,
}

/// One connection of a peer; dropping it frees its place.
struct PeerSlot {
    peers: std::sync::Arc<Peers>,
    key: IpAddr,
}

impl Peers {
    fn new(cap: usize) -> Peers {
        Peers {
            open: Default::default(),
            cap,
        }
    }

    /// A place for one more connection from `ip`, None if its peer is at
    /// the cap.
    fn take(self: &std::sync::Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let key = peer_key(ip);
        let mut open = self.open.lock().unwrap();
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            // Peers that left are forgotten: the map holds only the ones
            // with a connection open, at most MAX_CONNECTIONS + 1 of them.
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut failed = false;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!("metrics on http://{addr}/metrics");
                return l;
            }
            Err(e) => {
                if !failed {
                    tracing::error!(
                        "metrics: cannot listen on {addr}: {e}; retrying every {BIND_RETRY:?} (the election is not affected)"
                    );
                }
                failed = true;
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    }
}

type Body = http_body_util::Full<hyper::body::Bytes>;

fn respond<B>(m: &Metrics, req: &hyper::Request<B>) -> hyper::Response<Body> {
    use hyper::{Method, StatusCode, header};
    let reply = |status, ctype, body: String| {
        let mut r = hyper::Response::new(Body::from(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => reply(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            m.encode(),
        ),
        (&Method::GET | &Method::HEAD, "/") => {
            reply(StatusCode::OK, TEXT, "dlm-electd: see /metrics\n".into())
        }
        (&Method::GET | &Method::HEAD, _) => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; see /metrics\n".into(),
        ),
        _ => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "only GET and HEAD\n".into(),
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn state_gauge_has_one_current_state_and_counts_changes() {
        let m = Metrics::new(false);
        m.state("web", Status::Standby, 100.0);
        m.state("web", Status::Standby, 150.0);
        m.state("web", Status::Acquiring, 200.0);
        m.state("web", Status::Master, 300.5);
        let t = m.encode();
        for s in STATES {
            let want = if s == Status::Master { 1 } else { 0 };
            let l = format!(
                "dlm_electd_resource_state{{resource=\"web\",state=\"{}\"}} {want}",
                s.as_str()
            );
            assert!(t.lines().any(|x| x == l), "{l} in\n{t}");
        }
        // The first state is no transition; a repeated one is none either.
        assert_eq!(
            line(
                &t,
                "dlm_electd_resource_transitions_total{resource=\"web\",state=\"master\"}"
            ),
            Some("dlm_electd_resource_transitions_total{resource=\"web\",state=\"master\"} 1")
        );
        assert!(
            line(
                &t,
                "dlm_electd_resource_transitions_total{resource=\"web\",state=\"standby\"}"
            )
            .is_none()
        );
        assert_eq!(
            line(&t, "dlm_electd_resource_last_transition_timestamp_seconds{"),
            Some("dlm_electd_resource_last_transition_timestamp_seconds{resource=\"web\"} 300.5")
        );
        assert!(line(&t, "dlm_electd_keeper_up").is_none());
        m.forget("web");
        let t = m.encode();
        assert!(!t.contains("resource=\"web\""), "{t}");
    }

    #[test]
    fn each_peer_holds_at_most_its_cap_of_connections() {
        let peers = std::sync::Arc::new(Peers::new(4));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let held: Vec<PeerSlot> = (0..4)
            .map(|_| peers.take(ip("127.0.0.2")).unwrap())
            .collect();
        assert!(
            peers.take(ip("127.0.0.2")).is_none(),
            "a fifth from one peer"
        );
        // The same peer through an IPv6 socket.
        assert!(peers.take(ip("::ffff:127.0.0.2")).is_none());
        // Another peer is not affected.
        let other = peers.take(ip("127.0.0.3")).unwrap();
        drop(held.into_iter().next());
        let again = peers.take(ip("127.0.0.2")).unwrap();
        // One IPv6 /64 is one peer; the next /64 another.
        let v6: Vec<PeerSlot> = (1..=4)
            .map(|i| peers.take(ip(&format!("2001:db8:0:1::{i}"))).unwrap())
            .collect();
        assert!(peers.take(ip("2001:db8:0:1:ffff::9")).is_none());
        assert!(peers.take(ip("2001:db8:0:2::1")).is_some());
        drop((v6, other, again));
        // Every slot dropped: nothing is remembered.
        assert!(peers.open.lock().unwrap().is_empty());
    }

    #[test]
    fn health_results_and_stalls() {
        let m = Metrics::new(true);
        m.check_result("db", true);
        m.check_result("db", false);
        m.stalled("db", true);
        let t = m.encode();
        for want in [
            "dlm_electd_health_checks_total{resource=\"db\",result=\"ok\"} 1",
            "dlm_electd_health_checks_total{resource=\"db\",result=\"failed\"} 1",
            "dlm_electd_health_check_ok{resource=\"db\"} 0",
            "dlm_electd_lock_call_stalled{resource=\"db\"} 1",
            "dlm_electd_lock_call_stalls_total{resource=\"db\"} 1",
            "dlm_electd_keeper_up 1",
        ] {
            assert!(t.lines().any(|l| l == want), "{want} in\n{t}");
        }
        m.stalled("db", false);
        m.keeper_died();
        let t = m.encode();
        assert!(
            t.lines()
                .any(|l| l == "dlm_electd_lock_call_stalled{resource=\"db\"} 0")
        );
        assert!(t.lines().any(|l| l == "dlm_electd_keeper_up 0"));
    }

    #[test]
    fn the_drain_shows_with_its_reason_and_goes() {
        let m = Metrics::new(false);
        let has = |t: &str, l: &str| t.lines().any(|x| x == l);
        assert!(has(&m.encode(), "dlm_electd_node_drained{reason=\"\"} 0"));
        m.drained(Some("kernel update"));
        let t = m.encode();
        assert!(
            has(&t, "dlm_electd_node_drained{reason=\"kernel update\"} 1"),
            "{t}"
        );
        assert!(!t.contains("reason=\"\""), "one series: {t}");
        m.drained(None);
        let t = m.encode();
        assert!(has(&t, "dlm_electd_node_drained{reason=\"\"} 0"), "{t}");
        assert!(!t.contains("kernel update"), "{t}");
    }
}
