"""The system tier's scenarios (issue 9), run in this order on one 2-node cluster.

Setup does what a user does: an o2cb cluster with ocfs2-tools, `apt install
./dlm-electd_*.deb`, a drop-in with one resource `web` (a VIP and a `unit`
action on demo-web.service), `systemctl enable --now dlm-electd`.  Each later
scenario starts from "both daemons active, exactly one master" and leaves that
state behind.

"Never two masters" is checked on the host's event log after every scenario:
each node's address changes (lab-events) and demo-web's start/stop markers
arrive there stamped with one host clock, and at no time may both nodes hold
the VIP, or both run demo-web.
"""
import concurrent.futures
import json
import os
import re
import threading
import time

NODES = (1, 2)
VIP = "198.18.88.100"
CLUSTER = "dlmsys"
HB_DEV = "/dev/disk/by-id/virtio-o2cb-hb"
UNIT = "dlm-electd.service"


class Scenario:
    def __init__(self, fn, timeout, always):
        self.fn, self.timeout, self.always = fn, timeout, always
        self.name = fn.__name__
        self.doc = (fn.__doc__ or "").strip().split("\n")[0]


REGISTRY = []


def scenario(timeout=300, always=False, registry=REGISTRY):
    def deco(fn):
        def run(c):
            since = c.mark()
            fn(c)
            no_two_masters(c, since)
        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        registry.append(Scenario(run, timeout, always))
        return fn
    return deco


class Fail(AssertionError):
    pass


