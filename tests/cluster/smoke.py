"""Smoke scenarios: prove the VM cluster itself (o2cb, dlmfs trylock
semantics across VMs, the event channel, power-pull takeover)."""
import re

from suite import scenario

FAST = dict(dead_threshold=5, idle_ms=5000, keepalive_ms=1000, reconnect_ms=1000)


def hold(c, node, path, tag):
    """Start a background EX holder on node; returns once it holds the lock
    (waits for its "TAG acquired" event, not for a fixed time)."""
    m = c.mark()
    c.check(node, "dlmtry -H -u -E '%s' %s >/tmp/%s.log 2>&1 & echo $! >/tmp/%s.pid"
            % (tag, path, tag, tag))
    c.wait_event("^%s acquired$" % re.escape(tag), node=node, since=m, timeout=30)


def release(c, node, tag):
    """SIGTERM the holder: it closes and unlinks, then logs "TAG released"."""
    m = c.mark()
    c.check(node, "kill $(cat /tmp/%s.pid)" % tag)
    c.wait_event("^%s released$" % re.escape(tag), node=node, since=m, timeout=30)


@scenario(nodes=2, **FAST)
def test_lock_handoff(c):
    for i in range(c.n):
        c.check(i, "mkdir -p /dlm/smoke")
    hold(c, 0, "/dlm/smoke/L", "L0")
    rc, out, _ = c.exec(1, "dlmtry /dlm/smoke/L")
    assert rc == 2 and "ETXTBSY" in out, (rc, out)
    print("  node1 while node0 holds: %s" % out.strip())
    release(c, 0, "L0")
    rc, out, _ = c.exec(1, "dlmtry -t 10000 -u /dlm/smoke/L")
    assert rc == 0 and "acquired" in out, (rc, out)
    print("  node1 after node0 released: %s" % out.splitlines()[0])


@scenario(nodes=2, **FAST)
def test_event_order(c):
    m = c.mark()
    # exec returns after the guest's write() returned, i.e. after QEMU passed
    # the bytes to our socket, so node0's line must be logged first.
    c.check(0, "echo 'hello from node0' > /dev/virtio-ports/events")
    c.check(1, "echo 'hello from node1' > /dev/virtio-ports/events")
    e1 = c.wait_event("^hello from node1$", node=1, since=m, timeout=10)
    evs = [e for e in c.events(since=m) if e.text.startswith("hello")]
    assert [(e.node, e.text) for e in evs] == [(0, "hello from node0"), (1, "hello from node1")], evs
    assert evs[0].t_ms <= evs[1].t_ms
    with open(c.events_path) as f:
        lines = [l.split(" ", 2) for l in f.read().splitlines()]
    logged = [(n, t) for _, n, t in lines if t.startswith("hello")]
    assert logged[-2:] == [("node0", "hello from node0"), ("node1", "hello from node1")], logged
    print("  node0 -> node1 lines %.1f ms apart on the host clock" % (e1.t_ms - evs[0].t_ms))
    # Concurrent writers on one node (hooks may overlap): none may be lost.
    m = c.mark()
    burst = ("for w in 1 2 3 4; do (for k in 1 2 3 4 5; do echo \"burst $w.$k\" "
             ">/dev/virtio-ports/events || exit 1; done) & done; wait")
    for i in range(c.n):
        c.check(i, burst)
    got = [(e.node, e.text) for e in c.events(since=m)]
    want = [(i, "burst %d.%d" % (w, k)) for i in range(c.n) for w in range(1, 5) for k in range(1, 6)]
    assert sorted(got) == sorted(want), got


@scenario(nodes=2, timeout=240, **FAST)
def test_takeover_after_kill(c):
    for i in range(c.n):
        c.check(i, "mkdir -p /dlm/smoke")
    hold(c, 1, "/dlm/smoke/T", "T1")
    rc, out, _ = c.exec(0, "dlmtry /dlm/smoke/T")
    assert rc == 2, (rc, out)
    c.check(0, "dlmtry -i 200 -t 120000 -E T0 /dlm/smoke/T >/tmp/T0.log 2>&1 &")
    m = c.mark()
    c.kill(1)
    kill = c.wait_event("^@kill$", node=1, since=m, timeout=5)
    got = c.wait_event("^T0 acquired$", node=0, since=m, timeout=120)
    dt = (got.t_ms - kill.t_ms) / 1000.0
    out = c.check(0, "cat /tmp/T0.log; dmesg | grep -E 'o2hb|o2net|o2dlm|dlm_' | tail -8")
    print("  node0 output + dmesg:\n    " + "\n    ".join(out.strip().splitlines()))
    print("  TAKEOVER after power pull of holder (dead_threshold=%d): %.1f s" % (
        c.knobs["dead"], dt))
    # o2hb declares a node dead after dead_threshold 2 s iterations; DLM
    # recovery adds a few seconds.  Generous bound for a loaded CI host.
    assert 2 * (c.knobs["dead"] - 1) <= dt <= 2 * c.knobs["dead"] + 30, dt
