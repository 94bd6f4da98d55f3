#!/usr/bin/env python3
"""Randomized fault injection on a 3-node o2cb cluster, with an independent
checker (issue #21). Run as a scenario (the last of run.py's tier) it is a
short round: 40 faults planned, none started after DLM_ELECTD_NEMESIS_BUDGET
seconds (250).

dlm-electd runs on every node with K resources (DLM_ELECTD_NEMESIS_RESOURCES,
default 20) in dlmfs domain `nemesis`: r00..r02 carry a VIP on the bridge,
r03..r05 `prefer` the nodes in a rotated order (r05 with `preempt`), r06 has
a health check (fails while /tmp/nem-unhealthy exists on the node), the rest
are plain. Every resource's exec hook reports `acquire R` / `release R` on the
event channel. One workload lock `wl` is held by `run-locked` loops on every
node; its program reports `acquire @wl` / `release @wl`.

A seeded random schedule (the seed is printed first; the same seed gives the
same schedule) injects faults one after another with random gaps, sometimes
two at once (on different nodes, at most one of them node-level). A fault's
node is drawn from the seed, or for half of the daemon- and node-level
faults that overlap nothing, it is "busiest": the node mastering the most
resources per the event log when the fault starts.

  sigkill    SIGKILL of the daemon, then `cleanup` and `run` (what the unit
             does: ExecStopPost, Restart=)
  sigstop    SIGSTOP of the daemon for op_timeout + 1..6 s, then SIGCONT
  freeze     the node's VM SIGSTOPped 14..20 s (past o2cb's dead threshold),
             thawed; if o2cb did not fence it and the daemon is in doubt
             (its membership-in-doubt file: what an operator would read, not
             a verdict), the node is rebooted (the operator's step,
             docs/dlmfs.md §2.7)
  power      power pull of the VM, boot again, start the daemon and the loop
  partition  the node's tap down for 2..4 s or 20..40 s, up again; a node o2cb
             fenced meanwhile is booted again
  netsplit   the node and one other cut off from each other only (each still
             reaches the third; harness.netsplit, bridge port isolation) for
             5..40 s, then joined; a node o2cb fenced is booted again
  netem      delay 20..400 ms (jitter up to half of it) and loss 0..25 % on
             everything the node sends (a netem qdisc on its eth0, set in the
             guest by guest/netem.c) for 5..30 s, then removed; a node o2cb
             fenced is booted again
  release    `release R --hold-off 3..15s` on R's master (from the event log),
             sometimes `resume R` early
  reload     SIGHUP after rewriting the node's config: poll_interval 250ms or
             500ms, an extra resource `rx0` or not, one of r07.. removed or not
  health     /tmp/nem-unhealthy on r06's master for 3..10 s

Not yet: one-way partitions, heartbeat-disk faults.

The checker trusts nothing the daemon says about itself. It replays the event
log (host clock, arrival order): hook events, workload program events, the
harness's @kill/@exit/@freeze/@thaw control lines; the schedule's own records
(when each fault began and healed); and, at settle points, `ip addr` on every
node. It reports:

  overlap      an acquire of R while another node is master of R (no release,
               @kill or @exit of it since); allowed only while that node is
               frozen (@freeze..@thaw), and then it must give R up (release,
               @kill, @exit) within 1 s of its @thaw (`late-release` if not),
               the documented window of docs/dlmfs.md §2.7 / freeze.py
  vip          at a settle point, a VIP on a node that is not master of its
               resource, or missing on the master (only judged when no event
               of that resource came in while `ip addr` was read)
  liveness     after the cluster is healed (no fault active: each fault's heal
               is when the nemesis has restored what it broke), every resource
               in some node's config must have a master within liveness_s()
               (below); judged when nothing else happened for that long
               (else counted as inconclusive)
  left-behind  after the final SIGTERM of every daemon: an open master
               interval, or a VIP still on a node

and the time without a master per fault type: each gap between one master
interval of R and the next (a frozen master's frozen span counts as a gap)
is charged to the fault active on the node that lost mastership when it
opened, else to "fence" (an o2cb fence nobody injected), else to the fault
healed last ("TYPE(after)": a preempt handover to a node back from it),
else to the first active fault ("TYPE(other node)").

Run alone: `tests/cluster/nemesis.py [--no-build]` (suite.main), or
`--selftest` for the checker on made-up logs; long runs: `benches/run.py
chaos --faults N --seed S`. See tests/cluster/README.md, "Nemesis".
"""
import collections
import json
import os
import random
import re
import statistics
import threading
import time
import traceback

import arpwatch
import electd
import harness
from electd import FAST, GUEST_BIN, HOOK, until
from freeze import BOUND_MS as THAW_BOUND_MS  # a resumed master's VIPs gone within 1 s
from freeze import thaw_bound_ms                # and its hooks (1 s + per resource held)
from suite import scenario

K = int(os.environ.get("DLM_ELECTD_NEMESIS_RESOURCES", "20"))
FAULTS = int(os.environ.get("DLM_ELECTD_NEMESIS_FAULTS", "40"))
# The tier's round must stay near 5 minutes (the corosync tier shares the
# 60-minute CI budget): no fault starts after this many seconds of faults
# (0: none, the long runs of benches/run.py chaos). A fault can take 65 s
# (a 40 s partition, o2cb's fence, a boot), boot and final checks about
# 80 s: 250 s keeps the round near 6 minutes, 10 to 20 faults.
BUDGET_S = float(os.environ.get("DLM_ELECTD_NEMESIS_BUDGET", "250"))
SEED = os.environ.get("DLM_ELECTD_NEMESIS_SEED")
DOMAIN = "nemesis"
RUNTIME = "/run/dlm-electd-nem"
POLLS = ("250ms", "500ms")
POLL_MAX_S = 0.5
OP_TIMEOUT_S = 5
VIPS = ["198.18.77.%d" % (120 + i) for i in range(3)]
ARP_PERIOD_MS = 10
CHECKED = "r06"
DEFER_WINDOW_S = 10           # bounded deferral: a window is 3 polls, at least 10 s
RECOVERY_WAKE_S = 5           # o2dlm's recovery thread period (tests/cluster/README.md)
SLACK_S = float(os.environ.get("DLM_ELECTD_NEMESIS_SLACK", "10"))


def liveness_s(dead_threshold, op_timeout_s=OP_TIMEOUT_S, poll_s=POLL_MAX_S):
    """Bound from a heal to a master of every resource (docs/dlmfs.md §1.8,
    docs/ARCHITECTURE.md "Preferred nodes"), the worst cases added up:

      2 s x (dead + 2)   a cut-off node waits this long for o2net's quorum
                         decision before it fences itself, possibly after
                         the heal (partition)
    + 2 s x (dead + 1)   o2hb then declares it dead (eviction)
    + 5 s                the o2dlm recovery thread's period
    + op_timeout         a trylock stalled in recovery; the next one after it
    + 2 x 10 s           bounded deferral to a preferred candidate that cannot
                         take the lock (two windows)
    + 2 x poll_interval  the standby's next poll, and one more
    + SLACK_S            hooks, a slow TCG host (DLM_ELECTD_NEMESIS_SLACK)

    dead_threshold 5, op_timeout 5 s, poll 500 ms, slack 10 s: 67 s."""
    return (2 * (dead_threshold + 2) + 2 * (dead_threshold + 1) + RECOVERY_WAKE_S
            + op_timeout_s + 2 * DEFER_WINDOW_S + 2 * poll_s + SLACK_S)