def until(timeout, what, fn, every=0.5):
    """Bounded polling of guest state (nothing in the guest can notify us)."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise Fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(every)


def parallel(fn, *args_list):
    with concurrent.futures.ThreadPoolExecutor(len(args_list)) as ex:
        return [f.result() for f in [ex.submit(fn, *a) for a in args_list]]


# ---- what a node looks like -------------------------------------------------
class Snap:
    """One node at one moment: resource states, VIP, demo-web, the daemon unit."""

    def __init__(self, node, text):
        self.node = node
        parts = re.split(r"^@@$", text, flags=re.M)
        try:
            st = json.loads(parts[0])
            self.states = {r["name"]: r["state"] for r in st.get("resources", [])}
            self.name = st.get("node")
        except (ValueError, KeyError, TypeError):
            self.states, self.name = {}, None
        self.vip = (" %s/" % VIP) in parts[1]
        act = parts[2].split()
        self.web = act[0] == "active"
        self.daemon = act[1]

    @property
    def master(self):
        return self.states.get("web") == "master"

    def __repr__(self):
        return "node%d(states=%s vip=%s web=%s daemon=%s)" % (
            self.node, self.states, self.vip, self.web, self.daemon)


def snap(c, n):
    out = c.check(n, "dlm-electd status --json 2>/dev/null || echo '{}'; echo @@; "
                     "ip -o -4 addr show dev eth0; echo @@; "
                     "systemctl is-active demo-web.service %s || true" % UNIT, 60)
    return Snap(n, out)


def snaps(c):
    return parallel(lambda n: snap(c, n), *[(n,) for n in NODES])


def one_master(c, timeout=120):
    """Wait until exactly one node is master with VIP and demo-web, the other a
    standby without them, both daemons active; returns (master, standby)."""
    last = []

    def ok():
        s = snaps(c)
        last[:] = s
        m = [x for x in s if x.master]
        if len(m) != 1 or any(x.daemon != "active" for x in s):
            return None
        o = [x for x in s if x is not m[0]][0]
        if m[0].vip and m[0].web and o.states.get("web") == "standby" and not o.vip and not o.web:
            return m[0].node, o.node
        return None
    try:
        return until(timeout, "exactly one master", ok, every=1)
    except Fail as e:
        raise Fail("%s; last seen: %s" % (e, last))


def other(n):
    return 3 - n


def cursor(c, n):
    """A point in node n's journal: its own clock (journalctl --after-cursor lost
    entries of PID 1 here, so it is a time, read on the same node)."""
    return c.check(n, "date +%s.%N").strip()


def journal(c, n, since, args="-u " + UNIT, fmt="cat"):
    return c.check(n, "journalctl -q --no-hostname -o %s %s --since=@%s" % (fmt, args, since))


def prop(c, n, name, unit=UNIT):
    return c.check(n, "systemctl show -p %s --value %s" % (name, unit)).strip()


def overlap_round(seen):
    """seen[k]: the nodes that said "master" in sampling round k (both asked at
    once).  A reply tells the state at some instant of its round, so two in one
    round alone prove nothing; but a node master in rounds k-1 and k+1 was master
    all through round k (a handover takes longer than a round), so the other one
    saying master in round k means two masters.  Returns that k, or None."""
    for k in range(1, len(seen) - 1):
        if len(seen[k]) == 2 and any(n in seen[k - 1] and n in seen[k + 1] for n in seen[k]):
            return k
    return None


# ---- the one-clock replay ---------------------------------------------------
# (node, kind, from_index, to_index): event windows where a scenario made a second
# copy on purpose (demo-web started by hand on the standby).
IGNORE = []


def no_two_masters(c, since=0):
    """Replay host-stamped events: never the VIP, nor demo-web, nor demo-job
    (a workload lock), on two nodes at once.  A node powered off (pulled, or
    fenced: the harness's own event) holds nothing from then on."""
    kinds = ("vip", "web", "job")
    nodes = sorted(c.nodes)
    on = {(n, k): False for n in nodes for k in kinds}
    evs = c.events(0)
    for i, e in enumerate(evs):
        kind = val = None
        if e.text.startswith("power off"):
            for k in kinds:
                on[(e.node, k)] = False
            continue
        if e.text.startswith("addr ") and (" inet %s/" % VIP) in e.text:
            kind, val = "vip", not e.text.startswith("addr Deleted")
        elif e.text == "unit start":
            kind, val = "web", True
        elif e.text == "unit stop":
            kind, val = "web", False
        elif e.text in ("job start", "job stop"):
            kind, val = "job", e.text == "job start"
        if kind is None:
            continue
        if any(n == e.node and k == kind and a <= i < b for n, k, a, b in IGNORE):
            continue
        on[(e.node, kind)] = val
        if i >= since and val and any(on[(m, kind)] for m in nodes if m != e.node):
            ctx = "\n".join("  %.3f node%d %s" % x for x in evs[max(0, i - 8):i + 1])
            raise Fail("%s on both nodes at once (host clock):\n%s" % (kind, ctx))


# ---- scenarios -------------------------------------------------------------
def o2cb_node(c, n):
    # /etc/default/o2cb is edited, not debconf'd: dpkg-reconfigure re-reads the file.
    # Lower dead-node timeouts, identical on both nodes (o2net insists).
    c.check(n, "sed -i -e 's/^O2CB_ENABLED=.*/O2CB_ENABLED=true/' "
               "-e 's/^O2CB_BOOTCLUSTER=.*/O2CB_BOOTCLUSTER=%s/' "
               "-e 's/^O2CB_HEARTBEAT_THRESHOLD=.*/O2CB_HEARTBEAT_THRESHOLD=11/' "
               "-e 's/^O2CB_IDLE_TIMEOUT_MS=.*/O2CB_IDLE_TIMEOUT_MS=15000/' /etc/default/o2cb && "
               "systemctl enable -q o2cb && systemctl restart o2cb && "
               "o2cb cluster-status && findmnt -n /dlm" % CLUSTER, 300)


def install_node(c, n):
    c.check(n, "cd /mnt/host && apt-get install -y -q ./dlm-electd_*.deb", 300)
    # README "Install": on a dlmfs node, tie the service to the cluster stack.
    c.check(n, "mkdir -p /etc/systemd/system/dlm-electd.service.d && "
               "cp /usr/share/doc/dlm-electd/examples/dlmfs.conf.example "
               "/etc/systemd/system/dlm-electd.service.d/dlmfs.conf")
    install_web(c, n)
    c.check(n, "dlm-electd check-config")


def install_web(c, n):
    """The resource of both tiers: demo-web.service and the web.toml drop-in."""
    c.check(n, "install -m 0644 /mnt/host/demo-web.service /etc/systemd/system/ && "
               "systemctl daemon-reload && "
               "install -d -m 0755 /etc/dlm-electd/conf.d && "
               "install -m 0644 /mnt/host/web.toml /etc/dlm-electd/conf.d/web.toml")


@scenario(timeout=900, always=True)
def setup(c):
    """o2cb cluster with ocfs2-tools; apt install the .deb; enable --now on both"""
    t0 = time.monotonic()
    c.check(1, "mkfs.ocfs2 -q -b 4K -C 4K -J size=4M -N 4 -L dlmhb --cluster-stack=o2cb "
               "--cluster-name={cl} --global-heartbeat {hb} && "
               "o2cb add-cluster {cl} && "
               "o2cb add-node {cl} node1 --ip 198.18.88.1 --port 7777 --number 1 && "
               "o2cb add-node {cl} node2 --ip 198.18.88.2 --port 7777 --number 2 && "
               "o2cb add-heartbeat {cl} {hb} && o2cb heartbeat-mode {cl} global"
               .format(cl=CLUSTER, hb=HB_DEV), 180)
    c.push(2, c.pull(1, "/etc/ocfs2/cluster.conf"), "/etc/ocfs2/cluster.conf")  # as scp would
    parallel(lambda n: o2cb_node(c, n), *[(n,) for n in NODES])
    print("  o2cb cluster up after %.1f s" % (time.monotonic() - t0), flush=True)
    parallel(lambda n: install_node(c, n), *[(n,) for n in NODES])
    print("  package installed after %.1f s" % (time.monotonic() - t0), flush=True)
    for n in NODES:
        c.check(n, "systemctl enable --now %s" % UNIT, 180)
    one_master(c)
    print("  one master after %.1f s" % (time.monotonic() - t0), flush=True)


@scenario(timeout=120)
def unit_checks(c):
    """systemd-analyze verify, and security exposure <= 2.5, on the shipped unit"""
    path = prop(c, 1, "FragmentPath")
    # Generators on: o2cb.service (dlmfs.conf's Requires=) comes from the sysv
    # generator. Man pages are not checked with man(1), which the minbase image
    # lacks, but by the package's file list.
    rc, out, err = c.sh(1, "systemd-analyze verify --generators=yes --man=no %s" % path)
    if rc != 0 or UNIT in out + err:
        raise Fail("systemd-analyze verify %s: rc %d\n%s%s" % (path, rc, out, err))
    files = c.check(1, "dpkg -L dlm-electd")
    for page in ("/usr/share/man/man8/dlm-electd.8", "/usr/share/man/man5/dlm-electd.toml.5"):
        if page not in files:
            raise Fail("the package has no %s" % page)
    out = c.check(1, "systemd-analyze security --offline=yes --no-pager %s" % path)
    m = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(UNIT), out)
    if not m or float(m.group(1)) > 2.5:
        raise Fail("exposure must be <= 2.5:\n%s" % out[-3000:])
    print("  exposure %s" % m.group(1))


