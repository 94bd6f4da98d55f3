"""dlmfs safety on a real kernel (docs/dlmfs.md): the cluster-stack check,
and what `rm` of a held lock file does on the holder and on another node.

Uses the daemon helpers of electd.py (same static binary, same hooks that
report "acquire RES" / "release RES" on the host event channel).
"""
import time

from electd import (FAST, GUEST_BIN, assert_one_master, config, install, log, signal,
                    sole_master, start, states, status, stop_all, until)
from suite import scenario

STACK = "/sys/fs/ocfs2/cluster_stack"


def last_error(c, node, cfg, res):
    s = status(c, node, cfg)
    r = [x for x in (s or {}).get("resources", []) if x["name"] == res]
    return r[0]["last_error"] if r else None


def hold_steady(c, cfgs, res, master, seconds, since):
    """A negative window: for `seconds` (many polls of 250 ms) the master
    stays master, every other node stays standby, and no other node ran its
    acquire hook."""
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        st = states(c, list(cfgs), cfgs.get, res)
        assert st[master] == "master", st
        assert all(s == "standby" for n, s in st.items() if n != master), st
        rounds += 1
    others = [e.node for e in c.events(since=since) if e.text == "acquire %s" % res and e.node != master]
    assert not others, "acquire %s on node(s) %s" % (res, others)
    assert_one_master(c, since)
    return rounds


@scenario(nodes=2, **FAST)
def test_rm_of_held_lock_file_keeps_one_master(c):
    """dlmfs refuses to unlink a lock file a local process holds open (EBUSY):
    `rm` on the master fails and changes nothing. On a node without a holder
    the unlink succeeds, but it only drops that node's own idle inode; the
    DLM lock held by the master is untouched, so no second master. (The rm on
    the standby is done with its daemon stopped: racing the daemon's trylock
    can hang it, see the next scenario.)"""
    install(c)
    dom = "rmheld"
    cfgs = {i: config(c, "rm%d" % i, ["web"], domain=dom) for i in range(2)}
    m0 = c.mark()
    for i in range(2):
        start(c, i, cfgs[i])
    path = "/dlm/%s/web" % dom
    try:
        a = sole_master(c, [0, 1], cfgs.get, "web")
        b = 1 - a
        for i in (a, b):
            assert c.check(i, "cat %s" % STACK).strip() == "o2cb"
        # On the master: EBUSY, the file stays, mastership is unchanged.
        mk = c.mark()
        rc, out, err = c.exec(a, "rm %s" % path)
        assert rc != 0 and "Device or resource busy" in err, (rc, out, err)
        c.check(a, "test -e %s" % path)
        rounds = hold_steady(c, cfgs, "web", a, 5, mk)
        print("  rm on master node%d: %s; %d status rounds with one master" % (a, err.strip(), rounds))
        assert last_error(c, a, cfgs[a], "web") is None
        # On the standby (its own trylocks made the file there): the unlink
        # succeeds and the lock stays busy for that node.
        c.check(b, "test -e %s" % path)
        signal(c, b, "TERM")
        mk = c.mark()
        rc, out, err = c.exec(b, "rm %s" % path)
        assert rc == 0, (rc, out, err)
        rc, out, err = c.exec(b, "dlmtry %s" % path)
        assert rc == 2 and "ETXTBSY" in (out + err), (rc, out, err)
        start(c, b, cfgs[b])
        until(30, "node%d standby" % b, lambda: states(c, [b], cfgs.get, "web")[b] == "standby")
        rounds = hold_steady(c, cfgs, "web", a, 5, mk)
        print("  rm on standby node%d: succeeded, lock still busy there; %d status rounds with one master"
              % (b, rounds))
        # The lock still works: a clean stop of the master hands it over.
        signal(c, a, "TERM")
        sole_master(c, [b], cfgs.get, "web")
        print("  kernel log on node%d: %s" % (a, c.exec(a, "dmesg | grep 'from destroy' | tail -n 1")[1].strip()))
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)


def d_state_stack(c, node, comm):
    """The kernel stack of a task named `comm` in D state on node, or ''."""
    return c.exec(node, "for t in /proc/[0-9]*; do [ \"$(cat $t/comm)\" = %s ] && "
                  "[ \"$(cut -d' ' -f3 $t/stat)\" = D ] && cat $t/stack; done; true" % comm)[1]


