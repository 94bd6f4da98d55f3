#!/usr/bin/env python3
"""dlm-electd benchmarks, side by side with keepalived; writes BENCHMARKS.md.

Run as root from the repository (see BENCHMARKS.md, "How to reproduce"):

    RUSTFLAGS="-C target-feature=+crt-static" \\
        cargo build --release --target x86_64-unknown-linux-gnu
    benches/run.py                                     # all but soak, ~21 min
    benches/run.py handover footprint --count 20       # a subset, quicker

Parts: `handover` (planned handover and crashes on the file backend, two
daemons in network namespaces, VIP; keepalived beside it), `footprint` (RSS
and CPU from /proc at 1/100/1000 resources, master and standby, keepalived
beside it), `scale` (1000/10000 resources: start -> READY, takeover),
`soak` (a test: handovers by release, SIGTERM and SIGKILL in turn with an
ARP prober every 10 ms; exits 1 on two MACs for the VIP or a VIP left on a
node that is not master), `cluster` (not in the default run: dlmfs on two
o2cb VMs of tests/cluster, release and node kill beside a raw try-lock loop;
benches/cluster.py, which also tears its VMs down on any exit), `chaos` (not
in the default run either: tests/cluster/nemesis.py's random fault schedule on
three o2cb VMs, `--faults N --seed S`, in the run dir $DLM_ELECTD_CLUSTER_RUN;
writes benches/results/chaos.json, a section of BENCHMARKS.md, and exits 1 on
any violation).

Everything runs in network namespaces this script creates (names start with
`dlmb<pid>`) and a work dir in /tmp (or $BENCH_TMP); both go away on exit,
even on failure or Ctrl-C, and every process started is killed.
"""
import argparse
import collections
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import cluster  # noqa: E402  (the VM cluster part, benches/cluster.py)
OBSERVE = os.path.join(ROOT, "benches", "observe.py")
PID = os.getpid()
# BENCH_TMP=/dev/shm puts locks and runtime dirs on a tmpfs: scale then
# measures the daemon, not the file system creating 20,000 fresh files.
WORK = os.path.join(os.environ.get("BENCH_TMP", "/tmp"), f"dlmb-{PID}")
VIP = "10.77.0.100"
PROCS = []  # every Popen we started, killed at exit
NETNS = []  # every namespace we created, deleted at exit


def now():
    return time.monotonic_ns()


