"""suite.py - scenario registry, cluster fixture and runner for the VM tier.

A scenario is a function taking a harness.Cluster, registered with
@scenario(...).  Scenarios with the same cluster shape (node count + o2cb
knobs) share one booted cluster, because a boot costs ~20 s of TCG time; a
scenario that leaves a node dead or fails forces a fresh cluster for the next
one, and fresh=True always asks for one.  Each scenario gets a hard timeout,
not counting the boot (SIGALRM raises TestTimeout wherever it waits).
"""
import os
import signal
import subprocess
import sys
import time
import traceback

import harness

HERE = os.path.dirname(os.path.abspath(__file__))


class Scenario:
    def __init__(self, fn, nodes, timeout, fresh, opts):
        self.fn, self.nodes, self.timeout, self.fresh, self.opts = fn, nodes, timeout, fresh, opts
        self.name = fn.__name__[5:] if fn.__name__.startswith("test_") else fn.__name__

    def shape(self):
        return (self.nodes, tuple(sorted(self.opts.items())))


REGISTRY = []


def scenario(nodes=2, timeout=300, fresh=False, **cluster_opts):
    """Register a scenario.  cluster_opts go to harness.up() (dead_threshold,
    idle_ms, keepalive_ms, reconnect_ms, autostart).  Order of registration is
    the run order."""
    def deco(fn):
        REGISTRY.append(Scenario(fn, nodes, timeout, fresh, cluster_opts))
        return fn
    return deco


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("scenario timeout")


class Fixture:
    """Hands out a cluster of the wanted shape, reusing the current one when
    it is healthy."""

    def __init__(self):
        self.c = None
        self.shape = None
        self.boots = []  # (nodes, seconds) of every fresh boot

    def get(self, sc):
        c = self.c
        reuse = (c is not None and not sc.fresh and self.shape == sc.shape()
                 and all(c.alive(i) for i in range(c.n)))
        if reuse:
            return c
        self.drop()
        t0 = time.monotonic()
        self.c = harness.up(sc.nodes, **sc.opts)
        self.shape = sc.shape()
        dt = time.monotonic() - t0
        self.boots.append((sc.nodes, dt))
        print("  booted %d nodes in %.1f s (boot-to-ready per node: %s; accel=%s)" % (
            sc.nodes, dt, ", ".join("%.1f s" % b for b in self.c.boot_times()), self.c.accel),
            flush=True)
        return self.c

    def drop(self):
        if self.c is not None:
            self.c.down()
        self.c = None


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="dlm-electd VM cluster scenarios")
    ap.add_argument("filters", nargs="*", help="run scenarios whose name contains any of these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="do not run build.sh first")
    ap.add_argument("--fresh", action="store_true", help="boot a fresh cluster for every scenario")
    a = ap.parse_args(argv)
    todo = [s for s in REGISTRY if not a.filters or any(f in s.name for f in a.filters)]
    if a.list:
        for s in todo:
            print("%-30s nodes=%d timeout=%ds %s" % (s.name, s.nodes, s.timeout, s.opts))
        return 0
    if not todo:
        print("no scenario matches %s" % a.filters)
        print("0 passed, 0 failed")
        return 1
    if not a.no_build:
        t0 = time.monotonic()
        subprocess.run([os.path.join(HERE, "build.sh")], check=True)
        print("build: %.1f s" % (time.monotonic() - t0), flush=True)

    harness.install_signal_handlers()
    signal.signal(signal.SIGALRM, _alarm)
    fx = Fixture()
    passed, failed = [], []
    t_all = time.monotonic()
    try:
        for s in todo:
            print("RUN  %s" % s.name, flush=True)
            t0 = time.monotonic()
            ok = False
            try:
                if a.fresh:
                    s.fresh = True
                c = fx.get(s)  # bounded by the boot timeout, not the scenario's
                signal.setitimer(signal.ITIMER_REAL, s.timeout)
                s.fn(c)
                ok = True
            except Exception:
                traceback.print_exc()
                c = fx.c
                if c is not None:
                    for i in range(c.n):
                        print("  --- node%d console tail ---\n%s" % (i, c.console_tail(i, 15)))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            dt = time.monotonic() - t0
            (passed if ok else failed).append(s.name)
            print("%s %s (%.1f s)" % ("PASS" if ok else "FAIL", s.name, dt), flush=True)
            if not ok:
                fx.drop()  # never carry a cluster in an unknown state over
    finally:
        fx.drop()
    print("total %.1f s; failed: %s" % (time.monotonic() - t_all, " ".join(failed) or "-"))
    print("%d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed else 0
