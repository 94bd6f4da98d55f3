#!/usr/bin/env python3
"""harness.py - N-node OCFS2 o2cb/dlmfs VM cluster for dlm-electd tests.

Python 3 stdlib only.  Needs root (network namespace, taps) and the artefacts
of build.sh.  Library use:

    import harness
    with harness.up(2, dead_threshold=5) as c:
        rc, out, err = c.exec(0, "dlmtry -t 0 /dlm/dom/L")
        c.kill(1); c.start(1); c.netcut(0); c.netrestore(0)
        ev = c.wait_event(r"^acquire web$", timeout=60)
        c.events()                # [Event(t_ms, node, text), ...]

Each node is a QEMU VM (TCG unless real KVM is available) running the stock
Debian 6.1 kernel from an initramfs (guest/init).  Per node:
  * tap<N> on bridge br0 inside a private netns "dlmec-<tag>"; guest address
    198.18.77.(10+N)/24.  No guest packet can leave that namespace.
  * /dev/vda: the shared zeroed raw heartbeat disk (global heartbeat).
  * /host: the run dir's share/ over 9p, read-write (put /host/dlm-electd there).
  * virtio-serial "ctl": command agent (guest/agent), used by exec().
  * virtio console "events" (/dev/virtio-ports/events -> /dev/hvc0): every line a guest
    writes is stamped with the HOST CLOCK_MONOTONIC in ms on arrival and
    appended to <run>/events.log as "<ms> node<N> <line>", in arrival order.
    Lines starting with "@" are control lines (@ready from the guest;
    @kill/@start/@netcut/@netrestore/@netsplit/@netjoin/@freeze/@thaw/@exit
    written by the harness itself).

CLI: harness.py up N [opts] | exec NODE [--timeout S] -- CMD | kill|start|
netcut|netrestore|o2cb-start NODE | netsplit NODE... | netjoin | events |
status | down.  `up` stays in the foreground owning the cluster (Ctrl-C tears
down); the other subcommands talk to it over <run>/rpc.sock.  Environment
knobs are listed in README.md.
"""
import argparse
import atexit
import base64
import collections
import ctypes
import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("DLM_ELECTD_CLUSTER_CACHE", "/var/tmp/dlm-electd-cluster")
RUN = os.environ.get("DLM_ELECTD_CLUSTER_RUN", os.path.join(CACHE, "run"))
MEM_MB = int(os.environ.get("DLM_ELECTD_CLUSTER_MEM", "384"))
BOOT_TIMEOUT = float(os.environ.get("DLM_ELECTD_CLUSTER_BOOT_TIMEOUT", "120"))
NET = "198.18.77"

Event = collections.namedtuple("Event", "t_ms node text")


class ClusterError(Exception):
    pass


class NodeDown(ClusterError):
    pass


class ExecTimeout(ClusterError, TimeoutError):
    pass


def now_ms():
    return time.monotonic() * 1000.0  # CLOCK_MONOTONIC on Linux


def _tag(run):
    # Ties netns and QEMU names to one run dir, so a stale run is findable.
    return hashlib.sha1(os.path.abspath(run).encode()).hexdigest()[:8]