@scenario(timeout=120)
def active_and_journal_fields(c):
    """1. active on both; journal entries carry RESOURCE, STATE, NODE"""
    for n in NODES:
        state = c.sh(n, "systemctl is-active %s" % UNIT)[1].strip()
        if state != "active":
            raise Fail("node%d: dlm-electd is %s" % (n, state))
        entries = [json.loads(l) for l in c.check(
            n, "journalctl -q -b -u %s -o json" % UNIT).splitlines() if l.strip()]
        # Unprefixed, as docs/behaviour.md ("Logs") promises: RESOURCE=, STATE=, NODE= (not F_RESOURCE=).
        states = [e for e in entries if e.get("RESOURCE") == "web" and e.get("STATE") in
                  ("standby", "acquiring", "master", "releasing", "backoff", "stalled")]
        nodes = [e for e in entries if e.get("NODE") == "node%d" % n]
        if not states or not nodes:
            keys = sorted({k for e in entries for k in e if not k.startswith("_")})
            raise Fail("node%d: %d entries with RESOURCE=web and STATE, %d with NODE=node%d; "
                       "fields seen: %s" % (n, len(states), len(nodes), n, keys))


@scenario(timeout=120)
def master_only(c):
    """2. demo-web and the VIP on the master only"""
    m, s = one_master(c)
    for x in snaps(c):
        want = x.node == m
        if x.vip != want or x.web != want:
            raise Fail("%r (master is node%d)" % (x, m))


@scenario(timeout=300)
def stop_master(c):
    """3. systemctl stop on the master: the other takes over; the stopped node has neither"""
    m, s = one_master(c)
    mk = c.mark()
    c.check(m, "systemctl stop %s" % UNIT, 120)
    x = snap(c, m)
    if x.vip or x.web or x.daemon != "inactive":
        raise Fail("after stop: %r" % x)
    until(120, "node%d to take over" % s, lambda: snap(c, s).master and snap(c, s).vip)
    c.wait_event(r"^unit start$", node=s, since=mk, timeout=60)
    x = snap(c, s)
    if not (x.vip and x.web):
        raise Fail("new master: %r" % x)
    x = snap(c, m)
    if x.vip or x.web:
        raise Fail("stopped node: %r" % x)
    c.check(m, "systemctl start %s" % UNIT, 120)
    if one_master(c) != (s, m):
        raise Fail("mastership moved back on start")


@scenario(timeout=300)
def kill_master(c):
    """4. systemctl kill -s KILL on the master: cleanup ran before the other took over"""
    m, s = one_master(c)
    mk = c.mark()
    c.check(m, "systemctl kill -s KILL %s" % UNIT)
    took = c.wait_event(r"^unit start$", node=s, since=mk, timeout=180)
    evs = c.events(mk)
    def first(node, rx):
        return next((e for e in evs if e.node == node and re.search(rx, e.text)), None)
    web_off = first(m, r"^unit stop$")
    vip_off = first(m, r"^addr Deleted .* inet %s/" % re.escape(VIP))
    vip_on = first(s, r"^addr .* inet %s/" % re.escape(VIP))
    if not web_off or not vip_off:
        raise Fail("node%d never released (web stop %s, vip del %s)" % (m, web_off, vip_off))
    if not vip_on or not (web_off.t < took.t and vip_off.t < vip_on.t):
        raise Fail("takeover before cleanup: %s" % "\n".join(map(str, evs)))
    print("  node%d released %.2f s before node%d took over (host clock)"
          % (m, vip_on.t - vip_off.t, s))
    j = c.check(m, "journalctl -q -b -u %s -o cat | tail -n 60" % UNIT)
    if "status=9/KILL" not in j:
        raise Fail("node%d: no SIGKILL in the journal:\n%s" % (m, j))
    if one_master(c) != (s, m):
        raise Fail("node%d did not stay master" % s)


