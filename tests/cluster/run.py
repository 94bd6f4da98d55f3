#!/usr/bin/env python3
"""run.py [FILTER...] [--list] [--no-build] [--fresh]

Entry point of the VM cluster tier: builds the guest artefacts (build.sh,
a no-op when up to date), runs the registered scenarios whose names contain a
FILTER (all by default) and ends with "N passed, N failed"; exit 1 on failure.
Add scenario modules to MODULES (each registers with @suite.scenario).
"""
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

# nemesis last: its round is the longest (about 10 minutes).
MODULES = ["smoke", "electd", "dlmfs_safety", "prefer", "workload", "freeze", "nemesis"]

if __name__ == "__main__":
    for m in MODULES:
        importlib.import_module(m)
    sys.exit(suite.main())
