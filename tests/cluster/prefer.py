"""Preferred nodes on dlmfs: candidate locks between real o2cb nodes.

The `file` backend's tests (tests/preference.rs) prove the logic; here the
dlmfs specifics (docs/dlmfs.md, "Candidate locks"): a probe's PR trylock
leaves the candidate lock cached on the prober, and the owner's blocking EX
open must still get it; a daemon killed with SIGKILL keeps its candidate
lock cached on its node until `cleanup` unlinks it.
"""
import os
import time

from suite import scenario
from electd import (FAST, GUEST_BIN, HOOK, POLL, assert_one_master, install, last_event,
                    signal, sole_master, start, states, stop_all)


def prefer_config(c, name, preempt):
    """web, preferring node0 then node1 (node names default to the hostname)."""
    os.makedirs(os.path.join(c.share, "cfg"), mode=0o755, exist_ok=True)
    text = ('[lock]\nbackend = "dlmfs"\nmount = "/dlm"\ndomain = "electd"\n'
            '[daemon]\npoll_interval = "%s"\n'
            '[[resource]]\nname = "web"\nprefer = ["node0", "node1"]\npreempt = %s\n'
            '[[resource.action]]\ntype = "exec"\nacquire = %s\nrelease = %s\n'
            % (POLL, "true" if preempt else "false", HOOK, HOOK))
    path = os.path.join(c.share, "cfg", name + ".toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return "/host/cfg/%s.toml" % name


@scenario(nodes=2, **FAST)
def test_prefer_preempt_on_dlmfs(c):
    m0 = c.mark()
    install(c)
    cfgs = {i: prefer_config(c, "prefer%d" % i, True) for i in range(2)}
    try:
        # The less preferred node first: it probes node0's candidate lock
        # (a PR left cached on node1), wins, and must hand over once node0's
        # blocking EX open of its candidate lock got past that cache.
        start(c, 1, cfgs[1])
        assert sole_master(c, [1], cfgs.get, "web") == 1
        mk = c.mark()
        start(c, 0, cfgs[0])
        acq = c.wait_event("^acquire web$", node=0, since=mk, timeout=60)
        rel = last_event(c, 1, "release web", mk)
        assert rel and rel.t_ms <= acq.t_ms, (rel, acq)
        print("  preempt handover node1 -> node0: release->acquire %.2f s on the host clock"
              % ((acq.t_ms - rel.t_ms) / 1000))
        assert sole_master(c, [0, 1], cfgs.get, "web") == 0
        # SIGKILL of the preferred master: both its locks stay cached on
        # node0, node1 stays standby; cleanup unlinks both and node1 takes over.
        signal(c, 0, "KILL")
        end = time.monotonic() + 10 * 0.25
        while time.monotonic() < end:
            assert states(c, [1], cfgs.get, "web")[1] == "standby"
        mk = c.mark()
        c.check(0, "%s cleanup --config %s" % (GUEST_BIN, cfgs[0]), timeout=60)
        c.wait_event("^acquire web$", node=1, since=mk, timeout=60)
        assert sole_master(c, [1], cfgs.get, "web") == 1
        # node0 back: preferred with preempt, it gets mastership back.
        mk = c.mark()
        start(c, 0, cfgs[0])
        c.wait_event("^acquire web$", node=0, since=mk, timeout=60)
        assert sole_master(c, [0, 1], cfgs.get, "web") == 0
        assert_one_master(c, m0)
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)