@scenario(timeout=300)
def watchdog(c):
    """5. kill -STOP the daemon: the watchdog restarts it, one master after"""
    m, s = one_master(c)
    cur = cursor(c, m)
    pid = prop(c, m, "MainPID")
    restarts = int(prop(c, m, "NRestarts"))
    wd = prop(c, m, "WatchdogUSec")
    if wd in ("0", "infinity", ""):
        raise Fail("no WatchdogSec in the unit (WatchdogUSec=%s)" % wd)
    c.check(m, "kill -STOP %s" % pid)
    until(180, "a restart by the watchdog",
          lambda: int(prop(c, m, "NRestarts")) > restarts and prop(c, m, "ActiveState") == "active"
          and prop(c, m, "MainPID") not in ("0", pid), every=1)
    j = journal(c, m, cur)
    if not re.search(r"Watchdog timeout", j) or "watchdog" not in j:
        raise Fail("node%d journal has no watchdog timeout:\n%s" % (m, j))
    one_master(c)


@scenario(timeout=300)
def reload_broken(c):
    """6. reload with a broken config fails visibly; the old config keeps running"""
    m, s = one_master(c)
    before = snap(c, m)
    pid = prop(c, m, "MainPID")
    cur = cursor(c, m)
    c.push(m, '[[resource]]\nname = "web2"\nno_such_key = true\n',
           "/etc/dlm-electd/conf.d/zz-broken.toml")
    try:
        rc, out, err = c.sh(m, "systemctl reload %s" % UNIT, 120)
        if rc == 0:
            raise Fail("systemctl reload with a broken config exited 0")
        print("  reload refused: rc %d %s" % (rc, err.strip().splitlines()[:1]))
        j = journal(c, m, cur)
        if "zz-broken.toml" not in j or "no_such_key" not in j:
            raise Fail("the journal does not name the bad file and key:\n%s" % j)
        after = snap(c, m)
        if prop(c, m, "MainPID") != pid or prop(c, m, "ActiveState") != "active":
            raise Fail("daemon restarted or stopped by a failed reload")
        if after.states != before.states or not (after.vip and after.web):
            raise Fail("config changed by a failed reload: %r -> %r" % (before, after))
    finally:
        c.check(m, "rm -f /etc/dlm-electd/conf.d/zz-broken.toml")
    # The same reload with a good config succeeds: the failure above was the config's.
    c.check(m, "systemctl reload %s" % UNIT, 120)
    if prop(c, m, "MainPID") != pid:
        raise Fail("a good reload restarted the daemon")
    if one_master(c) != (m, s):
        raise Fail("a reload without changes moved mastership")


@scenario(timeout=300)
def restart_master(c):
    """7. systemctl restart on the master: never two masters (sampled and replayed)"""
    m, s = one_master(c)
    rounds = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            rounds.append(snaps(c))
    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    try:
        until(30, "first samples", lambda: len(rounds) >= 2, every=0.2)
        c.check(m, "systemctl restart %s" % UNIT, 180)
        one_master(c)
        n0 = len(rounds)
        until(30, "samples after the restart", lambda: len(rounds) >= n0 + 2, every=0.2)
    finally:
        stop.set()
        t.join(60)
    for what in ("master", "vip"):
        k = overlap_round([{x.node for x in r if getattr(x, what)} for r in rounds])
        if k is not None:
            raise Fail("two nodes %s in round %d of %d: %s" % (what, k, len(rounds), rounds[k]))
    print("  %d sample rounds during the restart" % len(rounds))
    if not any(not r[m - 1].master for r in rounds):
        raise Fail("node%d never stopped being master: did the restart happen?" % m)


def drain_of(c, n):
    """Node n's drain as `status --json` shows it (None: not drained)."""
    return json.loads(c.check(n, "dlm-electd status --json")).get("drain")