# ---- the schedule --------------------------------------------------------
# type: (weight, node-level?)
TYPES = collections.OrderedDict([
    ("sigkill", (3.0, False)), ("sigstop", (2.0, False)), ("freeze", (1.0, True)),
    ("power", (1.0, True)), ("partition", (1.0, True)), ("netsplit", (1.0, True)),
    ("netem", (1.0, True)),
    ("release", (2.5, False)),
    ("reload", (2.0, False)), ("health", (1.5, False)),
])
# These pick their node at run time (a master from the event log): never
# overlapped with another fault, whose node they might hit.
RUNTIME_TARGET = ("release", "health", "drain")
# `drain`: a release step turned into `dlm-electd drain` of the master's
# node for the step's hold, then `undrain` (a share of the release steps,
# drawn from a stream of their own: a schedule without drains is the same
# as before drains existed, so a long run's later segments replay it).
DRAIN_SHARE = 0.4

# Faults that may hit "the busiest node" (the one mastering the most
# resources per the event log, picked at run time) instead of a node drawn
# from the seed: masters pile up on the survivors of earlier faults, and a
# fault on a node that masters nothing tests little.
BUSIEST_OK = ("sigkill", "sigstop", "freeze", "power", "partition", "netem")

Step = collections.namedtuple("Step", "i gap typ node params overlap settle")


def resources(k=K):
    return ["r%02d" % i for i in range(k)]


def make_schedule(seed, count, nodes=3, k=K, drain=False):
    """The same (seed, count, nodes, k, drain) always gives the same steps;
    with drain, the same as without but for some release steps, which
    become drains."""
    rng = random.Random(seed)
    conv = random.Random(seed ^ 0xD8A1)  # the drains' own stream
    names = list(TYPES)
    weights = [TYPES[t][0] for t in names]
    plain = resources(k)[7:] or resources(k)
    steps = []
    prev = None  # the step the next one overlaps, if any
    while len(steps) < count:
        typ = rng.choices(names, weights)[0]
        node = rng.randrange(nodes)
        if prev is not None:
            # Overlapping the previous step: another node, an explicit
            # target, and not two node-level faults at once.
            if typ in RUNTIME_TARGET or (TYPES[typ][1] and TYPES[prev.typ][1]) or node == prev.node \
                    or node == prev.params.get("other"):
                continue
        p = {}
        if typ == "sigkill":
            p["pause"] = round(rng.uniform(0, 3), 1)
        elif typ == "sigstop":
            p["dur"] = round(OP_TIMEOUT_S + rng.uniform(1, 6), 1)
        elif typ == "freeze":
            p["dur"] = round(rng.uniform(14, 20), 1)
        elif typ == "power":
            p["off"] = round(rng.uniform(0, 5), 1)
        elif typ == "partition":
            p["dur"] = round(rng.uniform(2, 4) if rng.random() < 0.4 else rng.uniform(20, 40), 1)
        elif typ == "netsplit":
            p["other"] = (node + rng.randrange(1, nodes)) % nodes
            p["dur"] = round(rng.uniform(5, 40), 1)
        elif typ == "netem":
            p["delay"] = rng.choice((20, 50, 100, 200, 400))
            p["jitter"] = round(p["delay"] * rng.uniform(0, 0.5))
            p["loss"] = rng.choice((0, 0, 1, 5, 10, 25))
            p["dur"] = round(rng.uniform(5, 30), 1)
        elif typ == "release":
            p["res"] = rng.choice(resources(k))
            p["hold"] = round(rng.uniform(3, 15), 1)
            p["resume"] = round(rng.uniform(1, p["hold"]), 1) if rng.random() < 0.5 else None
        elif typ == "reload":
            p["poll"] = rng.choice(POLLS)
            p["extra"] = rng.random() < 0.5
            p["remove"] = rng.choice(plain) if rng.random() < 0.5 else None
        elif typ == "health":
            p["dur"] = round(rng.uniform(3, 10), 1)
        overlap = (prev is None and typ not in RUNTIME_TARGET and len(steps) < count - 1
                   and rng.random() < 0.2)
        settle = not overlap and rng.random() < 0.15
        gap = 0.0 if prev is not None else round(rng.uniform(0.5, 5), 1)
        if prev is not None:
            gap = round(rng.uniform(0, 3), 1)  # the second starts this long after the first
        if typ in RUNTIME_TARGET:
            node = None
        elif typ in BUSIEST_OK and prev is None and not overlap and rng.random() < 0.5:
            node = None  # the node mastering the most resources, at run time
        if typ == "release" and conv.random() < DRAIN_SHARE and drain:
            typ = "drain"
        st = Step(len(steps), gap, typ, node, p, overlap, settle)
        steps.append(st)
        prev = st if overlap else None
    return steps


def fmt_step(s):
    tgt = ("node%d" % s.node if s.node is not None
           else "master" if s.typ in RUNTIME_TARGET else "busiest")
    ps = " ".join("%s=%s" % kv for kv in sorted(s.params.items()))
    return "#%02d +%.1fs %-9s %-6s %s%s%s" % (s.i, s.gap, s.typ, tgt, ps,
                                             " [overlaps next]" if s.overlap else "",
                                             " [settle]" if s.settle else "")


# ---- guest side ----------------------------------------------------------
PROG = """#!/bin/sh
# The workload program run-locked runs: holds `wl` for 1..4 s.
trap 'echo "release @wl" > /dev/virtio-ports/events; exit 0' TERM
echo "acquire @wl" > /dev/virtio-ports/events
sleep $(( ($$ % 4) + 1 )) &
wait $!
echo "release @wl" > /dev/virtio-ports/events
"""
LOOP = """#!/bin/sh
# $1: config. run-locked wl again and again (bounded waits), as a job
# scheduler would; ends when /tmp/nem-wl-stop exists.
while [ ! -e /tmp/nem-wl-stop ]; do
  %s run-locked --config "$1" --wait 30s wl -- /host/nem-prog >>/tmp/nem-wl.log 2>&1
  sleep 1
done
""" % GUEST_BIN


class Variant(collections.namedtuple("Variant", "poll extra remove")):
    def names(self, k=K):
        rs = [r for r in resources(k) if r != self.remove]
        return rs + (["rx0"] if self.extra else [])


BASE = Variant("250ms", False, None)


