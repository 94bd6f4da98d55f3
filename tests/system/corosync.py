"""The corosync tier (issue 22): the `dlm` backend from the .deb on three
Debian 12 VMs running corosync 3 + dlm_controld (the kernel's fs/dlm), with a
real fence path, run in this order on one cluster (`run.py --stack corosync`).

Fencing is real: dlm_controld's `fence_all` is the image's fence_harness,
which asks the host over a virtio-serial port to power the victim off; the
host kills that node's QEMU before it answers (harness.py, as fence_virt asks
a hypervisor).  The DLM hands a dead node's locks over only after that.

Setup does what an admin does (README "Moving a VIP off Pacemaker"):
corosync.conf with the three nodes, dlm.conf, `apt install` of the .deb, the
shipped dlm drop-in, `backend = "dlm"`, one resource `web` (the VIP and
demo-web.service, as in the o2cb system tier), `systemctl enable --now`.
Every scenario ends with the one-clock replay of scenarios.py: never the VIP,
nor demo-web, on two nodes at once; a powered-off node holds nothing.
"""
import json
import os
import re
import subprocess
import time

import scenarios as base
from scenarios import Fail, parallel, snap, until

NODES = (1, 2, 3)
UNIT = base.UNIT
VIP = base.VIP
REGISTRY = []
# A fence device that takes its time (IPMI power-off takes seconds too): long
# enough that a master cut off from quorum is seen to release on its own
# before the fence lands.  Set for the partition only.
SLOW_FENCE_S = 20
def corosync_conf(nodes, two_node=False):
    return COROSYNC_CONF % "".join(
        "    node {\n        ring0_addr: 198.18.88.%d\n        name: node%d\n"
        "        nodeid: %d\n    }\n" % (n, n, n) for n in nodes) + \
        ("quorum {\n    provider: corosync_votequorum\n%s}\n"
         % ("    two_node: 1\n" if two_node else ""))


COROSYNC_CONF = """totem {
    version: 2
    cluster_name: dlmsys
    transport: knet
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
%s}
logging {
    to_syslog: yes
}
"""
DLM_FENCED = ("# every failed node is powered off through the host before the DLM\n"
              "# recovers its locks (enable_fencing=1 is the default)\n"
              "fence_all /usr/local/sbin/fence_harness\n")
DLM_UNFENCED = "enable_fencing=0\n"
MAIN = "/etc/dlm-electd/dlm-electd.toml"