@scenario(timeout=1200)
def drain_survives_reboot(c):
    """issue 23: drain the master (the other takes over); reboot it: back drained, reason kept; undrain"""
    m, s = one_master(c)
    # On dlmfs --wait returns once this node released (docs/operating.md,
    # "Drain"): the takeover is waited for here.
    c.check(m, "dlm-electd drain --reason 'kernel update' --wait", 180)
    x = snap(c, m)
    if x.states.get("web") != "drained" or x.vip or x.web:
        raise Fail("after drain --wait: %r" % x)
    until(120, "node%d master with the VIP and demo-web" % s,
          lambda: (lambda y: y.master and y.vip and y.web)(snap(c, s)), every=1)
    before = c.check(m, "cat /proc/sys/kernel/random/boot_id").strip()
    t0 = time.monotonic()
    # Returns at once; the reboot starts a second later, as an admin's would.
    c.check(m, "systemd-run -q --on-active=1 systemctl reboot")

    def booted_again():
        try:  # the agent does not answer while the node is down (a try may take 90 s)
            return c.sh(m, "cat /proc/sys/kernel/random/boot_id", 30)[1].strip() not in ("", before)
        except Exception:
            return False
    until(600, "node%d booted again" % m, booted_again, every=2)
    until(300, "dlm-electd active on node%d after the reboot" % m,
          lambda: prop(c, m, "ActiveState") == "active", every=2)
    print("  node%d rebooted, dlm-electd active after %.1f s" % (m, time.monotonic() - t0), flush=True)
    x, y = snap(c, m), snap(c, s)
    if x.states.get("web") != "drained" or x.vip or x.web:
        raise Fail("node%d after the reboot is not drained: %r" % (m, x))
    if not (y.master and y.vip and y.web):
        raise Fail("node%d lost mastership during the other's reboot: %r" % (s, y))
    d = drain_of(c, m)
    if not d or d.get("reason") != "kernel update":
        raise Fail("node%d: status --json drain after the reboot: %r" % (m, d))
    c.check(m, "dlm-electd undrain")
    if drain_of(c, m) is not None:
        raise Fail("node%d still drained after undrain" % m)
    # No preference configured: the master stays where it is.
    if one_master(c) != (s, m):
        raise Fail("undrain moved mastership back to node%d" % m)


@scenario(timeout=300)
def enabled_managed_unit(c):
    """8. a managed unit enabled by mistake: warned about, and stopped on the standby"""
    m, s = one_master(c)
    cur = cursor(c, s)
    c.check(s, "systemctl enable -q demo-web.service")
    try:
        # As at boot: the enabled unit runs on the standby before its daemon starts.
        mk = c.mark()
        c.check(s, "systemctl start demo-web.service")
        c.check(s, "systemctl restart %s" % UNIT, 120)
        until(60, "demo-web stopped on the standby node%d" % s, lambda: not snap(c, s).web)
        end = c.mark()
        j = journal(c, s, cur)
        warn = [l for l in j.splitlines() if "demo-web.service" in l and "enabled" in l.lower()]
        if not warn:
            raise Fail("node%d: no warning about the enabled demo-web.service:\n%s" % (s, j))
        print("  warning: %s" % warn[0])
        IGNORE.append((s, "web", mk, end))
    finally:
        c.check(s, "systemctl disable -q demo-web.service")
    # The journal is read again: a warning printed once at startup is enough.
    if one_master(c) != (m, s):
        raise Fail("mastership moved")


# The file backend under the shipped unit: a second instance of it on one node
# (dlm-electd-file.service: the shipped unit with its own config, runtime and
# state dirs), and a contender for the same OFD lock (a plain dlm-electd run as a
# transient unit). Both log their hook events with the node's clock to one file.
FILE_NODE = 1
FILE_UNIT = "dlm-electd-file.service"
CONTENDER = "dlm-electd-contender.service"
FILE_EVENTS = "/var/lib/dlm-electd-file/events.log"


def file_config(node, runtime, poll):
    hook = ('["/bin/sh", "-c", "echo \\"$(date +%%s.%%N) $DLM_ELECTD_NODE $DLM_ELECTD_EVENT\\" '
            '>> %s"]' % FILE_EVENTS)
    return ('[node]\nname = "%s"\n[lock]\nbackend = "file"\ndir = "/var/lib/dlm-electd-file/locks"\n'
            '[daemon]\nruntime_dir = "%s"\npoll_interval = "%s"\n'
            '[[resource]]\nname = "fl"\n[[resource.action]]\ntype = "exec"\n'
            'acquire = %s\nrelease = %s\n' % (node, runtime, poll, hook, hook))


def file_events(c, n):
    rc, out, _ = c.sh(n, "cat %s" % FILE_EVENTS)
    evs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3:
            evs.append((float(f[0]), f[1], f[2]))
    return evs


def file_state(c, n, conf):
    rc, out, _ = c.sh(n, "dlm-electd status --json --config %s" % conf)
    try:
        return {r["name"]: r["state"] for r in json.loads(out)["resources"]}.get("fl")
    except (ValueError, KeyError, TypeError):
        return None


def no_early_takeover(evs, since, what):
    """After a kill of filenode (at index since), the contender may acquire only
    after filenode's cleanup released (host-independent: one guest clock)."""
    after = evs[since:]
    took = [e for e in after if e[1] == "contender" and e[2] == "acquire"]
    if not took:
        return
    rel = [e for e in after if e[1] == "filenode" and e[2] == "release" and e[0] < took[0][0]]
    if not rel:
        raise Fail("%s: the contender took the lock at %.3f before filenode's cleanup released:\n%s"
                   % (what, took[0][0], "\n".join("  %.3f %s %s" % e for e in after)))


