#!/usr/bin/env python3
"""The `corosync` part of benches/run.py: the `dlm` backend from the .deb on
the corosync tier's three Debian 12 VMs (tests/system: harness.py and
corosync.py's setup, imported, not copied), beside the raw DLM
(tests/corosync/dlmprobe, the daemon's own binding), on one clock.

    benches/corosync.py [--handovers N] [--kills N] [--sizes 100 1000] [--window S]

Run by `benches/run.py corosync` (as root), which renders its
benches/results/corosync.json into BENCHMARKS.md; alone it only writes the
JSON. Its own run dir (`run-corosync-bench`) so a test run can go beside it.

- handover: `dlm-electd release --hold-off 1s web` on the master (the VIP
  and demo-web as in the tier) -> the VIP deleted there -> added on the node
  whose standby waited in the DLM's queue; the raw floor: a dlmprobe holding
  an EX lock until its stdin ends, while another node's dlmprobe waits
  queued: the end of its stdin -> the other's GRANTED. Every instant is a line on
  the harness's event channel, stamped with the host's clock on arrival.
- standby CPU: N resources without actions (a drop-in and a reload), each
  node's `dlm-electd.service` cgroup CPU (`cpu.stat` usage_usec: the daemon
  and its quorum watch's `corosync-quorumtool -m`) over a window, once
  every resource has a master, and systemd's restarts of the daemon since
  the reload.
- power pull: the master's QEMU killed while a raw lock is held there and
  queued for on the others: the raw grant and the VIP's takeover, from the
  power-off; the node is booted again before the next pull.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM = os.path.join(ROOT, "tests", "system")
sys.path.insert(0, SYSTEM)
sys.dont_write_bytecode = True
import corosync as cs  # noqa: E402
import harness  # noqa: E402
import run as tier  # noqa: E402
from scenarios import Fail, until  # noqa: E402

VIP = cs.VIP
PROBE = "/mnt/host/dlmprobe"
RESULTS = os.path.join(ROOT, "benches", "results")


def stats(xs):
    """min, median, p99, n (ms)."""
    if not xs:
        return None
    s = sorted(x * 1000 for x in xs)
    return [s[0], statistics.median(s), s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))], len(s)]


def to_console(cmd, tag):
    """cmd's stdout lines, each as "TAG line" on the event console."""
    return "%s | while read -r l; do echo \"%s $l\" > /dev/hvc0; done" % (cmd, tag)


def raw_handover(c, a, b):
    """One raw handover a -> b: a holds an EX lock until told, b queues for
    it; seconds from a's unlock to b's grant."""
    since = c.mark()
    # dlmprobe --hold stdin unlocks at EOF: the subshell ends when the fifo
    # is written to, saying so first ("rawh eof": the instant the holder is
    # told, as a VIP's deletion is for the daemon; dlmprobe's UNLOCKED comes
    # only with the unlock's completion, after the other node's grant).
    c.check(a, "rm -f /run/rawh.go && mkfifo /run/rawh.go && systemd-run -q -G --unit=rawh-hold "
               "sh -c '(read x < /run/rawh.go; echo \"rawh eof\" > /dev/hvc0) | %s'"
            % to_console("%s --hold stdin rawbench h" % PROBE, "rawh"))
    c.wait_event(r"^rawh .*GRANTED", node=a, since=since, timeout=30)
    c.check(b, "systemd-run -q -G --unit=rawh-wait sh -c '%s'"
            % to_console("%s --wait --hold 0 rawbench h" % PROBE, "rawh"))
    c.wait_event(r"^rawh .*WAITING", node=b, since=since, timeout=30)
    c.check(a, "echo x > /run/rawh.go")
    un = c.wait_event(r"^rawh eof", node=a, since=since, timeout=30)
    got = c.wait_event(r"^rawh .*GRANTED", node=b, since=since, timeout=30)
    # Each exits after its unlock; wait for both so the next round starts clean.
    for n in (a, b):
        until(30, "node%d's dlmprobe done" % n,
              lambda: c.sh(n, "systemctl is-active -q rawh-hold rawh-wait")[0] != 0, every=0.2)
    return got.t - un.t