def config_text(node, v, nodes=3, k=K):
    t = ['[lock]\nbackend = "dlmfs"\nmount = "/dlm"\ndomain = "%s"\n' % DOMAIN,
         '[daemon]\nruntime_dir = "%s"\npoll_interval = "%s"\nop_timeout = "%ds"\n'
         % (RUNTIME, v.poll, OP_TIMEOUT_S)]
    exec_action = '[[resource.action]]\ntype = "exec"\nacquire = %s\nrelease = %s\n' % (HOOK, HOOK)
    for r in v.names(k):
        t.append('[[resource]]\nname = "%s"\n' % r)
        i = int(r[1:]) if r[1:].isdigit() else None
        if i is not None and 3 <= i <= 5:
            order = ["node%d" % ((j + i) % nodes) for j in range(nodes)]
            t.append('prefer = [%s]\n' % ", ".join('"%s"' % o for o in order))
            if i == 5:
                t.append("preempt = true\n")
        if r == CHECKED:
            t.append('[resource.check]\nexec = ["/bin/sh", "-c", "test ! -e /tmp/nem-unhealthy"]\n'
                     'interval = "1s"\ntimeout = "2s"\nfall = 2\nrise = 1\nhold_off = "5s"\n')
        # exec first, VIP second: the VIP goes before the release hook
        # reports and comes after the acquire hook did (freeze.py's order).
        t.append(exec_action)
        if i is not None and i < len(VIPS):
            t.append('[[resource.action]]\ntype = "vip"\naddress = "%s/24"\ninterface = "eth0"\n'
                     'announce_count = 1\nannounce_interval = "100ms"\n' % VIPS[i])
    return "".join(t)


def vip_of(res):
    i = int(res[1:]) if res[1:].isdigit() else None
    return VIPS[i] if i is not None and i < len(VIPS) else None


# ---- the checker -----------------------------------------------------------
Violation = collections.namedtuple("Violation", "kind t_ms text")
ACQ = re.compile(r"^(acquire|release) (\S+)$")


def replay(events, bound=thaw_bound_ms):
    """Master intervals per resource from the event log, and the safety
    violations in it (overlap, late-release: a thawed node's release hook
    later than bound(resources it held) ms after its thaw). Returns (intervals, open,
    violations, index) where intervals[res] = [(node, t0, t1)], open[res] =
    {node: t0} at the end, and index maps each violation to its event index."""
    master = collections.defaultdict(dict)   # res -> {node: t0}
    intervals = collections.defaultdict(list)
    frozen = set()
    spans = collections.defaultdict(list)     # node -> [[t_freeze, t_thaw]]: serving nothing
    pending = {}                              # (node, res) -> deadline once thawed
    window = {}                               # node -> ms its last thaw allows
    viol, where = [], []

    def close(node, res, t):
        t0 = master[res].pop(node, None)
        if t0 is not None:
            intervals[res].append((node, t0, t))
        pending.pop((node, res), None)

    for idx, e in enumerate(events):
        for (n, r), d in list(pending.items()):
            if d is not None and e.t_ms > d:
                viol.append(Violation("late-release", d, "node%d still master of %s %d ms after "
                                      "its thaw" % (n, r, window[n])))
                where.append(idx)
                pending[(n, r)] = float("inf")  # once
        if e.text == "@freeze":
            frozen.add(e.node)
            spans[e.node].append([e.t_ms, float("inf")])
            continue
        if e.text == "@thaw":
            frozen.discard(e.node)
            if spans[e.node]:
                spans[e.node][-1][1] = e.t_ms
            window[e.node] = bound(sum(1 for m in master.values() if e.node in m))
            for k in pending:
                if k[0] == e.node:
                    pending[k] = e.t_ms + window[e.node]
            continue
        if e.text == "@kill" or e.text.startswith("@exit"):
            if e.node in frozen:
                spans[e.node][-1][1] = e.t_ms
            frozen.discard(e.node)
            for r in list(master):
                close(e.node, r, e.t_ms)
            continue
        m = ACQ.match(e.text)
        if not m:
            continue
        ev, res = m.groups()
        if ev == "acquire":
            for o in set(master[res]) - {e.node}:
                thawed = spans[o][-1][1] if spans[o] else float("-inf")
                if o in frozen:
                    pending.setdefault((o, res), None)
                elif e.t_ms - thawed <= window.get(o, 0):
                    # Granted right after the old master's thaw (its
                    # eviction and the DLM's recovery ran while it was
                    # frozen): the same window, from the thaw.
                    pending.setdefault((o, res), thawed + window[o])
                else:
                    viol.append(Violation("overlap", e.t_ms, "node%d acquired %s at %.0f ms while "
                                          "node%d was master (since %.0f ms)"
                                          % (e.node, res, e.t_ms, o, master[res][o])))
                    where.append(idx)
            master[res].setdefault(e.node, e.t_ms)
        else:
            close(e.node, res, e.t_ms)
    replay.frozen = {n: [tuple(x) for x in v] for n, v in spans.items()}
    return intervals, {r: dict(m) for r, m in master.items() if m}, viol, where


def arp_verdict(answers, thaws, bound_ms=THAW_BOUND_MS):
    """The ARP observer's lines judged: `arp-overlap` for a probe round in
    which two nodes answered for one VIP, unless one of them was thawed at
    most bound_ms before (the documented window: it gives the VIP up
    first, src/daemon/doubt.rs). Also, per such thaw, the ms from it to
    the last round in which the thawed node answered beside another."""
    viol, gone = [], {}
    for a in answers:
        if len(a.macs) < 2:
            continue
        nodes = {arpwatch.node_of_mac(m) for m in a.macs}
        near = [(n, t) for n, t in thaws if n in nodes and t <= a.t_ms <= t + bound_ms]
        if near:
            n, t = max(near, key=lambda x: x[1])
            gone[(n, t)] = a.t_ms - t
        else:
            viol.append(Violation("arp-overlap", a.t_ms, "%s answered ARP from %s in probe round %d"
                                  % (a.vip, " and ".join(a.macs), a.round)))
    return viol, sorted(gone.values())


def arp_rounds(answers):
    return answers[-1].round - answers[0].round + 1 if answers else 0


def master_at(intervals, open_, res, t):
    """Nodes master of res at host time t (ms)."""
    out = {n for n, a, b in intervals.get(res, ()) if a <= t < b}
    out |= {n for n, a in open_.get(res, {}).items() if a <= t}
    return out


def first_master_from(intervals, open_, res, t):
    """The first instant >= t at which res has a master, or None."""
    if master_at(intervals, open_, res, t):
        return t
    starts = [a for _, a, _ in intervals.get(res, ()) if a >= t]
    starts += [a for a in open_.get(res, {}).values() if a >= t]
    return min(starts) if starts else None


def _minus(a, b, cuts):
    """[a, b) minus the spans in cuts, as a list of pieces."""
    out = [(a, b)]
    for x, y in cuts:
        out = [p for s, e in out for p in ((s, min(e, x)), (max(s, y), e)) if p[0] < p[1]]
    return out


