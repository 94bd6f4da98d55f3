"""The `cluster` part of benches/run.py: dlm-electd on dlmfs in the VM
cluster of tests/cluster (issue #11, section 3.4), beside the DLM's floor.

Two QEMU VMs with o2cb (tests/cluster/harness.py, imported, not copied),
dead_threshold 5. For 1 and for 1,000 resources (dlmfs domain `b<N>`):

- planned handover: the requests `dlm-electd release NAME --hold-off 10m`
  sends, on the master, for all N resources at once → the other node's
  daemon says all N are master (and when the first was);
- node kill: the harness's power pull (SIGKILL of the master's QEMU) → the
  survivor's daemon says all N are master; in the same kill, a raw try-lock
  loop on the survivor (benches/cluster/vmbench.c `take`: one
  O_RDWR|O_CREAT|O_NONBLOCK open per file not yet won, sweeps 100 ms apart)
  takes over N lock files of the same domain that a raw holder on the killed
  node held: the DLM's own floor. Same domain, so one o2dlm recovery serves
  both.

Timing across two VMs: every instant is an event line on the harness's
event channel, stamped with the host's CLOCK_MONOTONIC on arrival (the
`@kill` line at the moment the harness kills QEMU). "All master" comes from
the daemon's own sd_notify STATUS= line ("master: r0, r1, ..."), read in the
guest by `vmbench watch` on the daemon's NOTIFY_SOCKET: no poll of `status`,
no hook process per resource. The resolution is the channel's jitter: each
node sends 50 events carrying its own CLOCK_MONOTONIC 10 ms apart, and the
spread of (host stamp - guest stamp) is reported.
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import harness  # noqa: E402

# The static build the cluster tier runs (tests/cluster/electd.py, docs/testing.md).
BIN = os.environ.get("DLM_ELECTD_BIN") or os.path.join(
    ROOT, "target", "x86_64-unknown-linux-gnu", "release", "dlm-electd")
HELPER = os.path.join(ROOT, "benches", "cluster", "vmbench.c")
G_BIN, G_HELPER = "/host/dlm-electd", "/host/vmbench"
# A run dir of our own: the test tier's (and other engineers') clusters use
# theirs, side by side.
RUN = os.environ.get("DLM_ELECTD_BENCH_RUN", os.path.join(harness.CACHE, "vb"))
KNOBS = dict(dead_threshold=5, idle_ms=5000, keepalive_ms=1000, reconnect_ms=1000)
HOLD_OFF_MS = 600_000
RAW_INTERVAL_MS = 100


def check_bin():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"{BIN} missing: run RUSTFLAGS=\"-C target-feature=+crt-static\" "
                 "cargo build --release --target x86_64-unknown-linux-gnu")


def install(c):
    shutil.copy2(BIN, os.path.join(c.share, "dlm-electd"))
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", os.path.join(c.share, "vmbench"), HELPER],
                   check=True)
    os.makedirs(os.path.join(c.share, "cfg"), exist_ok=True)


def guest_ms(text):
    m = re.search(r" g=(\d+)$", text)
    return int(m.group(1)) if m else None


def channel_jitter(c, count=50):
    """Per node: the spread (max - min, ms) of host stamp - guest clock over
    `count` events 10 ms apart."""
    out = {}
    for node in range(c.n):
        mk = c.mark()
        c.check(node, f"{G_HELPER} ping {count} cal >/dev/null")
        c.wait_event(f"^cal ping {count - 1} ", node=node, since=mk, timeout=30)
        offs = [e.t_ms - guest_ms(e.text) for e in c.events(since=mk, node=node)
                if e.text.startswith("cal ping ")]
        out[node] = max(offs) - min(offs)
    return out


class Size:
    """N resources r0..r{N-1} in dlmfs domain b{N}, a daemon on each node."""

    def __init__(self, c, n, poll):
        self.c, self.n, self.poll = c, n, poll
        self.poll_s = float(poll[:-2]) / 1000 if poll.endswith("ms") else float(poll[:-1])
        self.domain = f"b{n}"
        self.runtime = f"/run/dlm-electd-{self.domain}"
        self.notify = f"/run/{self.domain}.notify"
        self.w = f"w{n}"  # the watcher's event tag
        self.cfg = {}
        for node in range(c.n):
            name = f"{self.domain}-node{node}"
            with open(os.path.join(c.share, "cfg", name + ".toml"), "w") as f:
                f.write(f'[lock]\nbackend = "dlmfs"\nmount = "/dlm"\ndomain = "{self.domain}"\n'
                        f'[daemon]\nruntime_dir = "{self.runtime}"\npoll_interval = "{poll}"\n')
                for i in range(n):
                    f.write(f'[[resource]]\nname = "r{i}"\n')
            self.cfg[node] = f"/host/cfg/{name}.toml"

    def wait(self, node, what, since, timeout=300):
        return self.c.wait_event(f"^{self.w} {what} ", node=node, since=since, timeout=timeout)

    def start(self, node, want):
        """Watcher, then daemon; waits until its N resources are all `want`."""
        c = self.c
        mk = c.mark()
        c.check(node, f"{G_HELPER} watch {self.notify} {self.n} {self.w} >/tmp/{self.w}.log 2>&1 &")
        self.wait(node, "watching", mk, 30)
        c.check(node, f"ulimit -n 65536; NOTIFY_SOCKET={self.notify} {G_BIN} run --config "
                f"{self.cfg[node]} >/tmp/{self.domain}.log 2>&1 & echo $! >/tmp/{self.domain}.pid")
        self.wait(node, want, mk)

    def stop(self, node):
        c = self.c
        if not c.alive(node):
            return
        # SIGTERM: the daemon releases and unlinks its locks, the raw holder
        # its files (bounded wait, 120 s), the watcher just exits.
        pid = f"$(cat /tmp/{self.domain}.pid)"
        c.exec(node, f"kill {pid} 2>/dev/null; i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 600 ]; "
               f"do sleep 0.2; i=$((i+1)); done; kill $(pidof vmbench) 2>/dev/null; true", timeout=180)

    def admin(self, node, what):
        """release (with a hold-off) or resume of all N at once; returns the
        'start' event. One resource: the CLI itself; more: vmbench sends the
        CLI's control-socket request for every resource at once."""
        c = self.c
        tag = f"{what[:3]}{self.n}"
        mk = c.mark()
        if self.n == 1:
            arg = f" --hold-off {HOLD_OFF_MS // 1000}s" if what == "release" else ""
            c.check(node, f"echo '{tag} start' >/dev/virtio-ports/events; "
                    f"{G_BIN} {what} r0{arg} --config {self.cfg[node]} >/dev/null && "
                    f"echo '{tag} done errors=0' >/dev/virtio-ports/events", timeout=120)
        else:
            hold = f" {HOLD_OFF_MS}" if what == "release" else ""
            c.check(node, f"{G_HELPER} {what} {self.runtime}/control.sock r {self.n}{hold} {tag} "
                    ">/tmp/admin.log 2>&1", timeout=300)
        return (c.wait_event(f"^{tag} start", node=node, since=mk, timeout=10),
                c.wait_event(f"^{tag} done errors=0", node=node, since=mk, timeout=10))

    def handover(self, m, s):
        """release on m → s all master; then m resumes (stands by again)."""
        c = self.c
        # The standby s tried last when it resumed, just before this round
        # (in step with it otherwise: every release would land just after
        # an attempt and wait a whole interval). Start at a random phase.
        time.sleep(random.uniform(0, self.poll_s))
        mk = c.mark()
        t0, released = self.admin(m, "release")
        first = self.wait(s, "(some-master|all-master)", mk, 120)
        done = self.wait(s, "all-master", mk, 300)
        self.admin(m, "resume")
        return {"first_ms": first.t_ms - t0.t_ms, "all_ms": done.t_ms - t0.t_ms,
                "released_ms": released.t_ms - t0.t_ms}

    def kill(self, m, s):
        """Power pull of m (daemon master, raw holder) → s all master, and
        s's raw loop has all N lock files. m boots again and stands by; s
        now holds the raw files (its loop keeps them)."""
        c = self.c
        tag = f"t{self.n}"
        mk = c.mark()
        c.check(s, f"{G_HELPER} take /dlm/{self.domain} raw {self.n} {RAW_INTERVAL_MS} {tag} "
                f">/tmp/{tag}.log 2>&1 &")
        c.wait_event(f"^{tag} start ", node=s, since=mk, timeout=30)
        mk = c.mark()
        c.kill(m)
        k = c.wait_event("^@kill$", node=m, since=mk, timeout=5)
        first = self.wait(s, "(some-master|all-master)", mk, 300)
        ours = self.wait(s, "all-master", mk, 300)
        raw = c.wait_event(f"^{tag} all {self.n} ", node=s, since=mk, timeout=300)
        boot = c.start(m)
        self.start(m, "all-standby")
        return {"first_ms": first.t_ms - k.t_ms, "all_ms": ours.t_ms - k.t_ms,
                "raw_ms": raw.t_ms - k.t_ms, "raw_sweeps": int(raw.text.split("sweeps=")[1].split()[0]),
                "boot_s": boot}

    def view(self, log):
        """`status --cluster --json` on each node as an admin runs it (its
        time includes the guest agent's round trip and the CLI's start):
        every node's record read from the DLM's lock value blocks."""
        out = []
        for node in range(self.c.n):
            t0 = time.monotonic()
            v = json.loads(self.c.check(node, f"{G_BIN} status --cluster --json --config "
                                        f"{self.cfg[node]}", timeout=120))
            took = time.monotonic() - t0
            named = sum(1 for x in v["resources"] if x["master"].get("kind") == "node")
            out.append({"node": node, "s": round(took, 2), "named": named})
            log(f"cluster: {self.n} resources, status --cluster on node{node}: {took:.2f} s, "
                f"{named} masters named")
        return out

    def run(self, handovers, kills, log):
        """`handovers` releases (alternating), then `kills` power pulls."""
        c = self.c
        self.start(0, "all-master")
        self.start(1, "all-standby")
        m, s = 0, 1
        res = {"handover": [], "kill": [], "view": self.view(log)}
        for i in range(handovers):
            r = self.handover(m, s)
            log(f"cluster: {self.n} resources, handover {i + 1}/{handovers} node{m} -> node{s}: "
                f"first {r['first_ms']:.0f} ms, all {r['all_ms']:.0f} ms")
            res["handover"].append(r)
            m, s = s, m
        if kills:
            mk = c.mark()
            c.check(m, f"{G_HELPER} hold /dlm/{self.domain} raw {self.n} h{self.n} >/tmp/h.log 2>&1 &")
            c.wait_event(f"^h{self.n} held ", node=m, since=mk, timeout=120)
        for i in range(kills):
            r = self.kill(m, s)
            log(f"cluster: {self.n} resources, kill {i + 1}/{kills} of node{m}: ours first "
                f"{r['first_ms'] / 1000:.1f} s, all {r['all_ms'] / 1000:.1f} s; raw loop "
                f"{r['raw_ms'] / 1000:.1f} s ({r['raw_sweeps']} sweeps); boot {r['boot_s']:.0f} s")
            res["kill"].append(r)
            m, s = s, m
        return res


