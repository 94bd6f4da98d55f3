#!/usr/bin/env python3
"""harness.py - two (or more) Debian 12 VMs with systemd for dlm-electd's system tier.

Python 3 stdlib only; needs root (network namespace, taps) and the image from
build-image.sh.  Each node is a QEMU VM (TCG unless real KVM is available)
booting the image's own kernel, with:
  * a copy-on-write qcow2 overlay of base.raw (thrown away by down());
  * tap<N> on bridge br0 inside a private netns "dlmsys-<tag>": guest eth0 is
    198.18.88.N/24 and no guest packet can leave that namespace;
  * a shared zeroed raw disk (/dev/disk/by-id/virtio-o2cb-hb) for o2cb's
    global heartbeat, and another (/dev/disk/by-id/virtio-ocfs2-data) for a
    data volume;
  * the QEMU guest agent on a virtio-serial port: sh() gives stdout, stderr
    and the real exit code, push() copies files in;
  * the host share (read-only 9p, /mnt/host in the guest);
  * a fence channel, virtio-serial port org.dlm-electd.fence: the image's
    fence_harness agent (dlm_controld's fence_all in the corosync tier) asks
    "off K" there and the host powers node K off (kills its QEMU) before it
    answers "ok K", as fence_virt's serial mode does on a real hypervisor;
  * virtio console hvc0, the event console: every line a guest writes there is
    stamped with the HOST monotonic clock on arrival, so lines of all nodes
    share one clock (the guests' clocks may differ).  The image's lab-events
    service writes every address change; test units write markers.

    import harness
    with harness.up(2) as c:              # boots in parallel, waits for systemd
        rc, out, err = c.sh(1, "systemctl is-active o2cb")
        c.wait_event(r"^unit start", node=2, since=c.mark())
"""
import atexit
import base64
import collections
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("DLM_ELECTD_SYSTEM_CACHE", "/var/tmp/dlm-electd-system")
# One cluster per run dir (netns and QEMU names derive from it): set another
# to run beside someone else's run.
RUN = os.environ.get("DLM_ELECTD_SYSTEM_RUN") or os.path.join(CACHE, "run")
MEM_MB = int(os.environ.get("DLM_ELECTD_SYSTEM_MEM", "768"))
NET = "198.18.88"
HB_SERIAL = "o2cb-hb"
# A second shared disk for a data volume (issue 25's OCFS2 scenario formats it).
DATA_SERIAL = "ocfs2-data"
GUEST_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
             "DEBIAN_FRONTEND=noninteractive"]

Event = collections.namedtuple("Event", "t node text")  # t: host monotonic seconds


class HarnessError(Exception):
    pass


def _sh(*args, check=True):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise HarnessError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def _tag(run):
    # Ties netns and QEMU names to one run dir, so leftovers of a crash are findable.
    return hashlib.sha1(os.path.abspath(run).encode()).hexdigest()[:8]


def pick_accel():
    # /dev/kvm may be kvm_pvm, which hangs a stock kernel: trust only real hardware KVM.
    hw = os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")
    return "kvm" if hw and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def cleanup_stale(run=RUN):
    """Kill QEMUs and delete the netns a crashed run on this run dir left behind."""
    tag = _tag(run)
    marker = ("dlmsys-%s-" % tag).encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"qemu-system") and marker in cmd:
            try:
                os.kill(int(d), signal.SIGKILL)
                found.append("qemu pid %s" % d)
            except ProcessLookupError:
                pass
    ns = "dlmsys-" + tag
    if ns in _sh("ip", "netns", "list", check=False).stdout.split():
        _sh("ip", "netns", "del", ns, check=False)
        found.append(ns)
    return found


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(netns_path):
    # In the forked child before exec: enter the netns (the tap lives there), die
    # with the harness (PR_SET_PDEATHSIG), and keep the terminal's Ctrl-C away.
    def fn():
        fd = os.open(netns_path, os.O_RDONLY)
        if _libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            os._exit(111)
        os.close(fd)
        _libc.prctl(1, signal.SIGKILL)
        os.setsid()
    return fn


