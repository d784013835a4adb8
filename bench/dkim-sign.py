#!/usr/bin/env python3
"""bench/dkim-sign.py - what DKIM signing costs per message (issue 15).

Usage: bench/dkim-sign.py [-n RUNS] [-d DIR]

qmail-remote runs HOME/bin/qmail-dkimsign once per delivery when HOME/control/dkim
exists. This runs that program RUNS times (default 200) per case against a temporary
home with keys made by `qmail-dkim keygen` (RSA 2048 and Ed25519), with the message on
descriptor 0 from a regular file, as qmail-remote gives it:

  nokey      control/dkim exists, the From: domain has no key (the exec alone)
  rsa        one RSA-2048 signature
  ed25519    one Ed25519 signature
  both       RSA-2048 and Ed25519 (RFC 8463)

each for a 2 KB and a 1 MB message. CPU (user + system) comes from wait4()'s rusage of the
child alone; latency is wall time from spawn to exit. Prints medians and means (ms).
DIR holds qmail-dkimsign and qmail-dkim (default target/release, then target/debug for
qmail-dkim, whose speed does not matter here).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(path, msg_path):
    fd = os.open(msg_path, os.O_RDONLY)
    null = os.open("/dev/null", os.O_WRONLY)
    t0 = time.perf_counter()
    pid = os.posix_spawn(path, [path], {}, file_actions=[
        (os.POSIX_SPAWN_DUP2, fd, 0),
        (os.POSIX_SPAWN_DUP2, null, 1),
        (os.POSIX_SPAWN_DUP2, null, 2),
    ])
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000.0
    os.close(fd)
    os.close(null)
    if status != 0:
        sys.exit(f"{path} exited with status {status}")
    return (ru.ru_utime + ru.ru_stime) * 1000.0, wall


def message(domain, size):
    head = (f"From: Bench <bench@{domain}>\nTo: far@remote.test\nSubject: bench\n"
            "Date: Sun, 6 Dec 2026 09:00:00 +0000\nMessage-ID: <bench@x>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain\n\n")
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("-d", default=os.path.join(here, "..", "target", "release"))
    a = ap.parse_args()
    signer = os.path.join(a.d, "qmail-dkimsign")
    keygen = os.path.join(a.d, "qmail-dkim")
    if not os.path.exists(keygen):
        keygen = os.path.join(here, "..", "target", "debug", "qmail-dkim")
    with tempfile.TemporaryDirectory() as home:
        os.makedirs(os.path.join(home, "bin"))
        os.makedirs(os.path.join(home, "control", "dkim"))
        with open(os.path.join(home, "control", "me"), "w") as f:
            f.write("mx.bench.test\n")
        for prog in (signer, keygen):
            shutil.copy(prog, os.path.join(home, "bin"))
        kg = os.path.join(home, "bin", "qmail-dkim")
        for args in (["rsa.test", "r"], ["ed.test", "e", "--ed25519"],
                     ["both.test", "r"], ["both.test", "e", "--ed25519"]):
            subprocess.run([kg, "keygen", *args], check=True, stdout=subprocess.DEVNULL)
        path = os.path.join(home, "bin", "qmail-dkimsign")
        print(f"{'case':10} {'size':>7} {'CPU ms med':>11} {'mean':>7} {'wall ms med':>12} {'mean':>7}")
        for size in (2048, 1 << 20):
            for case, domain in (("nokey", "none.test"), ("rsa", "rsa.test"),
                                 ("ed25519", "ed.test"), ("both", "both.test")):
                msg_path = os.path.join(home, "msg")
                with open(msg_path, "wb") as f:
                    f.write(message(domain, size))
                runs = [run_once(path, msg_path) for _ in range(a.n)]
                cpu = [r[0] for r in runs]
                wall = [r[1] for r in runs]
                print(f"{case:10} {size:>7} {statistics.median(cpu):>11.2f} "
                      f"{statistics.mean(cpu):>7.2f} {statistics.median(wall):>12.2f} "
                      f"{statistics.mean(wall):>7.2f}")


if __name__ == "__main__":
    main()
