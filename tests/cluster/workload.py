"""Workload locks on a real o2cb cluster: `run-locked`, `lock`/`unlock` and
the libvirt hook on the dlmfs backend.

The workload program (PROG below) writes "acquire NAME" when it starts and
"release NAME" when it ends to the host event channel, so
electd.assert_one_master() replays every start on one host clock and fails
if a NAME ever ran on two nodes at once. Programs wait for /tmp/go-TAG
(bounded) instead of sleeping, so each scenario decides when they end.
Each scenario uses its own dlmfs domain.
"""
import os
import re
import shutil
import threading
import time

import electd
from electd import FAST, GUEST_BIN, assert_one_master, until
from suite import scenario

HOOK_SRC = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "examples", "libvirt-qemu-hook")
# $1 = tag. Bounded: 120 s at most.
PROG = """#!/bin/sh
echo "acquire $DLM_ELECTD_LOCK" > /dev/virtio-ports/events
echo "epoch $DLM_ELECTD_LOCK ${DLM_ELECTD_EPOCH:-none}" > /dev/virtio-ports/events
echo $$ > /tmp/prog-$1.pid
n=0
while [ ! -e /tmp/go-$1 ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done
echo "release $DLM_ELECTD_LOCK" > /dev/virtio-ports/events
"""


def setup(c, domain, resources=(), names=None):
    """The daemon binary, the program, the hook and one config per node
    (dlmfs, `domain`, runtime dir /tmp/wl-<domain>, `[node] name` from
    `names` if given); returns the configs."""
    electd.install(c)
    for name, text, mode in (("wl-prog", PROG, 0o755),):
        path = os.path.join(c.share, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
    hook = os.path.join(c.share, "qemu-hook")
    shutil.copy2(HOOK_SRC, hook)
    os.chmod(hook, 0o755)
    return {i: electd.config(c, "%s-%d" % (domain, i), list(resources), domain=domain,
                             runtime="/tmp/wl-%s" % domain, node=names[i] if names else None)
            for i in range(c.n)}


def start(c, node, cfg, name, tag, extra=""):
    """run-locked NAME -- wl-prog TAG in the background; its exit code goes
    to /tmp/rl-TAG.rc, its pid (exec'd by the shell) to /tmp/rl-TAG.pid."""
    c.check(node, "(sh -c 'echo $$ >/tmp/rl-%s.pid; exec %s run-locked --config %s %s %s -- /host/wl-prog %s' "
                  ">/tmp/rl-%s.log 2>&1; echo $? >/tmp/rl-%s.rc) >/dev/null 2>&1 &"
            % (tag, GUEST_BIN, cfg, extra, name, tag, tag, tag))


def rc_of(c, node, tag):
    rc, out, _ = c.exec(node, "cat /tmp/rl-%s.rc 2>/dev/null" % tag)
    return int(out) if rc == 0 and out.strip() else None


def go(c, node, tag):
    c.check(node, "touch /tmp/go-%s" % tag)


def quick(c, node, cfg, name, extra=""):
    """run-locked NAME -- true: its exit code."""
    return c.exec(node, "%s run-locked --config %s %s %s -- true" % (GUEST_BIN, cfg, extra, name), timeout=90)[0]


def cli(c, node, cfg, args):
    return c.exec(node, "%s %s --config %s" % (GUEST_BIN, args, cfg), timeout=90)


def wait_rc(c, node, tag, timeout=60):
    return until(timeout, "run-locked %s on node%d to exit" % (tag, node),
                 lambda: (lambda r: None if r is None else (r,))(rc_of(c, node, tag)))[0]


def end_all(c, tags):
    """Ends every program of the scenario (their go files), bounded."""
    for node, tag in tags:
        if c.alive(node):
            c.exec(node, "touch /tmp/go-%s" % tag)


@scenario(nodes=2, timeout=600, **FAST)
def test_workload_same_instant_on_two_nodes_runs_on_one(c):
    """The same run-locked started on both nodes at once, many times: one
    runs, the other exits 75; the event log never shows both. An election
    resource of a running daemon lives in the same domain meanwhile."""
    m0 = c.mark()
    cfgs = setup(c, "wl1", ["web"])
    tags = []
    for i in range(2):
        electd.start(c, i, cfgs[i])
    try:
        electd.sole_master(c, [0, 1], cfgs.get, "web")
        rounds, wins = 12, [0, 0]
        for r in range(rounds):
            mk = c.mark()
            ta, tb = "a%d" % r, "b%d" % r
            tags += [(0, ta), (1, tb)]
            # Launched together from two threads, in alternating order.
            pair = [(0, ta), (1, tb)][::1 if r % 2 else -1]
            ts = [threading.Thread(target=start, args=(c, i, cfgs[i], "vm1", t)) for i, t in pair]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            loser = until(60, "one side to give up busy",
                          lambda: next((i + 1 for i, t in ((0, ta), (1, tb)) if rc_of(c, i, t) is not None), None)) - 1
            winner, wtag = (1, tb) if loser == 0 else (0, ta)
            assert wait_rc(c, loser, ta if loser == 0 else tb) == 75, c.exec(loser, "cat /tmp/rl-*%d.log" % r)
            c.wait_event("^acquire vm1$", node=winner, since=mk, timeout=60)
            go(c, winner, wtag)
            assert wait_rc(c, winner, wtag) == 0
            starts = [e.node for e in c.events(since=mk) if e.text == "acquire vm1"]
            assert starts == [winner], (r, starts)
            wins[winner] += 1
        print("  %d rounds: node0 won %d, node1 won %d; never both" % (rounds, wins[0], wins[1]))
        assert_one_master(c, m0)
        # The daemon's resource was never disturbed.
        electd.sole_master(c, [0, 1], cfgs.get, "web", timeout=30)
    finally:
        end_all(c, tags)
        electd.stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=2, timeout=600, **FAST)