def build_tools(repo):
    """dlmprobe (tests/corosync/dlmprobe, static): the raw lock loop the
    power pull times the daemon against.  Its own target dir in the cache."""
    t0 = time.monotonic()
    target = os.path.join(os.environ.get("DLM_ELECTD_SYSTEM_CACHE", "/var/tmp/dlm-electd-system"),
                          "dlmprobe-target")
    subprocess.run(["cargo", "build", "-q", "--locked", "--release",
                    "--target", "x86_64-unknown-linux-gnu", "--target-dir", target],
                   cwd=os.path.join(repo, "tests", "corosync", "dlmprobe"), check=True,
                   env=dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static"))
    print("dlmprobe built (%.1f s)" % (time.monotonic() - t0), flush=True)
    return [os.path.join(target, "x86_64-unknown-linux-gnu", "release", "dlmprobe")]


def scenario(timeout=300, always=False):
    """A corosync scenario: besides scenarios.py's replay of the event log,
    never two MACs answering ARP for the VIP in one probe round (the
    harness's observer on the bridge, from the first scenario on)."""
    def deco(fn):
        def run(c):
            start = len(c.arp_answers([VIP]))
            fn(c)
            two = [a for a in c.arp_answers([VIP])[start:] if len(a[2]) > 1]
            if two:
                raise Fail("two MACs answered ARP for %s: %s" % (VIP, two[:5]))
        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        base.scenario(timeout, always, registry=REGISTRY)(run)
        return fn
    return deco


def vip_event(text, added):
    return text.startswith("addr ") and (" inet %s/" % VIP) in text and \
        text.startswith("addr Deleted") != added


def masters(c, nodes):
    """Exactly one master with the VIP and demo-web among `nodes` (powered
    on), every other one a standby without them; all daemons active."""
    last = []

    def ok():
        s = parallel(lambda n: snap(c, n), *[(n,) for n in nodes])
        last[:] = s
        m = [x for x in s if x.master]
        if len(m) != 1 or any(x.daemon != "active" for x in s):
            return None
        rest = [x for x in s if x is not m[0]]
        if m[0].vip and m[0].web and all(
                x.states.get("web") == "standby" and not x.vip and not x.web for x in rest):
            return m[0].node
        return None
    try:
        return until(180, "exactly one master among %s" % (nodes,), ok, every=1)
    except Fail as e:
        raise Fail("%s; last seen: %s" % (e, last))


def on(c):
    return [n for n in NODES if c.is_on(n)]


def members(c, n):
    """Whether corosync on n is quorate, and how many members it lists."""
    rc, out, _ = c.sh(n, "corosync-quorumtool -s", 30)
    quorate = re.search(r"^Quorate:\s+Yes", out, re.M) is not None
    return quorate, len(re.findall(r"^\s+\d+\s+\d+\s+node\d", out, re.M))


def dlm_members(c, n):
    rc, out, _ = c.sh(n, "dlm_tool status", 30)
    return len(re.findall(r"^node \d+ M ", out, re.M)) if rc == 0 else 0


def set_dlm_conf(c, text):
    """dlm.conf on every node and dlm_controld (re)started with it, then the
    three daemons see each other.  Only while no lockspace is joined."""
    for n in NODES:
        c.push(n, text, "/etc/dlm/dlm.conf", 0o644)
    parallel(lambda n: c.check(n, "systemctl restart dlm", 120), *[(n,) for n in NODES])
    until(120, "dlm_controld on each node sees all three",
          lambda: all(dlm_members(c, n) == 3 for n in NODES), every=1)


def install(c, n):
    c.check(n, "cd /mnt/host && apt-get install -y -q ./dlm-electd_*.deb", 300)
    # README "Moving a VIP off Pacemaker": the drop-in, then the backend.
    c.check(n, "mkdir -p /etc/systemd/system/dlm-electd.service.d && "
               "cp /usr/share/doc/dlm-electd/examples/dlm.conf.example "
               "/etc/systemd/system/dlm-electd.service.d/dlm.conf && "
               "sed -i 's/^backend = \"dlmfs\"/backend = \"dlm\"/' %s && "
               "grep -q '^backend = \"dlm\"' %s" % (MAIN, MAIN))
    base.install_web(c, n)


@scenario(timeout=900, always=True)
def cs_setup(c):
    """corosync + dlm_controld on 3 nodes; refused unfenced, runs with allow_unfenced; fenced: one master"""
    t0 = time.monotonic()
    for n in NODES:
        c.push(n, corosync_conf(NODES), "/etc/corosync/corosync.conf", 0o644)
        c.check(n, "mkdir -p /etc/dlm")  # the package ships none: all defaults
    parallel(lambda n: c.check(n, "systemctl enable -q corosync dlm && "
                                  "systemctl restart corosync", 120), *[(n,) for n in NODES])
    until(120, "corosync quorate with three members on each node",
          lambda: all(members(c, n) == (True, 3) for n in NODES), every=1)
    # dlm_controld only once all three are members: it would fence one that
    # is not yet (startup fencing).
    set_dlm_conf(c, DLM_UNFENCED)
    print("  corosync + dlm_controld up after %.1f s" % (time.monotonic() - t0), flush=True)
    parallel(lambda n: install(c, n), *[(n,) for n in NODES])
    print("  package installed after %.1f s" % (time.monotonic() - t0), flush=True)

    # Without fencing: refused, naming the key and the setting, changing nothing.
    rc, out, err = c.sh(1, "dlm-electd check-config", 60)
    if rc != 78 or "lock.backend" not in err or "enable_fencing=0" not in err:
        raise Fail("check-config without fencing: rc %d, stderr %r" % (rc, err))
    at = base.cursor(c, 1)
    rc, _, _ = c.sh(1, "systemctl start %s" % UNIT, 120)
    if rc == 0 or base.prop(c, 1, "ActiveState") == "active":
        raise Fail("dlm-electd started with dlm_controld's fencing off")
    if "allow_unfenced" not in base.journal(c, 1, at):
        raise Fail("the journal does not say why the start was refused")
    # On the admin's word it runs, and `status` says what that costs.
    c.check(1, "systemctl reset-failed %s; sed -i 's/^\\[lock\\]$/[lock]\\nallow_unfenced = true/' %s"
               % (UNIT, MAIN))
    c.check(1, "systemctl start %s" % UNIT, 120)
    st = c.check(1, "dlm-electd status", 30)
    if not re.search(r"fencing: OFF.*two masters", st):
        raise Fail("status with allow_unfenced does not say fencing is off:\n%s" % st)
    c.check(1, "systemctl stop %s && sed -i '/^allow_unfenced = true$/d' %s" % (UNIT, MAIN), 120)
    print("  refused unfenced, ran with allow_unfenced: %.1f s" % (time.monotonic() - t0),
          flush=True)

    set_dlm_conf(c, DLM_FENCED)
    for n in NODES:
        if "enable_fencing=1" not in c.check(n, "dlm_tool dump_config", 30):
            raise Fail("node%d: dlm_controld does not fence" % n)
        c.check(n, "dlm-electd check-config | grep -q '^fencing: dlm_controld fences'", 60)
        c.check(n, "dlm-electd check-config | grep -q "
                   "'^lockspace: dlm-electd is not joined on this node; the kernel.s DLM is loaded'",
                60)
    for n in NODES:
        c.check(n, "systemctl enable --now %s" % UNIT, 180)
    masters(c, NODES)
    c.check(1, "dlm-electd check-config | grep -q '^lockspace: dlm-electd is joined on this node'",
            60)
    print("  one master after %.1f s" % (time.monotonic() - t0), flush=True)


def competing(c, n):
    """No resource of node n's daemon is holding off (`release --hold-off`)."""
    st = json.loads(c.check(n, "dlm-electd status --json", 30))
    return all(not r.get("hold_off_until_ms") for r in st.get("resources", []))


def vip_gap(c, since, old):
    """Host-clock seconds from the old master's VIP deletion to the VIP's
    addition on another node, and that node."""
    gone = c.wait_event(r"^addr Deleted .* inet %s/" % re.escape(VIP), node=old,
                        since=since, timeout=120)
    for e in c.events(since):
        if e.node != old and vip_event(e.text, True):
            return e.t - gone.t, e.node
    e = c.wait_event(r"^addr \d+: .* inet %s/" % re.escape(VIP), since=since, timeout=120)
    if e.node == old:
        raise Fail("node%d took the VIP back" % old)
    return e.t - gone.t, e.node


@scenario(timeout=300)
def cs_handover(c):
    """release on the master: a standby waiting in the DLM queue is master at once"""
    gaps = []
    for _ in range(3):
        m = masters(c, on(c))
        # The last releaser must compete again, or a release can find no
        # standby queued (one run took 2.1 s: its hold-off, not the DLM).
        until(30, "no node holding off", lambda: all(competing(c, n) for n in on(c)), every=0.5)
        since = c.mark()
        c.check(m, "dlm-electd release --hold-off 1s web", 60)
        gap, new = vip_gap(c, since, m)
        gaps.append(gap)
        print("  node%d released, node%d has the VIP %.3f s later (host clock)" % (m, new, gap),
              flush=True)
    m = masters(c, on(c))
    # The observer sees what it must (else it would pass anything): the
    # master's MAC alone answers for the VIP.
    mac = "52:54:00:88:00:%02x" % m
    until(10, "ARP for %s answered by node%d (%s) alone" % (VIP, m, mac),
          lambda: c.arp_answers([VIP])[-1:] and c.arp_answers([VIP])[-1][2] == (mac,),
          every=0.5)
    # Event-driven: far below a poll interval (1 s); TCG and three VMs on
    # two cores make the DLM's own grant tens of ms.
    if sorted(gaps)[1] > 0.5:
        raise Fail("median handover %.3f s: the standby did not wait in the DLM queue" %
                   sorted(gaps)[1])


def cluster_view(c, n):
    """`status --cluster --json` on node n, and how long it took (s)."""
    t0 = time.monotonic()
    v = json.loads(c.check(n, "dlm-electd status --cluster --json", 60))
    return v, time.monotonic() - t0


def view_says(v, master, running, drained=()):
    """Whether view v names node<master> master of web (None: no node as
    fact), lists exactly `running` as running and `drained` as drained."""
    web = [r for r in v["resources"] if r["name"] == "web"][0]["master"]
    if master is None:
        if web.get("kind") == "node":
            return False
    elif web.get("kind") != "node" or web["node"] != "node%d" % master:
        return False
    runs = sorted(x["name"] for x in v["nodes"] if x["running"])
    drains = sorted(x["name"] for x in v["nodes"] if x.get("drain"))
    return (runs == ["node%d" % k for k in sorted(running)] and
            drains == ["node%d" % k for k in sorted(drained)])


def views_agree(c, asked, master, running, drained=(), what=""):
    """Every node in `asked` says so within a minute; the slowest answer."""
    took, seen = [], []

    def ok():
        vs = parallel(lambda n: cluster_view(c, n), *[(n,) for n in asked])
        took[:] = [t for _, t in vs]
        seen[:] = [v for v, _ in vs]
        return all(view_says(v, master, running, drained) for v, _ in vs)
    try:
        until(60, "status --cluster on %s: %s" % (asked, what), ok, every=1)
    except Fail as e:
        raise Fail("%s; the last views:\n%s" % (e, "\n".join(json.dumps(v) for v in seen)))
    return max(took)


@scenario(timeout=400)
def cs_cluster_view(c):
    """status --cluster from every node, read through the DLM: the master and who runs, after a release, a drain and a stop"""
    nodes = on(c)
    m = masters(c, nodes)
    t = views_agree(c, nodes, m, nodes, what="node%d master" % m)
    print("  every node names node%d master (slowest answer %.2f s)" % (m, t), flush=True)
    until(30, "no node holding off", lambda: all(competing(c, n) for n in nodes), every=0.5)
    c.check(m, "dlm-electd release --hold-off 2s web", 60)
    new = masters(c, nodes)
    views_agree(c, nodes, new, nodes, what="node%d master after a release" % new)
    # Drained: the master hands over, every view shows the drain.
    c.check(new, "dlm-electd drain --reason 'kernel update' --wait --timeout 60s", 120)
    third = [n for n in nodes if n != new]

    def moved():
        s = [snap(c, n) for n in third]
        return [x.node for x in s if x.master]
    until(60, "a master other than the drained node%d" % new, lambda: len(moved()) == 1)
    m3 = moved()[0]
    views_agree(c, nodes, m3, nodes, drained=[new], what="node%d drained" % new)
    out = c.check(third[0], "dlm-electd status --cluster", 60)
    if "kernel update" not in out:
        raise Fail("the table does not show the drain's reason:\n%s" % out)
    c.check(new, "dlm-electd undrain", 60)
    views_agree(c, nodes, m3, nodes, what="undrained")
    # A stopped daemon: down in every other view at once (its presence lock
    # went with it), and back when started.
    s = [n for n in nodes if n != m3][0]
    c.check(s, "systemctl stop %s" % UNIT, 180)
    rest = [n for n in nodes if n != s]
    views_agree(c, rest, m3, rest, what="node%d stopped" % s)
    c.check(s, "systemctl start %s" % UNIT, 180)
    views_agree(c, nodes, m3, nodes, what="node%d started again" % s)
    masters(c, nodes)


@scenario(timeout=300)
def cs_kill_master(c):
    """SIGKILL of the master's daemon: its orphan lock keeps the others out until cleanup ran; of a standby's: back standby"""
    m = masters(c, on(c))
    since = c.mark()
    c.check(m, "systemctl kill -s KILL %s" % UNIT)
    gap, new = vip_gap(c, since, m)
    print("  node%d killed; node%d has the VIP %.3f s after its deletion" % (m, new, gap),
          flush=True)
    new = masters(c, on(c))
    # A standby killed while its request waits in the DLM's queue: the kernel
    # keeps that PERSISTENT request as an ungranted orphan; the cleanup and
    # the restarted daemon must see nothing to adopt there, not an error.
    s = [n for n in on(c) if n != new][0]
    at = base.cursor(c, s)
    c.check(s, "systemctl kill -s KILL %s" % UNIT)
    until(120, "node%d's daemon restarted, standby" % s,
          lambda: "ready: standby" in base.journal(c, s, at) and
          snap(c, s).states.get("web") == "standby", every=1)
    j = base.journal(c, s, at)
    if "cannot adopt" in j:
        raise Fail("node%d after a standby's SIGKILL:\n%s" % (s, j[-3000:]))
    masters(c, on(c))


WL_JOB = """#!/bin/sh
# cs_workload's program: says it runs, holds until /run/wl-end is written.
echo "wl held" > /dev/hvc0
read x < /run/wl-end
echo "wl done" > /dev/hvc0
"""


def run_locked_bg(c, n, args, tag):
    """`dlm-electd run-locked ARGS -- wl-job` started on node n in a session
    of its own (not a unit: a unit would kill the program with run-locked),
    its stderr in /run/TAG.err."""
    c.check(n, "setsid -f dlm-electd run-locked %s -- /usr/local/bin/wl-job "
               "</dev/null >/dev/null 2>/run/%s.err" % (args, tag))


def busy(c, n, what):
    rc, _, err = c.sh(n, "dlm-electd run-locked job -- true", 60)
    if rc != 75 or "busy" not in err:
        raise Fail("node%d: run-locked job while %s: rc %d, %r (want 75, busy)"
                   % (n, what, rc, err))


def nothing_joined(c, n):
    """Node n's daemon stopped: no lockspace is left on n (every create a
    workload lock made was given back), then started again."""
    c.check(n, "systemctl stop %s" % UNIT, 180)
    left = c.check(n, "dlm_tool ls", 30)
    if "name" in left:
        raise Fail("node%d: a lockspace is left with dlm-electd stopped:\n%s" % (n, left))
    c.check(n, "systemctl start %s" % UNIT, 180)


@scenario(timeout=400)
def cs_workload(c):
    """run-locked on two nodes: never both, the end frees it for a queued waiter at once; SIGKILL, lock/unlock; nothing left joined"""
    m = masters(c, on(c))
    a, b = [n for n in on(c) if n != m][:2]
    for n in (a, b):
        c.push(n, WL_JOB, "/usr/local/bin/wl-job", 0o755)
        c.check(n, "rm -f /run/wl-end && mkfifo /run/wl-end")
    since = c.mark()
    run_locked_bg(c, a, "job", "wl-a")
    c.wait_event(r"^wl held", node=a, since=since, timeout=60)
    busy(c, b, "node%d holds it" % a)
    busy(c, a, "a local program holds it")
    # A wait that runs out is cancelled in the DLM: busy, and nothing owed.
    rc, _, err = c.sh(b, "dlm-electd run-locked --wait 2s job -- true", 60)
    if rc != 75 or "still held after 2s" not in err:
        raise Fail("node%d: a 2 s wait: rc %d, %r (want 75, still held after 2s)" % (b, rc, err))
    c.check(b, "! test -e /run/dlm-electd/workload/job.dlm-joined")
    # A waiter on the other node, queued in the DLM (it says so).
    run_locked_bg(c, b, "--wait 120s job", "wl-b")
    until(30, "node%d's run-locked waiting in the DLM's queue" % b,
          lambda: "waiting in the DLM's queue" in c.check(b, "cat /run/wl-b.err"), every=0.3)
    since = c.mark()
    c.check(a, "echo x > /run/wl-end")
    done = c.wait_event(r"^wl done", node=a, since=since, timeout=30)
    held = c.wait_event(r"^wl held", node=b, since=since, timeout=30)
    gap = held.t - done.t
    print("  node%d's program ended, node%d's started %.3f s later (host clock)" % (a, b, gap),
          flush=True)
    if gap < 0:
        raise Fail("node%d's program started before node%d's ended" % (b, a))
    # Granted on the holder's close, not at a poll (1 s).
    if gap > 0.5:
        raise Fail("the queued waiter started %.3f s after the holder's end" % gap)
    # run-locked SIGKILLed: its program keeps the lock; its end frees it.
    c.check(b, "pkill -KILL -f '^dlm-electd run-locked --wait 120s job'")
    busy(c, a, "node%d's program outlives its killed run-locked" % b)
    since = c.mark()
    c.check(b, "echo x > /run/wl-end")
    c.wait_event(r"^wl done", node=b, since=since, timeout=30)
    c.check(a, "dlm-electd run-locked --wait 30s job -- true", 60)
    # The killed one's lockspace create is owed, and `unlock` gives it back.
    c.check(b, "test -e /run/dlm-electd/workload/job.dlm-joined")
    c.check(b, "dlm-electd unlock job | grep -q 'gave back the lockspace create' && "
               "! test -e /run/dlm-electd/workload/job.dlm-joined", 60)
    # `lock`/`unlock`: held by a holder process across the call.
    c.check(a, "dlm-electd lock job", 60)
    busy(c, b, "node%d's holder has it" % a)
    c.check(a, "dlm-electd unlock job", 60)
    c.check(b, "dlm-electd run-locked job -- true", 60)
    for n in (a, b):
        nothing_joined(c, n)
    masters(c, on(c))


def pull_beside_raw(c, m, rest):
    """Pulls the power of master m while a raw EX lock (dlmprobe, the
    daemon's binding) is held there and queued for on `rest`, each grant
    written to the event console, so both takeovers are timed on the host's
    clock: the power-off, the VIP's addition and the raw grant events."""
    c.check(m, "systemd-run -q --unit=rawhold /mnt/host/dlmprobe --hold forever rawfloor raw")
    until(30, "the raw lock held on node%d" % m,
          lambda: "GRANTED" in c.check(m, "journalctl -q -o cat -u rawhold"), every=0.5)
    for n in rest:
        at = c.mark()
        c.check(n, "systemd-run -q --unit=rawwait sh -c '/mnt/host/dlmprobe --wait --hold forever "
                   "rawfloor raw | while read -r l; do echo \"raw $l\" > /dev/hvc0; done'")
        c.wait_event(r"^raw .*WAITING", node=n, since=at, timeout=30)
    since = c.mark()
    c.power_off(m)
    off = c.wait_event(r"^power off \(pulled\)", node=m, since=since, timeout=10)
    e = c.wait_event(r"^addr \d+: .* inet %s/" % re.escape(VIP), since=since, timeout=180)
    raw = c.wait_event(r"^raw .*GRANTED", since=since, timeout=60)
    return off, e, raw


@scenario(timeout=400)
def cs_power_pull(c):
    """power pull of the master's node: fenced (already off), recovered, taken over; beside a raw lock"""
    m = masters(c, NODES)
    rest = [n for n in NODES if n != m]
    off, e, raw = pull_beside_raw(c, m, rest)
    print("  node%d pulled; the raw lock granted on node%d after %.1f s, the VIP up on node%d "
          "after %.1f s" % (m, raw.node, raw.t - off.t, e.node, e.t - off.t), flush=True)
    new = masters(c, rest)
    views_agree(c, rest, new, rest, what="node%d pulled and recovered" % m)
    for n in rest:
        # dlmprobe dies on SIGTERM without leaving its lockspace: give back
        # its create, or dlm.service could not stop later (cs_two_node).
        c.check(n, "systemctl stop rawwait; dlm_tool leave rawfloor >/dev/null && "
                   "! dlm_tool ls | grep -q rawfloor", 60)
    t0 = time.monotonic()
    c.power_on(m)
    until(240, "node%d back in the cluster, standby" % m,
          lambda: snap(c, m).states.get("web") == "standby", every=2)
    print("  node%d powered on, standby after %.1f s" % (m, time.monotonic() - t0), flush=True)
    masters(c, NODES)


@scenario(timeout=400)
def cs_partition(c):
    """master cut off: it releases on quorum loss, the majority fences it, then takes over"""
    m = masters(c, NODES)
    since = c.mark()
    c.fence_delay = SLOW_FENCE_S
    try:
        c.isolate(m)
        cut = c.events(since)[0].t
        gone = c.wait_event(r"^addr Deleted .* inet %s/" % re.escape(VIP), node=m,
                            since=since, timeout=SLOW_FENCE_S + 60)
        off = c.wait_event(r"^power off \(fenced by node\d\)", node=m, since=since, timeout=120)
        if gone.t > off.t:
            raise Fail("node%d released only when fenced" % m)
        rest = [n for n in NODES if n != m]
        new = masters(c, rest)
        e = c.wait_event(r"^addr \d+: .* inet %s/" % re.escape(VIP), node=new, since=since,
                         timeout=10)
        if e.t < off.t:
            raise Fail("node%d took the VIP before node%d was fenced" % (new, m))
        print("  node%d cut off: released after %.1f s (quorum lost), fenced after %.1f s, "
              "node%d master %.1f s after the fence" % (m, gone.t - cut, off.t - cut, new,
                                                         e.t - off.t), flush=True)
    finally:
        c.fence_delay = 0
        c.heal(m)
    # The fenced node stays off (a power on costs a boot): cs_two_node
    # goes on with the other two.


@scenario(timeout=400)
def cs_two_node(c):
    """the two left as a two_node cluster, cut apart: both quorate, both fence, one survives, one master"""
    pair = on(c)
    if len(pair) != 2:
        raise Fail("cs_two_node needs the two nodes cs_partition left, not %s" % pair)
    t0 = time.monotonic()
    # A stack restart as an admin does it: the daemons, dlm, corosync, in order.
    # Both daemons first: a corosync stopped under a running one would take
    # the other's quorum away mid-stop.
    for n in pair:
        c.check(n, "systemctl stop %s" % UNIT, 180)
        # Nothing left behind: the daemon left its lockspace on the way out.
        left = c.check(n, "dlm_tool ls", 30)
        if "name" in left:
            raise Fail("node%d: a lockspace is left after dlm-electd stopped:\n%s" % (n, left))
    for n in pair:
        c.check(n, "systemctl stop dlm corosync", 180)
        c.push(n, corosync_conf(pair, two_node=True), "/etc/corosync/corosync.conf", 0o644)
    parallel(lambda n: c.check(n, "systemctl start corosync", 120), *[(n,) for n in pair])
    until(120, "a quorate two_node pair",
          lambda: all(members(c, n) == (True, 2) for n in pair), every=1)
    parallel(lambda n: c.check(n, "systemctl start dlm", 120), *[(n,) for n in pair])
    until(120, "dlm_controld on both sees both",
          lambda: all(dlm_members(c, n) == 2 for n in pair), every=1)
    for n in pair:
        c.check(n, "systemctl start %s" % UNIT, 180)
    m = masters(c, pair)
    print("  two_node pair %s up again in %.1f s" % (pair, time.monotonic() - t0), flush=True)
    # Cut apart, each side keeps quorum (two_node): no release on quorum
    # loss here, the fence race alone must leave one master.
    since = c.mark()
    c.isolate(m)
    cut = c.events(since)[0].t
    try:
        off = c.wait_event(r"^power off \(fenced by node\d\)", since=since, timeout=120)
    finally:
        c.heal(m)
    alive = on(c)
    if len(alive) != 1:
        raise Fail("after the fence race %s are on" % alive)
    new = masters(c, alive)
    print("  node%d cut off: node%d fenced %.1f s after the cut; node%d master (%s)"
          % (m, off.node, off.t - cut, new, "stayed" if new == m else "took over"), flush=True)
