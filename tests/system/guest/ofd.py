#!/usr/bin/python3
"""ofd.py - a raw OFD write lock, as the `file` backend takes it (issue 25).

    ofd.py try PATH           exit 0 "granted" or 1 "busy" (F_OFD_SETLK)
    ofd.py hold PATH MARKER   take it, write MARKER, keep it until killed

Shows whether a filesystem's OFD locks reach other nodes: held on one node,
a try on another must be busy.  On OCFS2 with o2cb it is granted.
"""
import fcntl
import os
import struct
import sys
import time


def lock(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    # struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid
    # (int, 0 for OFD locks), padded as the x86-64 ABI lays it out.
    fl = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, fl)
    except OSError:
        os.close(fd)
        return None
    return fd


def main(argv):
    if len(argv) == 3 and argv[1] == "try":
        granted = lock(argv[2]) is not None
        print("granted" if granted else "busy")
        return 0 if granted else 1
    if len(argv) == 4 and argv[1] == "hold":
        if lock(argv[2]) is None:
            print("busy")
            return 1
        with open(argv[3], "w") as f:
            f.write("held\n")
        while True:  # until killed: the lock goes with the process
            time.sleep(3600)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
