#!/usr/bin/env python3
"""The ARP observer of the nemesis' checker (issue #21): which nodes answer
ARP for each VIP, probed every 10 ms from the cluster's bridge. It trusts
nothing the daemon says: a VIP answered by two MACs in one probe round is
two nodes serving it, whatever their logs say.

Run as a program (root, inside the cluster's netns): `arpwatch.py IFACE
PERIOD_MS VIP...`. Each round sends one ARP probe per VIP (sender IP
0.0.0.0, so the guests learn nothing from it, RFC 5227) from a sender MAC
that carries the round's number, 02:d1:e0:00:HH:LL; a reply goes back to
that MAC, so every reply names the round it answers however late it comes
(the socket is promiscuous: the bridge floods a reply to a MAC it never
learned). A round is judged 50 ms after it was sent; a line is printed
when the MACs answering for a VIP differ from the round before:

    T_MS ROUND VIP MAC[,MAC...]      ("-": nobody answered)

T_MS is when the round was sent, CLOCK_MONOTONIC in ms (the harness's
clock, harness.now_ms). Python 3 stdlib only.

Imported, `Observer` runs it in the netns of a harness.Cluster and
collects its lines.
"""
import collections
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

ETH_P_ARP = 0x0806
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
JUDGE_AFTER_MS = 50
MAC_PREFIX = b"\x02\xd1\xe0\x00"


def mac_str(b):
    return ":".join("%02x" % x for x in b)


def probe(round_no, vip):
    src = MAC_PREFIX + struct.pack("!H", round_no & 0xffff)
    eth = b"\xff" * 6 + src + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + b"\0" * 4 + b"\0" * 6 + socket.inet_aton(vip)
    return eth + arp


def parse_reply(frame):
    """(round & 0xffff, vip, mac) of an ARP reply to one of our probes, else None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    sha, spa, tha = frame[22:28], frame[28:32], frame[32:38]
    if tha[:4] != MAC_PREFIX:
        return None
    return struct.unpack("!H", tha[4:6])[0], socket.inet_ntoa(spa), mac_str(sha)


def main(iface, period_ms, vips):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, 0))
    ifindex = socket.if_nametoindex(iface)
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                 struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
    s.setblocking(False)
    period = period_ms / 1000.0
    sent = {}                                   # round -> t_ms
    seen = collections.defaultdict(lambda: collections.defaultdict(set))  # round -> vip -> macs
    last = {v: None for v in vips}
    rnd = 0
    nxt = time.monotonic()
    out = sys.stdout
    while True:
        now = time.monotonic()
        if now >= nxt:
            sent[rnd] = now * 1000.0
            for v in vips:
                try:
                    s.send(probe(rnd, v))
                except OSError:
                    pass   # the bridge going down with the cluster
            rnd += 1
            nxt += period
            if nxt < now:      # we were stopped: no burst to catch up
                nxt = now + period
        # Judge the rounds old enough, in order.
        for r in sorted(sent):
            if sent[r] > now * 1000.0 - JUDGE_AFTER_MS:
                break
            got = seen.pop(r, {})
            for v in vips:
                macs = tuple(sorted(got.get(v, ())))
                if macs != last[v] or len(macs) > 1:
                    out.write("%.1f %d %s %s\n" % (sent[r], r, v, ",".join(macs) or "-"))
                    last[v] = macs
            del sent[r]
        out.flush()
        r, _, _ = select.select([s], [], [], max(0.0, nxt - time.monotonic()))
        while r:
            try:
                frame = s.recv(256)
            except BlockingIOError:
                break
            p = parse_reply(frame)
            if p is None:
                continue
            r16, vip, mac = p
            # The newest sent round with these low 16 bits.
            cand = [x for x in sent if x & 0xffff == r16]
            if cand and vip in last:
                seen[max(cand)][vip].add(mac)


Answer = collections.namedtuple("Answer", "t_ms round vip macs")


class Observer:
    """arpwatch.py in the netns of cluster `c`, probing `vips`; answers()
    is every line so far as Answer(t_ms, round, vip, macs tuple)."""

    def __init__(self, c, vips, period_ms=10):
        import harness
        self._lines = []
        self._mu = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "br0", str(period_ms)] + list(vips),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=harness._child_setup("/run/netns/" + c.netns, True))
        self._t = threading.Thread(target=self._read, name="arpwatch", daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            f = line.split()
            if len(f) != 4:
                continue
            a = Answer(float(f[0]), int(f[1]), f[2], () if f[3] == "-" else tuple(f[3].split(",")))
            with self._mu:
                self._lines.append(a)

    def answers(self):
        with self._mu:
            return list(self._lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return err


def node_of_mac(mac):
    """The harness gives node i the MAC 52:54:00:dc:00:(16+i)."""
    if not mac.startswith("52:54:00:dc:00:"):
        return None
    return int(mac.rsplit(":", 1)[1], 16) - 16


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3:])
