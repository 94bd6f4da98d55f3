"""dlm-electd on a real o2cb cluster: the dlmfs backend's scenarios.

Every node runs the static daemon from the 9p share (/host/dlm-electd).
Each resource's exec actions write "acquire RES" / "release RES" to the host
event channel, so every line carries one host clock and the node it came
from; assert_one_master() replays all of them and fails if two nodes were
ever master of one resource at the same time.
"""
import json
import os
import re
import shutil
import time

from suite import scenario

FAST = dict(dead_threshold=5, idle_ms=5000, keepalive_ms=1000, reconnect_ms=1000)
BIN = os.environ.get("DLM_ELECTD_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "x86_64-unknown-linux-gnu", "release", "dlm-electd")
GUEST_BIN = "/host/dlm-electd"
HOOK = ('["/bin/sh", "-c", "echo \\"$DLM_ELECTD_EVENT $DLM_ELECTD_RESOURCE\\" '
        '> /dev/virtio-ports/events"]')
POLL = "250ms"


def install(c):
    """Copy the daemon into the share (once per cluster)."""
    dst = os.path.join(c.share, "dlm-electd")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(BIN):
        shutil.copy2(BIN, dst + ".tmp")
        os.chmod(dst + ".tmp", 0o755)
        os.replace(dst + ".tmp", dst)


def config(c, name, resources, mount="/dlm", runtime="/run/dlm-electd", domain="electd", op_timeout="2m",
           metrics=None, node=None, state="/var/lib/dlm-electd", poll=POLL):
    """Write a config into the share; returns its guest path. `metrics`:
    the `[metrics] listen` address, if any; `node`: a `[node] name`;
    `state`: the state dir (the guest's / is a tmpfs: a drain meant to
    outlive a reboot goes on the share, the disk it would be on)."""
    os.makedirs(os.path.join(c.share, "cfg"), mode=0o755, exist_ok=True)
    text = ['[lock]\nbackend = "dlmfs"\nmount = "%s"\ndomain = "%s"\n' % (mount, domain),
            '[daemon]\nruntime_dir = "%s"\nstate_dir = "%s"\npoll_interval = "%s"\nop_timeout = "%s"\n'
            % (runtime, state, poll, op_timeout)]
    if node:
        text.insert(0, '[node]\nname = "%s"\n' % node)
    if metrics:
        text.append('[metrics]\nlisten = "%s"\n' % metrics)
    for r in resources:
        text.append('[[resource]]\nname = "%s"\n[[resource.action]]\ntype = "exec"\n'
                    'acquire = %s\nrelease = %s\n' % (r, HOOK, HOOK))
    path = os.path.join(c.share, "cfg", name + ".toml")
    with open(path, "w") as f:
        f.write("".join(text))
    os.chmod(path, 0o644)
    return "/host/cfg/%s.toml" % name


def start(c, node, cfg, tag="electd"):
    c.check(node, "%s run --config %s >/tmp/%s.log 2>&1 & echo $! >/tmp/%s.pid" % (GUEST_BIN, cfg, tag, tag))


def alive(c, node, tag="electd"):
    rc, _, _ = c.exec(node, "kill -0 $(cat /tmp/%s.pid) 2>/dev/null" % tag)
    return rc == 0


def signal(c, node, sig, tag="electd", wait=60):
    """Send a signal to the node's daemon and wait for it to be gone."""
    c.check(node, "kill -%s $(cat /tmp/%s.pid)" % (sig, tag))
    until(wait, "daemon on node%d to exit after SIG%s" % (node, sig), lambda: not alive(c, node, tag))


def log(c, node, tag="electd"):
    return c.exec(node, "tail -n 40 /tmp/%s.log" % tag)[1]


def status(c, node, cfg):
    rc, out, _ = c.exec(node, "%s status --json --config %s" % (GUEST_BIN, cfg), timeout=30)
    return json.loads(out) if rc == 0 else None


def scrape(c, node, addr):
    """The node's daemon's metrics as {'name{labels}': value}, fetched with
    busybox nc inside the guest (the static busybox's wget segfaults);
    None if the endpoint does not answer."""
    host, port = addr.rsplit(":", 1)
    rc, out, _ = c.exec(node, "printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 10 %s %s"
                        % (host, port), timeout=30)
    head, sep, body = out.partition("\r\n\r\n")
    if rc != 0 or not sep or " 200 " not in head.splitlines()[0]:
        return None
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def until(timeout, what, fn, every=0.2):
    """Bounded polling: returns fn()'s first truthy value."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(every)


def states(c, nodes, cfg_of, res):
    out = {}
    for n in nodes:
        s = status(c, n, cfg_of(n))
        r = [x for x in (s or {}).get("resources", []) if x["name"] == res]
        out[n] = r[0]["state"] if r else None
    return out


def sole_master(c, nodes, cfg_of, res, timeout=90):
    """Waits until exactly one of `nodes` is master of res and the others
    stand by; returns the master."""
    def one():
        st = states(c, nodes, cfg_of, res)
        masters = [n for n, s in st.items() if s == "master"]
        if len(masters) == 1 and all(s in ("master", "standby") for s in st.values()):
            return masters[0] + 1  # truthy even for node 0
        return None
    return until(timeout, "one master of %s among %s" % (res, nodes), one) - 1


def assert_one_master(c, since=0):
    """Replays the event log: acquire on a node while another node is still
    master (no release, @kill or @exit of it since) is a violation."""
    master = {}
    for e in c.events(since=since):
        if e.text in ("@kill", "@exit") or e.text.startswith("@exit"):
            master = {r: n for r, n in master.items() if n != e.node}
            continue
        m = re.match(r"^(acquire|release) (\S+)$", e.text)
        if not m:
            continue
        ev, res = m.groups()
        if ev == "acquire":
            other = master.get(res)
            assert other is None or other == e.node, \
                "node%d acquired %s at %d ms while node%d was master" % (e.node, res, e.t_ms, other)
            master[res] = e.node
        elif master.get(res) == e.node:
            del master[res]


def last_event(c, node, text, since=0):
    evs = [e for e in c.events(since=since, node=node) if e.text == text]
    return evs[-1] if evs else None


def run_all(c, n, resources, cfg_name=lambda i: "node%d" % i):
    install(c)
    cfgs = {i: config(c, cfg_name(i), resources) for i in range(n)}
    for i in range(n):
        start(c, i, cfgs[i])
    return cfgs


def stop_all(c, n, tag="electd"):
    for i in range(n):
        if c.alive(i) and alive(c, i, tag):
            signal(c, i, "TERM", tag)


RES5 = ["r1", "r2", "r3", "r4", "r5"]


def one_master_each(c, n):
    m0 = c.mark()
    cfgs = run_all(c, n, RES5)
    try:
        masters = {r: sole_master(c, range(n), cfgs.get, r) for r in RES5}
        print("  masters: %s" % masters)
        # The dlmfs backend runs only on o2cb (docs/dlmfs.md); on it no
        # resource of any node carries an error.
        for i in range(n):
            assert c.check(i, "cat /sys/fs/ocfs2/cluster_stack").strip() == "o2cb", i
            errs = [(x["name"], x["last_error"]) for x in status(c, i, cfgs[i])["resources"]]
            assert all(e is None for _, e in errs), (i, errs)
        # Every node's view agrees: the master says master, the others standby.
        for r, m in masters.items():
            st = states(c, range(n), cfgs.get, r)
            assert st[m] == "master" and all(s == "standby" for k, s in st.items() if k != m), (r, st)
            acq = [e.node for e in c.events(since=m0) if e.text == "acquire %s" % r]
            assert acq == [m], (r, acq)
        assert_one_master(c, m0)
    finally:
        stop_all(c, n)
    assert_one_master(c, m0)


@scenario(nodes=2, **FAST)
def test_one_master_each_2_nodes(c):
    one_master_each(c, 2)


@scenario(nodes=3, **FAST)
def test_one_master_each_3_nodes(c):
    one_master_each(c, 3)


@scenario(nodes=3, **FAST)
def test_switchover_release_hold_off(c):
    m0 = c.mark()
    cfgs = run_all(c, 3, ["web"])
    try:
        old = sole_master(c, range(3), cfgs.get, "web")
        t0 = time.monotonic()
        c.check(old, "%s release web --hold-off 20s --config %s" % (GUEST_BIN, cfgs[old]), timeout=60)
        new = sole_master(c, [i for i in range(3) if i != old], cfgs.get, "web")
        rel = last_event(c, old, "release web", m0)
        acq = last_event(c, new, "acquire web", m0)
        assert rel and acq and rel.t_ms <= acq.t_ms, (rel, acq)
        print("  switchover node%d -> node%d: release->acquire %.2f s on the host clock"
              % (old, new, (acq.t_ms - rel.t_ms) / 1000))
        # The old master stays out for the hold-off, even with the new one gone.
        signal(c, new, "TERM")
        third = sole_master(c, [i for i in range(3) if i not in (new,)], cfgs.get, "web")
        if third == old:
            assert time.monotonic() - t0 >= 20, "old master came back inside its hold-off"
        assert_one_master(c, m0)
    finally:
        stop_all(c, 3)
    assert_one_master(c, m0)


# web's doorbell: lock::bell::name("web"), FNV-1a of the lock's name.
WEB_BELL = "@~b5ea0e11948721ef1"


def bell_open(c, node, tag="electd"):
    pid = c.check(node, "cat /tmp/%s.pid" % tag).strip()
    return WEB_BELL in c.check(node, "ls -l /proc/%s/fd" % pid)


@scenario(nodes=3, **FAST)
def test_doorbell_hands_over_long_before_the_next_poll(c):
    """Standbys poll every 20 s, but a release rings the lock's doorbell
    (docs/dlmfs.md, "Doorbell"): a standby tries at once. Two handovers,
    each must land within 3 s of the release (by polling alone, about 1 in
    7 would); never two masters, and the ringer leaves no thread behind."""
    m0 = c.mark()
    install(c)
    cfgs = {i: config(c, "bell%d" % i, ["web"], poll="20s") for i in range(3)}
    for i in range(3):
        start(c, i, cfgs[i])
    try:
        # At start every standby's first try is at once: one master.
        old = sole_master(c, range(3), cfgs.get, "web")
        held_off = set()
        for round_ in range(2):
            # Every standby that may take over holds the bell (its watcher
            # opens it at once, and again a second after each ring).
            for i in set(range(3)) - {old} - held_off:
                until(30, "node%d's daemon holding web's doorbell" % i,
                      lambda: bell_open(c, i))
            c.check(old, "%s release web --hold-off 60s --config %s" % (GUEST_BIN, cfgs[old]), timeout=60)
            new = sole_master(c, [i for i in range(3) if i != old], cfgs.get, "web", timeout=30)
            rel = last_event(c, old, "release web", m0)
            acq = last_event(c, new, "acquire web", m0)
            assert rel and acq and rel.t_ms <= acq.t_ms, (rel, acq)
            took = (acq.t_ms - rel.t_ms) / 1000
            print("  round %d: node%d -> node%d, release -> acquire %.2f s (poll 20 s)" % (round_, old, new, took))
            assert took < 3, "took %.2f s: the doorbell did not wake the standby" % took
            assert_one_master(c, m0)
            held_off.add(old)
            old = new
        # The rings ended: no node has a thread stuck in one.
        for i in range(3):
            pid = c.check(i, "cat /tmp/electd.pid").strip()
            ringer = ("for t in /proc/%s/task/*; do grep -qx lock-bell $t/comm && "
                      "{ echo $t; cat $t/wchan; echo; cat $t/stack; }; done; true" % pid)
            try:
                until(10, "node%d's rings to end" % i, lambda: not c.check(i, ringer).strip())
            except TimeoutError:
                raise AssertionError("node%d: a ring thread is stuck:\n%s" % (i, c.check(i, ringer)))
    finally:
        stop_all(c, 3)
    assert_one_master(c, m0)


@scenario(nodes=2, **FAST)
def test_sigterm_of_master_takeover(c):
    m0 = c.mark()
    cfgs = run_all(c, 2, ["web", "db"])
    try:
        old = sole_master(c, [0, 1], cfgs.get, "web")
        signal(c, old, "TERM")
        new = sole_master(c, [1 - old], cfgs.get, "web")
        for r in ("web", "db"):
            sole_master(c, [new], cfgs.get, r)
            rel = last_event(c, old, "release %s" % r, m0)
            acq = last_event(c, new, "acquire %s" % r, m0)
            assert rel and acq and rel.t_ms <= acq.t_ms, (r, rel, acq)
        assert "stopped cleanly" in log(c, old), log(c, old)
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=2, **FAST)
def test_sigkill_keeps_lock_until_cleanup_or_restart(c):
    m0 = c.mark()
    cfgs = run_all(c, 2, ["web"])
    try:
        old = sole_master(c, [0, 1], cfgs.get, "web")
        other = 1 - old
        signal(c, old, "KILL")
        # dlmfs: the lock stays cached on the killed daemon's node, so the
        # other node's trylocks keep failing. Watch it for 20 polls.
        end = time.monotonic() + 20 * 0.25
        while time.monotonic() < end:
            st = states(c, [other], cfgs.get, "web")
            assert st[other] == "standby", st
        assert last_event(c, other, "acquire web", m0) is None
        # Restart instead of cleanup: the same node resumes, actions re-run.
        mk = c.mark()
        start(c, old, cfgs[old])
        assert sole_master(c, [old, other], cfgs.get, "web") == old
        c.wait_event("^acquire web$", node=old, since=mk, timeout=30)
        # Kill again, then cleanup (what ExecStopPost does): takeover.
        signal(c, old, "KILL")
        mk = c.mark()
        c.check(old, "%s cleanup --config %s" % (GUEST_BIN, cfgs[old]), timeout=60)
        rel = c.wait_event("^release web$", node=old, since=mk, timeout=30)
        acq = c.wait_event("^acquire web$", node=other, since=mk, timeout=60)
        assert rel.t_ms <= acq.t_ms
        print("  cleanup -> takeover in %.2f s" % ((acq.t_ms - rel.t_ms) / 1000))
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=2, fresh=True, timeout=300, **FAST)
def test_node_power_pull_takeover(c):
    m0 = c.mark()
    cfgs = run_all(c, 2, ["web"])
    old = sole_master(c, [0, 1], cfgs.get, "web")
    other = 1 - old
    # A raw trylock loop on another lock held on the same node, for comparison.
    c.check(old, "dlmtry -H -E raw /dlm/electd/raw >/tmp/raw.log 2>&1 &")
    c.wait_event("^raw acquired$", node=old, since=m0, timeout=30)
    c.check(other, "dlmtry -i 200 -t 120000 -E rawtake /dlm/electd/raw >/tmp/rawtake.log 2>&1 &")
    mk = c.mark()
    c.kill(old)
    kill = c.wait_event("^@kill$", node=old, since=mk, timeout=5)
    acq = c.wait_event("^acquire web$", node=other, since=mk, timeout=120)
    raw = c.wait_event("^rawtake acquired$", node=other, since=mk, timeout=120)
    d, r = (acq.t_ms - kill.t_ms) / 1000, (raw.t_ms - kill.t_ms) / 1000
    print("  TAKEOVER after power pull (dead_threshold=%d): dlm-electd %.1f s, raw trylock loop %.1f s"
          % (c.knobs["dead"], d, r))
    sole_master(c, [other], cfgs.get, "web")
    st = status(c, other, cfgs[other])
    assert st["resources"][0]["last_error"] is None, st
    stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=2, fresh=True, timeout=300, **FAST)
def test_lock_call_stalled_by_dlm_recovery_wedges_nothing(c):
    """A trylock whose lock master died sleeps in the kernel until the node
    is evicted (~2 s x dead_threshold). With op_timeout below that, the
    resource shows `stalled`, while the daemon keeps answering and its other
    resource stays master; once recovery is done it takes over."""
    m0 = c.mark()
    install(c)
    a, b = 0, 1
    cfg_a = config(c, "stall-a", ["web"], op_timeout="2s")
    metrics = "127.0.0.1:9477"
    cfg_b = config(c, "stall-b", ["web", "mine"], op_timeout="2s", metrics=metrics)
    cfgs = {a: cfg_a, b: cfg_b}
    stalled = 'dlm_electd_lock_call_stalled{resource="web"}'
    # a first: it creates and so masters the DLM lock resource of web.
    start(c, a, cfg_a)
    sole_master(c, [a], cfgs.get, "web")
    start(c, b, cfg_b)
    sole_master(c, [a, b], cfgs.get, "web")
    sole_master(c, [b], cfgs.get, "mine")
    mk = c.mark()
    c.kill(a)
    seen = {}

    def watch():
        t0 = time.monotonic()
        st = status(c, b, cfg_b)
        answered = time.monotonic() - t0
        r = {x["name"]: x for x in st["resources"]}
        assert answered < 5, "status took %.1f s" % answered
        if r["web"]["state"] == "stalled":
            seen["stalled"] = True
            assert r["mine"]["state"] == "master", r
            # The metrics say so too (unless the call returned meanwhile).
            m = scrape(c, b, metrics)
            if m and m.get(stalled) == 1:
                seen["metric"] = m
        return r["web"]["state"] == "master"
    until(120, "takeover of web by node%d" % b, watch)
    assert seen.get("stalled"), "web never showed stalled"
    acq = c.wait_event("^acquire web$", node=b, since=mk, timeout=5)
    print("  web stalled during recovery, then node%d took over %.1f s after the kill"
          % (b, (acq.t_ms - c.events(since=mk)[0].t_ms) / 1000))
    assert "has not returned within op_timeout" in log(c, b), log(c, b)
    m = seen.get("metric")
    assert m, "dlm_electd_lock_call_stalled never showed 1 while web was stalled"
    assert m['dlm_electd_resource_state{resource="web",state="stalled"}'] == 1, m
    assert m['dlm_electd_resource_state{resource="mine",state="master"}'] == 1, m
    m = scrape(c, b, metrics)
    assert m[stalled] == 0, m
    assert m['dlm_electd_lock_call_stalls_total{resource="web"}'] >= 1, m
    assert m['dlm_electd_resource_state{resource="web",state="master"}'] == 1, m
    # The stalled try_lock is in the histogram in full, above 1 s.
    calls = 'dlm_electd_lock_call_duration_seconds_%s{resource="web",call="try_lock"%s}'
    slow = m[calls % ("count", "")] - m[calls % ("bucket", ',le="1"')]
    assert slow >= 1, m
    print("  metrics: %d stall(s), %d try_lock call(s) over 1 s"
          % (m['dlm_electd_lock_call_stalls_total{resource="web"}'], slow))
    stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=2, **FAST)
def test_second_daemon_on_a_node_never_masters(c):
    m0 = c.mark()
    cfgs = run_all(c, 2, ["web"])
    try:
        m = sole_master(c, [0, 1], cfgs.get, "web")
        # Same node, same domain, another runtime dir: the per-runtime-dir
        # instance lock does not see it; the domain flock does.
        cfg2 = config(c, "second", ["web"], runtime="/run/dlm-electd-2")
        start(c, m, cfg2, tag="second")
        err = until(30, "the second daemon's error", lambda: (
            lambda s: s and s["resources"][0]["last_error"])(status(c, m, cfg2)))
        assert "another dlm-electd on this node" in err, err
        assert status(c, m, cfg2)["resources"][0]["state"] in ("backoff", "standby")
        # Same runtime dir: refused at start.
        rc, out, errout = c.exec(m, "%s run --config %s" % (GUEST_BIN, cfgs[m]), timeout=30)
        assert rc == 1 and "another dlm-electd instance" in errout, (rc, errout)
        signal(c, m, "TERM", tag="second")
        assert [e.node for e in c.events(since=m0) if e.text == "acquire web"] == [m]
    finally:
        stop_all(c, 2)
        stop_all(c, 2, tag="second")
    assert_one_master(c, m0)


@scenario(nodes=2, fresh=True, autostart=False, **FAST)
def test_daemon_started_before_cluster(c):
    m0 = c.mark()
    cfgs = run_all(c, 2, ["web"])
    try:
        for i in range(2):
            err = until(30, "cluster-not-ready status", lambda: (
                lambda s: s and s["resources"][0]["last_error"])(status(c, i, cfgs[i])))
            assert err.startswith("cluster not ready"), err
            assert status(c, i, cfgs[i])["resources"][0]["state"] == "standby"
        for i in range(2):
            c.o2cb_start(i)
        m = sole_master(c, [0, 1], cfgs.get, "web", timeout=120)
        print("  elected node%d once o2cb came up" % m)
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)


@scenario(nodes=3, fresh=True, timeout=420, **FAST)
def test_network_partition_isolated_node_loses(c):
    m0 = c.mark()
    cfgs = run_all(c, 3, ["web"])
    m = sole_master(c, range(3), cfgs.get, "web")
    mk = c.mark()
    c.netcut(m)
    rest = [i for i in range(3) if i != m]
    # o2cb: the isolated node loses quorum and fences itself (the VM exits),
    # then its heartbeat stops and the majority recovers its locks.
    acq = c.wait_event("^acquire web$", since=mk, timeout=300)
    assert acq.node in rest, acq
    fenced = [e for e in c.events(since=mk, node=m) if e.text.startswith("@exit")]
    print("  partition: isolated node%d %s; node%d master after %.1f s"
          % (m, "fenced" if fenced else "still up", acq.node, (acq.t_ms - c.events(since=mk)[0].t_ms) / 1000))
    sole_master(c, rest, cfgs.get, "web", timeout=60)
    assert_one_master(c, m0)
    for i in rest:
        signal(c, i, "TERM")
    assert_one_master(c, m0)


@scenario(nodes=2, **FAST)
def test_bad_input_at_runtime(c):
    install(c)
    # Lock names dlmfs refuses never get past check-config.
    bad = os.path.join(c.share, "cfg", "badlock.toml")
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    with open(bad, "w") as f:
        f.write('[lock]\nbackend = "dlmfs"\n[[resource]]\nname = "web"\nlock = "$RECOVERY"\n')
    rc, out, err = c.exec(0, "%s check-config --config /host/cfg/badlock.toml" % GUEST_BIN)
    assert rc == 78 and "badlock.toml:5:" in err and "'$'" in err, (rc, err)
    # A mount point that is not dlmfs: a clear status error, no mastership.
    cfg = config(c, "notdlmfs", ["web"], mount="/tmp", runtime="/run/dlm-electd-bad")
    start(c, 0, cfg, tag="bad")
    try:
        err = until(30, "not-dlmfs error", lambda: (
            lambda s: s and s["resources"][0]["last_error"])(status(c, 0, cfg)))
        assert "/tmp is not a dlmfs mount" in err and err.startswith("cluster not ready"), err
    finally:
        signal(c, 0, "TERM", tag="bad")


VIP = "198.18.77.100"


def vip_config(c, name):
    os.makedirs(os.path.join(c.share, "cfg"), mode=0o755, exist_ok=True)
    path = os.path.join(c.share, "cfg", name + ".toml")
    with open(path, "w") as f:
        f.write('[lock]\nbackend = "dlmfs"\ndomain = "electd"\n'
                '[daemon]\npoll_interval = "%s"\n'
                '[[resource]]\nname = "vip"\n'
                '[[resource.action]]\ntype = "vip"\naddress = "%s/24"\ninterface = "eth0"\n'
                'announce_count = 3\nannounce_interval = "100ms"\n'
                '[[resource.action]]\ntype = "exec"\nacquire = %s\nrelease = %s\n'
                % (POLL, VIP, HOOK, HOOK))
    os.chmod(path, 0o644)
    return "/host/cfg/%s.toml" % name


def has_vip(c, node):
    return (" %s/" % VIP) in c.check(node, "ip -4 -o addr show dev eth0")


def vip_only_on(c, master, nodes):
    for n in nodes:
        assert has_vip(c, n) == (n == master), "node%d has VIP: %s, master is node%d" % (n, has_vip(c, n), master)


@scenario(nodes=2, fresh=True, timeout=300, **FAST)
def test_vip_moves_with_mastership(c):
    m0 = c.mark()
    install(c)
    cfgs = {i: vip_config(c, "vip%d" % i) for i in range(2)}
    for i in range(2):
        start(c, i, cfgs[i])
    old = sole_master(c, [0, 1], cfgs.get, "vip")
    vip_only_on(c, old, [0, 1])
    # Planned switchover: the VIP leaves the old node before the new one adds it.
    c.check(old, "%s release vip --hold-off 30s --config %s" % (GUEST_BIN, cfgs[old]), timeout=60)
    new = sole_master(c, [1 - old], cfgs.get, "vip")
    vip_only_on(c, new, [0, 1])
    assert_one_master(c, m0)
    # Power pull of the master: the survivor adds the VIP.
    mk = c.mark()
    c.kill(new)
    c.wait_event("^acquire vip$", node=old, since=mk, timeout=120)
    sole_master(c, [old], cfgs.get, "vip")
    assert has_vip(c, old)
    # The killed node comes back: its fresh boot has no VIP, and its daemon
    # stands by without adding one.
    c.start(new)
    start(c, new, cfgs[new])
    until(60, "node%d standby" % new, lambda: states(c, [new], cfgs.get, "vip")[new] == "standby")
    vip_only_on(c, old, [0, 1])
    stop_all(c, 2)
    assert not has_vip(c, old) and not has_vip(c, new)
    assert_one_master(c, m0)


@scenario(nodes=2, timeout=400, **FAST)
def test_drain_hands_over_and_outlives_a_power_pull(c):
    """`drain --wait` on the master: the other node takes every resource,
    the drained one competes for nothing (dlmfs cannot be asked whether
    another node holds a lock, so --wait waits for the release here and
    says so). Its record, on disk, outlives a power pull: booted again, its
    daemon starts drained; `undrain` makes it compete again."""
    m0 = c.mark()
    install(c)
    shutil.rmtree(os.path.join(c.share, "drainstate"), ignore_errors=True)
    cfgs = {i: config(c, "drain%d" % i, ["web", "db"], state="/host/drainstate/node%d" % i)
            for i in range(2)}
    for i in range(2):
        start(c, i, cfgs[i])
    try:
        old = sole_master(c, [0, 1], cfgs.get, "web")
        other = 1 - old
        sole_master(c, [0, 1], cfgs.get, "db")
        out = c.check(old, "%s drain --reason 'kernel update' --wait --config %s"
                      % (GUEST_BIN, cfgs[old]), timeout=120)
        assert "node drained: kernel update" in out and "cannot be asked" in out, out
        for r in ("web", "db"):
            sole_master(c, [other], cfgs.get, r)
            assert states(c, [old], cfgs.get, r)[old] == "drained"
        assert last_event(c, other, "acquire web", m0), "the other node took over"
        # Power pull and boot: the record is on disk, the daemon starts drained.
        c.kill(old)
        c.start(old)
        mk = c.mark()
        start(c, old, cfgs[old])
        until(120, "node%d drained after its reboot" % old,
              lambda: states(c, [old], cfgs.get, "web")[old] == "drained")
        assert states(c, [old], cfgs.get, "db")[old] == "drained"
        assert last_event(c, old, "acquire web", mk) is None
        c.check(old, "%s undrain --config %s" % (GUEST_BIN, cfgs[old]), timeout=60)
        until(60, "node%d competing again" % old,
              lambda: states(c, [old], cfgs.get, "web")[old] == "standby")
        sole_master(c, [0, 1], cfgs.get, "web")
    finally:
        stop_all(c, 2)
    assert_one_master(c, m0)


def cluster_view(c, node, cfg):
    """`status --cluster --json` on node, and how long it took (s)."""
    t0 = time.monotonic()
    out = c.check(node, "%s status --cluster --json --config %s" % (GUEST_BIN, cfg), timeout=60)
    return json.loads(out), time.monotonic() - t0


def view_agrees(v, res, master, running, drained=()):
    """View v names `master` (a node name; None: no node as fact) master of
    res, and lists exactly `running` running and `drained` drained."""
    m = [r for r in v["resources"] if r["name"] == res][0]["master"]
    if (m.get("node") if m.get("kind") == "node" else None) != master:
        return False
    return (sorted(x["name"] for x in v["nodes"] if x["running"]) == sorted(running) and
            sorted(x["name"] for x in v["nodes"] if x.get("drain")) == sorted(drained))


def epoch_of(v, res):
    """The master's epoch of res in view v (None: none shown)."""
    return [r for r in v["resources"] if r["name"] == res][0]["master"].get("epoch")


def views_agree(c, asked, cfgs, res, master, running, drained=(), what=""):
    """Every node in `asked` says so within a minute; the slowest answer."""
    took = []

    def ok():
        vs = [cluster_view(c, n, cfgs[n]) for n in asked]
        took[:] = [t for _, t in vs]
        return all(view_agrees(v, res, master, running, drained) for v, _ in vs)
    until(60, "status --cluster on %s: %s" % (list(asked), what), ok, every=0.5)
    return max(took)


@scenario(nodes=3, fresh=True, timeout=400, **FAST)
def test_cluster_view_through_the_dlm(c):
    """`status --cluster` on each node reads every node's record from the
    DLM's lock value blocks: it names the one master and who runs, and
    agrees with the event log after a release, a drain, SIGKILL + cleanup
    and a power pull (once the DLM has recovered the dead node)."""
    m0 = c.mark()
    install(c)
    cfgs = {i: config(c, "view%d" % i, ["web", "db"]) for i in range(3)}
    for i in range(3):
        # A transition alert on the event channel, to time it beside the
        # acquire step's event.
        with open(os.path.join(c.share, "cfg", "view%d.toml" % i), "a") as f:
            f.write('[[notify]]\nexec = ["/bin/sh", "-c", "echo \\"alert $DLM_ELECTD_RESOURCE '
                    '$DLM_ELECTD_STATE $DLM_ELECTD_EPOCH\\" > /dev/virtio-ports/events"]\nstates = ["master"]\n')
        start(c, i, cfgs[i])
    try:
        name = {i: until(60, "node%d's daemon answering" % i,
                         lambda i=i: status(c, i, cfgs[i]))["node"] for i in range(3)}
        everyone = list(name.values())
        m = sole_master(c, range(3), cfgs.get, "web")
        t = views_agree(c, range(3), cfgs, "web", name[m], everyone, what="the master")
        print("  every node names %s master of web (slowest answer %.2f s)" % (name[m], t))
        # The epoch from the holder record in the lock value block.
        e0 = epoch_of(cluster_view(c, m, cfgs[m])[0], "web")
        assert isinstance(e0, int) and e0 >= 1, e0
        mk = c.mark()
        c.check(m, "%s release --hold-off 2s web --config %s" % (GUEST_BIN, cfgs[m]), timeout=60)
        acq = c.wait_event("^acquire web$", since=mk, timeout=60)
        new = acq.node
        # Its alert carries the next epoch: read from the old master's record.
        alert = c.wait_event("^alert web master %d$" % (e0 + 1), node=new, since=mk, timeout=30)
        assert alert.t_ms - acq.t_ms <= 1000, "alert %d ms after the acquire" % (
            alert.t_ms - acq.t_ms)
        print("  %s master after a release; its alert %d ms after its acquire step"
              % (name[new], alert.t_ms - acq.t_ms))
        assert sole_master(c, range(3), cfgs.get, "web") == new
        views_agree(c, range(3), cfgs, "web", name[new], everyone, what="after a release")
        for i in range(3):
            e1 = epoch_of(cluster_view(c, i, cfgs[i])[0], "web")
            assert e1 == e0 + 1, "node%d shows epoch %s after %s" % (i, e1, e0)
        # Drained: the table and JSON show it with its reason, everywhere.
        c.check(new, "%s drain --reason 'kernel update' --wait --config %s"
                % (GUEST_BIN, cfgs[new]), timeout=120)
        rest = [i for i in range(3) if i != new]
        m3 = sole_master(c, rest, cfgs.get, "web")
        views_agree(c, range(3), cfgs, "web", name[m3], everyone, drained=[name[new]],
                    what="%s drained" % name[new])
        table = c.check(rest[0], "%s status --cluster --config %s" % (GUEST_BIN, cfgs[rest[0]]))
        assert "kernel update" in table, table
        c.check(new, "%s undrain --config %s" % (GUEST_BIN, cfgs[new]), timeout=60)
        views_agree(c, range(3), cfgs, "web", name[m3], everyone, what="undrained")
        # SIGKILL of the master's daemon: its presence lock stays cached on
        # its node (dlmfs), so it still shows as running, master, while its
        # lock is kept; cleanup (ExecStopPost) drops both: another node is
        # master and it shows down.
        signal(c, m3, "KILL")
        others = [i for i in range(3) if i != m3]
        views_agree(c, others, cfgs, "web", name[m3], everyone, what="killed, before cleanup")
        c.check(m3, "%s cleanup --config %s" % (GUEST_BIN, cfgs[m3]), timeout=60)
        m4 = sole_master(c, others, cfgs.get, "web")
        alive_names = [name[i] for i in others]
        views_agree(c, others, cfgs, "web", name[m4], alive_names, what="after cleanup")
        # Power pull of the master's node: down in the survivors' view once
        # the DLM has recovered it, the new master named.
        c.kill(m4)
        last = [i for i in others if i != m4][0]
        sole_master(c, [last], cfgs.get, "web", timeout=120)
        t0 = time.monotonic()
        views_agree(c, [last], cfgs, "web", name[last], [name[last]], what="after a power pull")
        print("  %s pulled: %s master, %s's view agrees %.1f s after the takeover"
              % (name[m4], name[last], name[last], time.monotonic() - t0))
    finally:
        for i in range(3):
            if c.alive(i) and alive(c, i):
                signal(c, i, "TERM")
    assert_one_master(c, m0)
