"""A frozen node (issue 18): the VM of a master paused past o2cb's dead
threshold and resumed must never stay master beside the new one.

The QEMU of a node is SIGSTOPped (what a hypervisor pause or a stalled host
does to the guest) until the survivor has taken over, then SIGCONTed. o2cb
may fence the resumed node by itself (its heartbeat write timeout fires
first: QEMU exits, -no-reboot) or not (a race, ../../docs/dlmfs.md §1.9);
when it does not, the daemon must have run its release steps within 1 s of
the resume. Every run says which of the two happened. A resumed node's DLM
is split from the cluster's, so it is rebooted after each run.

A `run-locked` program on the frozen node gets SIGTERM within the same
bound. Also: the daemon alone frozen (the node heartbeats: nobody takes over, it
stays master), a standby frozen (the master keeps mastership), and a freeze
shorter than the threshold (nothing happens).
"""
import os
import re
import time

from suite import scenario
from electd import (FAST, GUEST_BIN, HOOK, POLL, install, last_event, sole_master, start, states,
                    status, stop_all, until)

VIP = "198.18.77.110"
BOUND_MS = 1000
RUNS = int(os.environ.get("DLM_ELECTD_FREEZE_RUNS", "10"))


def freeze_config(c, name):
    """`web`: an exec hook then a VIP (released in reverse: the VIP goes
    before the release hook reports, so the hook's event bounds it);
    `db`: an exec hook, preferring node0 with preempt."""
    os.makedirs(os.path.join(c.share, "cfg"), mode=0o755, exist_ok=True)
    path = os.path.join(c.share, "cfg", name + ".toml")
    with open(path, "w") as f:
        f.write('[lock]\nbackend = "dlmfs"\ndomain = "electd"\n'
                '[daemon]\npoll_interval = "%s"\n'
                '[[resource]]\nname = "web"\n'
                '[[resource.action]]\ntype = "exec"\nacquire = %s\nrelease = %s\n'
                '[[resource.action]]\ntype = "vip"\naddress = "%s/24"\ninterface = "eth0"\n'
                'announce_count = 2\nannounce_interval = "100ms"\nrefresh = "1s"\n'
                '[[resource]]\nname = "db"\nprefer = ["node0", "node1"]\npreempt = true\n'
                '[[resource.action]]\ntype = "exec"\nacquire = %s\nrelease = %s\n'
                % (POLL, HOOK, HOOK, VIP, HOOK, HOOK))
    os.chmod(path, 0o644)
    return "/host/cfg/%s.toml" % name


def has_vip(c, node):
    return (" %s/" % VIP) in c.check(node, "ip -4 -o addr show dev eth0")


def masters_of(c, cfgs, res):
    return [n for n, s in states(c, [0, 1], cfgs.get, res).items() if s == "master"]


def assert_one_master_frozen(c, since=0, bound_ms=BOUND_MS):
    """Replays the event log like electd.assert_one_master, with one
    allowance: another node may acquire a resource whose master is frozen
    (@freeze .. @thaw), and the frozen node must then give it up (its
    release, @kill or @exit) within bound_ms of its @thaw."""
    master = {}      # resource -> set of nodes master of it
    frozen = set()
    pending = {}     # (node, resource) -> deadline (ms) once thawed, else None
    last_t = 0
    for e in c.events(since=since):
        last_t = e.t_ms
        for (n, r), d in pending.items():
            assert d is None or e.t_ms <= d, \
                "node%d still master of %s %d ms after its thaw" % (n, r, e.t_ms - d + bound_ms)
        if e.text == "@freeze":
            frozen.add(e.node)
            continue
        if e.text == "@thaw":
            frozen.discard(e.node)
            for k in pending:
                if k[0] == e.node:
                    pending[k] = e.t_ms + bound_ms
            continue
        if e.text == "@kill" or e.text.startswith("@exit"):
            for nodes in master.values():
                nodes.discard(e.node)
            pending = {k: d for k, d in pending.items() if k[0] != e.node}
            continue
        m = re.match(r"^(acquire|release) (\S+)$", e.text)
        if not m:
            continue
        ev, res = m.groups()
        nodes = master.setdefault(res, set())
        if ev == "acquire":
            for o in nodes - {e.node}:
                assert o in frozen, "node%d acquired %s at %d ms while node%d was master" % (
                    e.node, res, e.t_ms, o)
                pending[(o, res)] = None
            nodes.add(e.node)
        else:
            nodes.discard(e.node)
            pending.pop((e.node, res), None)
    late = [(n, r) for (n, r), d in pending.items() if d is not None and last_t > d]
    assert not late, "still master after the thaw bound: %s" % late


