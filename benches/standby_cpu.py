#!/usr/bin/env python3
"""Polling standby CPU of two builds side by side, in one window.

    benches/standby_cpu.py OLD_BINARY NEW_BINARY [N] [POLL] [WINDOW_S]

For each binary: a master and a standby on the `file` backend with
`standby = "poll"`, N resources without actions (default 1000, poll 1s);
then the standby's CPU over WINDOW_S seconds (default 30) from
/proc/PID/task/*/schedstat (the scheduler's run time: utime+stime are
tick-sampled and miss short wake-ups), daemon and lock keeper together.
Any user; works in a temporary directory it removes. Used for the
"Polling standbys" figures in benches/NOTES.md."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def config(work, name, n, poll):
    path = f"{work}/{name}.toml"
    with open(path, "w") as f:
        f.write(f'[node]\nname = "{name}"\n[lock]\nbackend = "file"\ndir = "{work}/locks-{name[1:]}"\n'
                f'standby = "poll"\n[daemon]\nruntime_dir = "{work}/run-{name}"\npoll_interval = "{poll}"\n')
        for i in range(n):
            f.write(f'[[resource]]\nname = "r{i}"\n')
    os.chmod(path, 0o600)
    return path


def cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    bins = {"old": sys.argv[1], "new": sys.argv[2]}
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    poll = sys.argv[4] if len(sys.argv) > 4 else "1s"
    window = float(sys.argv[5]) if len(sys.argv) > 5 else 30
    work = tempfile.mkdtemp(prefix="standby-cpu-")
    procs, standbys = [], {}
    try:
        for tag, b in bins.items():
            for role in "ms":
                p = subprocess.Popen([b, "run", "--config", config(work, f"{role}{tag}", n, poll)],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{work}/{role}{tag}.log", "w"))
                procs.append(p)
                # The master first, so that it wins everything.
                time.sleep(2 + n / 500)
            standbys[tag] = p
        time.sleep(8 + n / 200)
        pids = {t: [s.pid] + children(s.pid) for t, s in standbys.items()}
        t0 = time.monotonic()
        before = {t: sum(cpu_ns(p) for p in ps) for t, ps in pids.items()}
        time.sleep(window)
        dt = time.monotonic() - t0
        for t, ps in pids.items():
            ns = (sum(cpu_ns(p) for p in ps) - before[t]) / dt
            threads = sum(len(os.listdir(f"/proc/{p}/task")) for p in ps)
            print(f"{t}: {n} resources, poll {poll}: standby {ns / 1e7:.3f} % of a core, "
                  f"{ns / 1e3 / n:.1f} µs per resource and second, {threads} threads "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                for c in children(p.pid):
                    os.kill(c, signal.SIGKILL)
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
