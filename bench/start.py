#!/usr/bin/env python3
"""bench/start.py - what one start of each per-message program costs.

Usage: bench/start.py [-n RUNS] [-d DIR] [PROGRAM ...]

Runs each program RUNS times (default 300) with an empty environment, stdin /dev/null,
stdout and stderr to /dev/null and no arguments: a "do-nothing" run that starts, finds
nothing to do (or a usage error) and exits. The CPU time (user + system) and the minor
page faults of every run come from wait4()'s rusage of that child alone, so other load
on the machine changes them far less than wall time. Prints the median and the mean per
program. With valgrind installed, also the instructions executed in user space by one
run (callgrind's Ir, ld.so included): the steadiest figure on a loaded machine.

DIR is where the programs are (default target/release of this checkout). A PROGRAM with
a slash is taken as it is (e.g. /bin/true for the reference).
"""

import argparse
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys

PROGRAMS = [
    "qmail-smtpd", "qmail-queue", "qmail-local", "qmail-inject", "sendmail",
    "qmail-popup", "qmail-pop3d", "checkpassword", "qmail-remote", "rblsmtpd",
    "qmail-qfilter", "qmail-scan",
]


def one_run(path, devnull):
    pid = os.posix_spawn(path, [path], {}, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 0),
        (os.POSIX_SPAWN_DUP2, devnull, 1),
        (os.POSIX_SPAWN_DUP2, devnull, 2),
    ])
    _, _, ru = os.wait4(pid, 0)
    return (ru.ru_utime + ru.ru_stime) * 1000.0, ru.ru_minflt


def instructions(path):
    if not shutil.which("valgrind"):
        return None
    # The summary on stderr is all we need (some programs chdir, so no output file).
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", path],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={}, text=True, check=False)
    m = re.search(r"(?:Collected :|I\s+refs:)\s+([\d,]+)", r.stderr)
    return int(m.group(1).replace(",", "")) if m else None


def linkage(path):
    """'dynamic' when the ELF file names a program interpreter (PT_INTERP), else 'static'."""
    with open(path, "rb") as f:
        elf = f.read(1 << 16)
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    return "dynamic" if 3 in types else "static"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-d", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "target", "release"))
    ap.add_argument("programs", nargs="*")
    a = ap.parse_args()
    names = a.programs or PROGRAMS
    devnull = os.open(os.devnull, os.O_RDWR)
    print(f"| program | linked | size KiB | CPU ms median | CPU ms mean | minor faults | "
          f"Ir (callgrind) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        path = name if "/" in name else os.path.join(a.d, name)
        if not os.access(path, os.X_OK):
            print(f"start.py: {path}: not built, skipped", file=sys.stderr)
            continue
        for _ in range(10):
            one_run(path, devnull)
        runs = [one_run(path, devnull) for _ in range(a.n)]
        cpu = [c for c, _ in runs]
        faults = statistics.median(f for _, f in runs)
        ir = instructions(path)
        print(f"| {os.path.basename(path)} | {linkage(path)} | {os.path.getsize(path) // 1024} "
              f"| {statistics.median(cpu):.3f} | {statistics.mean(cpu):.3f} | {faults:.0f} | "
              f"{ir if ir is not None else '-'} |", flush=True)


if __name__ == "__main__":
    main()