def test_workload_end_frees_sigkill_keeps_cached(c):
    m0 = c.mark()
    cfgs = setup(c, "wl2")
    a, b = 0, 1
    tags = [(a, "k"), (a, "e"), (b, "w")]
    try:
        start(c, a, cfgs[a], "vm2", "k")
        c.wait_event("^acquire vm2$", node=a, since=m0, timeout=60)
        # Busy for the other node, and for a second process on the same
        # node (dlmfs alone would let it in: locks are per node).
        assert quick(c, b, cfgs[b], "vm2") == 75
        assert quick(c, a, cfgs[a], "vm2") == 75
        # SIGKILL run-locked: its program keeps the inherited lock.
        c.check(a, "kill -9 $(cat /tmp/rl-k.pid)")
        until(30, "run-locked to die", lambda: c.exec(a, "kill -0 $(cat /tmp/rl-k.pid) 2>/dev/null")[0] != 0)
        c.check(a, "kill -0 $(cat /tmp/prog-k.pid)")
        assert quick(c, b, cfgs[b], "vm2") == 75
        # cleanup and unlock leave a lock a running program holds alone.
        rc, _, err = cli(c, a, cfgs[a], "cleanup")
        assert rc == 0, err
        rc, _, err = cli(c, a, cfgs[a], "unlock vm2")
        assert rc == 1 and "left alone" in err, (rc, err)
        assert quick(c, b, cfgs[b], "vm2") == 75
        # The program ends: nobody unlinks, so node a keeps the lock cached
        # and b's trylocks still fail...
        mk = c.mark()
        go(c, a, "k")
        c.wait_event("^release vm2$", node=a, since=mk, timeout=60)
        assert quick(c, b, cfgs[b], "vm2") == 75
        # ... until cleanup on a drops it (unlock NAME would too: the
        # libvirt scenario drops a killed holder's cached lock that way).
        rc, out, err = cli(c, a, cfgs[a], "cleanup")
        assert rc == 0, err
        assert "workload locks whose holders are gone, dropped: [\"vm2\"]" in err, err
        assert quick(c, b, cfgs[b], "vm2") == 0
        # A program's normal end frees it at once: b waits (polling every
        # 250ms) and starts within a poll of a's end, on the host clock.
        mk = c.mark()
        start(c, a, cfgs[a], "vm3", "e")
        c.wait_event("^acquire vm3$", node=a, since=mk, timeout=60)
        start(c, b, cfgs[b], "vm3", "w", extra="--wait 5m")
        time.sleep(1)  # b is polling meanwhile (not a synchronisation)
        assert rc_of(c, b, "w") is None
        go(c, a, "e")
        rel = c.wait_event("^release vm3$", node=a, since=mk, timeout=60)
        acq = c.wait_event("^acquire vm3$", node=b, since=mk, timeout=60)
        print("  program end on node0 -> waiting run-locked on node1 starts: %.2f s (poll 250ms)"
              % ((acq.t_ms - rel.t_ms) / 1000))
        assert acq.t_ms - rel.t_ms < 10000
        assert wait_rc(c, a, "e") == 0
        go(c, b, "w")
        assert wait_rc(c, b, "w") == 0
        assert quick(c, a, cfgs[a], "vm3") == 0
    finally:
        end_all(c, tags)
    assert_one_master(c, m0)