def view_bench(args, log=lambda s: print(s, flush=True)):
    """`status --cluster` on dlmfs: at each size, a daemon master of all on
    node0 and one standby on node1, the view asked on each node twice."""
    check_bin()
    c = harness.up(2, run=RUN, **KNOBS)
    with c:
        install(c)
        sizes = []
        for n in args.view_sizes:
            size = Size(c, n, args.cluster_poll)
            size.start(0, "all-master")
            size.start(1, "all-standby")
            sizes.append({"n": n, "runs": size.view(log) + size.view(log)})
            for node in range(c.n):
                size.stop(node)
        return {"sizes": sizes, "poll": args.cluster_poll, "knobs": c.knobs, "accel": c.accel,
                "boot_s": c.boot_times()}


def bench(args, stats, log=lambda s: print(s, flush=True)):
    check_bin()
    c = harness.up(2, run=RUN, **KNOBS)
    with c:
        install(c)
        jitter = channel_jitter(c)
        log(f"cluster: up, boot {c.boot_times()} s, accel {c.accel}; event channel jitter "
            f"{jitter} ms")
        sizes = []
        for i, n in enumerate(args.cluster_sizes):
            # One count per size (the last one repeats): 1,000 releases and
            # resumes cost about a minute a round under TCG.
            handovers = args.cluster_handovers[min(i, len(args.cluster_handovers) - 1)]
            size = Size(c, n, args.cluster_poll)
            r = size.run(handovers, args.cluster_kills, log)
            for node in range(c.n):
                size.stop(node)
            row = {"n": n, "status_cluster": r["view"]}
            for kind in ("handover", "kill"):
                rs = r[kind]
                row[kind] = {k: stats([x[k] for x in rs]) for k in ("first_ms", "all_ms")}
                if kind == "handover":
                    row[kind]["released_ms"] = stats([x["released_ms"] for x in rs])
                if kind == "kill":
                    row[kind]["raw_ms"] = stats([x["raw_ms"] for x in rs])
                    ratios = [x["all_ms"] / x["raw_ms"] for x in rs]
                    row[kind]["ours_over_raw"] = stats(ratios)
                    row[kind]["median_over_median"] = (
                        row[kind]["all_ms"][1] / row[kind]["raw_ms"][1] if rs else None)
                row[kind]["runs"] = rs
            sizes.append(row)
        try:
            kver = open(os.path.join(harness.CACHE, "kernel-version")).read().strip()
        except OSError:
            kver = "?"
        return {"sizes": sizes, "poll": args.cluster_poll, "knobs": c.knobs,
                "raw_interval_ms": RAW_INTERVAL_MS, "hold_off_ms": HOLD_OFF_MS,
                "channel_jitter_ms": jitter, "accel": c.accel, "guest_mem_mib": c.mem_mb,
                "guest_kernel": kver, "boot_s": c.boot_times()}