@scenario(nodes=2, timeout=300, **FAST)
def test_rm_racing_standby_trylock_wedges_that_node_only(c):
    """Unlinks on the standby racing its daemon's trylocks. A trylock that
    fails clears USER_LOCK_BUSY without a wake-up (userdlm.c:
    user_recover_from_dlm_error), so an unlink that started waiting for it
    sleeps forever in D state, holding the domain directory's lock; every
    later open(O_CREAT) in that domain on that node sleeps behind it. What
    must hold whether or not the race is hit: never a second master, the
    master stays master, and a wedged lock call shows as `stalled`."""
    install(c)
    dom = "rmrace"
    cfgs = {i: config(c, "race%d" % i, ["web"], domain=dom, op_timeout="3s") for i in range(2)}
    m0 = c.mark()
    start(c, 0, cfgs[0])
    a = sole_master(c, [0], cfgs.get, "web")
    b = 1 - a
    start(c, b, cfgs[b])
    sole_master(c, [a, b], cfgs.get, "web")
    path = "/dlm/%s/web" % dom
    # A tight unlink loop on the standby, bounded; it stops early only if an
    # rm never returns.
    c.check(b, "(i=0; while [ $i -lt 2000 ]; do rm -f %s; i=$((i+1)); done; echo done >/tmp/rmloop.done)"
            " >/dev/null 2>&1 &" % path)
    seen = {}

    def watch():
        st = states(c, [a, b], cfgs.get, "web")
        assert st[a] == "master", st
        assert st[b] in ("standby", "stalled"), st
        if st[b] == "stalled":
            return "wedged"
        if c.exec(b, "test -e /tmp/rmloop.done")[0] == 0:
            return "finished"
        return None
    seen["outcome"] = until(180, "the unlink loop to finish or wedge node%d" % b, watch, every=0.5)
    assert not [e for e in c.events(since=m0) if e.text == "acquire web" and e.node == b]
    if seen["outcome"] == "wedged":
        stack = d_state_stack(c, b, "rm")
        assert "user_dlm_destroy_lock" in stack, stack
        assert "has not returned within op_timeout" in log(c, b), log(c, b)
        # The node is lost for this domain: even with the master gone it
        # cannot take over (its lock call never returns).
        mk = c.mark()
        signal(c, a, "TERM")
        c.wait_event("^release web$", node=a, since=mk, timeout=30)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            assert states(c, [b], cfgs.get, "web")[b] == "stalled"
        print("  race hit: rm on node%d sleeps in user_dlm_destroy_lock for good; its daemon shows"
              " `stalled` and cannot take over after the master left" % b)
        # Only a reboot clears it; power it off so no later scenario reuses it.
        c.kill(b)
    else:
        print("  race not hit in 2000 unlinks: one master throughout")
        stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=1, fresh=True, autostart=False, **FAST)
def test_user_cluster_stack_refused(c):
    """A node whose OCFS2 stack is not o2cb (here: the label "pcmk" written
    into sysfs before any stack is active) must never get as far as /dlm:
    the resource shows the hard error, the domain is never joined, and the
    daemon still stops cleanly. After switching the node to o2cb the same
    config elects it."""
    install(c)
    n = 0
    assert c.check(n, "cat %s" % STACK).strip() == "o2cb"  # the kernel's default
    c.check(n, "echo pcmk > %s && mount -t ocfs2_dlmfs none /dlm" % STACK)
    assert c.check(n, "cat %s" % STACK).strip() == "pcmk"
    cfg = config(c, "pcmk", ["web"], domain="stackchk")
    # check-config on the node says so too, as a config error (exit 78).
    rc, out, err = c.exec(n, "%s check-config --config %s" % (GUEST_BIN, cfg))
    assert rc == 78 and "needs the o2cb stack" in err, (rc, out, err)
    m0 = c.mark()
    start(c, n, cfg)
    err = until(30, "the cluster-stack error", lambda: last_error(c, n, cfg, "web"))
    assert ('%s reads "pcmk"' % STACK) in err and "dlm-electd's dlmfs backend needs the o2cb stack" in err, err
    assert not err.startswith("cluster not ready"), err  # a hard error, not a retry-later
    assert states(c, [n], {n: cfg}.get, "web")[n] in ("backoff", "standby")
    assert "needs the o2cb stack" in log(c, n), log(c, n)
    # Nothing touched dlmfs: no domain directory was made.
    assert c.exec(n, "test -e /dlm/stackchk")[0] != 0, c.check(n, "ls -la /dlm")
    signal(c, n, "TERM")
    assert "stopped cleanly" in log(c, n), log(c, n)
    assert not [e for e in c.events(since=m0) if e.text == "acquire web"]
    # Back to o2cb (allowed: no stack is active yet), bring the cluster up.
    c.check(n, "umount /dlm && echo o2cb > %s" % STACK)
    c.o2cb_start(n)
    start(c, n, cfg)
    sole_master(c, [n], {n: cfg}.get, "web")
    assert last_error(c, n, cfg, "web") is None
    stop_all(c, 1)
    assert_one_master(c, m0)