def reboot(c, node, cfg):
    """A resumed node's DLM may be split from the cluster's: boot it anew."""
    if c.alive(node):
        c.kill(node)
    c.start(node)
    start(c, node, cfg)


def both_started(c):
    """Both nodes' daemons on freeze_config, one master of each resource;
    returns the event mark, the configs and web's master."""
    m0 = c.mark()
    install(c)
    cfgs = {i: freeze_config(c, "freeze%d" % i) for i in range(2)}
    for i in range(2):
        start(c, i, cfgs[i])
    web = sole_master(c, [0, 1], cfgs.get, "web")
    sole_master(c, [0, 1], cfgs.get, "db")
    return m0, cfgs, web


@scenario(nodes=2, fresh=True, timeout=240 + 90 * RUNS, **FAST)
def test_frozen_master_resumed_never_stays_master(c):
    m0, cfgs, _ = both_started(c)
    results = []
    try:
        for run in range(RUNS):
            frozen = masters_of(c, cfgs, "web")[0]
            other = 1 - frozen
            held = [r for r in ("web", "db") if masters_of(c, cfgs, r) == [frozen]]
            # A workload program under `run-locked` on the node to freeze:
            # it must be told (SIGTERM) too.
            job = "job%d" % run
            mk = c.mark()
            c.check(frozen, "%s run-locked %s --config %s -- /bin/sh -c 'trap \"echo term %s "
                    "> /dev/virtio-ports/events; exit 0\" TERM; echo start %s > "
                    "/dev/virtio-ports/events; sleep 1000 & wait $!' >/tmp/%s.log 2>&1 &"
                    % (GUEST_BIN, job, cfgs[frozen], job, job, job))
            c.wait_event("^start %s$" % job, node=frozen, since=mk, timeout=30)
            c.freeze(frozen)
            try:
                for r in held:
                    c.wait_event("^acquire %s$" % r, node=other, since=mk, timeout=120)
            finally:
                t = c.thaw(frozen)
            # Either o2cb fences the node (QEMU exits) or the daemon
            # releases every resource it held.
            def settled():
                if not c.alive(frozen):
                    return "fenced by o2cb"
                rel = [last_event(c, frozen, "release %s" % r, since=mk) for r in held]
                if all(rel):
                    return "released by the daemon in %d ms" % max(e.t_ms - t for e in rel)
                return None
            how = until(20, "node%d fenced or released" % frozen, settled, every=0.05)
            results.append((run, frozen, held, how))
            print("  run %d: froze master node%d (%s): %s" % (run, frozen, ",".join(held), how),
                  flush=True)
            if c.alive(frozen):
                # Which signal caught it: the daemon's own words.
                why = c.exec(frozen, "grep -o 'this [a-z]* did not run for [^:]*' "
                             "/tmp/electd.log | tail -n 1")[1].strip()
                print("    signal: %s" % (why or "(no doubt logged)"), flush=True)
                rel = [last_event(c, frozen, "release %s" % r, since=mk) for r in held]
                late = [(e.text, e.t_ms - t) for e in rel if e.t_ms - t > BOUND_MS]
                assert not late, "released later than %d ms after the resume: %s" % (BOUND_MS, late)
                assert not has_vip(c, frozen), "the resumed node still has the VIP"
                told = c.wait_event("^term %s$" % job, node=frozen, since=mk, timeout=10)
                assert told.t_ms - t <= BOUND_MS, "run-locked's program told %d ms after the " \
                    "resume" % (told.t_ms - t)
                st = status(c, frozen, cfgs[frozen])
                for r in st["resources"]:
                    assert r["state"] != "master", r
                    assert "membership" in (r["last_error"] or ""), r
            # The survivor stays master of what it took, with the VIP.
            for r in held:
                assert states(c, [other], cfgs.get, r)[other] == "master", r
            if "web" in held:
                assert has_vip(c, other)
            assert_one_master_frozen(c, m0)
            reboot(c, frozen, cfgs[frozen])
            sole_master(c, [0, 1], cfgs.get, "web")
            sole_master(c, [0, 1], cfgs.get, "db")
    finally:
        print("  summary: %d runs, o2cb fenced %d, the daemon caught %d" % (
            len(results), sum(1 for r in results if r[3].startswith("fenced")),
            sum(1 for r in results if r[3].startswith("released"))), flush=True)
        stop_all(c, 2)
    assert_one_master_frozen(c, m0)
    assert {r[1] for r in results} == {0, 1} or RUNS < 2, "both node numbers frozen"


