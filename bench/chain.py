#!/usr/bin/env python3
"""bench/chain.py - the CPU the filter chain adds per message (issue 14's budget).

Usage: sudo bench/chain.py [-n RUNS] [-d DIR] [-k] [-w]

Installs a fresh system from DIR (default target/release of this checkout) into a temp
dir with qmail-install, writes control/filters = HOME/bin/qmail-scan (the default
control/scanrules, no clamd), and queues the same 4 KiB message (a Received line as
qmail-smtpd writes it, From/To/Subject/Date, a 4,096-byte body) RUNS times (default
500) in each of three modes, interleaved run by run so that machine noise hits all alike:

  queue   HOME/bin/qmail-queue alone (what qmail-smtpd runs without a chain)
  chain   HOME/bin/qmail-qfilter: qmail-scan as qmailf, then qmail-queue
  scan    HOME/bin/qmail-scan alone (message on 0, envelope on 3, output to /dev/null)

each started as qmaild (as qmail-smtpd would) with TCPREMOTEIP set. The CPU (user +
system) and the minor page faults of one run are the differences of
getrusage(RUSAGE_CHILDREN) around it: the
program and everything it waited for (qmail-qfilter's filter, the qmail-queue it
becomes). Prints the median and mean per mode, and chain - queue, the figure the budget
is about (at most 1 ms), split into qmail-scan and qmail-qfilter's own share. The
queue is not delivered (no qmail-send) and goes with the temp dir; -k keeps that.

-w starts qmail-queued (as qmailq) first: qmail-qfilter then hands the chain's output to
it instead of exec'ing qmail-queue, and "chain" is qmail-qfilter + qmail-scan + the
client side of the hand-over, which is what FILTER=scan costs over FILTER=queued in
smtp.sh (plus qmail-smtpd's own small hand-over, which FILTER=queued pays instead). The
writer's CPU per chain message (utime + stime of its process, 10 ms ticks) is printed
beside it.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

BODY = ("x" * 63 + "\n") * 64


def message():
    head = (
        "Received: from client.example (HELO client.example) (127.0.0.1)\n"
        "  by mx.bench.test with SMTP; 6 Dec 2026 07:00:00 -0000\n"
        "From: <a@bench.test>\nTo: <b@bench.test>\nSubject: chain bench\n"
        "Date: Sun, 6 Dec 2026 07:00:00 +0000\nMessage-ID: <1@bench.test>\n\n"
    )
    return (head + BODY).encode()


ENVELOPE = b"Fa@bench.test\0Tb@bench.test\0\0"


def cpu_of(argv, fds, env):
    """Run argv with descriptors fds {n: fd} (posix_spawn: no Python fork to count); CPU
    ms of it and what it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # through a number above them all, so that placing one cannot overwrite another
    actions = [(os.POSIX_SPAWN_DUP2, fd, 100 + n) for n, fd in fds.items()]
    actions += [(os.POSIX_SPAWN_DUP2, 100 + n, n) for n in fds]
    actions += [(os.POSIX_SPAWN_CLOSE, 100 + n) for n in fds]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ms = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    return os.waitstatus_to_exitcode(status), ms, after.ru_minflt - before.ru_minflt


def memfile(data):
    fd = os.memfd_create("bench", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def writer_ticks(pid):
    """utime + stime of process pid, its ended threads included, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start_writer(q, log):
    """qmail-queued of the install at q as qmailq; returns once its socket is there."""
    import time
    sock = os.path.join(q, "queued", "socket")
    w = subprocess.Popen([os.path.join(q, "bin", "setuidgid"), "qmailq",
                          os.path.join(q, "bin", "qmail-queued")], stdin=subprocess.DEVNULL,
                         stderr=log, cwd="/")
    for _ in range(200):
        if os.path.exists(sock):
            return w
        time.sleep(0.05)
    w.kill()
    sys.exit("chain.py: qmail-queued did not start")


def measure(a, modes):
    """Runs every mode a.n times, interleaved; prints the figures; 0 when all passed."""
    times = {k: [] for k in modes}
    faults = {k: [] for k in modes}
    ticks = writer_ticks(a.writer_pid) if a.writer_pid else 0
    for _ in range(a.n):
        for name, run in modes.items():
            m, e = memfile(message()), memfile(ENVELOPE)
            code, ms, flt = run(m, e)
            os.close(m)
            os.close(e)
            if code != 0:
                print(f"chain.py: {name} exited {code}", file=sys.stderr)
                return 1
            times[name].append(ms)
            faults[name].append(flt)
    if a.writer_pid:
        ticks = writer_ticks(a.writer_pid) - ticks
        print(f"qmail-queued: {ticks * 1000 / os.sysconf('SC_CLK_TCK') / a.n:.3f} ms CPU "
              f"per chain message ({ticks} ticks over {a.n})")
    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.mean(v) for k, v in times.items()}
    print(f"{a.n} runs each, CPU ms per message (median / mean), minor page faults (median)")
    for k in modes:
        print(f"  {k:6} {med[k]:6.3f} / {mean[k]:6.3f}   {statistics.median(faults[k]):5.0f}")
    print(f"  chain - queue          {med['chain'] - med['queue']:6.3f} / "
          f"{mean['chain'] - mean['queue']:6.3f}")
    print(f"  of which qmail-scan    {med['scan']:6.3f} / {mean['scan']:6.3f}")
    print(f"  qmail-qfilter's own    {med['chain'] - med['queue'] - med['scan']:6.3f} / "
          f"{mean['chain'] - mean['queue'] - mean['scan']:6.3f}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("-d", default=os.path.join(os.path.dirname(__file__), "..", "target", "release"))
    ap.add_argument("-k", action="store_true")
    ap.add_argument("-w", action="store_true", help="with qmail-queued running")
    a = ap.parse_args()
    a.writer_pid = None
    writer = None
    if os.geteuid() != 0:
        sys.exit("chain.py: run as root (real uids: qmaild, qmailf, qmailq)")
    tmp = tempfile.mkdtemp(prefix="qmail-chain.")
    os.chmod(tmp, 0o755)
    q = os.path.join(tmp, "qmail")
    try:
        subprocess.run([os.path.join(a.d, "qmail-install"), "--root", q, "--me", "mx.bench.test"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(q, "control", "filters"), "w") as f:
            f.write(os.path.join(q, "bin", "qmail-scan") + "\n")
        import pwd
        pw = pwd.getpwnam("qmaild")
        env = {"TCPREMOTEIP": "127.0.0.1", "PROTO": "TCP"}
        devnull = os.open("/dev/null", os.O_RDWR)
        log = os.open(os.path.join(tmp, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        bin_ = lambda p: os.path.join(q, "bin", p)
        if a.w:
            writer = start_writer(q, log)
            a.writer_pid = writer.pid
        modes = {
            "queue": lambda m, e: cpu_of([bin_("qmail-queue")], {0: m, 1: e, 2: log}, env),
            "chain": lambda m, e: cpu_of([bin_("qmail-qfilter")], {0: m, 1: e, 2: log}, env),
            "scan": lambda m, e: cpu_of([bin_("qmail-scan")], {0: m, 1: devnull, 2: log, 3: e},
                                        env),
        }
        # measured as qmaild, in a child: the parent (root) removes the install after
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                code = measure(a, modes)
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"chain.py: a run failed; see {tmp}/log" + ("" if a.k else " (use -k)"))
    finally:
        if writer:
            writer.kill()
            writer.wait()
        if a.k:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