@scenario(timeout=600)
def file_backend_crash(c):
    """10. file backend under the unit: kill -s KILL and a watchdog kill keep the lock (fd store)"""
    n = FILE_NODE
    conf, cconf = "/etc/dlm-electd-file/dlm-electd.toml", "/etc/dlm-electd-contender/dlm-electd.toml"
    # The shipped unit, pointed at its own config and dirs; a short watchdog so
    # the watchdog kill costs seconds. DLM_ELECTD_SYSTEM_FDSTORE_MAX=0 shows the
    # test failing without the fd store.
    frag = prop(c, n, "FragmentPath")
    c.check(n, "sed -e 's#^\\(Exec[A-Za-z]*=/usr/sbin/dlm-electd [a-z-]*\\)#\\1 --config %s#' "
               "-e 's/^RuntimeDirectory=dlm-electd$/RuntimeDirectory=dlm-electd-file/' "
               "-e 's/^StateDirectory=dlm-electd$/StateDirectory=dlm-electd-file/' "
               "%s > /etc/systemd/system/%s" % (conf, frag, FILE_UNIT))
    dropin = "[Service]\nWatchdogSec=6s\n"
    if os.environ.get("DLM_ELECTD_SYSTEM_FDSTORE_MAX"):
        dropin += "FileDescriptorStoreMax=%s\n" % os.environ["DLM_ELECTD_SYSTEM_FDSTORE_MAX"]
    c.check(n, "mkdir -p /etc/systemd/system/%s.d /etc/dlm-electd-file /etc/dlm-electd-contender"
            % FILE_UNIT)
    c.push(n, dropin, "/etc/systemd/system/%s.d/test.conf" % FILE_UNIT)
    c.push(n, file_config("filenode", "/run/dlm-electd-file", "1s"), conf)
    c.push(n, file_config("contender", "/run/dlm-electd-contender", "200ms"), cconf)
    c.check(n, "chmod 0644 %s %s && systemctl daemon-reload" % (conf, cconf))
    try:
        c.check(n, "systemctl start %s" % FILE_UNIT, 120)
        until(60, "filenode master", lambda: file_state(c, n, conf) == "master")
        c.check(n, "systemd-run -q --unit=%s -p KillMode=mixed /usr/sbin/dlm-electd run --config %s"
                % (CONTENDER, cconf))
        until(60, "the contender standing by", lambda: file_state(c, n, cconf) == "standby")

        for how in ("kill", "watchdog"):
            since = len(file_events(c, n))
            cur = cursor(c, n)
            pid, restarts = prop(c, n, "MainPID", FILE_UNIT), int(prop(c, n, "NRestarts", FILE_UNIT))
            t0 = time.monotonic()
            if how == "kill":
                c.check(n, "systemctl kill -s KILL %s" % FILE_UNIT)
            else:
                c.check(n, "kill -STOP %s" % pid)
            until(120, "%s: a restart of %s" % (how, FILE_UNIT),
                  lambda: int(prop(c, n, "NRestarts", FILE_UNIT)) > restarts
                  and prop(c, n, "ActiveState", FILE_UNIT) == "active"
                  and prop(c, n, "MainPID", FILE_UNIT) not in ("0", pid), every=0.5)
            no_early_takeover(file_events(c, n), since, how)
            until(60, "%s: filenode master again" % how, lambda: file_state(c, n, conf) == "master")
            evs = file_events(c, n)
            no_early_takeover(evs, since, how)
            j = journal(c, n, cur, "-u " + FILE_UNIT)
            if "resuming as its holder" not in j:
                raise Fail("%s: the restart did not resume with the stored lock:\n%s" % (how, j[-3000:]))
            if file_state(c, n, cconf) != "standby":
                raise Fail("%s: the contender is %s" % (how, file_state(c, n, cconf)))
            print("  %s: restarted and resumed as master after %.1f s; events: %s"
                  % (how, time.monotonic() - t0, " ".join("%s/%s" % e[1:] for e in evs[since:])))

        # A stop lets go, after the release step: then the contender takes it.
        since = len(file_events(c, n))
        c.check(n, "systemctl stop %s" % FILE_UNIT, 120)
        until(60, "the contender master", lambda: file_state(c, n, cconf) == "master")
        evs = file_events(c, n)[since:]
        rel = [e for e in evs if e[1:] == ("filenode", "release")]
        took = [e for e in evs if e[1:] == ("contender", "acquire")]
        if not rel or not took or took[0][0] < rel[0][0]:
            raise Fail("stop: %s" % evs)
        print("  stop: the contender took over %.3f s after filenode released" % (took[0][0] - rel[0][0]))
    finally:
        c.sh(n, "systemctl stop %s %s; systemctl reset-failed %s %s; "
                "rm -rf /etc/systemd/system/%s /etc/systemd/system/%s.d "
                "/etc/dlm-electd-file /etc/dlm-electd-contender /var/lib/dlm-electd-file "
                "/run/dlm-electd-file /run/dlm-electd-contender; systemctl daemon-reload"
             % (FILE_UNIT, CONTENDER, FILE_UNIT, CONTENDER, FILE_UNIT, FILE_UNIT), 180)