@scenario(nodes=2, fresh=True, timeout=400, **FAST)
def test_frozen_daemon_or_standby_or_short_freeze_changes_nothing(c):
    m0, cfgs, web = both_started(c)
    try:
        # 1. Only the master's daemon frozen past the threshold: the node
        # heartbeats, nobody is evicted, mastership stands.
        mk = c.mark()
        c.check(web, "kill -STOP $(cat /tmp/electd.pid)")
        time.sleep(14)  # the freeze itself: past the 7 s threshold, past the 10 s dead time
        c.check(web, "kill -CONT $(cat /tmp/electd.pid)")
        until(10, "the daemon to notice its gap", lambda: "mastership stands" in c.check(
            web, "cat /tmp/electd.log"))
        assert states(c, [web], cfgs.get, "web")[web] == "master"
        evs = [e.text for e in c.events(since=mk) if re.match(r"^(acquire|release) ", e.text)]
        assert not evs, "a frozen daemon moved mastership: %s" % evs
        # 2. A freeze of the master's VM shorter than the threshold: nothing.
        mk = c.mark()
        c.freeze(web)
        time.sleep(3)  # the freeze itself
        c.thaw(web)
        until(10, "node%d to answer" % web, lambda: states(c, [web], cfgs.get, "web")[web] == "master")
        time.sleep(2)  # any release would show within this (poll 250 ms)
        evs = [e.text for e in c.events(since=mk) if re.match(r"^(acquire|release) ", e.text)]
        assert not evs, "a short freeze moved mastership: %s" % evs
        assert "not competing" not in c.check(web, "cat /tmp/electd.log")
        # 3. The standby's VM frozen past the threshold: the master keeps
        # mastership; the resumed standby does not compete.
        sb = 1 - web
        db = masters_of(c, cfgs, "db")[0]
        mk = c.mark()
        c.freeze(sb)
        until(60, "node%d's DLM to evict node%d" % (web, sb), lambda: c.exec(
            web, "dmesg | grep -q 'evicted node %d '" % sb)[0] == 0)
        c.thaw(sb)
        time.sleep(3)  # the resumed standby's watcher and runners act within this
        for r, m in (("web", web), ("db", db)):
            if m == web:
                assert states(c, [web], cfgs.get, r)[web] == "master", r
        rel = [e for e in c.events(since=mk, node=web) if e.text.startswith("release ")]
        assert not rel, "the master released when the standby froze: %s" % rel
        if c.alive(sb):
            st = status(c, sb, cfgs[sb])
            assert all(r["state"] != "master" for r in st["resources"]), st
        assert_one_master_frozen(c, m0)
        reboot(c, sb, cfgs[sb])
        sole_master(c, [0, 1], cfgs.get, "web")
    finally:
        stop_all(c, 2)
    assert_one_master_frozen(c, m0)