def outages(intervals, open_, res, t_end, frozen=None):
    """Gaps (a, b, node) without a master of res, after its first master:
    from a to b (None if still without one at t_end), node the master whose
    interval ended at a. A master whose VM is frozen serves nothing: its
    intervals are cut by its node's frozen spans (`frozen`: node ->
    [(t_freeze, t_thaw)], replay.frozen)."""
    frozen = frozen or {}
    iv = sorted([(p, n) for n, a, b in intervals.get(res, ()) for p in _minus(a, b, frozen.get(n, ()))]
                + [(p, n) for n, a in open_.get(res, {}).items()
                   for p in _minus(a, float("inf"), frozen.get(n, ()))])
    gaps, cover, last = [], None, None
    for (a, b), n in iv:
        if cover is None:
            cover, last = b, n
        elif a > cover:
            gaps.append((cover, a, last))
            cover, last = b, n
        elif b >= cover:
            cover, last = b, n
    if cover is not None and cover < t_end:
        gaps.append((cover, None, last))
    return gaps


def pstats(xs):
    xs = sorted(xs)
    if not xs:
        return None
    p99 = xs[min(len(xs) - 1, max(0, int(0.99 * len(xs) + 0.999) - 1))]
    return {"n": len(xs), "median": statistics.median(xs), "p99": p99, "max": xs[-1]}


