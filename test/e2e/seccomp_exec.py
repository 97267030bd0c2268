#!/usr/bin/python3
"""Runs a program under a seccomp filter that denies the io_uring syscalls
with EPERM, as the default profiles of Docker >= 25, containerd >= 2.0 and
Kubernetes' RuntimeDefault do; everything else is allowed.

    seccomp_exec.py PROGRAM [ARGS...]

The filter is installed in this process and exec keeps it (libseccomp sets
no_new_privs), so PROGRAM and whatever it execs run under it, with this pid.
Needs libseccomp's Python binding (Debian: python3-seccomp).
"""
import errno
import os
import sys

import seccomp


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    f.load()
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
