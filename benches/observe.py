#!/usr/bin/env python3
"""Watches one network namespace (run it with `ip netns exec NS`) and prints
one line per event, stamped with CLOCK_MONOTONIC (the same clock in every
namespace, so the harness compares it with its own):

  observe.py addr             NS_TIME new|del ADDRESS         (rtnetlink, IPv4)
  observe.py arp IFACE        NS_TIME arp OP SENDER_MAC SENDER_IP TARGET_IP
  observe.py probe IFACE IP   like arp, and sends an ARP who-has IP every 10 ms,
                              each from the next of 10.77.200.1-250

Events are read from the kernel as they happen (no polling), so the stamp
is the moment the harness could have seen them, within a scheduler tick.
"""
import socket
import struct
import sys
import threading
import time

RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWADDR, RTM_DELADDR = 20, 21
ETH_P_ARP = 0x0806


LOCK = threading.Lock()


def out(*fields):
    with LOCK:
        sys.stdout.write(" ".join(str(f) for f in (time.monotonic_ns(),) + fields) + "\n")
        sys.stdout.flush()


def addr():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((0, RTMGRP_IPV4_IFADDR))
    out("ready")
    while True:
        data = s.recv(1 << 20)
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind in (RTM_NEWADDR, RTM_DELADDR):
                a, end = off + 16 + 8, off + length
                local = address = None
                while a + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype in (1, 2) and alen == 8:
                        ip = socket.inet_ntoa(data[a + 4 : a + 8])
                        if atype == 2:
                            local = ip
                        else:
                            address = ip
                    a += (alen + 3) & ~3
                out("new" if kind == RTM_NEWADDR else "del", local or address)
            off += (length + 3) & ~3


def arp(iface, probe_ip=None):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    if probe_ip:
        mac = s.getsockname()[4]

        def prober():
            # Each probe from its own sender address (10.77.200.1-250 in
            # turn): a reply is addressed to it, so it names its probe.
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind((iface, 0))
            n = 0
            while True:
                ip = f"10.77.200.{n % 250 + 1}"
                # Reported here: a socket bound to ETH_P_ARP does not see
                # frames going out (only ETH_P_ALL taps do).
                out("arp", 1, mac.hex(":"), ip, probe_ip)
                tx.send(b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                        + mac + socket.inet_aton(ip) + bytes(6) + socket.inet_aton(probe_ip))
                n += 1
                time.sleep(0.01)

        threading.Thread(target=prober, daemon=True).start()
    out("ready")
    while True:
        f = s.recv(2048)
        if len(f) < 42:
            continue
        op = struct.unpack_from("!H", f, 20)[0]
        sha = f[22:28].hex(":")
        spa = socket.inet_ntoa(f[28:32])
        tpa = socket.inet_ntoa(f[38:42])
        out("arp", op, sha, spa, tpa)


if __name__ == "__main__":
    try:
        if sys.argv[1] == "addr":
            addr()
        elif sys.argv[1] == "arp":
            arp(sys.argv[2])
        elif sys.argv[1] == "probe":
            arp(sys.argv[2], sys.argv[3])
        else:
            sys.exit(f"unknown mode {sys.argv[1]}")
    except (KeyboardInterrupt, BrokenPipeError):
        pass