# ---- the nemesis -----------------------------------------------------------
class Nemesis:
    def __init__(self, c, seed, count, k=K, log=print, budget_s=0, start=0, drain=True):
        self.c, self.seed, self.count, self.k, self.log = c, seed, count, k, log
        self.budget_s = budget_s
        self.n = c.n
        self.bound_s = liveness_s(c.knobs["dead"])
        # A long run may be made in segments (benches/run.py chaos --from):
        # this one starts at step `start` of the same seeded schedule, on
        # a freshly booted cluster; never inside an overlapping pair.
        self.drain = drain
        steps = make_schedule(seed, count, self.n, k, drain)
        while 0 < start < len(steps) and steps[start - 1].overlap:
            start += 1
        self.start = start
        self.next = start       # the first step not injected (set by _run)
        self.steps = steps[start:]
        self.variant = {i: BASE for i in range(self.n)}
        self.records = []       # one per fault: dict(step, typ, node, t0, t1, note, error)
        self.quiet = []         # (t_ms of a heal, the resources expected to have a master)
        self.vip_checks = []
        self.violations = []    # Violations found live (vip, left-behind)
        self.errors = []
        self.unexpected = []    # daemons that exited on their own
        self.wedged = []        # nodes whose kernel stopped answering: power-cycled
        self.mu = threading.Lock()
        self.m0 = None
        self.t_start = None
        self.quiet_end = None
        self.arp = None         # the ARP observer (arpwatch.Observer) while it runs
        self.answers = []       # its lines, once stopped

    # -- helpers --
    def say(self, s):
        self.log("  [%7.1f s] %s" % ((harness.now_ms() - self.t_start) / 1000 if self.t_start else 0, s))

    def cfg(self, node):
        return "/host/cfg/nem-%d.toml" % node

    def write_config(self, node, v):
        d = os.path.join(self.c.share, "cfg")
        os.makedirs(d, mode=0o755, exist_ok=True)
        path = os.path.join(d, "nem-%d.toml" % node)
        with open(path + ".tmp", "w") as f:
            f.write(config_text(node, v, self.n, self.k))
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)
        self.variant[node] = v

    def install(self):
        electd.install(self.c)
        for name, text in (("nem-prog", PROG), ("nem-wl.sh", LOOP)):
            p = os.path.join(self.c.share, name)
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o755)
        for i in range(self.n):
            self.write_config(i, BASE)

    def start_daemon(self, node):
        """Starts the daemon and returns once its main() runs: from there on
        it catches SIGHUP (see daemon::catch_signals_early). Until then, a
        reload fault's SIGHUP would end the process the kernel is still
        loading (the 8 MB binary comes over 9p: 1.5 s under TCG), which no
        daemon can help; systemd holds a reload until the start is done."""
        self.c.check(node, "%s run --config %s >>/tmp/nem.log 2>&1 & echo $! >/tmp/nem.pid"
                     % (GUEST_BIN, self.cfg(node)))
        # rc 0: caught; 1: not yet; 2: the process is gone (heal_all says so).
        caught = ("p=$(cat /tmp/nem.pid); [ -d /proc/$p ] || exit 2; "
                  "c=$(awk '/^SigCgt/ {print $2}' /proc/$p/status) && [ $(( 0x$c & 1 )) = 1 ]")
        until(60, "daemon on node%d in main()" % node,
              lambda: self.c.exec(node, caught)[0] in (0, 2))

    def daemon_alive(self, node):
        return self.c.exec(node, "kill -0 $(cat /tmp/nem.pid) 2>/dev/null")[0] == 0

    def start_loop(self, node):
        self.c.check(node, "rm -f /tmp/nem-wl-stop; /host/nem-wl.sh %s >/dev/null 2>&1 & "
                     "echo $! >/tmp/nem-wl.pid" % self.cfg(node))

    def node_up(self, node):
        """Boot a node that is down (killed, fenced) and start its daemon
        and workload loop; returns True if it had to."""
        if self.c.alive(node):
            return False
        self.c.start(node)
        self.start_daemon(node)
        self.start_loop(node)
        return True

    def reboot(self, node):
        if self.c.alive(node):
            self.c.kill(node)
        self.node_up(node)

    def masters_now(self, res):
        """Who the event log says is master of res now (never the daemon)."""
        iv, op, _, _ = replay(self.c.events(since=self.m0))
        return sorted(op.get(res, {}))

    # -- faults: each returns a note; the heal time is when it returns --
    def f_sigkill(self, node, p):  # node: the target (the busiest one if the step says so)
        self.c.check(node, "kill -9 $(cat /tmp/nem.pid)")
        # A daemon whose lock call sleeps in the kernel (dlmfs while the DLM
        # waits for a partitioned node to be declared dead) exits only once
        # that call returns: seen 30 s after a kill during a partition.
        until(120, "daemon on node%d gone" % node, lambda: not self.daemon_alive(node))
        time.sleep(p["pause"])
        rc, _, err = self.c.exec(node, "%s cleanup --config %s" % (GUEST_BIN, self.cfg(node)), timeout=120)
        self.start_daemon(node)
        return "cleanup rc=%d" % rc

    def f_sigstop(self, node, p):
        self.c.check(node, "kill -STOP $(cat /tmp/nem.pid)")
        time.sleep(p["dur"])
        self.c.check(node, "kill -CONT $(cat /tmp/nem.pid)")
        return ""

    def f_freeze(self, node, p):
        self.c.freeze(node)
        try:
            time.sleep(p["dur"])
        finally:
            self.c.thaw(node)
        # Fenced by o2cb (QEMU exits), or the daemon in doubt: reboot.
        time.sleep(5)
        if not self.c.alive(node):
            self.node_up(node)
            return "fenced by o2cb, booted again"
        doubt = self.c.exec(node, "test -e %s/membership-in-doubt" % RUNTIME)[0] == 0
        if doubt:
            self.reboot(node)
            return "daemon in doubt, rebooted"
        return "not evicted (no doubt), left running"

    def f_power(self, node, p):
        self.c.kill(node)
        time.sleep(p["off"])
        self.node_up(node)
        return ""

    def f_partition(self, node, p):
        self.c.netcut(node)
        try:
            time.sleep(p["dur"])
        finally:
            self.c.netrestore(node)
        time.sleep(3)
        if self.node_up(node):
            return "fenced by o2cb, booted again"
        return "still up"

    def f_netsplit(self, node, p):
        self.c.netsplit(node, p["other"])
        try:
            time.sleep(p["dur"])
        finally:
            self.c.netjoin()
        time.sleep(3)
        up = [n for n in (node, p["other"]) if self.node_up(n)]
        return "fenced by o2cb, booted again: %s" % up if up else "both still up"

    def f_netem(self, node, p):
        # On the guest's own egress (guest/netem.c: the host has no
        # sch_netem): what it sends to the others, o2net included.
        self.c.check(node, "netem eth0 %d %d %s" % (p["delay"], p["jitter"], p["loss"]))
        try:
            time.sleep(p["dur"])
        finally:
            if self.c.alive(node):
                self.c.exec(node, "netem eth0 off")
        time.sleep(3)
        if self.node_up(node):
            return "fenced by o2cb, booted again"
        return "still up"

    def f_release(self, node, p):
        ms = self.masters_now(p["res"])
        if len(ms) != 1:
            return "skipped: masters of %s per the log: %s" % (p["res"], ms)
        node = ms[0]
        self._target(node)
        rc, out, err = self.c.exec(node, "%s release %s --hold-off %ds --config %s"
                                   % (GUEST_BIN, p["res"], max(1, round(p["hold"])), self.cfg(node)),
                                   timeout=120)
        t = time.monotonic()
        if p["resume"] is not None:
            time.sleep(p["resume"])
            self.c.exec(node, "%s resume %s --config %s" % (GUEST_BIN, p["res"], self.cfg(node)),
                        timeout=60)
            return "node%d release rc=%d, resumed after %.1f s" % (node, rc, p["resume"])
        time.sleep(max(0, p["hold"] - (time.monotonic() - t)))
        return "node%d release rc=%d%s" % (node, rc, "" if rc == 0 else " " + err.strip()[-200:])

    def f_drain(self, node, p):
        """`drain` the node mastering p["res"] (its release steps, then its
        locks), keep it out for p["hold"] s, then `undrain`."""
        ms = self.masters_now(p["res"])
        if len(ms) != 1:
            return "skipped: masters of %s per the log: %s" % (p["res"], ms)
        node = ms[0]
        self._target(node)
        cfg = self.cfg(node)
        t = time.monotonic()
        rc, out, err = self.c.exec(node, "%s drain --reason nemesis --config %s" % (GUEST_BIN, cfg),
                                   timeout=120)
        time.sleep(max(0, p["hold"] - (time.monotonic() - t)))
        urc, _, uerr = self.c.exec(node, "%s undrain --config %s" % (GUEST_BIN, cfg), timeout=60)
        return "node%d drain rc=%d, undrain rc=%d after %.1f s%s" % (
            node, rc, urc, time.monotonic() - t,
            "" if rc == 0 and urc == 0 else " " + (err + uerr).strip()[-200:])

    def f_reload(self, node, p):
        v = Variant(p["poll"], p["extra"], p["remove"])
        self.write_config(node, v)
        time.sleep(0.2)  # older than the daemon's 100 ms settle check
        self.c.check(node, "kill -HUP $(cat /tmp/nem.pid)")
        return "poll=%s extra=%s remove=%s" % v

    def f_health(self, node, p):
        ms = self.masters_now(CHECKED)
        node = ms[0] if len(ms) == 1 else 0
        self._target(node)
        self.c.check(node, "touch /tmp/nem-unhealthy")
        try:
            time.sleep(p["dur"])
        finally:
            self.c.exec(node, "rm -f /tmp/nem-unhealthy")
        return "on node%d (master per the log: %s)" % (node, ms)

    def _target(self, node):
        """A runtime-picked node, for charging gaps to this fault."""
        with self.mu:
            for r in self.records:
                if r["thread"] == threading.current_thread().name:
                    r["node"] = node

    def run_step(self, st):
        rec = {"step": st.i, "typ": st.typ, "node": st.node, "other": st.params.get("other"),
               "t0": harness.now_ms(),
               "t1": None, "note": "", "error": None, "thread": threading.current_thread().name}
        with self.mu:
            self.records.append(rec)
        try:
            node = st.node
            if node is None and st.typ not in RUNTIME_TARGET:
                _, op, _, _ = replay(self.c.events(since=self.m0))
                count = collections.Counter(n for ms in op.values() for n in ms)
                node = max(range(self.n), key=lambda i: (count[i], -i))
                self._target(node)
            rec["note"] = getattr(self, "f_" + st.typ)(node, st.params)
        except Exception as e:  # a harness error is no violation: recorded, the run goes on
            rec["error"] = "%s: %s" % (type(e).__name__, e)
            self.errors.append("step %d %s: %s" % (st.i, st.typ, rec["error"]))
            traceback.print_exc()
        rec["t1"] = harness.now_ms()
        self.say("%s -> %s%s%s (%.1f s)" % (fmt_step(st), "" if st.node is not None or rec["node"] is None
                                            else "[node%d] " % rec["node"], rec["note"],
                                          " ERROR " + rec["error"] if rec["error"] else "",
                                          (rec["t1"] - rec["t0"]) / 1000))

    def power_cycle_wedged(self, node, why):
        """Node `node`'s agent does not answer: its kernel is stuck (seen
        once: o2quo_conn_up's BUG at fs/ocfs2/cluster/quorum.c:272 on an
        o2net reconnect right after a thaw, then a soft lockup). Nothing on
        it runs, so it acts no more than a dead node, but o2cb fences only
        by the node's own hand, which a stuck kernel cannot do: power-cycle
        it, as a fence device or an operator would. A finding about the
        kernel, reported beside the verdict; not a violation."""
        bug = ""
        try:
            with open(os.path.join(self.c.run, "node%d.console" % node), errors="replace") as f:
                lines = [l.strip() for l in f if "kernel BUG" in l or "soft lockup" in l]
            bug = lines[0] if lines else ""
        except OSError:
            pass
        self.wedged.append("node%d at %.0f ms: %s%s" % (node, harness.now_ms(), why,
                                                       "; console: " + bug if bug else ""))
        self.say("node%d does not answer (%s): power-cycled" % (node, bug or why))
        self.reboot(node)

    def heal_all(self):
        """Anything o2cb fenced on its own (a partition's late fence) is
        booted again; a node whose daemon died is restarted after cleanup;
        a node that does not answer at all is power-cycled."""
        for i in range(self.n):
            try:
                if self.node_up(i):
                    self.say("node%d was down (fenced?): booted again" % i)
                elif not self.daemon_alive(i):
                    # Nothing here stops a daemon for good: it exited on its
                    # own. Not a violation of the promise, but a finding.
                    tail = self.c.exec(i, "tail -n 20 /tmp/nem.log")[1]
                    self.unexpected.append("node%d's daemon exited on its own at %.0f ms; log tail:\n%s"
                                           % (i, harness.now_ms(), tail))
                    self.c.exec(i, "%s cleanup --config %s" % (GUEST_BIN, self.cfg(i)), timeout=120)
                    self.start_daemon(i)
                    self.say("node%d's daemon was gone: cleanup + run" % i)
            except harness.ExecTimeout as e:
                try:
                    self.power_cycle_wedged(i, str(e))
                except Exception as e2:
                    self.errors.append("heal node%d: %s" % (i, e2))
            except Exception as e:
                self.errors.append("heal node%d: %s" % (i, e))

    def expected(self):
        out = set()
        for v in self.variant.values():
            out |= set(v.names(self.k))
        return sorted(out)

    def settle(self):
        """Wait (at most the liveness bound) until the log shows a master
        of every expected resource, then compare VIPs with the log."""
        exp = self.expected()
        t_heal = harness.now_ms()
        end = time.monotonic() + self.bound_s

        def all_mastered():
            _, op, _, _ = replay(self.c.events(since=self.m0))
            return all(op.get(r) for r in exp)
        while time.monotonic() < end and not all_mastered():
            time.sleep(0.5)
        time.sleep(2)
        self.say("settled in %.1f s" % ((harness.now_ms() - t_heal) / 1000))
        self.check_vips()

    def check_vips(self):
        mk = self.c.mark()
        have = {}
        for i in range(self.n):
            if not self.c.alive(i):
                continue
            try:
                out = self.c.exec(i, "ip -4 -o addr show dev eth0")[1]
            except harness.ExecTimeout as e:
                # A node that does not answer is healed after the step.
                self.errors.append("VIP check of node%d: %s" % (i, e))
                continue
            for v in VIPS:
                if (" %s/" % v) in out:
                    have.setdefault(v, set()).add(i)
        moved = {m.group(2) for e in self.c.events(since=mk)
                 for m in [ACQ.match(e.text)] if m}
        _, op, _, _ = replay(self.c.events(since=self.m0))
        t = harness.now_ms()
        for r in self.expected():
            v = vip_of(r)
            if v is None or r in moved:
                continue
            ms, hs = set(op.get(r, {})), have.get(v, set())
            self.vip_checks.append((t, r, sorted(ms), sorted(hs)))
            if hs - ms:
                self.violations.append(Violation("vip", t, "%s on node(s) %s, not master of %s "
                                                 "(master per the log: %s)" % (v, sorted(hs - ms), r, sorted(ms))))
            if ms - hs:
                self.violations.append(Violation("vip", t, "%s missing on master node(s) %s of %s"
                                                 % (v, sorted(ms - hs), r)))

    def run(self):
        c = self.c
        self.log("NEMESIS seed=%s faults=%d resources=%d nodes=%d liveness bound %.1f s"
                 % (self.seed, self.count, self.k, self.n, self.bound_s))
        self.log("  replay: DLM_ELECTD_NEMESIS_SEED=%s DLM_ELECTD_NEMESIS_FAULTS=%d "
                 "DLM_ELECTD_NEMESIS_RESOURCES=%d" % (self.seed, self.count, self.k))
        for st in self.steps:
            self.log("  " + fmt_step(st))
        self.m0 = c.mark()
        self.t_start = harness.now_ms()
        self.arp = arpwatch.Observer(c, VIPS, ARP_PERIOD_MS)
        try:
            return self._run()
        finally:
            err = self.arp.stop()
            if not self.answers:
                self.answers = self.arp.answers()
            if err.strip():
                self.log("  arpwatch: " + err.strip()[-2000:])

    def _run(self):
        c = self.c
        self.install()
        for i in range(self.n):
            self.start_daemon(i)
        self.settle()
        for i in range(self.n):
            self.start_loop(i)
        threads = []
        t_faults = time.monotonic()
        for st in self.steps:
            if not threads and self.budget_s and time.monotonic() - t_faults > self.budget_s:
                self.say("time budget of %.0f s spent: faults %d to %d of %d injected"
                         % (self.budget_s, self.start, st.i - 1, self.count))
                break
            self.next = st.i + 1
            time.sleep(st.gap)
            th = threading.Thread(target=self.run_step, args=(st,), name="nemesis-%d" % st.i)
            th.start()
            threads.append(th)
            if st.overlap:
                continue
            for th in threads:
                th.join()
            threads = []
            self.heal_all()
            with self.mu:  # a heal: liveness is judged from here (check())
                self.quiet.append((harness.now_ms(), self.expected()))
            if st.settle:
                self.settle()
        self.settle()
        self.quiet_end = harness.now_ms()
        self.stop_all()
        return self.check()

    def stop_all(self):
        """SIGTERM every daemon (they release everything), end the workload
        loops; then nothing may be left: no master interval open, no VIP."""
        c = self.c
        for i in range(self.n):
            if c.alive(i):
                c.exec(i, "touch /tmp/nem-wl-stop")
        for i in range(self.n):
            if c.alive(i) and self.daemon_alive(i):
                try:
                    electd.signal(c, i, "TERM", tag="nem", wait=120)
                except Exception as e:
                    self.violations.append(Violation("left-behind", harness.now_ms(),
                                                     "node%d's daemon did not exit on SIGTERM: %s" % (i, e)))
        for i in range(self.n):
            if c.alive(i):
                try:
                    until(60, "node%d's workload loop to end" % i, lambda: c.exec(
                        i, "kill -0 $(cat /tmp/nem-wl.pid) 2>/dev/null")[0] != 0, every=0.5)
                except TimeoutError as e:
                    self.errors.append(str(e))
        time.sleep(1)
        for i in range(self.n):
            if not c.alive(i):
                continue
            out = c.exec(i, "ip -4 -o addr show dev eth0")[1]
            for v in VIPS:
                if (" %s/" % v) in out:
                    self.violations.append(Violation("left-behind", harness.now_ms(),
                                                     "%s still on node%d after every daemon stopped" % (v, i)))
        # The observer's view up to here: every VIP must have gone quiet.
        if not self.arp.alive():
            self.errors.append("the ARP observer died: %s" % self.arp.stop().strip()[-500:])
        self.answers = self.arp.answers()
        for v in VIPS:
            mine = [a for a in self.answers if a.vip == v]
            if mine and mine[-1].macs:
                self.violations.append(Violation("left-behind", mine[-1].t_ms, "%s still answered ARP "
                                                 "(%s) after every daemon stopped" % (v, ",".join(mine[-1].macs))))
        _, op, _, _ = replay(c.events(since=self.m0))
        for r, ms in sorted(op.items()):
            self.violations.append(Violation("left-behind", harness.now_ms(), "%s: no release on node(s) %s "
                                             "after every daemon stopped" % (r, sorted(ms))))

    # -- the verdict --
    def check(self):
        evs = self.c.events(since=self.m0)
        iv, op, viol, where = replay(evs)
        frozen = replay.frozen
        excerpts = []
        for v, idx in zip(viol, where):
            lo, hi = max(0, idx - 12), min(len(evs), idx + 4)
            excerpts.append("\n".join("%.3f node%d %s" % e for e in evs[lo:hi]))
        viol = list(viol) + self.violations
        thaws = [(e.node, e.t_ms) for e in evs if e.text == "@thaw"]
        arp_viol, vip_gone = arp_verdict(self.answers, thaws)
        viol += arp_viol
        # Fault windows, in time order, for liveness and for charging gaps.
        recs = sorted(self.records, key=lambda r: r["t0"])
        starts = sorted([r["t0"] for r in recs] +
                        [e.t_ms for e in evs if e.text.startswith("@exit")])
        live = {"ok": 0, "inconclusive": 0}
        for t_heal, exp in self.quiet:
            nxt = [s for s in starts if s > t_heal]
            w_end = min(nxt) if nxt else self.quiet_end
            for r in exp:
                t = first_master_from(iv, op, r, t_heal)
                if t is not None and t <= t_heal + self.bound_s * 1000 and t <= w_end:
                    live["ok"] += 1
                elif w_end >= t_heal + self.bound_s * 1000:
                    viol.append(Violation("liveness", t_heal, "%s: no master within %.0f s of the "
                                          "heal at %.0f ms (first master at %s)" % (
                                              r, self.bound_s, t_heal, "%.0f ms" % t if t else "never")))
                    near = [e for e in evs if t_heal - 20000 <= e.t_ms <= t_heal + self.bound_s * 1000
                            and (e.text.startswith("@") or e.text.endswith(" " + r))]
                    excerpts.append("\n".join("%.3f node%d %s" % e for e in near[:40]))
                else:
                    live["inconclusive"] += 1
        # Time without a master, charged to a fault type.
        t_end = evs[-1].t_ms if evs else harness.now_ms()
        exits = collections.defaultdict(set)
        for e in evs:
            if e.text.startswith("@exit"):
                exits[e.t_ms].add(e.node)
        t_stop = self.quiet_end
        without = collections.defaultdict(list)
        # Election resources only: the workload lock is free between two
        # programs by design (its safety is checked above, not its gaps).
        for r in sorted((set(iv) | set(op)) & set(resources(self.k))):
            for a, b, lost in outages(iv, op, r, t_end, frozen):
                if a >= t_stop:
                    continue  # the final stop
                # Charged to the fault active then on the node that lost
                # mastership; an o2cb fence (@exit) of a node no fault
                # targeted is "fence"; else the fault healed last, within
                # the liveness bound ("TYPE(after)": a preempt handover to a
                # node back from it, a check's rise); else the first active
                # fault ("TYPE(other node)"); else "none".
                active = [x for x in recs if x["t0"] <= a <= (x["t1"] or t_end)]
                mine = [x for x in active if lost in (x["node"], x["other"])]
                healed = [x for x in recs if x["t1"] is not None and x["t1"] <= a
                          and a - x["t1"] <= self.bound_s * 1000]
                if mine:
                    f = mine[0]["typ"]
                elif lost in exits.get(a, ()):
                    f = "fence"
                elif healed:
                    f = max(healed, key=lambda x: x["t1"])["typ"] + "(after)"
                elif active:
                    f = active[0]["typ"] + "(other node)"
                else:
                    f = "none"
                without[f].append(((b if b is not None else t_end) - a) / 1000)
        by_type = collections.Counter(r["typ"] for r in self.records)
        res = {
            "seed": self.seed, "faults": len(self.records), "planned": self.count, "resources": self.k,
            "drain": self.drain,
            # The schedule's steps this run injected: [from, to).
            "from": self.start, "to": self.next,
            # Pairs of faults run at once (the first of each pair is marked).
            "overlapping": sum(1 for st in self.steps[:len(self.records)] if st.overlap),
            "liveness_bound_s": self.bound_s,
            "faults_by_type": dict(by_type),
            "fault_notes": [(r["step"], r["typ"], r["node"], r["note"], r["error"]) for r in recs],
            "violations": [v._asdict() for v in viol],
            "excerpts": excerpts,
            "liveness": live,
            "without_master_s": {k: pstats(v) for k, v in sorted(without.items())},
            # The samples behind those, for merging segments of a long run.
            "without_master_raw": {k: v for k, v in sorted(without.items())},
            "vip_gone_raw": vip_gone,
            "vip_checks": len(self.vip_checks),
            "arp_rounds": arp_rounds(self.answers),
            # Per thaw of a node that kept a VIP another node took over: ms
            # from the thaw to its last ARP answer beside the new master.
            "vip_gone_after_thaw_ms": pstats(vip_gone),
            "errors": self.errors,
            "unexpected_exits": self.unexpected,
            "wedged": self.wedged,
            "events": len(evs),
        }
        return res