def _sh(*args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise ClusterError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def pick_accel():
    a = os.environ.get("DLM_ELECTD_CLUSTER_ACCEL", "auto")
    if a != "auto":
        return a
    # /dev/kvm may be a PVM device (kvm_pvm) that cannot run a stock kernel at
    # speed; only trust it with a real hardware-virt module loaded.
    hw = os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")
    return "kvm" if hw and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def _qemu_pids(tag):
    """PIDs of QEMU processes belonging to run-dir tag (found by -name marker)."""
    marker = ("dlmec-%s-node" % tag).encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if marker in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def _pid_alive(pid):
    # A zombie (killed, parent not reaping yet) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _is_harness(pid):
    # owner.pid may name a recycled pid: only a python process counts.
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"python" in f.read() and _pid_alive(pid)
    except OSError:
        return False


def _wait_gone(pid, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)  # not our child: no wait() possible, so poll
    return False


def cleanup_stale(run=RUN, kill_owner=False):
    """Remove QEMUs and the netns left by a crashed run on this run dir.

    A live owner (another harness process) is an error unless kill_owner is
    set, in which case it gets SIGTERM (it then tears down itself)."""
    tag = _tag(run)
    owner_file = os.path.join(run, "owner.pid")
    found = []
    try:
        owner = int(open(owner_file).read())
    except (OSError, ValueError):
        owner = None
    if owner and owner != os.getpid():
        alive = _is_harness(owner)
        if alive and not kill_owner:
            raise ClusterError("cluster on %s is owned by live pid %d (harness.py down)" % (run, owner))
        if alive:
            found.append("owner pid %d" % owner)
            os.kill(owner, signal.SIGTERM)
            if not _wait_gone(owner, 30):
                os.kill(owner, signal.SIGKILL)
    qemus = []
    for pid in _qemu_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
            qemus.append(pid)
        except ProcessLookupError:
            pass
    for pid in qemus:
        _wait_gone(pid)
    found += ["qemu pid %d" % p for p in qemus]
    ns = "dlmec-" + tag
    if ns in _sh("ip", "netns", "list", check=False).stdout.split():
        _sh("ip", "netns", "del", ns, check=False)
        found.append(ns)
    try:
        os.unlink(owner_file)
    except OSError:
        pass
    return found


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(netns_path, pdeathsig):
    # Runs in the forked child before exec: enter the cluster netns so the tap
    # lives there, and die with the harness if the spawning thread dies.
    def fn():
        fd = os.open(netns_path, os.O_RDONLY)
        if _libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            os._exit(111)
        os.close(fd)
        if pdeathsig:
            _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        os.setsid()  # keep terminal Ctrl-C away from QEMU; we kill it ourselves
    return fn


class _Node:
    def __init__(self, idx):
        self.idx = idx
        self.proc = None
        self.ctl = None
        self.ev = None
        self.ready = threading.Event()
        self.ready_line = None
        self.t_launch = None
        self.boot_s = None
        self.send_lock = threading.Lock()
        self.killed = False


class Cluster:
    """A running cluster; create with up().  Thread-safe: exec() may be called
    from several threads at once, also on the same node."""

    def __init__(self, n, dead_threshold=5, idle_ms=5000, keepalive_ms=1000,
                 reconnect_ms=1000, autostart=True, run=RUN, mem_mb=MEM_MB):
        self.n = n
        self.knobs = dict(dead=dead_threshold, idle=idle_ms, keepalive=keepalive_ms,
                          reconnect=reconnect_ms)
        self.autostart = autostart
        self.run = os.path.abspath(run)
        self.share = os.path.join(self.run, "share")
        self.events_path = os.path.join(self.run, "events.log")
        self.tag = _tag(self.run)
        self.netns = "dlmec-" + self.tag
        self.mem_mb = mem_mb
        self.accel = pick_accel()
        self.nodes = [_Node(i) for i in range(n)]
        self._cond = threading.Condition()  # guards _events, _replies
        self._events = []
        self._replies = {}
        self._evfile = None
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending_reg = []
        self._io = None
        self._rpc = None
        self._closed = False
        self._owner = False

    # ---- lifecycle -------------------------------------------------------
    def _up(self, timeout):
        for f in ("vmlinuz", "initramfs.gz"):
            if not os.path.exists(os.path.join(CACHE, f)):
                raise ClusterError("%s/%s missing: run tests/cluster/build.sh" % (CACHE, f))
        # The guest side (agent, init) must speak this harness's protocol.
        h = hashlib.sha256()
        gdir = os.path.join(HERE, "guest")
        for f in sorted(os.listdir(gdir)):
            with open(os.path.join(gdir, f), "rb") as fh:
                h.update(fh.read())
        try:
            built = open(os.path.join(CACHE, "guest-hash")).read().strip()
        except OSError:
            built = None
        if built != h.hexdigest()[:16]:
            raise ClusterError("initramfs in %s is not built from %s: run tests/cluster/build.sh"
                               % (CACHE, gdir))
        os.makedirs(self.share, exist_ok=True)
        gone = cleanup_stale(self.run)
        if gone:
            print("harness: removed stale %s" % gone, file=sys.stderr)
        with open(os.path.join(self.run, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self._owner = True  # from here on down() may clean the run dir
        _LIVE.add(self)
        for f in os.listdir(self.run):
            if f.startswith("node") or f in ("events.log", "rpc.sock"):
                os.unlink(os.path.join(self.run, f))
        # Shared heartbeat disk: raw and zeroed, no mkfs needed for dlmfs use.
        with open(os.path.join(self.run, "hb.img"), "wb") as f:
            f.truncate(8 << 20)
        self._evfile = open(self.events_path, "a", buffering=1)
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.netns, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.netns, "link", "set", "br0", "up")
        for i in range(self.n):
            _sh("ip", "-n", self.netns, "tuntap", "add", "dev", "tap%d" % i, "mode", "tap")
            _sh("ip", "-n", self.netns, "link", "set", "tap%d" % i, "master", "br0", "up")
        self._io = threading.Thread(target=self._io_loop, name="harness-io", daemon=True)
        self._io.start()
        for node in self.nodes:  # all launched first: boots run in parallel
            self._launch(node)
        self._wait_ready(self.nodes, timeout)
        return self

    def _launch(self, node, autostart=None):
        i = node.idx
        autostart = self.autostart if autostart is None else autostart
        for suffix in (".ctl", ".ev"):
            p = os.path.join(self.run, "node%d%s" % (i, suffix))
            if os.path.exists(p):
                os.unlink(p)
        k = self.knobs
        # oops=panic: an oops leaves a node neither working nor fenced
        # (o2cb fences only by the node's own hand); panicking makes it a
        # dead node, as docs/dlmfs.md asks of production nodes
        # (kernel.panic_on_oops). Seen: o2quo_conn_up's BUG after a thaw.
        append = ("console=ttyS0 panic=-1 oops=panic dc.node=%d dc.nnodes=%d dc.net=%s dc.autostart=%d "
                  "dc.dead=%d dc.idle=%d dc.keepalive=%d dc.reconnect=%d %s" % (
                      i, self.n, NET, int(autostart), k["dead"], k["idle"], k["keepalive"],
                      k["reconnect"], os.environ.get("DLM_ELECTD_CLUSTER_APPEND", "")))
        if self.accel == "kvm":
            accel = ["-accel", "kvm", "-cpu", "host"]
        else:
            accel = ["-accel", "tcg", "-cpu", "max"]
        r = lambda name: os.path.join(self.run, name)
        cmd = ["qemu-system-x86_64"] + accel + [
            "-m", str(self.mem_mb), "-smp", "1", "-M", "pc",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-name", "dlmec-%s-node%d" % (self.tag, i),
            "-kernel", os.path.join(CACHE, "vmlinuz"),
            "-initrd", os.path.join(CACHE, "initramfs.gz"), "-append", append,
            "-serial", "file:" + r("node%d.console" % i),
            # cache=none + no image locking + share-rw: all VMs write their own
            # heartbeat block of one raw file, like a shared LUN.
            "-drive", "file=%s,format=raw,if=none,id=hb,cache=none,file.locking=off" % r("hb.img"),
            "-device", "virtio-blk-pci,drive=hb,share-rw=on",
            "-netdev", "tap,id=n0,ifname=tap%d,script=no,downscript=no" % i,
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:dc:00:%02x" % (16 + i),
            "-device", "virtio-serial-pci",
            "-chardev", "socket,id=ctl,path=%s,server=on,wait=off" % r("node%d.ctl" % i),
            "-device", "virtserialport,chardev=ctl,name=ctl",
            "-chardev", "socket,id=ev,path=%s,server=on,wait=off" % r("node%d.ev" % i),
            # a console port (guest tty /dev/hvc0): many writers may open it
            "-device", "virtconsole,chardev=ev,name=events",
            "-virtfs", "local,path=%s,mount_tag=host,security_model=none,id=fs0" % self.share,
        ]
        node.ready.clear()
        node.ready_line = None
        node.killed = False
        log = open(r("node%d.qemu.log" % i), "ab")
        pdeath = threading.current_thread() is threading.main_thread()
        node.t_launch = now_ms()
        node.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=_child_setup("/run/netns/" + self.netns, pdeath))
        log.close()
        # QEMU creates its listening sockets before the guest runs; the guest's
        # writes wait (not lost) until we are connected.
        node.ev = self._connect(node, r("node%d.ev" % i))
        node.ctl = self._connect(node, r("node%d.ctl" % i))
        self._register(node.ev, (node, "ev", bytearray()))
        self._register(node.ctl, (node, "ctl", bytearray()))

    def _connect(self, node, path):
        end = time.monotonic() + 30
        while True:
            if node.proc.poll() is not None:
                raise NodeDown("node%d: QEMU exited rc=%s, see %s" % (
                    node.idx, node.proc.returncode, self._qemu_log(node.idx)))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise ClusterError("node%d: no QEMU socket %s" % (node.idx, path))
                time.sleep(0.02)  # socket not created yet; nothing to wait on

    def _qemu_log(self, i):
        return os.path.join(self.run, "node%d.qemu.log" % i)

    def _wait_ready(self, nodes, timeout):
        end = time.monotonic() + timeout
        for node in nodes:
            while not node.ready.wait(min(0.5, max(0.0, end - time.monotonic()))):
                if node.proc.poll() is not None:
                    raise NodeDown("node%d died during boot (rc=%s): %s" % (
                        node.idx, node.proc.returncode, self.console_tail(node.idx)))
                if time.monotonic() >= end:
                    raise ClusterError("node%d not ready after %.0fs: %s" % (
                        node.idx, timeout, self.console_tail(node.idx)))
            if "o2cb=failed" in node.ready_line:
                raise ClusterError("node%d: o2cb-up failed: %s" % (node.idx, self.console_tail(node.idx)))

    def down(self):
        """Kill every QEMU, delete the netns. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes:
            if node.proc and node.proc.poll() is None:
                node.killed = True
                node.proc.kill()
        for node in self.nodes:
            if node.proc:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        try:
            os.write(self._wake_w, b"q")
        except OSError:
            pass
        if self._io:
            self._io.join(5)
        if self._rpc:
            self._rpc.close()
        try:
            if self._owner:
                cleanup_stale(self.run)
        except Exception as e:  # cleanup must not mask the test's own error
            print("harness: cleanup: %s" % e, file=sys.stderr)
        if self._evfile:
            self._evfile.close()
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    # ---- I/O thread: events + ctl replies ---------------------------------
    def _register(self, sock, data):
        with self._cond:
            self._pending_reg.append((sock, data))
        os.write(self._wake_w, b"r")

    def _io_loop(self):
        # One thread drains every socket, so a guest write never blocks for
        # long, and events get one consistent host timestamp order.
        while True:
            for key, _ in self._sel.select():
                if key.data is None:
                    if b"q" in os.read(self._wake_r, 4096):
                        return
                    with self._cond:
                        regs, self._pending_reg = self._pending_reg, []
                    for sock, data in regs:
                        self._sel.register(sock, selectors.EVENT_READ, data)
                    continue
                node, kind, buf = key.data
                try:
                    chunk = key.fileobj.recv(1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    self._sel.unregister(key.fileobj)
                    key.fileobj.close()
                    self._on_eof(node, kind, key.fileobj)
                    continue
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl]).decode("utf-8", "replace").rstrip("\r")
                    del buf[:nl + 1]
                    if kind == "ev":
                        self._add_event(node.idx, line)
                    else:
                        self._on_reply(line)

    def _add_event(self, idx, text, t=None):
        with self._cond:
            ev = Event(now_ms() if t is None else t, idx, text)
            self._events.append(ev)
            if self._evfile and not self._evfile.closed:
                self._evfile.write("%.3f node%d %s\n" % ev)
            if text.startswith("@ready"):
                node = self.nodes[idx]
                node.ready_line = text
                node.boot_s = (ev.t_ms - node.t_launch) / 1000.0
                node.ready.set()
            self._cond.notify_all()

    def _on_reply(self, line):
        p = line.split(" ")
        if len(p) != 5 or p[0] != "R":
            return  # noise, e.g. a partial line from a previous connection
        res = (int(p[2]), base64.b64decode(p[3]).decode("utf-8", "replace"),
               base64.b64decode(p[4]).decode("utf-8", "replace"))
        with self._cond:
            self._replies[p[1]] = res
            self._cond.notify_all()

    def _on_eof(self, node, kind, sock):
        if kind != "ev" or sock is not node.ev:
            with self._cond:
                self._cond.notify_all()  # wake exec() waiters: node is gone
            return
        # QEMU closed: power pull by us, or the guest exited (panic/fence).
        if node.killed:
            with self._cond:
                self._cond.notify_all()
            return
        try:
            rc = node.proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        self._add_event(node.idx, "@exit rc=%s (not killed by harness)" % rc)

    # ---- public API --------------------------------------------------------
    def alive(self, node):
        p = self.nodes[node].proc
        return p is not None and p.poll() is None

    def exec(self, node, cmd, timeout=60):
        """Run cmd with sh in the guest; returns (rc, stdout, stderr).
        Raises ExecTimeout (the command keeps running in the guest) or NodeDown.
        Background: "cmd >/tmp/x 2>&1 &" returns at once."""
        nd = self.nodes[node]
        if not self.alive(node) or nd.ctl is None:
            raise NodeDown("node%d is not running" % node)
        nonce = secrets.token_hex(8)
        line = "%s %s\n" % (nonce, base64.b64encode(cmd.encode()).decode())
        sock = nd.ctl
        with nd.send_lock:
            try:
                sock.sendall(line.encode())
            except OSError as e:
                raise NodeDown("node%d: %s" % (node, e))
        end = time.monotonic() + timeout
        with self._cond:
            while nonce not in self._replies:
                if not self.alive(node) or sock.fileno() < 0:
                    raise NodeDown("node%d went down during exec of %r" % (node, cmd))
                left = end - time.monotonic()
                if left <= 0:
                    raise ExecTimeout("node%d: %r did not finish in %ss" % (node, cmd, timeout))
                self._cond.wait(min(left, 1.0))
            return self._replies.pop(nonce)

    def check(self, node, cmd, timeout=60):
        """exec() that raises on a non-zero exit; returns stdout."""
        rc, out, err = self.exec(node, cmd, timeout)
        if rc != 0:
            raise ClusterError("node%d: %r -> rc %d\nstdout: %s\nstderr: %s" % (node, cmd, rc, out, err))
        return out

    def kill(self, node):
        """SIGKILL the node's QEMU: a power pull.  Logs @kill at that instant."""
        nd = self.nodes[node]
        if not self.alive(node):
            raise NodeDown("node%d is not running" % node)
        nd.killed = True
        self._add_event(node, "@kill")
        nd.proc.kill()
        nd.proc.wait(10)

    def freeze(self, node):
        """SIGSTOP the node's QEMU: a VM paused by its hypervisor, a host
        stalled. Logs @freeze at that instant."""
        if not self.alive(node):
            raise NodeDown("node%d is not running" % node)
        self._add_event(node, "@freeze")
        self.nodes[node].proc.send_signal(signal.SIGSTOP)

    def thaw(self, node):
        """SIGCONT a frozen node's QEMU. Logs @thaw at that instant and
        returns its host time (ms)."""
        t = now_ms()
        self._add_event(node, "@thaw", t)
        self.nodes[node].proc.send_signal(signal.SIGCONT)
        return t

    def start(self, node, timeout=BOOT_TIMEOUT, autostart=None):
        """Boot a (killed) node again into the running cluster; waits for ready."""
        nd = self.nodes[node]
        if self.alive(node):
            raise ClusterError("node%d is running" % node)
        self._add_event(node, "@start")
        self._launch(nd, autostart)
        self._wait_ready([nd], timeout)
        return nd.boot_s

    def netcut(self, node):
        """Take the node's tap down on the bridge: it is isolated (disk stays)."""
        _sh("ip", "-n", self.netns, "link", "set", "tap%d" % node, "down")
        self._add_event(node, "@netcut")

    def netrestore(self, node):
        _sh("ip", "-n", self.netns, "link", "set", "tap%d" % node, "up")
        self._add_event(node, "@netrestore")

    def netsplit(self, *nodes):
        """Cut the given nodes off from each other, both directions, while
        each still reaches every node not given (bridge port isolation: the
        isolated ports form one group, so one split at a time). Logs
        "@netsplit A,B" on each of them."""
        tag = ",".join(str(n) for n in nodes)
        for n in nodes:
            _sh("ip", "netns", "exec", self.netns, "bridge", "link", "set", "dev", "tap%d" % n,
                "isolated", "on")
        for n in nodes:
            self._add_event(n, "@netsplit %s" % tag)

    def netjoin(self):
        """Undo netsplit(): every port talks to every port again. Logs
        "@netjoin" on the nodes that were split."""
        for i in range(self.n):
            out = _sh("ip", "netns", "exec", self.netns, "bridge", "-d", "link", "show", "dev",
                      "tap%d" % i, check=False).stdout
            if "isolated on" in out:
                _sh("ip", "netns", "exec", self.netns, "bridge", "link", "set", "dev", "tap%d" % i,
                    "isolated", "off")
                self._add_event(i, "@netjoin")

    def o2cb_start(self, node, timeout=120):
        """Configure o2cb + heartbeat and mount /dlm on a node booted with
        autostart=False (blocks ~10-20 s for the heartbeat region)."""
        return self.check(node, "o2cb-up", timeout)

    def events(self, since=0, node=None, control=True):
        """Events (t_ms, node, text) from index `since`; see mark()."""
        with self._cond:
            evs = self._events[since:]
        return [e for e in evs if (node is None or e.node == node)
                and (control or not e.text.startswith("@"))]

    def mark(self):
        """Index to pass as since= to events()/wait_event()."""
        with self._cond:
            return len(self._events)

    def wait_event(self, pattern, node=None, since=0, timeout=60):
        """Wait for the first event at index >= since whose text matches the
        regex (re.search); returns it or raises TimeoutError."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self._events):
                    e = self._events[i]
                    i += 1
                    if (node is None or e.node == node) and rx.search(e.text):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no event /%s/ (node=%s) in %ss" % (pattern, node, timeout))
                self._cond.wait(left)

    def console_tail(self, node, n=30):
        try:
            with open(os.path.join(self.run, "node%d.console" % node), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no console log)"

    def boot_times(self):
        return [nd.boot_s for nd in self.nodes]

    def status(self):
        return {"run": self.run, "netns": self.netns, "accel": self.accel, "share": self.share,
                "events": self.events_path, "knobs": self.knobs,
                "nodes": [{"node": nd.idx, "alive": self.alive(nd.idx),
                           "pid": nd.proc.pid if nd.proc else None, "boot_s": nd.boot_s}
                          for nd in self.nodes]}

    # ---- RPC for the CLI ---------------------------------------------------
    def serve_rpc(self):
        path = os.path.join(self.run, "rpc.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(8)
        self._rpc = srv
        ops = {"exec": self.exec, "kill": self.kill, "start": self.start, "netcut": self.netcut,
               "netrestore": self.netrestore, "netsplit": self.netsplit, "netjoin": self.netjoin,
               "o2cb_start": self.o2cb_start,
               "status": self.status}

        def handle(conn):
            with conn:
                req = json.loads(conn.makefile().readline())
                try:
                    resp = {"ok": True, "result": ops[req["op"]](*req.get("args", []))}
                except Exception as e:
                    resp = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
                conn.sendall((json.dumps(resp) + "\n").encode())

        def loop():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, name="harness-rpc", daemon=True).start()


_LIVE = set()


@atexit.register
def _down_all():
    for c in list(_LIVE):
        c.down()


def _on_signal(signum, frame):
    # Unwind normally (finally blocks, context managers, atexit) so teardown runs.
    raise SystemExit(128 + signum)


def install_signal_handlers():
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)
        # SIGINT already raises KeyboardInterrupt, which unwinds the same way.


def up(n, dead_threshold=5, idle_ms=5000, keepalive_ms=1000, reconnect_ms=1000,
       autostart=True, timeout=BOOT_TIMEOUT, run=RUN):
    """Boot an n-node cluster (parallel) and wait until every node is ready.
    Use as a context manager, or call .down(); atexit/SIGTERM also tear down."""
    if os.geteuid() != 0:
        raise ClusterError("needs root (network namespace + taps)")
    if shutil.which("qemu-system-x86_64") is None:
        raise ClusterError("qemu-system-x86_64 missing: run tests/cluster/build.sh")
    install_signal_handlers()
    c = Cluster(n, dead_threshold, idle_ms, keepalive_ms, reconnect_ms, autostart, run)
    try:
        return c._up(timeout)
    except BaseException:
        c.down()
        raise


# ---- CLI ---------------------------------------------------------------------
def _rpc(op, *args):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(os.path.join(RUN, "rpc.sock"))
    except OSError:
        sys.exit("harness: no running cluster (start one with: harness.py up N)")
    s.sendall((json.dumps({"op": op, "args": list(args)}) + "\n").encode())
    resp = json.loads(s.makefile().readline())
    if not resp["ok"]:
        sys.exit("harness: " + resp["error"])
    return resp["result"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="boot N nodes and hold them until Ctrl-C/SIGTERM/down")
    u.add_argument("n", type=int, nargs="?", default=2)
    u.add_argument("--dead", type=int, default=5)
    u.add_argument("--idle", type=int, default=5000)
    u.add_argument("--keepalive", type=int, default=1000)
    u.add_argument("--reconnect", type=int, default=1000)
    u.add_argument("--no-autostart", action="store_true")
    e = sub.add_parser("exec", help="run a shell command in a node")
    e.add_argument("node", type=int)
    e.add_argument("--timeout", type=float, default=60)
    e.add_argument("command", nargs=argparse.REMAINDER)
    for c in ("kill", "start", "netcut", "netrestore", "o2cb-start"):
        sub.add_parser(c).add_argument("node", type=int)
    sub.add_parser("netsplit", help="cut these nodes off from each other only").add_argument(
        "nodes", type=int, nargs="+")
    sub.add_parser("netjoin", help="undo netsplit")
    sub.add_parser("events")
    sub.add_parser("status")
    sub.add_parser("down", help="tear down the cluster (also a stale one)")
    a = ap.parse_args(argv)

    if a.cmd == "up":
        c = up(a.n, a.dead, a.idle, a.keepalive, a.reconnect, not a.no_autostart)
        with c:
            c.serve_rpc()
            print("harness: %d nodes up, boot %s s; share=%s events=%s; Ctrl-C or "
                  "'harness.py down' to stop" % (c.n, ["%.1f" % b for b in c.boot_times()],
                                                 c.share, c.events_path), flush=True)
            threading.Event().wait()  # until a signal unwinds us
    elif a.cmd == "exec":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        rc, out, err = _rpc("exec", a.node, " ".join(cmd), a.timeout)
        sys.stdout.write(out)
        sys.stderr.write(err)
        return rc
    elif a.cmd in ("kill", "start", "netcut", "netrestore", "o2cb-start"):
        r = _rpc(a.cmd.replace("-", "_"), a.node)
        if r is not None:
            print(r)
    elif a.cmd == "netsplit":
        _rpc("netsplit", *a.nodes)
    elif a.cmd == "netjoin":
        _rpc("netjoin")
    elif a.cmd == "events":
        with open(os.path.join(RUN, "events.log")) as f:
            sys.stdout.write(f.read())
    elif a.cmd == "status":
        print(json.dumps(_rpc("status"), indent=1))
    elif a.cmd == "down":
        print("harness: removed %s" % (cleanup_stale(RUN, kill_owner=True) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