@scenario(nodes=2, timeout=400, **FAST)
def test_workload_epoch_counts_with_64_byte_node_names(c):
    """Node names may be 64 bytes, the lock value block holds 64: the epoch
    is stored first, so a long name is what gets cut and every handover
    still counts up (issue 19 item 17: it stayed 1 once names were ~40)."""
    m0 = c.mark()
    names = [("node%d-" % i).ljust(64, "x") for i in range(c.n)]
    cfgs = setup(c, "wl5", names=names)
    a, b = 0, 1
    tags = [(a, "l1"), (b, "l2"), (a, "l3")]
    try:
        seen = []
        for node, tag in tags:
            mk = c.mark()
            start(c, node, cfgs[node], "vm5", tag)
            ep = c.wait_event("^epoch vm5 ", node=node, since=mk, timeout=60)
            seen.append(ep.text)
            go(c, node, tag)
            assert wait_rc(c, node, tag) == 0
        print("  epochs with 64-byte node names: %s" % ", ".join(s.split()[-1] for s in seen))
        first = int(seen[0].split()[-1])
        assert seen == ["epoch vm5 %d" % (first + i) for i in range(3)], seen
        rc, _, err = cli(c, a, cfgs[a], "unlock vm5")
        assert rc in (0, 1), (rc, err)
    finally:
        end_all(c, tags)
    assert_one_master(c, m0)


@scenario(nodes=2, fresh=True, timeout=400, **FAST)
def test_workload_power_pull_other_node_takes_it(c):
    m0 = c.mark()
    cfgs = setup(c, "wl3")
    a, b = 0, 1
    try:
        start(c, a, cfgs[a], "vm4", "p")
        c.wait_event("^acquire vm4$", node=a, since=m0, timeout=60)
        start(c, b, cfgs[b], "vm4", "q", extra="--wait 5m")
        # b polls: it has joined the domain (a join that races the node's
        # death fails with EHOSTDOWN and is retried as "not ready").
        until(60, "node1 to join wl3", lambda: c.exec(b, "test -d /dlm/wl3")[0] == 0)
        mk = c.mark()
        c.kill(a)
        kill = c.wait_event("^@kill$", node=a, since=mk, timeout=5)
        acq = c.wait_event("^acquire vm4$", node=b, since=mk, timeout=180)
        ep = c.wait_event("^epoch vm4 ", node=b, since=mk, timeout=30)
        print("  TAKEOVER of a workload lock after power pull (dead_threshold=%d): %.1f s; %s"
              % (c.knobs["dead"], (acq.t_ms - kill.t_ms) / 1000, ep.text))
        # Recovery zeroed the lock value block: the epoch restarts.
        assert ep.text == "epoch vm4 1", ep.text
        go(c, b, "q")
        assert wait_rc(c, b, "q") == 0
    finally:
        end_all(c, [(b, "q")])
    assert_one_master(c, m0)


def hook(c, node, cfg, guest, op, sub):
    """The shipped hook, as libvirt calls it: GUEST OP SUB -, XML on stdin."""
    return c.exec(node, "printf '<domain type=\"kvm\"><name>%s</name></domain>\\n' | "
                        "DLM_ELECTD=%s DLM_ELECTD_CONFIG=%s /host/qemu-hook %s %s %s -"
                  % (guest, GUEST_BIN, cfg, guest, op, sub), timeout=90)


@scenario(nodes=2, timeout=600, **FAST)
def test_workload_libvirt_hook_on_both_nodes(c):
    cfgs = setup(c, "wl4", ["web"])
    a, b = 0, 1
    try:
        electd.start(c, a, cfgs[a])
        rc, _, err = hook(c, a, cfgs[a], "guest1", "prepare", "begin")
        assert rc == 0, err
        rc, out, _ = cli(c, a, cfgs[a], "status")
        assert "libvirt qemu hook, guest guest1" in out, out
        rc, _, err = hook(c, b, cfgs[b], "guest1", "prepare", "begin")
        assert rc == 75 and "busy" in err, (rc, err)
        # b's release after its refused start touches nothing of a's.
        assert hook(c, b, cfgs[b], "guest1", "release", "end")[0] == 0
        assert hook(c, b, cfgs[b], "guest1", "prepare", "begin")[0] == 75
        # The daemon killed and cleaned up as systemd would
        # (`systemctl kill -s KILL` + ExecStopPost=cleanup): still held.
        electd.signal(c, a, "KILL")
        rc, _, err = cli(c, a, cfgs[a], "cleanup")
        assert rc == 0, err
        assert hook(c, b, cfgs[b], "guest1", "prepare", "begin")[0] == 75
        # The guest stops on a: b may start it now.
        assert hook(c, a, cfgs[a], "guest1", "release", "end")[0] == 0
        rc, _, err = hook(c, b, cfgs[b], "guest1", "prepare", "begin")
        assert rc == 0, err
        assert hook(c, a, cfgs[a], "guest1", "prepare", "begin")[0] == 75
        assert hook(c, b, cfgs[b], "guest1", "release", "end")[0] == 0
        assert quick(c, a, cfgs[a], "guest1") == 0
        # No holder left anywhere.
        for n in (a, b):
            _, ps, _ = c.exec(n, "ps")
            assert not re.search(r"hold-workload-lock", ps), ps
    finally:
        for n in (a, b):
            if c.alive(n):
                cli(c, n, cfgs[n], "unlock guest1")
        electd.stop_all(c, 2)