def report(res, log=print):
    log("NEMESIS seed=%s: %d faults (of %d planned) %s"
        % (res["seed"], res["faults"], res["planned"], res["faults_by_type"]))
    log("  liveness (bound %.1f s): %d ok, %d inconclusive; VIP checks: %d; ARP probe rounds: %d"
        % (res["liveness_bound_s"], res["liveness"]["ok"], res["liveness"]["inconclusive"], res["vip_checks"],
           res.get("arp_rounds", 0)))
    g = res.get("vip_gone_after_thaw_ms")
    if g:
        log("  a thawed node's VIP answered beside the new master's for (ms): n %d, median %.0f, max %.0f"
            % (g["n"], g["median"], g["max"]))
    log("  time without a master (s), per fault type: n, median, p99, max")
    for k, s in res["without_master_s"].items():
        if s:
            log("    %-18s %3d  %6.2f  %6.2f  %6.2f" % (k, s["n"], s["median"], s["p99"], s["max"]))
    for e in res["errors"]:
        log("  harness error: %s" % e)
    for e in res.get("wedged", ()):
        log("  WEDGED (power-cycled): %s" % e)
    for e in res.get("unexpected_exits", ()):
        log("  FINDING: %s" % e)
    log("  violations: %d" % len(res["violations"]))
    for v in res["violations"]:
        log("    %s at %.0f ms: %s" % (v["kind"], v["t_ms"], v["text"]))
    for x in res["excerpts"]:
        log("    --- event log excerpt ---\n" + "\n".join("    " + l for l in x.splitlines()))