def ms(ns):
    return ns / 1e6


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def wait_until(pred, timeout, what, step=0.01):
    """Bounded poll for states with no event to wait on (a status field)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def stats(xs):
    xs = sorted(xs)
    if not xs:
        return None
    p99 = xs[max(0, math.ceil(0.99 * len(xs)) - 1)]
    return (xs[0], statistics.median(xs), p99, len(xs))


def fmt_stats(s):
    if s is None:
        return "| – | – | – | 0 |"
    return f"| {s[0]:.1f} | {s[1]:.1f} | {s[2]:.1f} | {s[3]} |"


# ---------------------------------------------------------------- namespaces


class Topo:
    """A bridge in a namespace of its own and one namespace per node, each
    with `ifaces` veths (eth0..) on it; node i has 10.(77+k).0.(i+1)/16 on
    ethk."""

    def __init__(self, tag, nodes, ifaces=1):
        self.br = f"dlmb{PID}{tag}br"
        self.ns = {n: f"dlmb{PID}{tag}{n}" for n in nodes}
        for ns in [self.br, *self.ns.values()]:
            sh("ip", "netns", "add", ns)
            NETNS.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")
        for i, (n, ns) in enumerate(self.ns.items()):
            for k in range(ifaces):
                peer = f"{n}{k}"
                sh("ip", "-n", ns, "link", "add", f"eth{k}", "type", "veth",
                   "peer", "name", peer, "netns", self.br)
                sh("ip", "-n", self.br, "link", "set", peer, "master", "br0", "up")
                sh("ip", "-n", ns, "addr", "add", f"10.{77 + k}.0.{i + 1}/16", "dev", f"eth{k}")
                sh("ip", "-n", ns, "link", "set", f"eth{k}", "up")

    def mac(self, node, iface="eth0"):
        return json.loads(sh("ip", "-j", "-n", self.ns[node], "link", "show", iface))[0]["address"]


class Observer:
    """benches/observe.py in a namespace; its lines, kept with their stamps."""

    def __init__(self, ns, *args):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, OBSERVE, *args],
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        PROCS.append(self.p)
        self.events = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda e: e[1] == "ready", 0, 20)

    def _read(self):
        for line in self.p.stdout:
            f = line.split()
            with self.cv:
                self.events.append((int(f[0]), *f[1:]))
                self.cv.notify_all()

    def wait(self, pred, after, timeout):
        """The first event at or after `after` (ns) matching pred."""
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events:
                    if e[0] >= after and pred(e):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("observer: no matching event")
                self.cv.wait(left)

    def since(self, after):
        with self.cv:
            return [e for e in self.events if e[0] >= after]

    def trim(self, before):
        with self.cv:
            self.events = [e for e in self.events if e[0] >= before]


def kill(p, sig=signal.SIGKILL):
    try:
        os.kill(p, sig)
    except ProcessLookupError:
        pass


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


# ---------------------------------------------------------------- dlm-electd


STATIC_BUILD = 'RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu'


def bin_path():
    """The static build the packages ship (packaging/build-packages), so the
    figures are those of what admins run: no shared libraries mapped twice
    (daemon and keeper), about 2.3 MiB less resident than `target/release`
    (benches/NOTES.md, "Master RSS"). DLM_ELECTD=PATH runs another build."""
    return os.environ.get("DLM_ELECTD", os.path.join(
        ROOT, "target", "x86_64-unknown-linux-gnu", "release", "dlm-electd"))


def vip_action(addr, iface="eth0"):
    # Two announcements 100 ms apart (default: 5 at 200 ms): the handover is
    # measured to the first one, and a shorter burst makes the loop quicker.
    return (f'[[resource.action]]\ntype = "vip"\naddress = "{addr}"\n'
            f'interface = "{iface}"\nannounce_count = 2\nannounce_interval = "100ms"\n')


def mode(poll):
    """A handover mode: "wait" (the default: the standby waits for the lock
    in the kernel; poll_interval 1s still paces retries after errors) or a
    poll interval with `standby = "poll"`."""
    return ("1s", "wait") if poll == "wait" else (poll, "poll")


class Daemon:
    def __init__(self, name, ns, resources, poll="1s", standby="wait"):
        self.name, self.ns = name, ns
        self.run_dir = f"{WORK}/run-{name}"
        self.cfg = f"{WORK}/{name}.toml"
        self.log = f"{WORK}/{name}.log"
        with open(self.cfg, "w") as f:
            f.write(f'[node]\nname = "{name}"\n[lock]\nbackend = "file"\ndir = "{WORK}/locks"\n'
                    f'standby = "{standby}"\n'
                    f'[daemon]\nruntime_dir = "{self.run_dir}"\npoll_interval = "{poll}"\n')
            for r in resources:
                f.write(r)
        os.chmod(self.cfg, 0o600)
        self.p = None
        self.keeper = None

    def start(self, notify=None):
        env = dict(os.environ, RUST_LOG="info")
        env.pop("NOTIFY_SOCKET", None)
        if notify:
            env["NOTIFY_SOCKET"] = notify
        cmd = [bin_path(), "run", "--config", self.cfg]
        if self.ns:
            cmd = ["ip", "netns", "exec", self.ns, *cmd]

        def limits():
            # 10,000 resources: a lock fd each, in daemon and keeper.
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))

        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"),
                                  env=env, preexec_fn=limits)
        PROCS.append(self.p)
        self.t_start = now()
        self.keeper = None
        return self

    def keeper_pid(self):
        if self.keeper is None:
            kids = wait_until(lambda: children(self.p.pid), 20, f"{self.name}'s lock keeper")
            self.keeper = kids[0]
        return self.keeper

    def request(self, req, timeout=30):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(f"{self.run_dir}/control.sock")
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
            return json.loads(buf)
        finally:
            s.close()

    def states(self):
        try:
            rep = self.request({"cmd": "status"}, timeout=5)
        except (OSError, ValueError):
            return None
        return {r["name"]: r for r in rep["status"]["resources"]}

    def wait_state(self, state, n=None, timeout=60):
        def ok():
            st = self.states()
            return st and (n is None or len(st) == n) and all(
                r["state"] == state and "hold_off_until_ms" not in r for r in st.values())
        wait_until(ok, timeout, f"{self.name}: all {state}", step=0.02)

    def release(self, res, hold_off_ms=60_000):
        rep = self.request({"cmd": "release", "resource": res, "hold_off_ms": hold_off_ms})
        if rep.get("error"):
            raise RuntimeError(f"release on {self.name}: {rep['error']}")

    def resume(self, res):
        rep = self.request({"cmd": "resume", "resource": res})
        if rep.get("error"):
            raise RuntimeError(f"resume on {self.name}: {rep['error']}")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.p and self.p.poll() is None:
            kill(self.p.pid, sig)
            self.p.wait(timeout)
        if self.keeper:
            # A keeper exits by itself once it holds nothing; bounded wait.
            try:
                wait_until(lambda: not os.path.exists(f"/proc/{self.keeper}"), timeout, "keeper exit")
            except TimeoutError:
                kill(self.keeper)
                raise


class Notify:
    """A NOTIFY_SOCKET for one daemon: READY=1 and STATUS= with stamps."""

    def __init__(self, name):
        self.path = f"{WORK}/{name}.notify"
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.s.bind(self.path)
        self.msgs = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.s.recv(4 << 20)
            except OSError:
                return
            with self.cv:
                self.msgs.append((now(), data.decode(errors="replace")))
                self.cv.notify_all()

    def wait(self, pred, after, timeout):
        end = time.monotonic() + timeout
        seen = 0  # each message is checked once, not at every wake-up
        with self.cv:
            while True:
                for t, m in self.msgs[seen:]:
                    if t >= after and pred(m):
                        return t
                seen = len(self.msgs)
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("notify: no matching message")
                self.cv.wait(left)


def all_master(n):
    """A STATUS= saying that all n resources are master (the board fills as
    runners first publish, so an early "master: r0" alone is not it). Up to
    10 resources the line names them all ("master: r0, r1"), beyond it
    counts them ("master: 10000 (r0, r1, r10, …)"; docs/operating.md,
    "systemctl status")."""
    def check(msg):
        for line in msg.split("\n"):
            if line.startswith("STATUS="):
                s = line[len("STATUS="):]
                if not s.startswith("master: ") or ";" in s:
                    return False
                # Binaries before the counted line named all n (comparisons).
                return s.startswith(f"master: {n} (") or s.count(",") == n - 1
        return False
    return check


# ---------------------------------------------------------------- keepalived


def keepalived_bin():
    if not shutil.which("keepalived"):
        print("installing keepalived from Debian (apt-get)...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "keepalived"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), check=True,
                       stdout=subprocess.DEVNULL)
    return shutil.which("keepalived")


def keepalived_version():
    r = subprocess.run([keepalived_bin(), "--version"], capture_output=True, text=True)
    return (r.stdout + r.stderr).splitlines()[0].strip()


class Keepalived:
    """keepalived --vrrp only, N instances on advert_int 1, state BACKUP and
    nopreempt on both nodes (the usual "no flapping back" setup), one VIP
    each; VRIDs 1..250 per interface, so 1000 instances use eth0..eth3."""

    def __init__(self, name, ns, n, vips):
        self.name, self.ns = name, ns
        self.cfg = f"{WORK}/ka-{name}.conf"
        self.log = f"{WORK}/ka-{name}.log"
        with open(self.cfg, "w") as f:
            f.write(f"global_defs {{\n  router_id {name}\n  vrrp_garp_master_repeat 2\n}}\n")
            for i in range(n):
                f.write(f"vrrp_instance vi{i} {{\n  state BACKUP\n  nopreempt\n"
                        f"  interface eth{i // 250}\n  virtual_router_id {i % 250 + 1}\n"
                        f"  priority 100\n  advert_int 1\n"
                        f"  virtual_ipaddress {{\n    {vips[i]}\n  }}\n}}\n")
        self.p = None
        self.lines = []
        self.cv = threading.Condition()

    def start(self):
        d = f"{WORK}/ka-{self.name}"
        os.makedirs(d, exist_ok=True)
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, keepalived_bin(), "--dont-fork", "--log-console",
             "--vrrp", "--no-syslog", "--use-file", self.cfg, "--pid", f"{d}/ka.pid", "--vrrp_pid",
             f"{d}/vrrp.pid", "--checkers_pid", f"{d}/chk.pid", "--config-id", self.name],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        PROCS.append(self.p)
        with self.cv:
            self.lines = []
        threading.Thread(target=self._read, args=(self.p,), daemon=True).start()
        return self

    def _read(self, p):
        with open(self.log, "a") as log:
            for line in p.stdout:
                log.write(line)
                with self.cv:
                    self.lines.append((now(), line))
                    self.cv.notify_all()

    def wait_line(self, text, count=1, timeout=60):
        end = time.monotonic() + timeout
        with self.cv:
            while sum(1 for _, ln in self.lines if text in ln) < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"keepalived {self.name}: {count}x {text!r}")
                self.cv.wait(left)

    def pids(self):
        return [self.p.pid, *children(self.p.pid)]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p and self.p.poll() is None:
            kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                for c in children(self.p.pid):
                    kill(c)
                kill(self.p.pid)
                self.p.wait(10)


# ---------------------------------------------------------------- /proc


def cpu_ns(pid):
    """CPU time of each live thread of the process, in ns, by thread id,
    from schedstat (the scheduler's own count). utime+stime in
    /proc/PID/stat are sampled at the clock tick here, and a thread that
    wakes for a few microseconds between ticks is almost never charged: a
    polling standby showed 0.03 % there and 4.4 % in schedstat."""
    times = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                times[(pid, t)] = int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return times


def cpu_used(before, after):
    """ns used between two cpu_ns() samples by the threads alive at the end
    (a thread that ended within the window, such as an idle blocking-pool
    thread, is left out rather than subtracted)."""
    return sum(ns - before.get(t, 0) for t, ns in after.items())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "load": load}


# ---------------------------------------------------------------- handover


def parse_duration(d):
    return float(d[:-2]) / 1000 if d.endswith("ms") else float(d[:-1])


def vip_resource(addr=f"{VIP}/24", name="vip"):
    return f'[[resource]]\nname = "{name}"\n' + vip_action(addr)


def ours_handover(topo, arp, addr, poll, kinds, count, settled=None):
    """`count` handovers of one VIP between daemons a and b, each started
    on the master by the next of `kinds` in turn; returns [(to VIP present,
    to first GARP)] ms. `settled(master, standby)` runs after each one."""
    ds = {n: Daemon(n, topo.ns[n], [vip_resource()], *mode(poll)) for n in "ab"}
    macs = {n: topo.mac(n) for n in "ab"}
    out = []
    try:
        ds["a"].start().wait_state("master", 1)
        ds["b"].start().wait_state("standby", 1)
        cur, other = "a", "b"
        for i in range(count):
            c, o = ds[cur], ds[other]
            kind = kinds[i % len(kinds)]
            keeper = c.keeper_pid()
            if poll != "wait":
                # The standby tried last when it resumed, just before this
                # round: start at a random phase of its interval, not in step.
                time.sleep(random.uniform(0, parse_duration(poll)))
            t0 = now()
            if kind == "release":
                c.release("vip")
            elif kind == "sigterm":
                kill(c.p.pid, signal.SIGTERM)
            elif kind == "kill":
                kill(c.p.pid, signal.SIGKILL)
            elif kind == "killall":
                kill(c.p.pid, signal.SIGKILL)
                kill(keeper, signal.SIGKILL)
            e_vip = addr[other].wait(lambda e: e[1] == "new" and e[2] == VIP, t0, 60)
            e_arp = arp.wait(lambda e: e[3] == macs[other] and e[4] == VIP and e[5] == VIP, t0, 60)
            out.append((ms(e_vip[0] - t0), ms(e_arp[0] - t0)))
            o.wait_state("master", 1)
            if kind == "release":
                c.resume("vip")
            else:
                c.p.wait(60)
                c.stop()  # waits for the keeper (kill: it released first)
                c.start()
            c.wait_state("standby", 1)
            # The old master's VIP is gone (release, SIGTERM, the keeper, or
            # for killall the restart's reconcile) before the next round.
            wait_until(lambda: VIP not in sh("ip", "-n", topo.ns[cur], "addr"), 30, "old VIP gone")
            if settled:
                settled(other, cur)
            for ob in [arp, *addr.values()]:
                ob.trim(now())
            cur, other = other, cur
    finally:
        for d in ds.values():
            d.stop()
    return out


def ka_handover(topo, arp, addr, count):
    """keepalived: SIGTERM of the master -> VIP (and GARP) on the backup."""
    kas = {n: Keepalived(n, topo.ns[n], 1, [f"{VIP}/24"]) for n in "ab"}
    macs = {n: topo.mac(n) for n in "ab"}
    out = []
    try:
        kas["a"].start().wait_line("Entering MASTER STATE")
        kas["b"].start().wait_line("Entering BACKUP STATE")
        cur, other = "a", "b"
        for i in range(count):
            t0 = now()
            kas[cur].stop()
            e_vip = addr[other].wait(lambda e: e[1] == "new" and e[2] == VIP, t0, 60)
            e_arp = arp.wait(lambda e: e[3] == macs[other] and e[4] == VIP and e[5] == VIP, t0, 60)
            out.append((ms(e_vip[0] - t0), ms(e_arp[0] - t0)))
            kas[cur].start().wait_line("Entering BACKUP STATE")
            for ob in [arp, *addr.values()]:
                ob.trim(now())
            cur, other = other, cur
    finally:
        for k in kas.values():
            k.stop()
    return out


def bench_handover(args):
    topo = Topo("h", ["a", "b"])
    arp = Observer(topo.br, "arp", "br0")
    addr = {n: Observer(topo.ns[n], "addr") for n in "ab"}
    res = {"ours": [], "keepalived": None}
    for poll in args.polls:
        for kind, count in [("release", args.count), ("sigterm", args.count),
                            ("kill", args.crash_count), ("killall", args.crash_count)]:
            if count == 0:
                continue
            print(f"handover: ours, poll {poll}, {kind} x{count}", flush=True)
            s = ours_handover(topo, arp, addr, poll, [kind], count)
            res["ours"].append({"poll": poll, "kind": kind, "vip": stats([x[0] for x in s]),
                                "garp": stats([x[1] for x in s])})
    if args.ka_count:
        print(f"handover: keepalived, SIGTERM x{args.ka_count}", flush=True)
        s = ka_handover(topo, arp, addr, args.ka_count)
        res["keepalived"] = {"vip": stats([x[0] for x in s]), "garp": stats([x[1] for x in s]),
                             "version": keepalived_version()}
    return res


# ---------------------------------------------------------------- footprint


def bench_footprint(args):
    """All in one window per size, side by side: a master and a standby of
    ours per standby mode (each pair in its own namespaces, with its own
    locks and VIPs), and a keepalived master and backup."""
    modes = args.footprint_polls
    nodes = [f"{r}{k}" for k in range(len(modes)) for r in "ms"] + ["km", "kb"]
    topo = Topo("f", nodes, ifaces=4)
    rows = []
    for n in args.sizes:
        print(f"footprint: {n} resources / instances", flush=True)
        ka_vips = [f"10.101.{i // 250}.{i % 250 + 1}/32" for i in range(n)]
        procs, groups = [], {}
        try:
            for k, md in enumerate(modes):
                res = [f'[[resource]]\nname = "r{k}x{i}"\n'
                       + vip_action(f"10.{102 + k}.{i // 250}.{i % 250 + 1}/32") for i in range(n)]
                m = Daemon(f"fm{k}x{n}", topo.ns[f"m{k}"], res, *mode(md))
                s = Daemon(f"fs{k}x{n}", topo.ns[f"s{k}"], res, *mode(md))
                procs += [s, m]
                m.start().wait_state("master", n, timeout=300)
                s.start().wait_state("standby", n, timeout=300)
                groups[f"ours master ({md})"] = [m.p.pid, m.keeper_pid()]
                groups[f"ours standby ({md})"] = [s.p.pid, s.keeper_pid()]
            km = Keepalived(f"km{n}", topo.ns["km"], n, ka_vips)
            kb = Keepalived(f"kb{n}", topo.ns["kb"], n, ka_vips)
            procs += [kb, km]
            km.start().wait_line("Entering MASTER STATE", n, timeout=300)
            kb.start().wait_line("Entering BACKUP STATE", n, timeout=300)
            groups["keepalived master"] = km.pids()
            groups["keepalived backup"] = kb.pids()
            time.sleep(5)  # let start-up work (announcements) finish
            t0 = time.monotonic()
            ns0 = {g: {k: v for p in ps for k, v in cpu_ns(p).items()} for g, ps in groups.items()}
            time.sleep(args.window)
            dt = time.monotonic() - t0
            for g, ps in groups.items():
                now_ns = {k: v for p in ps for k, v in cpu_ns(p).items()}
                cpu = cpu_used(ns0[g], now_ns) / 1e9 / dt * 100
                threads = sum(len(os.listdir(f"/proc/{p}/task")) for p in ps)
                rows.append({"n": n, "who": g, "cpu_pct": cpu,
                             "rss_mib": sum(rss_kib(p) for p in ps) / 1024,
                             "procs": len(ps), "threads": threads, "window_s": dt})
        finally:
            for x in procs:
                x.stop()
    return {"modes": modes, "rows": rows}


# ---------------------------------------------------------------- scale


def bench_scale(args):
    rows = []
    for n in args.scale_sizes:
        print(f"scale: {n} resources", flush=True)
        res = [f'[[resource]]\nname = "s{i}"\n' for i in range(n)]
        na, nb = Notify(f"sa{n}"), Notify(f"sb{n}")
        a = Daemon(f"sa{n}", None, res, *mode(args.scale_poll))
        b = Daemon(f"sb{n}", None, res, *mode(args.scale_poll))
        try:
            a.start(notify=na.path)
            t_ready = na.wait(lambda m: "READY=1" in m, a.t_start, 300)
            t_all = na.wait(all_master(n), a.t_start, 300)
            b.start(notify=nb.path)
            nb.wait(lambda m: "READY=1" in m, b.t_start, 300)
            t0 = now()
            kill(a.p.pid, signal.SIGTERM)
            t_take = nb.wait(all_master(n), t0, 300)
            a.p.wait(300)
            t_exit = now()
            rows.append({"n": n, "ready_ms": ms(t_ready - a.t_start), "all_master_ms": ms(t_all - a.t_start),
                         "takeover_ms": ms(t_take - t0), "stop_ms": ms(t_exit - t0)})
        except TimeoutError as e:
            rows.append({"n": n, "error": str(e)})
        finally:
            for d in (b, a):
                d.stop()
    return {"poll": args.scale_poll, "rows": rows}


# ---------------------------------------------------------------- soak


def soak(args):
    """The safety test: handovers by release, SIGTERM and SIGKILL (daemon
    only: its keeper releases) in turn while a prober on the bridge asks
    who-has VIP every 10 ms. Each probe comes from its own sender address
    (10.77.200.1-250, in turn), so every reply names the probe it answers:
    two MACs answering one probe is two nodes holding the VIP at once.
    After each handover has settled, the VIP must be on the master only."""
    topo = Topo("s", ["a", "b"])
    probe = Observer(topo.br, "probe", "br0", VIP)
    arp = Observer(topo.br, "arp", "br0")
    addr = {n: Observer(topo.ns[n], "addr") for n in "ab"}
    macs = {topo.mac(n): n for n in "ab"}
    violations = []
    seen = {"probes": 0, "replies": 0}
    cursor = [0]

    def check_probes(upto):
        ev = [e for e in probe.since(cursor[0]) if e[0] < upto]
        probes = [e for e in ev if e[1] == "arp" and e[2] == "1" and e[5] == VIP and e[3] not in macs]
        replies = [e for e in ev if e[1] == "arp" and e[2] == "2" and e[4] == VIP]
        seen["probes"] += len(probes)
        seen["replies"] += len(replies)
        for p in probes:
            who = {r[3] for r in replies if r[5] == p[4] and p[0] <= r[0] < p[0] + 1e9}
            if len(who) > 1:
                violations.append(f"probe at {p[0]} answered by {sorted(macs.get(m, m) for m in who)}")
        # Replies near the end may answer probes of the next chunk: keep 1 s.
        cursor[0] = max(cursor[0], upto - int(1e9))
        probe.trim(cursor[0])

    def settled(master, standby):
        t = now()
        for n, ns in topo.ns.items():
            has = VIP in sh("ip", "-n", ns, "addr")
            if has != (n == master):
                violations.append(f"after settling at {t}: VIP {'on' if has else 'not on'} {n}, master {master}")
        check_probes(t - int(1e9))

    t0 = time.monotonic()
    s = ours_handover(topo, arp, addr, args.soak_poll, args.soak_kinds, args.soak_count, settled)
    time.sleep(1.1)
    check_probes(now())
    return {"handovers": len(s), "poll": args.soak_poll, "seconds": time.monotonic() - t0,
            "probes": seen["probes"], "replies": seen["replies"], "violations": violations}


# ---------------------------------------------------------------- report

RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "benches", "results"))


def write_report():
    def load(part):
        p = os.path.join(RESULTS, f"{part}.json")
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)
        return None

    L = ["# Benchmarks", "",
         "Generated by `benches/run.py` from `benches/results/*.json` (each part keeps the",
         "machine and load of its own run). Times in ms: min / median / p99 over n runs.",
         "**This machine is shared**: four other engineers build and test on the same 2",
         "cores while these run, so the figures are noisy and pessimistic; the load",
         "average of each run is given. Rerun on a quiet machine with the command below.",
         "", "## How to reproduce", "",
         "As root, from the repository (apt-get installs keepalived if missing):", "",
         "```sh", STATIC_BUILD + "   # what the packages ship",
         "benches/run.py              # handover, footprint, scale: about 21 min",
         "benches/run.py soak         # the soak test, about 2.5 min; exit 1 on a violation",
         "benches/run.py handover --count 20 --ka-count 10   # one part, quicker",
         "benches/run.py report      # only rewrite BENCHMARKS.md from benches/results/",
         "# the VM cluster part (dlmfs; boots two o2cb VMs, about 17 min):",
         "benches/run.py cluster     # --cluster-kills 6 --cluster-handovers 20 8 --cluster-poll 1s",
         "benches/run.py view        # status --cluster on dlmfs, --view-sizes 100 1000 (two VMs)",
         "# random faults on three o2cb VMs with an independent checker (about 15 s a fault):",
         "benches/run.py chaos --faults 500 [--seed S]   # exit 1 on any violation",
         "# the dlm backend on the corosync tier's three VMs (about 10 min):",
         "benches/run.py corosync   # --cs-handovers 10 --cs-kills 2 --cs-sizes 0 100 1000",
         "```", "",
         "Measured here: handover 14 min (3 modes x 240 rounds, keepalived 100), footprint",
         "5 min (three 60 s windows), scale 1.5 min, soak 2.5 min, cluster 17 min by default (20",
         "and 8 releases, 6 and 6 node kills, at 1 and 1,000 resources; the figures below are",
         "of `--cluster-kills 10`, 20 min). `benches/run.py -h` lists",
         "the options (counts, modes, sizes, window).", ""]

    def mach(r):
        m = r["machine"]
        return (f"Run {r['date']} on {m['cpu']} ({m['cores']} cores), kernel {m['kernel']}, "
                f"load average at start {m['load']}, at end {r.get('load_end', '?')}.")

    h = load("handover")
    if h:
        L += ["## Planned handover and crashes (file backend, two network namespaces, one VIP)", "",
              mach(h), "",
              "From the action on the master (`release` over the control socket, SIGTERM,",
              "SIGKILL of the daemon, SIGKILL of daemon and lock keeper) to the VIP present on",
              "the other node (rtnetlink event in its namespace) and to the first gratuitous",
              "ARP from the other node's MAC seen on the bridge (AF_PACKET). The clocks are one",
              "CLOCK_MONOTONIC.", "",
              "| who | poll | by | → VIP min | median | p99 | n | → GARP min | median | p99 | n |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in h["ours"]:
            L.append(f"| dlm-electd | {r['poll']} | {r['kind']} "
                     + fmt_stats(r["vip"]) + fmt_stats(r["garp"])[1:])
        k = h.get("keepalived")
        if k:
            L.append(f"| keepalived | advert_int 1 | SIGTERM " + fmt_stats(k["vip"]) + fmt_stats(k["garp"])[1:])
            L += ["", f"keepalived: {k['version']}, `--vrrp`, both nodes `state BACKUP`, `nopreempt`,",
                  "priority 100 (a stopped master sends priority 0, so the backup takes over after",
                  "its skew time, not 3 adverts)."]
            L += ["", "Our median over keepalived's (target ≤ 1/20 = 0.05 for `release`):", ""]
            for r in h["ours"]:
                if r["kind"] in ("release", "sigterm") and r["vip"]:
                    L.append(f"- poll {r['poll']}, {r['kind']}: {r['vip'][1] / k['vip'][1]:.3f}")
        L.append("")

    f = load("footprint")
    if f:
        L += ["## Footprint", "", mach(f), "",
              "dlm-electd: `file` backend, one VIP action per resource, standby `wait` (poll_interval",
              "1s) and `poll` at 1s; daemon and lock keeper together. keepalived: `--vrrp`,",
              "advert_int 1, one VIP per instance;",
              "parent and VRRP child together. CPU: run time from /proc/PID/task/*/schedstat over the",
              "window, in % of one core (utime+stime are tick-sampled here and miss short wake-ups). RSS: VmRSS summed at the end of the window.", "",
              "| instances | who | CPU % of a core | RSS MiB | processes | threads | window s |",
              "|---|---|---|---|---|---|---|"]
        for r in f["rows"]:
            # Runs before cpu_used() subtracted a thread that ended in the
            # window (an idle blocking-pool thread): at most -0.01, shown 0.
            L.append(f"| {r['n']} | {r['who']} | {max(r['cpu_pct'], 0):.3f} | {r['rss_mib']:.1f} | "
                     f"{r['procs']} | {r.get('threads', '?')} | {r['window_s']:.0f} |")
        L.append("")

    s = load("scale")
    if s:
        L += ["## Scale", "", mach(s), "",
              f"Resources without actions, `file` backend, standby {s['poll']} (at most 1024",
              "resources of a daemon wait, the others poll at 1 s). Start → READY=1 and",
              "→ all master (STATUS= on the daemon's NOTIFY_SOCKET); then a second daemon",
              "stands by and the first gets SIGTERM: → the second's STATUS= says all master",
              "(takeover), and → the first has exited (stop).", "",
              "| resources | start → READY | start → all master | SIGTERM → all taken over | SIGTERM → exited |",
              "|---|---|---|---|---|"]
        for r in s["rows"]:
            if "error" in r:
                L.append(f"| {r['n']} | failed: {r['error']} | | | |")
                continue
            L.append(f"| {r['n']} | {r['ready_ms']:.0f} | {r['all_master_ms']:.0f} | "
                     f"{r['takeover_ms']:.0f} | {r['stop_ms']:.0f} |")
        L.append("")

    k = load("soak")
    if k:
        L += ["## Soak (a test)", "", mach(k), "",
              f"{k['handovers']} handovers by release, SIGTERM and SIGKILL of the daemon in turn,",
              f"poll {k['poll']}, in {k['seconds']:.0f} s; an ARP prober on the bridge sent",
              f"{k['probes']} who-has probes for the VIP (every 10 ms, each from its own sender",
              f"address) and saw {k['replies']} replies. Violations (two MACs answering one",
              "probe; after settling, a VIP on a node that is not master): "
              + (f"**{len(k['violations'])}**: " + "; ".join(k["violations"][:10]) if k["violations"] else "**none**."),
              ""]

    v = load("cluster")
    if v:
        kn = v["knobs"]
        jit = ", ".join(f"node{n} {j:.1f} ms" for n, j in sorted(v["channel_jitter_ms"].items()))
        L += ["## VM cluster: dlmfs handover and node kill, beside the DLM's floor", "", mach(v), "",
              f"Two QEMU VMs on this host ({v['accel'].upper()}, 1 vCPU and {v['guest_mem_mib']} MiB",
              f"each, Debian kernel {v['guest_kernel']}, busybox initramfs; tests/cluster/harness.py),",
              f"o2cb with dead_threshold {kn['dead']} (idle {kn['idle']} ms, keepalive {kn['keepalive']} ms,",
              f"reconnect {kn['reconnect']} ms). The static release daemon on each, resources without",
              f"actions in dlmfs domain `b<N>`, poll_interval {v['poll']} (a dlmfs standby always",
              "polls), op_timeout default (2 min).", "",
              "- **release**: on the master, the request `dlm-electd release NAME --hold-off 10m`",
              "  sends, for every resource at once (1 resource: the CLI itself; 1,000: benches/",
              "  cluster/vmbench.c opens 1,000 control-socket connections and sends all requests",
              "  before reading a reply) → the other node's daemon has the first / all resources",
              "  master. Then `resume` on the old master, and the next round goes back, after a",
              "  random pause of up to one poll_interval (else every release would come just",
              "  after the standby's attempt: it tries again at once on `resume`).",
              "- **kill**: the harness's power pull (SIGKILL of the master VM's QEMU) → the",
              "  survivor's daemon has the first / all resources master. In the same kill, the",
              f"  **raw loop** on the survivor (vmbench `take`: sweeps {v['raw_interval_ms']} ms apart of one",
              "  O_RDWR|O_CREAT|O_NONBLOCK open per lock file not yet won) takes over N lock files",
              "  of the same domain that a raw holder on the killed node held: the DLM's own floor",
              "  (eviction after the heartbeat's dead threshold, then o2dlm recovery). The killed",
              "  node boots again and stands by before the next kill, which goes the other way.",
              "",
              "Clocks: every instant is a line on the harness's event channel, stamped with the",
              "host's CLOCK_MONOTONIC on arrival (`@kill` when the harness kills QEMU; the",
              "daemon's \"all master\" when vmbench `watch`, its NOTIFY_SOCKET in the guest, reads",
              "the STATUS= line naming all N resources master). Resolution: the channel's",
              f"jitter, the spread of (host stamp - guest clock) over 50 events per node: {jit}.", "",
              "| resources | what | min | median | p99 | n |", "|---|---|---|---|---|---|"]
        for r in v["sizes"]:
            h, k = r["handover"], r["kill"]
            for label, st in [("release → first master", h["first_ms"]), ("release → all master", h["all_ms"]),
                              ("release → old master answered all", h.get("released_ms")),
                              ("kill → ours first master", k["first_ms"]), ("kill → ours all master", k["all_ms"]),
                              ("kill → raw loop has all", k["raw_ms"])]:
                L.append(f"| {r['n']} | {label} " + fmt_stats(st))
        L += [""] + [f"{r['n']} resource{'s' if r['n'] > 1 else ''}: {r['note']}." for r in v["sizes"] if r.get("note")]
        L += ["", "Times in ms. Ours over the floor (kill → all master over the raw loop's time,",
              "per kill, and median over median):", ""]
        for r in v["sizes"]:
            q, mm = r["kill"]["ours_over_raw"], r["kill"]["median_over_median"]
            if q:
                L.append(f"- {r['n']} resource{'s' if r['n'] > 1 else ''}: per kill min {q[0]:.2f}, "
                         f"median {q[1]:.2f}, p99 {q[2]:.2f} (n {q[3]}); median over median {mm:.2f}")
        L.append("")

    x = load("view")
    if x:
        L += ["## VM cluster: `status --cluster` on dlmfs", "", mach(x), "",
              "Two o2cb VMs (TCG; dead threshold %s), a daemon master of N resources on node0,"
              % x["knobs"].get("dead"),
              "a standby of the same N on node1; `dlm-electd status --cluster --json` run on each",
              "node twice, as an admin runs it (through the guest agent: the time includes its",
              "round trip and the CLI's start). The client asks its node's daemon, which reads",
              "every node's record from the DLM's lock value blocks (`benches/cluster.py`,",
              "`Size.view`). Every run named a master for every resource, or says so.", "",
              "| resources | node0 runs s | node1 runs s | masters named |", "|---|---|---|---|"]
        for r in x["sizes"]:
            by = {0: [], 1: []}
            for v in r["runs"]:
                by.setdefault(v["node"], []).append(v)
            L.append(f"| {r['n']} | " + ", ".join(f"{v['s']:.2f}" for v in by[0]) + " | "
                     + ", ".join(f"{v['s']:.2f}" for v in by[1]) + " | "
                     + ", ".join(str(v["named"]) for v in r["runs"]) + " |")
        L.append("")

    x = load("corosync")
    if x:
        L += corosync_report(x, mach)

    x = load("chaos")
    if x:
        L += chaos_report(x, mach)
    notes = os.path.join(ROOT, "benches", "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as fh:
            L += [fh.read()]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as fh:
        fh.write("\n".join(L).rstrip() + "\n")


def corosync_report(x, mach):
    """BENCHMARKS.md's section on the dlm backend (benches/corosync.py)."""
    h, p = x["handover"], x["pull"]
    L = ["## VM cluster: the dlm backend (fs/dlm on corosync), beside the raw DLM", "", mach(x), "",
         "Three QEMU VMs on this host (TCG, the corosync tier's Debian 12 image and harness,",
         "tests/system), corosync 3 (knet, token 3 s + consensus 3.6 s) and dlm_controld",
         "fencing through the host (a power-off), the `.deb` "
         f"({x['deb']}), `backend = \"dlm\"`, standbys waiting in the DLM's queue",
         "(the default), the tier's resource `web` (a VIP and demo-web.service). Every instant",
         "is a line on the harness's event channel, stamped with the host's clock on arrival",
         "(`benches/corosync.py`).", "",
         "- **release**: `dlm-electd release --hold-off 1s web` on the master → the VIP deleted",
         "  there → added on the other node. The raw floor in the same run: a dlmprobe",
         "  (the daemon's own binding) holding an EX lock on one node is told to unlock (its",
         "  stdin ends) → another node's queued dlmprobe is granted.",
         "- **power pull**: the master's QEMU killed while a raw EX lock is held there and",
         "  queued for on the two others → the raw grant, and the VIP up on a survivor",
         "  (fence, which finds the node off, then DLM recovery, then our acquire).", "",
         "| what | min | median | p99 | n |", "|---|---|---|---|---|"]
    for label, st in [("release → VIP on the other node", h["vip_ms"]),
                      ("raw: told to unlock → queued grant on the other node", h["raw_ms"]),
                      ("power pull → VIP up on a survivor", p["vip_ms"]),
                      ("power pull → raw lock granted on a survivor", p["raw_ms"])]:
        L.append(f"| {label} " + fmt_stats(st))
    L += ["", "Times in ms." + (" Power pull, ours over the raw floor per pull: "
                                 + ", ".join(f"{q:.2f}" for q in p["over_raw"]) + "." if p["over_raw"]
                                 else " No power pull in this run (`--cs-kills 0`): the corosync "
                                 "tier's log times one a run (`cs_power_pull`)."), "",
          "CPU (each node's `dlm-electd.service` cgroup, `cpu.stat`: the daemon and its quorum",
          "watch's `corosync-quorumtool -m`, with `-s` every 30 s) over a window once every",
          "resource had a master, N resources without actions beside `web` added by a reload",
          "on each node (TCG: a guest's CPU costs several times a real one's, fork and exec",
          "most); restarts: systemd's restarts of the daemon since that reload (a watchdog",
          "kill would show here):", "",
          "| resources | window s | all mastered after s | node: masters, CPU % of a core, restarts |",
          "|---|---|---|---|"]
    for r in x["cpu"]:
        L.append(f"| {r['n']} | {r['window_s']} | {r['settle_s']} | "
                 + "; ".join(f"node{n['node']}: {n['masters']}, {n['cpu_pct']:.2f} %"
                             + (f", {n['restarts']}" if "restarts" in n else "")
                             for n in r["nodes"]) + " |")
    if any("cluster_s" in n for r in x["cpu"] for n in r["nodes"]):
        L += ["", "`dlm-electd status --cluster --json` on each node after that window, as an admin",
              "runs it (through the guest agent: its round trip and the CLI's start included): the",
              "daemon reads every node's record from the DLM's lock value blocks and probes every",
              "resource's lock (a NOQUEUE PR each):", "",
              "| resources | node: seconds (masters named) |", "|---|---|"]
        for r in x["cpu"]:
            L.append(f"| {r['n'] + 1} | " + "; ".join(
                f"node{n['node']}: {n['cluster_s']:.2f} s ({n['cluster_named']})"
                for n in r["nodes"] if "cluster_s" in n) + " |")
    L.append("")
    return L


def chaos_report(x, mach):
    """BENCHMARKS.md's section on a `chaos` run (benches/results/chaos.json)."""
    dead = x.get("knobs", {}).get("dead", 5)
    by = x["faults_by_type"]
    dur = f", in {x['seconds'] / 3600:.1f} h" if x.get("seconds") else ""
    over = (f", {x['overlapping']} times two at once" if x.get("overlapping") else "")
    segs = x.get("segments") or []
    if len(segs) > 1:
        dur += (f" in {len(segs)} segments, each on a freshly booted cluster with a verdict of its own "
                "(`--budget-min`, then `--from`): steps "
                + ", ".join(f"{s['from']}–{s['to'] - 1} ({s['seconds'] / 3600:.1f} h, ended {s.get('ended', s.get('date'))}, "
                            f"at {s.get('commit', '?')})" for s in segs))
    if len(segs) == 1 and segs[0].get("commit"):
        dur += f" (at {segs[0]['commit']})"
    if x.get("to") is not None and x["to"] < x.get("planned", x["faults"]):
        dur += (f"; steps {x['to']} to {x['planned'] - 1} of the schedule not run yet "
                f"(`--from {x['to']} --seed {x['seed']} --faults {x['planned']}` goes on)")
    L = ["## Randomized faults on the VM cluster (tests/cluster/nemesis.py)", "", mach(x), "",
         f"`benches/run.py chaos --faults {x.get('planned', x['faults'])} --seed {x['seed']}`:",
         f"three QEMU VMs (TCG) of tests/cluster/ on o2cb (dead_threshold {dead}), the static",
         f"release daemon on each with {x['resources']} resources",
         "(three with a VIP on the bridge, three `prefer`red in rotated orders, one of them",
         "`preempt`, one with a health check, the rest plain; poll_interval 250 or 500 ms,",
         "op_timeout 5 s) and a `run-locked` loop on each node on one workload lock.",
         f"{x['faults']} faults from the seeded schedule{dur}{over}. The checker",
         "runs on the host and trusts nothing the daemons say: it replays the hooks'",
         "acquire/release lines, the workload program's, and the harness's own",
         "(@kill, @exit, @freeze, @thaw), stamped with the host clock on arrival, reads",
         "`ip addr` on every node at settle points, and probes every VIP with ARP from the",
         "bridge every 10 ms (two MACs answering in one round is two masters). What each fault is, how the checker",
         "judges, and the liveness bound: tests/cluster/README.md, \"Nemesis\".", "",
         "| fault | count |", "|---|---|"]
    L += [f"| {t} | {n} |" for t, n in sorted(by.items(), key=lambda kv: -kv[1])]
    v = x["violations"]
    lv = x["liveness"]
    L += ["", "Violations (two masters of one resource outside a frozen master's documented",
          "window, two workload holders, a VIP off its master at a settle point, no master",
          f"within {x['liveness_bound_s']:.0f} s of a heal, anything left after the final SIGTERM): "
          + (f"**{len(v)}**: " + "; ".join(f"{e['kind']}: {e['text']}" for e in v[:10]) if v else "**none**."),
          f"Liveness judged {lv['ok']} times ({lv['inconclusive']} inconclusive: another fault began",
          f"within the bound); {x['vip_checks']} VIP checks; {x.get('arp_rounds', 0)} ARP probe rounds;",
          f"{x['events']} events." + (
              f" A thawed master's VIP answered beside the new master's in {g['n']} thaws, for at most"
              f" {g['max']:.0f} ms (median {g['median']:.0f} ms; the bound is 1 s)."
              if (g := x.get("vip_gone_after_thaw_ms")) else ""),
          *([f"Daemons that exited on their own (a finding each, no violation): {len(ux)}."]
            if (ux := x.get("unexpected_exits")) else []),
          # What was found of them, written into chaos.json by hand.
          *x.get("findings", []),
          "", "Time without a master, per fault type (s; every gap between one master interval",
          "of a resource and the next, charged to the fault on the node that lost it, else",
          "`fence` (o2cb fenced a node nobody had faulted), else `TYPE(after)` (a `preempt`",
          "handover back to a node healed from TYPE), else `TYPE(other node)`, else `none`):", "",
          "| charged to | gaps | median | p99 | max |", "|---|---|---|---|---|"]
    for k, st in x["without_master_s"].items():
        if st:
            L.append(f"| {k} | {st['n']} | {st['median']:.2f} | {st['p99']:.2f} | {st['max']:.2f} |")
    return L + [""]


# ---------------------------------------------------------------- main


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            for c in children(p.pid):
                kill(c)
            kill(p.pid)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
    # Keepers live in their own session: any process still using our work dir.
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    if WORK.encode() in fh.read():
                        kill(int(d))
            except OSError:
                pass
    for ns in reversed(NETNS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(WORK, ignore_errors=True)


def bench_corosync(args):
    """The dlm backend on three corosync VMs: benches/corosync.py, a process
    of its own (it imports tests/system's harness, whose name the cluster
    part's tests/cluster harness already holds here)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "benches", "corosync.py"),
                    "--handovers", str(args.cs_handovers), "--kills", str(args.cs_kills),
                    "--sizes"] + [str(n) for n in args.cs_sizes], check=True)
    with open(os.path.join(RESULTS, "corosync.json")) as fh:
        return json.load(fh)


def chaos(args):
    """tests/cluster/nemesis.py's schedule, args.faults long, on a 3-node
    o2cb cluster of its own (run dir: $DLM_ELECTD_CLUSTER_RUN).

    A long schedule may be run in segments, each on a freshly booted
    cluster with its own complete verdict: `--budget-min M` stops injecting
    after M minutes (then settles, stops every daemon and judges as at the
    end of a whole run); `--from N --seed S` goes on at step N of the same
    schedule and merges its verdict into benches/results/chaos.json (which
    must hold the segments before it). So a 500-fault run fits sessions of
    a few hours without losing what a cut-off run saw."""
    import harness  # tests/cluster, on sys.path through benches/cluster.py
    import nemesis
    before = None
    if args.chaos_from:
        p = os.path.join(RESULTS, "chaos.json")
        if os.path.exists(p):
            with open(p) as fh:
                before = json.load(fh)
        if args.seed is None or not before or before.get("seed") != args.seed \
                or before.get("planned") != args.faults or before.get("to") != args.chaos_from:
            sys.exit(f"chaos --from {args.chaos_from}: benches/results/chaos.json must hold the segments "
                     f"before it, of the same --seed and --faults (it has seed {before and before.get('seed')}, "
                     f"faults {before and before.get('planned')}, up to step {before and before.get('to')})")
    cluster.check_bin()
    c = harness.up(3, run=harness.RUN, **nemesis.FAST)
    with c:
        boot = ", ".join(f"{b:.1f}" for b in c.boot_times())
        print(f"chaos: 3 nodes up, boot {boot} s, accel {c.accel}, run dir {c.run}", flush=True)
        t0 = time.monotonic()
        # A later segment replays the first one's schedule: with drains
        # only if it had them (runs before drains existed had none).
        drain = before.get("drain", False) if before else True
        r = nemesis.run(c, count=args.faults, seed=args.seed, k=args.chaos_resources,
                        log=lambda s: print(s, flush=True), budget_s=args.budget_min * 60,
                        start=args.chaos_from, drain=drain)
        r["seconds"] = time.monotonic() - t0
    r["events_log"] = c.events_path
    r["knobs"] = dict(c.knobs)
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    r["segments"] = [{k: r.get(k) for k in ("from", "to", "faults", "seconds")}
                     | {"violations": len(r["violations"]), "commit": commit,
                        "ended": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}]
    return merge_chaos(before, r) if before else r


def merge_chaos(a, b):
    """Segment b of a chaos run appended to the segments before it (a):
    counts added, samples pooled, statistics computed again."""
    import nemesis
    m = dict(b)
    for k in ("faults", "overlapping", "vip_checks", "arp_rounds", "events", "seconds"):
        m[k] = a.get(k, 0) + b.get(k, 0)
    m["from"] = a.get("from", 0)
    m["faults_by_type"] = dict(collections.Counter(a["faults_by_type"]) + collections.Counter(b["faults_by_type"]))
    for k in ("violations", "excerpts", "fault_notes", "errors", "unexpected_exits", "wedged",
              "vip_gone_raw", "segments"):
        m[k] = list(a.get(k, [])) + list(b.get(k, []))
    m["liveness"] = {k: a["liveness"].get(k, 0) + b["liveness"].get(k, 0) for k in b["liveness"]}
    raw = collections.defaultdict(list)
    for x in (a, b):
        for k, v in x.get("without_master_raw", {}).items():
            raw[k] += v
    m["without_master_raw"] = dict(sorted(raw.items()))
    m["without_master_s"] = {k: nemesis.pstats(v) for k, v in sorted(raw.items())}
    m["vip_gone_after_thaw_ms"] = nemesis.pstats(m["vip_gone_raw"])
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["handover", "footprint", "scale"],
                    help="handover footprint scale soak cluster view chaos corosync report "
                         "(default: the first three)")
    ap.add_argument("--count", type=int, default=100, help="handovers per poll and kind (release, sigterm)")
    ap.add_argument("--crash-count", type=int, default=20, help="handovers per poll by SIGKILL")
    ap.add_argument("--ka-count", type=int, default=100, help="keepalived handovers")
    ap.add_argument("--polls", nargs="+", default=["wait", "100ms", "1s"],
                    help="standby modes: wait (event-driven, the default) or a poll interval")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--footprint-polls", nargs="+", default=["wait", "1s"])
    ap.add_argument("--scale-sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--scale-poll", default="wait")
    ap.add_argument("--soak-count", type=int, default=210)
    ap.add_argument("--soak-poll", default="wait")
    ap.add_argument("--cluster-sizes", type=int, nargs="+", default=[1, 1000],
                    help="cluster: resources per daemon, one dlmfs domain each")
    ap.add_argument("--cluster-handovers", type=int, nargs="+", default=[20, 8],
                    help="cluster: releases per size, in the order of --cluster-sizes (the last repeats)")
    ap.add_argument("--cluster-kills", type=int, default=6, help="cluster: node kills per size")
    ap.add_argument("--cluster-poll", default="1s", help="cluster: the daemons' poll_interval")
    ap.add_argument("--view-sizes", type=int, nargs="+", default=[100, 1000],
                    help="view: resources per daemon for `status --cluster` on dlmfs")
    ap.add_argument("--soak-kinds", nargs="+", default=["release", "sigterm", "kill"],
                    help="killall (daemon and keeper SIGKILLed together) leaves the VIP up "
                    "until the restart's reconcile: the check must catch it")
    ap.add_argument("--cs-handovers", type=int, default=10, help="corosync: releases")
    ap.add_argument("--cs-kills", type=int, default=2, help="corosync: power pulls of the master")
    ap.add_argument("--cs-sizes", type=int, nargs="+", default=[0, 100, 1000],
                    help="corosync: resources for the standby CPU windows")
    ap.add_argument("--faults", type=int, default=200, help="chaos: faults to inject")
    ap.add_argument("--seed", type=int, default=None, help="chaos: the schedule's seed (default: random, "
                    "printed first)")
    ap.add_argument("--chaos-resources", type=int, default=20, help="chaos: resources per daemon")
    ap.add_argument("--budget-min", type=float, default=0,
                    help="chaos: stop injecting after this many minutes (0: no limit); the verdict covers "
                         "what was injected, and `--from` goes on from there")
    ap.add_argument("--from", dest="chaos_from", type=int, default=0,
                    help="chaos: start at this step of the --seed's schedule, on a fresh cluster, and merge "
                         "the verdict into benches/results/chaos.json's segments before it")
    args = ap.parse_args()
    if args.parts != ["report"]:
        if os.geteuid() != 0:
            sys.exit("benches/run.py needs root (network namespaces, VIPs)")
        if set(args.parts) - {"cluster", "view", "chaos", "corosync", "report"} and not os.access(bin_path(), os.X_OK):
            sys.exit(f"{bin_path()} missing: run `{STATIC_BUILD}` first")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        os.makedirs(WORK, mode=0o700)
        os.makedirs(RESULTS, exist_ok=True)
    rc = 0
    try:
        for part in args.parts:
            if part == "report":
                continue
            fn = {"handover": bench_handover, "footprint": bench_footprint,
                  "scale": bench_scale, "soak": soak,
                  "cluster": lambda a: cluster.bench(a, stats), "chaos": chaos,
                  "view": cluster.view_bench,
                  "corosync": bench_corosync}[part]
            start = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            r = fn(args)
            if part in ("soak", "chaos"):
                rc = rc or (0 if r["violations"] == [] else 1)
            with open("/proc/loadavg") as fh:
                r.update(start, load_end=" ".join(fh.read().split()[:3]))
            with open(os.path.join(RESULTS, f"{part}.json"), "w") as fh:
                json.dump(r, fh, indent=1)
    finally:
        cleanup()
    write_report()
    return rc


if __name__ == "__main__":
    sys.exit(main())