def handovers(c, count):
    daemon, raw = [], []
    for i in range(count):
        m = cs.masters(c, cs.on(c))
        until(30, "no node holding off",
              lambda: all(cs.competing(c, n) for n in cs.on(c)), every=0.3)
        since = c.mark()
        c.check(m, "dlm-electd release --hold-off 1s web", 60)
        gap, new = cs.vip_gap(c, since, m)
        daemon.append(gap)
        raw.append(raw_handover(c, m, new))
        print("  handover %d: VIP node%d -> node%d %.3f s; raw unlock -> grant %.3f s"
              % (i + 1, m, new, gap, raw[-1]), flush=True)
    # dlmprobe leaves its lockspace at exit: nothing of it stays joined.
    return {"vip_ms": stats(daemon), "raw_ms": stats(raw)}


def cgroup_usec(c, n):
    """The dlm-electd.service cgroup's CPU (the daemon and the quorum
    watch's corosync-quorumtool) in microseconds."""
    out = c.check(n, "cat /sys/fs/cgroup/system.slice/dlm-electd.service/cpu.stat")
    return int(re.search(r"^usage_usec (\d+)", out, re.M).group(1))


def restarts(c, n):
    """How often systemd restarted dlm-electd on n (a watchdog kill, a crash)."""
    return int(c.check(n, "systemctl show -p NRestarts --value dlm-electd").strip() or 0)


def standby_cpu(c, size, window):
    """CPU of each node's dlm-electd.service over `window` s with `size`
    resources without actions beside `web`."""
    body = "".join('[[resource]]\nname = "b%d"\n' % i for i in range(size))
    restarts0 = {n: restarts(c, n) for n in cs.NODES}
    for n in cs.NODES if size else ():
        c.push(n, body, "/etc/dlm-electd/conf.d/bench.toml", 0o600)
        c.check(n, "systemctl reload dlm-electd", 120)

    def all_mastered():
        total = 0
        for n in cs.NODES:
            st = json.loads(c.check(n, "dlm-electd status --json", 60))
            total += sum(1 for r in st.get("resources", []) if r.get("state") == "master")
        return total == size + 1 or None
    t0 = time.monotonic()
    until(900, "all %d resources mastered" % (size + 1), all_mastered, every=2)
    settle = time.monotonic() - t0
    time.sleep(5)  # the reload's own work done before the window opens
    before = {n: cgroup_usec(c, n) for n in cs.NODES}
    t0 = time.monotonic()
    time.sleep(window)
    wall = time.monotonic() - t0
    after = {n: cgroup_usec(c, n) for n in cs.NODES}
    masters = {}
    for n in cs.NODES:
        st = json.loads(c.check(n, "dlm-electd status --json", 60))
        masters[n] = sum(1 for r in st.get("resources", []) if r.get("state") == "master")
    # A daemon killed (the watchdog) and restarted since the reload shows
    # here: its CPU then counts a cleanup and a start, not a standby.
    rows = [{"node": n, "masters": masters[n],
             "cpu_pct": 100.0 * (after[n] - before[n]) / 1e6 / wall,
             "restarts": restarts(c, n) - restarts0[n]}
            for n in cs.NODES]
    # `status --cluster` as an admin runs it on each node (through the
    # guest agent: the time includes its round trip and the CLI's start):
    # every node's record read from the DLM, every lock probed.
    for r in rows:
        t0 = time.monotonic()
        v = json.loads(c.check(r["node"], "dlm-electd status --cluster --json", 120))
        r["cluster_s"] = round(time.monotonic() - t0, 2)
        r["cluster_named"] = sum(1 for x in v["resources"] if x["master"].get("kind") == "node")
    for n in cs.NODES if size else ():
        c.check(n, "rm -f /etc/dlm-electd/conf.d/bench.toml && systemctl reload dlm-electd", 120)
    until(300, "back to web alone", lambda: all(
        len(json.loads(c.check(n, "dlm-electd status --json", 60)).get("resources", [])) == 1
        for n in cs.NODES), every=2)
    print("  %d resources: all mastered %.1f s after the reload; CPU over %.0f s: %s"
          % (size, settle, wall, ", ".join(
              "node%d (%d master) %.2f %%, %d restarts, status --cluster %.2f s naming %d masters"
              % (r["node"], r["masters"], r["cpu_pct"], r["restarts"], r["cluster_s"],
                 r["cluster_named"]) for r in rows)),
          flush=True)
    return {"n": size, "window_s": round(wall, 1), "settle_s": round(settle, 1), "nodes": rows}