def run(c, count=FAULTS, seed=None, k=K, log=print, budget_s=0, start=0, drain=True):
    if seed is None:
        seed = int(SEED) if SEED else random.SystemRandom().randrange(1 << 32)
    log("NEMESIS SEED %s" % seed)
    nm = Nemesis(c, seed, count, k, log, budget_s, start, drain)
    res = nm.run()
    report(res, log)
    # For a post-mortem beside events.log (which stays until the next boot
    # in this run dir): the schedule, each fault's host times and target.
    path = os.path.join(c.run, "nemesis.json")
    with open(path, "w") as f:
        json.dump({"schedule": [fmt_step(x) for x in nm.steps], "records": nm.records,
                   "quiet": nm.quiet, "result": res}, f, indent=1)
    log("  schedule, fault records and verdict: %s (events: %s)" % (path, c.events_path))
    return res


@scenario(nodes=3, fresh=True, timeout=120 + 45 * FAULTS, **FAST)
def test_nemesis(c):
    res = run(c, budget_s=BUDGET_S)
    assert not res["violations"], "%d violation(s), seed %s: %s" % (
        len(res["violations"]), res["seed"], res["violations"][:5])
    assert not res["unexpected_exits"], "seed %s: %s" % (res["seed"], res["unexpected_exits"])