JOB = "demo-job.service"


def job_active(c, n):
    return c.sh(n, "systemctl is-active %s" % JOB)[1].strip() == "active"


@scenario(timeout=400)
def workload_drop_in(c):
    """A unit with the shipped workload-lock drop-in refuses to start while the other node runs it; daemon restart and SIGKILL+cleanup keep the lock"""
    for n in NODES:
        c.check(n, "install -m 0644 /mnt/host/demo-job.service /etc/systemd/system/ && "
                   "mkdir -p /etc/systemd/system/demo-job.service.d && "
                   "cp /usr/share/doc/dlm-electd/examples/workload-lock.conf.example "
                   "/etc/systemd/system/demo-job.service.d/workload-lock.conf && "
                   "systemctl daemon-reload")
    try:
        a, b = NODES
        c.check(a, "systemctl start %s" % JOB, 120)
        st = c.check(a, "dlm-electd status")
        if "systemd unit demo-job.service" not in st:
            raise Fail("status does not list the lock:\n%s" % st)
        rc, out, err = c.sh(b, "systemctl start %s" % JOB, 120)
        j = c.check(b, "journalctl -q -b -u %s -o cat | tail -n 20" % JOB)
        if rc == 0 or job_active(c, b) or "busy" not in j:
            raise Fail("node%d started it too (rc %d):\n%s" % (b, rc, j))
        # The failed start's ExecStopPost=unlock left node a's lock alone.
        if c.sh(b, "systemctl start %s" % JOB, 120)[0] == 0:
            raise Fail("second start on node%d succeeded" % b)
        # The daemon restarted, and killed + cleaned up (ExecStopPost), on
        # the holder's node: the job's lock stays.
        c.check(a, "systemctl restart %s" % UNIT, 180)
        c.check(a, "systemctl kill -s KILL %s" % UNIT)
        until(120, "dlm-electd on node%d back after the kill" % a,
              lambda: c.sh(a, "systemctl is-active %s" % UNIT)[1].strip() == "active")
        if not job_active(c, a) or c.sh(b, "systemctl start %s" % JOB, 120)[0] == 0:
            raise Fail("the job's lock did not survive the daemon's restart/kill")
        # A stop hands it over: node b starts it now.
        t0 = time.monotonic()
        c.check(a, "systemctl stop %s" % JOB, 120)
        print("  systemctl stop of the locked job took %.1f s" % (time.monotonic() - t0))
        c.check(b, "systemctl reset-failed %s; systemctl start %s" % (JOB, JOB), 120)
        if not job_active(c, b) or c.sh(a, "systemctl start %s" % JOB, 120)[0] == 0:
            raise Fail("handover failed")
        c.check(b, "systemctl stop %s" % JOB, 120)
        for n in NODES:
            if "hold-workload-lock" in c.check(n, "ps -eo args"):
                raise Fail("node%d: a holder is left" % n)
    finally:
        for n in NODES:
            c.sh(n, "systemctl stop %s; systemctl reset-failed %s; rm -rf /etc/systemd/system/%s "
                    "/etc/systemd/system/demo-job.service.d; systemctl daemon-reload" % (JOB, JOB, JOB))
    one_master(c)


DATA_DEV = "/dev/disk/by-id/virtio-ocfs2-data"
OCFS2_MNT = "/mnt/ocfs2"
OCFS2_CONF = "/etc/dlm-electd-ocfs2/dlm-electd.toml"


def ocfs2_config(node, trust):
    # `dir` on line 5, column 7: the position the refusal must name. The dir
    # does not exist yet: it is judged by its ancestor, the volume's root.
    return ('[node]\nname = "%s"\n[lock]\nbackend = "file"\ndir = "%s/locks"\n%s'
            '[daemon]\nruntime_dir = "/run/dlm-electd-ocfs2"\n'
            '[[resource]]\nname = "fl"\n[[resource.action]]\ntype = "exec"\n'
            'acquire = ["/bin/true"]\n'
            % (node, OCFS2_MNT, "trust_filesystem = true\n" if trust else ""))


def refused_78(c, n, args, what):
    rc, out, err = c.sh(n, "dlm-electd --config %s %s" % (OCFS2_CONF, args), 120)
    want = ("%s:5:7: key `lock.dir`: refusing the `file` backend here: the lock dir is on "
            "ocfs2 at %s: OCFS2 on the o2cb stack keeps POSIX and OFD locks on each node"
            % (OCFS2_CONF, OCFS2_MNT))
    if rc != 78 or not err.startswith(want) or "`dlmfs` backend" not in err:
        raise Fail("node%d: %s: rc %d, expected 78 and\n  %s\nstdout: %s\nstderr: %s"
                   % (n, what, rc, want, out.strip(), err.strip()))