class Agent:
    """QEMU guest agent client.  One connection per node, serialised by a lock;
    resynchronises (guest-sync-delimited) after any error, so it survives a
    guest reboot or an agent restart."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.buf = b""
        self.lock = threading.Lock()

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def _readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("guest agent: no reply")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("guest agent: no reply")
            if not data:
                raise ConnectionError("guest agent socket closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def sync(self, total=60.0):
        # 0xFF resets the agent's parser; the reply to our random id follows a 0xFF,
        # so stale bytes of an earlier client are skipped.
        end = time.monotonic() + total
        last = None
        while time.monotonic() < end:
            try:
                self.close()
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.buf = b""
                self.sock.connect(self.path)
                sid = random.randint(1, 2**31)
                req = {"execute": "guest-sync-delimited", "arguments": {"id": sid}}
                self.sock.sendall(b"\xff" + json.dumps(req).encode() + b"\n")
                dl = min(end, time.monotonic() + 3)
                while True:
                    line = self._readline(dl)
                    if b"\xff" in line:
                        line = line.rsplit(b"\xff", 1)[1]
                    try:
                        if json.loads(line).get("return") == sid:
                            return
                    except ValueError:
                        continue
            except (OSError, TimeoutError, ConnectionError) as e:
                last = e
                time.sleep(0.5)  # agent not up yet: nothing to wait on but time
        self.close()
        raise TimeoutError("guest agent %s did not answer in %ds (%s)" % (self.path, total, last))

    def _call(self, cmd, args=None, timeout=30.0):
        if self.sock is None:
            self.sync()
        req = {"execute": cmd}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        dl = time.monotonic() + timeout
        while True:
            msg = json.loads(self._readline(dl))
            if "error" in msg:
                raise HarnessError("%s: %s" % (cmd, msg["error"]))
            if "return" in msg:
                return msg["return"]

    def call(self, cmd, args=None, timeout=30.0):
        with self.lock:
            try:
                return self._call(cmd, args, timeout)
            except (OSError, TimeoutError, ConnectionError, ValueError):
                self.sync()  # one retry on a fresh, synchronised connection
                return self._call(cmd, args, timeout)

    def sh(self, script, timeout=120.0):
        pid = self.call("guest-exec", {"path": "/bin/sh", "arg": ["-c", script],
                                       "env": GUEST_ENV, "capture-output": True})["pid"]
        end = time.monotonic() + timeout
        delay = 0.02
        while True:
            st = self.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                code = st.get("exitcode")
                if code is None:
                    code = 128 + st.get("signal", 0)
                dec = lambda k: base64.b64decode(st.get(k, "")).decode("utf-8", "replace")
                return code, dec("out-data"), dec("err-data")
            if time.monotonic() > end:
                raise TimeoutError("guest command did not finish in %ss: %r" % (timeout, script))
            time.sleep(delay)  # the agent has no "wait for exit" call: poll, backing off
            delay = min(delay * 2, 0.25)

    def push(self, data, remote, mode=None):
        h = self.call("guest-file-open", {"path": remote, "mode": "w"})
        try:
            for i in range(0, max(len(data), 1), 48 * 1024):
                self.call("guest-file-write", {"handle": h, "buf-b64":
                                               base64.b64encode(data[i:i + 48 * 1024]).decode()})
        finally:
            self.call("guest-file-close", {"handle": h})
        if mode:
            # An int is an octal mode (0o644): chmod wants its digits.
            mode = "%o" % mode if isinstance(mode, int) else mode
            rc, _, err = self.sh("chmod %s '%s'" % (mode, remote))
            if rc:
                raise HarnessError(err)


class Node:
    def __init__(self, idx, name):
        self.idx, self.name = idx, name
        self.proc = None
        self.agent = None
        self.ev = None
        self.reader = None
        self.fence = None


class Cluster:
    """Nodes are numbered from 1 (node1 = 198.18.88.1)."""

    def __init__(self, n, image, run=RUN, mem_mb=MEM_MB):
        self.n = n
        self.image = image
        self.run = os.path.abspath(run)
        self.share = os.path.join(self.run, "share")
        self.tag = _tag(self.run)
        self.netns = "dlmsys-" + self.tag
        self.mem_mb = mem_mb
        self.accel = pick_accel()
        self.nodes = {i: Node(i, "node%d" % i) for i in range(1, n + 1)}
        self._cond = threading.Condition()
        self._events = []
        self._evlog = None
        self._closed = False
        self._power = threading.Lock()  # one fence or power change at a time
        # Seconds the fence device takes before it powers a node off (a
        # scenario sets it to see what a node does before the fence lands).
        self.fence_delay = 0
        self._arp = None  # (process, lines) of the ARP observer, once started

    # ---- lifecycle --------------------------------------------------------
    def _up(self, timeout):
        gone = cleanup_stale(self.run)
        if gone:
            print("harness: removed leftovers of an earlier run: %s" % gone, file=sys.stderr)
        _LIVE.add(self)
        if os.path.isdir(self.run):
            shutil.rmtree(self.run)
        os.makedirs(self.share)
        os.chmod(self.share, 0o755)
        self._evlog = open(os.path.join(self.run, "events.log"), "a", buffering=1)
        with open(os.path.join(self.run, "hb.raw"), "wb") as f:
            f.truncate(1 << 30)  # sparse; mkfs.ocfs2 formats it from node1
        with open(os.path.join(self.run, "data.raw"), "wb") as f:
            f.truncate(1 << 30)  # sparse; formatted only by the scenario that uses it
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.netns, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.netns, "link", "set", "br0", "up")
        for nd in self.nodes.values():
            tap = "tap%d" % nd.idx
            _sh("ip", "-n", self.netns, "tuntap", "add", "dev", tap, "mode", "tap")
            _sh("ip", "-n", self.netns, "link", "set", tap, "master", "br0", "up")
        t0 = time.monotonic()
        for nd in self.nodes.values():  # all launched first: the boots overlap
            self._launch(nd)
        for nd in self.nodes.values():
            nd.agent.sync(total=timeout)
        for nd in self.nodes.values():
            left = max(10, timeout - (time.monotonic() - t0))
            rc, out, _ = self.sh(nd.idx, "systemctl is-system-running --wait", timeout=left)
            if out.strip() != "running":
                _, failed, _ = self.sh(nd.idx, "systemctl --failed --no-legend")
                raise HarnessError("%s: system is %r after boot; failed units:\n%s"
                                   % (nd.name, out.strip(), failed))
        self.boot_s = time.monotonic() - t0
        return self

    def _launch(self, nd):
        r = lambda f: os.path.join(self.run, "%s.%s" % (nd.name, f))
        if not os.path.exists(r("qcow2")):  # power_on() boots the same disk again
            _sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                "-b", os.path.join(self.image, "base.raw"), r("qcow2"))
        if self.accel == "kvm":
            accel = ["-accel", "kvm", "-cpu", "host"]
        else:
            accel = ["-accel", "tcg", "-cpu", "max"]
        append = ("root=LABEL=dlmsys-root rw console=ttyS0,115200 net.ifnames=0 "
                  "systemd.hostname=%s lab.ip=%s.%d/24 %s"
                  % (nd.name, NET, nd.idx, os.environ.get("DLM_ELECTD_SYSTEM_APPEND", "")))
        cmd = ["qemu-system-x86_64"] + accel + [
            "-name", "dlmsys-%s-%s" % (self.tag, nd.name),
            "-m", str(self.mem_mb), "-smp", "1", "-nodefaults", "-no-user-config",
            "-display", "none",
            "-kernel", os.path.join(self.image, "vmlinuz"),
            "-initrd", os.path.join(self.image, "initrd.img"), "-append", append,
            # Disks get serial= because virtio names follow PCI probe order, not
            # the command line: root is found by LABEL, the heartbeat disk by id.
            "-drive", "file=%s,if=none,id=root,format=qcow2,cache=unsafe" % r("qcow2"),
            "-device", "virtio-blk-pci,drive=root,serial=root",
            # Both QEMUs write the one heartbeat file, like a shared LUN.
            "-drive", "file=%s,if=none,id=hb,format=raw,cache=none,aio=threads,"
                      "file.locking=off" % os.path.join(self.run, "hb.raw"),
            "-device", "virtio-blk-pci,drive=hb,share-rw=on,serial=%s" % HB_SERIAL,
            # The same, as a shared data volume (/dev/disk/by-id/virtio-ocfs2-data).
            "-drive", "file=%s,if=none,id=data,format=raw,cache=none,aio=threads,"
                      "file.locking=off" % os.path.join(self.run, "data.raw"),
            "-device", "virtio-blk-pci,drive=data,share-rw=on,serial=%s" % DATA_SERIAL,
            "-netdev", "tap,id=n0,ifname=tap%d,script=no,downscript=no" % nd.idx,
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:88:00:%02x" % nd.idx,
            "-serial", "file:" + r("console.log"),
            "-device", "virtio-serial-pci",
            "-chardev", "socket,id=qga0,path=%s,server=on,wait=off" % r("qga.sock"),
            "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            "-chardev", "socket,id=ev,path=%s,server=on,wait=off" % r("ev.sock"),
            "-device", "virtconsole,chardev=ev,name=events",
            "-chardev", "socket,id=fence,path=%s,server=on,wait=off" % r("fence.sock"),
            "-device", "virtserialport,chardev=fence,name=org.dlm-electd.fence",
            "-virtfs", "local,path=%s,mount_tag=hostshare,security_model=none,readonly=on"
                       % self.share,
            "-device", "virtio-rng-pci",
        ]
        log = open(r("qemu.log"), "ab")
        nd.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   preexec_fn=_child_setup("/run/netns/" + self.netns))
        log.close()
        nd.agent = Agent(r("qga.sock"))
        nd.ev = self._connect(nd, r("ev.sock"))
        nd.reader = threading.Thread(target=self._read_events, args=(nd,), daemon=True)
        nd.reader.start()
        nd.fence = self._connect(nd, r("fence.sock"))
        threading.Thread(target=self._serve_fence, args=(nd, nd.fence), daemon=True).start()

    def _connect(self, nd, path):
        end = time.monotonic() + 30
        while True:
            if nd.proc.poll() is not None:
                raise HarnessError("%s: QEMU exited rc=%s, see %s.qemu.log"
                                   % (nd.name, nd.proc.returncode, nd.name))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise HarnessError("%s: no QEMU socket %s" % (nd.name, path))
                time.sleep(0.05)  # QEMU has not created it yet

    def _read_events(self, nd):
        buf = b""
        while True:
            try:
                chunk = nd.ev.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            t = time.monotonic()  # stamped on arrival: the one clock of all nodes
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.add_event(nd.idx, line.decode("utf-8", "replace").strip("\r"), t)

    def _serve_fence(self, nd, sock):
        """The fence device: "off K" from a node's agent powers node K off, then
        "ok K".  A request from a node that is itself off by then is dropped
        (its QEMU is gone), so of two nodes racing to fence each other exactly
        one survives, as with one real power switch."""
        f = sock.makefile("rwb", buffering=0)
        while True:
            try:
                line = f.readline()
            except OSError:
                return
            if not line:
                return
            words = line.decode("ascii", "replace").split()
            if len(words) != 2 or words[0] != "off" or not words[1].isdigit() \
                    or int(words[1]) not in self.nodes:
                continue
            victim = int(words[1])
            time.sleep(self.fence_delay)
            with self._power:
                if nd.proc.poll() is not None:
                    return
                self._power_off(victim, "fenced by %s" % nd.name)
            try:
                f.write(b"ok %d\n" % victim)
            except OSError:
                return

    def _power_off(self, node, why):
        nd = self.nodes[node]
        if nd.proc.poll() is None:
            nd.proc.kill()
            nd.proc.wait(30)
            self.add_event(node, "power off (%s)" % why)
            for s in (nd.agent, nd.ev, nd.fence):
                if s:
                    s.close()

    def power_off(self, node):
        """Pull node's power: its QEMU is killed, the event log says so."""
        with self._power:
            self._power_off(node, "pulled")

    def is_on(self, node):
        return self.nodes[node].proc.poll() is None

    def power_on(self, node, timeout=600):
        """Boot a powered-off node again from its own disk; waits for systemd."""
        nd = self.nodes[node]
        with self._power:
            if nd.proc.poll() is None:
                return
            self._launch(nd)
        nd.agent.sync(total=timeout)
        rc, out, _ = self.sh(node, "systemctl is-system-running --wait", timeout=timeout)
        if out.strip() != "running":
            raise HarnessError("%s: system is %r after power on" % (nd.name, out.strip()))

    def isolate(self, node):
        """Cut node off the private link (its tap leaves the bridge): both sides
        stay up and see only silence, as when a switch port dies."""
        _sh("ip", "-n", self.netns, "link", "set", "tap%d" % node, "nomaster")
        self.add_event(node, "link cut")

    def heal(self, node):
        _sh("ip", "-n", self.netns, "link", "set", "tap%d" % node, "master", "br0")
        self.add_event(node, "link healed")

    def add_event(self, node, text, t=None):
        with self._cond:
            ev = Event(time.monotonic() if t is None else t, node, text)
            self._events.append(ev)
            if self._evlog and not self._evlog.closed:
                self._evlog.write("%.3f node%d %s\n" % ev)
            self._cond.notify_all()

    def arp_answers(self, vips):
        """Which MACs answered ARP for each of `vips`, probed every 10 ms from
        the bridge by tests/cluster/arpwatch.py (run as a program in our
        netns from the first call on; it trusts nothing a guest says).  Every
        line so far: (t, vip, macs), t on the host's clock in seconds, macs
        a tuple (two: two nodes answered one probe round)."""
        if self._arp is None:
            prog = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "cluster", "arpwatch.py")
            proc = subprocess.Popen([sys.executable, prog, "br0", "10"] + list(vips),
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    preexec_fn=_child_setup("/run/netns/" + self.netns))
            lines = []

            def read():
                for line in proc.stdout:
                    f = line.split()
                    if len(f) == 4:
                        lines.append((float(f[0]) / 1000.0, f[2],
                                      () if f[3] == "-" else tuple(f[3].split(","))))
            threading.Thread(target=read, name="arpwatch", daemon=True).start()
            self._arp = (proc, lines)
        proc, lines = self._arp
        if proc.poll() is not None:
            raise HarnessError("the ARP observer exited (%s)" % proc.returncode)
        return list(lines)

    def down(self):
        """Kill every QEMU, delete the netns and the overlays.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._arp is not None:
            self._arp[0].kill()
            self._arp[0].wait(10)
        for nd in self.nodes.values():
            if nd.proc and nd.proc.poll() is None:
                nd.proc.kill()
        for nd in self.nodes.values():
            if nd.proc:
                try:
                    nd.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            if nd.agent:
                nd.agent.close()
            if nd.ev:
                nd.ev.close()
            if nd.fence:
                nd.fence.close()
        try:
            cleanup_stale(self.run)
        except Exception as e:  # must not hide the test's own error
            print("harness: cleanup: %s" % e, file=sys.stderr)
        for nd in self.nodes.values():
            for f in ("qcow2",):
                try:
                    os.unlink(os.path.join(self.run, "%s.%s" % (nd.name, f)))
                except OSError:
                    pass
        for f in ("hb.raw", "data.raw"):
            try:
                os.unlink(os.path.join(self.run, f))
            except OSError:
                pass
        if self._evlog:
            self._evlog.close()
        _LIVE.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    # ---- commands -------------------------------------------------------
    def sh(self, node, cmd, timeout=120):
        """Run cmd with /bin/sh in the guest as root: (rc, stdout, stderr)."""
        nd = self.nodes[node]
        if nd.proc.poll() is not None:
            raise HarnessError("%s: QEMU is gone (rc=%s)" % (nd.name, nd.proc.returncode))
        return nd.agent.sh(cmd, timeout)

    def check(self, node, cmd, timeout=120):
        """sh() that raises on a non-zero exit; returns stdout."""
        rc, out, err = self.sh(node, cmd, timeout)
        if rc != 0:
            raise HarnessError("node%d: %r -> rc %d\nstdout: %s\nstderr: %s"
                               % (node, cmd, rc, out.strip(), err.strip()))
        return out

    def push(self, node, data, remote, mode=None):
        if isinstance(data, str):
            data = data.encode()
        self.nodes[node].agent.push(data, remote, mode)

    def pull(self, node, remote):
        a = self.nodes[node].agent
        h = a.call("guest-file-open", {"path": remote, "mode": "r"})
        out = b""
        try:
            while True:
                r = a.call("guest-file-read", {"handle": h, "count": 48 * 1024})
                out += base64.b64decode(r.get("buf-b64", ""))
                if r.get("eof") or r.get("count", 0) == 0:
                    return out
        finally:
            a.call("guest-file-close", {"handle": h})

    # ---- events ---------------------------------------------------------
    def mark(self):
        with self._cond:
            return len(self._events)

    def events(self, since=0):
        with self._cond:
            return list(self._events[since:])

    def wait_event(self, pattern, node=None, since=0, timeout=60):
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
                    raise TimeoutError("no event /%s/ from node %s in %ss" % (pattern, node, timeout))
                self._cond.wait(left)

    def console_tail(self, node, n=20):
        try:
            with open(os.path.join(self.run, "node%d.console.log" % node), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no console log)"


_LIVE = set()


@atexit.register
def _down_all():
    for c in list(_LIVE):
        c.down()


def _on_signal(signum, frame):
    # Unwind normally, so finally blocks, context managers and atexit tear down.
    raise SystemExit(128 + signum)


def install_signal_handlers():
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def up(n, image, timeout=300, run=RUN):
    """Boot n nodes in parallel and wait until systemd says "running" on each."""
    if os.geteuid() != 0:
        raise HarnessError("needs root (network namespace, taps)")
    install_signal_handlers()
    c = Cluster(n, image, run)
    try:
        return c._up(timeout)
    except BaseException:
        c.down()
        raise