def selftest():
    """The checker on made-up logs (no VM): `nemesis.py --selftest`."""
    # Drains replace some release steps and change nothing else.
    plain, drained = make_schedule(7, 300), make_schedule(7, 300, drain=True)
    assert [s._replace(typ="release") if s.typ == "drain" else s for s in drained] == plain
    assert 0 < sum(s.typ == "drain" for s in drained) < sum(s.typ == "release" for s in plain)
    E = harness.Event
    kinds = lambda evs: [v.kind for v in replay(evs)[2]]
    # A plain handover, a takeover after @kill and after @exit: fine.
    assert kinds([E(0, 0, "acquire a"), E(5, 0, "release a"), E(6, 1, "acquire a"),
                  E(7, 1, "@kill"), E(9, 2, "acquire a"), E(10, 2, "@exit rc=0"),
                  E(11, 0, "acquire a")]) == []
    # Two masters, and two workload holders.
    assert kinds([E(0, 0, "acquire a"), E(1, 1, "acquire a")]) == ["overlap"]
    assert kinds([E(0, 0, "acquire @wl"), E(1, 2, "acquire @wl")]) == ["overlap"]
    # A frozen master: allowed until 1 s after its thaw, not later.
    ok = [E(0, 0, "acquire a"), E(1, 0, "@freeze"), E(20, 1, "acquire a"), E(30, 0, "@thaw"),
          E(900, 0, "release a"), E(5000, 1, "release a")]
    assert kinds(ok) == []
    late = ok[:4] + [E(1100, 0, "release a")]
    assert kinds(late) == ["late-release"]
    # A node that held three: 150 ms more for each release hook after the first.
    three = [E(0, 0, "acquire a"), E(0, 0, "acquire b"), E(0, 0, "acquire c"), E(1, 0, "@freeze"),
             E(20, 1, "acquire a"), E(30, 0, "@thaw"), E(1170, 0, "release b")]
    assert kinds(three + [E(1325, 0, "release a")]) == []
    assert kinds(three + [E(1340, 0, "release a")]) == ["late-release"]
    # Granted just after the thaw (recovery ended then): the same window.
    just = [E(0, 0, "acquire a"), E(1, 0, "@freeze"), E(30, 0, "@thaw"), E(500, 1, "acquire a"),
            E(900, 0, "release a")]
    assert kinds(just) == []
    assert kinds(just[:4] + [E(1200, 0, "release a")]) == ["late-release"]
    assert kinds([E(0, 0, "acquire a"), E(1, 0, "@freeze"), E(30, 0, "@thaw"),
                  E(1500, 1, "acquire a")]) == ["overlap"], "past the window: two masters"
    # The thawed node acquiring again beside the new master is no allowance.
    assert kinds(ok[:4] + [E(40, 0, "release a"), E(50, 0, "acquire a")]) == ["overlap"]
    # A SIGSTOPped daemon (no @freeze) gets no allowance.
    assert kinds([E(0, 0, "acquire a"), E(1, 1, "acquire a"), E(2, 0, "release a")]) == ["overlap"]
    iv, op, _, _ = replay(ok)
    assert outages(iv, op, "a", 6000) == [(5000, None, 1)]
    assert outages(iv, op, "a", 6000, replay.frozen) == [(1, 20, 0), (5000, None, 1)]
    assert first_master_from(iv, op, "a", 10) == 10 and master_at(iv, op, "a", 25) == {0, 1}
    assert [fmt_step(x) for x in make_schedule(7, 30)] == [fmt_step(x) for x in make_schedule(7, 30)]
    # The verdict on a made-up run: node1 frozen (its r00 gap, 12 s, is
    # "freeze"), node2 fenced by o2cb meanwhile (its r01 gap is "fence"),
    # r02 released and never mastered again after the heal (liveness).
    class FakeCluster:
        n, knobs, share = 3, {"dead": 5}, "/nonexistent"

        def events(self, since=0):
            return evs
    evs = [E(0, 1, "acquire r00"), E(0, 2, "acquire r01"), E(0, 0, "acquire r02"),
           E(1000, 1, "@freeze"), E(2000, 2, "@exit rc=0"), E(3000, 0, "release r02"),
           E(13000, 0, "acquire r00"), E(14000, 0, "acquire r01"), E(15000, 1, "@thaw"),
           E(15200, 1, "release r00"), E(200000, 0, "release r00")]
    nm = Nemesis(FakeCluster(), 1, 1, k=3, log=lambda s: None)
    nm.records = [{"step": 0, "typ": "freeze", "node": 1, "other": None, "t0": 900, "t1": 20000,
                   "note": "", "error": None, "thread": "x"}]
    nm.quiet, nm.quiet_end, nm.m0 = [(20000, ["r00", "r01", "r02"])], 190000, 0
    res = nm.check()
    assert [v["kind"] for v in res["violations"]] == ["liveness"], res["violations"]
    assert "r02" in res["violations"][0]["text"], res["violations"]
    json.dumps({"records": nm.records, "quiet": nm.quiet, "result": res})  # nemesis.json
    w = res["without_master_s"]
    assert sorted(w) == ["fence", "freeze", "freeze(other node)"] and w["fence"]["max"] == 12.0, w
    assert w["freeze"]["n"] == 1 and w["freeze"]["max"] == 12.0, w
    # The ARP observer: two MACs in a round only just after one's thaw.
    A, m0, m1 = arpwatch.Answer, "52:54:00:dc:00:10", "52:54:00:dc:00:11"
    answers = [A(100, 10, "v", (m0,)), A(20000, 2000, "v", (m1,)), A(30100, 3001, "v", (m0, m1)),
               A(30400, 3031, "v", (m0, m1)), A(30410, 3032, "v", (m1,))]
    assert arp_verdict(answers, [(0, 30000)]) == ([], [400.0])
    v, _ = arp_verdict(answers, [(0, 29300)])
    assert [x.kind for x in v] == ["arp-overlap"] and "round 3031" in v[0].text, v
    assert [x.kind for x in arp_verdict(answers, [(2, 30000)])[0]] == ["arp-overlap"] * 2
    assert arpwatch.parse_reply(arpwatch.probe(5, "198.18.77.120")) is None  # a request, not a reply
    print("nemesis selftest: ok")


if __name__ == "__main__":
    # `tests/cluster/nemesis.py [--no-build]` runs this scenario alone
    # (through suite.main, like run.py; not in its MODULES for now).
    import sys
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(selftest())
    import suite
    sys.exit(suite.main(["nemesis"] + sys.argv[1:]))