def power_pulls(c, count):
    out = []
    for i in range(count):
        m = cs.masters(c, cs.NODES)
        rest = [n for n in cs.NODES if n != m]
        off, vip, raw = cs.pull_beside_raw(c, m, rest)
        out.append({"vip_s": vip.t - off.t, "raw_s": raw.t - off.t})
        print("  pull %d: node%d off; raw grant %.2f s, VIP up on node%d %.2f s"
              % (i + 1, m, raw.t - off.t, vip.node, vip.t - off.t), flush=True)
        cs.masters(c, rest)
        for n in rest:
            c.check(n, "systemctl stop rawwait; dlm_tool leave rawfloor >/dev/null; true", 60)
        c.power_on(m)
        until(300, "node%d back, standby" % m,
              lambda: cs.snap(c, m).states.get("web") == "standby", every=2)
    return {"vip_ms": stats([x["vip_s"] for x in out]), "raw_ms": stats([x["raw_s"] for x in out]),
            "over_raw": [round(x["vip_s"] / x["raw_s"], 2) for x in out]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--handovers", type=int, default=10)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 1000],
                    help="resources beside web for the CPU windows (0: web alone)")
    ap.add_argument("--window", type=float, default=60)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benches/corosync.py: needs root (network namespace, taps, VMs)")
    tier.host_tools()
    image = tier.subprocess.run([os.path.join(SYSTEM, "build-image.sh")], check=True,
                                stdout=tier.subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    deb = tier.build_deb()
    tools = cs.build_tools(ROOT)
    harness.install_signal_handlers()
    c = None
    t_all = time.monotonic()
    try:
        c = harness.up(3, image, timeout=600, run=os.path.join(harness.CACHE, "run-corosync-bench"))
        for f in [deb] + tools:
            shutil.copy(f, c.share)
        for f in os.listdir(os.path.join(SYSTEM, "guest")):
            shutil.copy(os.path.join(SYSTEM, "guest", f), c.share)
        print("corosync bench: 3 nodes up (accel %s); setting up" % c.accel, flush=True)
        cs.cs_setup(c)  # the tier's setup as it runs there (the decorator returns it as is)
        r = {"deb": os.path.basename(deb), "handover": handovers(c, a.handovers),
             "cpu": [standby_cpu(c, n, a.window) for n in a.sizes],
             "pull": power_pulls(c, a.kills)}
    except Exception as e:
        for n in cs.NODES:
            if c is not None and c.is_on(n):
                print("--- node%d: dlm-electd journal tail ---\n%s" % (n, c.sh(
                    n, "journalctl -q -u dlm-electd -n 80 --no-hostname", 60)[1]), flush=True)
        sys.exit("corosync bench: %s: %s" % (type(e).__name__, e))
    finally:
        if c is not None:
            c.down()
    r["seconds"] = round(time.monotonic() - t_all)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "corosync.json"), "w") as fh:
        json.dump(r, fh, indent=1)
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
