#!/usr/bin/env python3
"""run.py [FILTER...] [--list] [--keep] [--stack o2cb|corosync]

The system tier: dlm-electd's Debian package on two Debian 12 VMs with systemd
and an o2cb cluster set up with ocfs2-tools, as a user would; with --stack
corosync, the corosync tier: the `dlm` backend on three such VMs running
corosync + dlm_controld with a real fence path (corosync.py).  Installs the host
tools it lacks (apt-get), builds the VM image (build-image.sh, cached), builds
the package (or takes DLM_ELECTD_DEB=path), boots one cluster and runs the
scenarios of scenarios.py in order on it; prints "N passed, N failed" last and
exits 1 on any failure.  FILTERs select scenarios by name ("setup" always runs).
"""
import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness  # noqa: E402
import scenarios  # noqa: E402
import corosync  # noqa: E402

# Per stack: its scenarios, how many nodes, its run dir (each keeps its
# logs), and what it builds for the share before the VMs boot.
STACKS = {"o2cb": (scenarios.REGISTRY, 2, "run", None),
          "corosync": (corosync.REGISTRY, 3, "run-corosync", corosync.build_tools)}

HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
              "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "ip": "iproute2"}


def host_tools():
    missing = sorted({p for b, p in HOST_TOOLS.items() if shutil.which(b) is None})
    if missing:
        print("installing %s" % " ".join(missing), flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
                       check=True, env=env)


def build_deb():
    """The package, built with the project's one documented command."""
    deb = os.environ.get("DLM_ELECTD_DEB")
    if deb:
        return os.path.abspath(deb)
    subprocess.run([os.path.join(REPO, "packaging", "build-packages")], check=True, cwd=REPO)
    debs = sorted(glob.glob(os.path.join(REPO, "target", "packages", "dlm-electd_*.deb")),
                  key=os.path.getmtime)
    if not debs:
        raise harness.HarnessError("packaging/build-packages made no target/packages/*.deb")
    return debs[-1]


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("scenario timeout")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("filters", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true",
                    help="on failure, keep the VMs until Enter is pressed (debugging)")
    ap.add_argument("--stack", choices=sorted(STACKS), default="o2cb")
    a = ap.parse_args()
    registry, nodes, rundir, build_tools = STACKS[a.stack]
    run = os.environ.get("DLM_ELECTD_SYSTEM_RUN") or os.path.join(harness.CACHE, rundir)
    todo = [s for s in registry
            if s.always or not a.filters or any(f in s.name for f in a.filters)]
    if a.list:
        for s in todo:
            print("%-28s timeout %4ds  %s" % (s.name, s.timeout, s.doc))
        return 0
    if os.geteuid() != 0:
        sys.exit("run.py: needs root (network namespace, taps, VMs)")
    t_all = time.monotonic()
    # The pure checks first: seconds, and a broken checker would pass anything.
    subprocess.run([sys.executable, os.path.join(HERE, "test_checks.py")], check=True)
    host_tools()
    t0 = time.monotonic()
    image = subprocess.run([os.path.join(HERE, "build-image.sh")], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    print("image: %s (%.1f s)" % (image, time.monotonic() - t0), flush=True)
    t0 = time.monotonic()
    deb = build_deb()
    print("package: %s (%.1f s)" % (deb, time.monotonic() - t0), flush=True)
    tools = build_tools(REPO) if build_tools else []

    harness.install_signal_handlers()
    signal.signal(signal.SIGALRM, _alarm)
    passed, failed = [], []
    c = None
    try:
        t0 = time.monotonic()
        c = harness.up(nodes, image, timeout=600, run=run)  # TCG, busy 2-core host: 1.5-4 min
        print("booted %d nodes in %.1f s (accel %s)" % (nodes, time.monotonic() - t0, c.accel),
              flush=True)
        for f in [deb] + tools:
            shutil.copy(f, c.share)
        for f in os.listdir(os.path.join(HERE, "guest")):
            shutil.copy(os.path.join(HERE, "guest", f), c.share)
        for s in todo:
            print("RUN  %s" % s.name, flush=True)
            t0 = time.monotonic()
            ok = False
            try:
                signal.setitimer(signal.ITIMER_REAL, s.timeout)
                s.fn(c)
                ok = True
            except Exception:
                traceback.print_exc()
                for i in c.nodes:
                    print("  --- node%d: dlm-electd journal tail ---" % i)
                    try:
                        print(c.sh(i, "journalctl -q -u dlm-electd -n 25 --no-hostname", 30)[1])
                    except Exception as e:
                        print("  (%s)" % e)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            (passed if ok else failed).append(s.name)
            print("%s %s (%.1f s)" % ("PASS" if ok else "FAIL", s.name, time.monotonic() - t0),
                  flush=True)
            if not ok and s.always:
                print("setup failed: skipping the rest")
                failed += [x.name for x in todo if x is not s and not x.always]
                break
        if failed and a.keep:
            input("VMs kept (events: %s/events.log); Enter tears down " % c.run)
    finally:
        if c is not None:
            c.down()
    print("total %.1f s; failed: %s" % (time.monotonic() - t_all, " ".join(failed) or "-"))
    print("%d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
