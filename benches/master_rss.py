#!/usr/bin/env python3
"""Where a master's resident memory goes (benches/NOTES.md, "Master RSS").

    benches/master_rss.py BINARY N [SETTLE_S]      # as root

Starts BINARY as a master of N resources (one `vip` each on a veth in a
network namespace of its own, `file` backend, the footprint part's
configuration), waits until all are master and SETTLE_S more seconds
(default 15: the blocking pool's burst threads idle out after 10 s), then
prints VmRSS, PSS and /proc/PID/smaps grouped by mapping for the daemon and
its lock keeper. Removes its namespace, files and processes on exit."""
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def status(run_dir):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(f"{run_dir}/control.sock")
        s.sendall(b'{"cmd":"status"}\n')
        b = b""
        while not b.endswith(b"\n"):
            c = s.recv(1 << 20)
            if not c:
                break
            b += c
        return json.loads(b)["status"]["resources"]
    except (OSError, ValueError, KeyError):
        return None
    finally:
        s.close()


def breakdown(pid):
    """kB resident per mapping kind: the binary's segments by permission,
    each library, [heap], [stack], unnamed (arenas, thread stacks)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    kinds, cur = collections.Counter(), None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                name = parts[5] if len(parts) > 5 else "[anon]"
                if name == exe:
                    cur = f"binary {parts[1]}"
                elif name.startswith("/"):
                    cur = f"{os.path.basename(name)} {parts[1]}"
                else:
                    cur = name
            elif line.startswith("Rss:"):
                kinds[cur] += int(line.split()[1])
    return kinds


def main():
    binary, n = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    settle = float(sys.argv[3]) if len(sys.argv) > 3 else 15
    work = tempfile.mkdtemp(prefix="master-rss-")
    ns = f"mrss{os.getpid()}"
    p = None
    try:
        os.makedirs(f"{work}/locks")
        subprocess.check_call(["ip", "netns", "add", ns])
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"],
                    ["link", "set", "eth0", "up"], ["link", "set", "peer0", "up"]):
            subprocess.check_call(["ip", "-n", ns, *cmd])
        cfg = f"{work}/c.toml"
        with open(cfg, "w") as f:
            f.write(f'[node]\nname = "rss"\n[lock]\nbackend = "file"\ndir = "{work}/locks"\n'
                    f'standby = "wait"\n[daemon]\nruntime_dir = "{work}/run"\npoll_interval = "1s"\n')
            for i in range(n):
                f.write(f'[[resource]]\nname = "r{i}"\n[[resource.action]]\ntype = "vip"\n'
                        f'address = "10.102.{i // 250}.{i % 250 + 1}/32"\ninterface = "eth0"\n'
                        f'announce_count = 2\nannounce_interval = "100ms"\n')
        os.chmod(cfg, 0o600)
        env = dict(os.environ, RUST_LOG="info")
        env.pop("NOTIFY_SOCKET", None)
        # `ip netns exec` execs the binary: p.pid is the daemon's.
        p = subprocess.Popen(["ip", "netns", "exec", ns, binary, "run", "--config", cfg],
                             stdout=subprocess.DEVNULL, stderr=open(f"{work}/log", "w"), env=env)
        deadline = time.monotonic() + 120
        while True:
            st = status(f"{work}/run")
            if st and len(st) == n and all(r["state"] == "master" for r in st):
                break
            if p.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"not all master; see {work}/log")
            time.sleep(0.05)
        time.sleep(settle)
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            keeper = int(f.read().split()[0])
        total = 0
        for who, pid in (("daemon", p.pid), ("keeper", keeper)):
            with open(f"/proc/{pid}/smaps_rollup") as f:
                roll = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.endswith("kB\n")}
            with open(f"/proc/{pid}/status") as f:
                rss = int(f.read().split("VmRSS:")[1].split()[0])
            total += rss
            threads = len(os.listdir(f"/proc/{pid}/task"))
            print(f"{who}: VmRSS {rss} kB, PSS {roll['Pss']} kB, anonymous {roll['Anonymous']} kB, "
                  f"{threads} threads")
            for kind, kb in breakdown(pid).most_common():
                if kb:
                    print(f"  {kb:7d} kB  {kind}")
        print(f"daemon + keeper: VmRSS {total} kB = {total / 1024:.1f} MiB")
    finally:
        if p is not None:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