@scenario(timeout=600)
def file_on_ocfs2(c):
    """issue 25: the file backend on an OCFS2 volume (o2cb) is refused, exit 78; raw OFD locks are node-local there"""
    t0 = time.monotonic()
    c.check(1, "mkfs.ocfs2 -q -b 4K -C 4K -J size=4M -N 4 -L dlmdata --cluster-stack=o2cb "
               "--cluster-name=%s --global-heartbeat %s" % (CLUSTER, DATA_DEV), 180)
    try:
        for n in NODES:  # one at a time: each mount joins the volume's DLM domain
            c.check(n, "mkdir -p %s && mount -t ocfs2 %s %s" % (OCFS2_MNT, DATA_DEV, OCFS2_MNT), 180)
        for n in NODES:
            print("  node%d: %s, cluster stack %s" % (
                n, c.check(n, "findmnt -n -o FSTYPE,OPTIONS %s" % OCFS2_MNT).strip(),
                c.check(n, "cat /sys/fs/ocfs2/cluster_stack").strip()))
        print("  mounted on both after %.1f s" % (time.monotonic() - t0), flush=True)

        # The reason, kept here: a raw OFD write lock held on node1 is busy
        # for another try on node1, but granted on node2 at the same time.
        raw = "%s/raw.lock" % OCFS2_MNT
        c.check(1, "rm -f /run/ofd-held && systemd-run -q --unit=ofd-hold "
                   "/usr/bin/python3 /mnt/host/ofd.py hold %s /run/ofd-held" % raw)
        until(60, "node1 holding the raw OFD lock",
              lambda: c.sh(1, "test -e /run/ofd-held")[0] == 0)
        rc1, out1, err1 = c.sh(1, "python3 /mnt/host/ofd.py try %s" % raw)
        if (rc1, out1.strip()) != (1, "busy"):
            raise Fail("node1: a second OFD lock on node1 was not busy: rc %d %s %s"
                       % (rc1, out1, err1))
        rc2, out2, err2 = c.sh(2, "python3 /mnt/host/ofd.py try %s" % raw)
        if (rc2, out2.strip()) != (0, "granted"):
            raise Fail("node2: the OFD lock node1 holds was not granted there (rc %d %s %s): "
                       "OCFS2 on o2cb locks across nodes now? then the refusal needs a new look"
                       % (rc2, out2, err2))
        print("  raw OFD lock held on node1: busy on node1, granted on node2")

        for n in NODES:
            c.check(n, "mkdir -p %s" % os.path.dirname(OCFS2_CONF))
            c.push(n, ocfs2_config("node%d" % n, False), OCFS2_CONF)
            c.check(n, "chmod 0644 %s" % OCFS2_CONF)
            refused_78(c, n, "check-config", "check-config")
            refused_78(c, n, "run", "run")
            refused_78(c, n, "run-locked job -- /bin/true", "run-locked")
            refused_78(c, n, "lock job", "lock")
            # Known to lock per node: trust_filesystem does not admit it.
            c.push(n, ocfs2_config("node%d" % n, True), OCFS2_CONF)
            refused_78(c, n, "check-config", "check-config with trust_filesystem")
            if c.sh(n, "test -e %s/locks" % OCFS2_MNT)[0] == 0:
                raise Fail("node%d: a refused command created the lock dir" % n)
        print("  check-config, run, run-locked, lock: exit 78 on both nodes")
    finally:
        for n in NODES:
            c.sh(n, "systemctl stop ofd-hold; systemctl reset-failed ofd-hold; "
                    "umount %s; rm -rf %s" % (OCFS2_MNT, os.path.dirname(OCFS2_CONF)), 180)


@scenario(timeout=400)
def purge(c):
    """9. apt purge removes cleanly: no VIP, no managed unit, no unit file"""
    m, s = one_master(c)
    for n in (m, s):
        t0 = time.monotonic()
        c.check(n, "apt-get purge -y -q dlm-electd", 300)
        print("  node%d: apt-get purge took %.1f s" % (n, time.monotonic() - t0), flush=True)
        left = c.check(n, "ls /lib/systemd/system/%s /usr/lib/systemd/system/%s "
                          "/etc/systemd/system/multi-user.target.wants/%s 2>/dev/null; "
                          "pgrep -x dlm-electd; test -e /usr/bin/dlm-electd && echo binary; "
                          "true" % (UNIT, UNIT, UNIT))
        if left.strip():
            raise Fail("node%d: left after purge: %s" % (n, left))
        x = snap(c, n)
        if x.vip or x.web:
            raise Fail("node%d after purge: %r" % (n, x))
        if n == m:
            until(120, "node%d to take over" % s, lambda: snap(c, s).vip and snap(c, s).web)
