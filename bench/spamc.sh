#!/bin/sh
# spamc.sh - CPU per message of qmail-spamc (our side of spam scoring) against the CPU
# of the spamd answering it (issue 16, Performance).
#
#   bench/spamc.sh [N]        (root; Debian's spamd installed; N messages, default 200)
#
# Builds qmail-spamc in release, lays out a scratch HOME (bin/qmail-spamc, control/spamd,
# the qmail-spamd run script and its site configuration from the source tree, network
# tests off), starts spamd through that run script, then runs qmail-spamc N times as the
# chain would (message on fd 0, envelope on fd 3, output to /dev/null) with a 4 KiB ham
# message from a remote client, and prints qmail-spamc's user+system CPU per message
# (getrusage of the children), the wall time per message, and spamd's CPU per message
# (its processes' utime+stime from /proc before and after). A second pass with
# control/spamd pointing at nothing gives the "spamd down" path's cost.
set -eu
N=${1:-200}
SRC=$(cd "$(dirname "$0")/.." && pwd)
cd "$SRC"
cargo build --release -q -p qmail-spamc
W=$(mktemp -d /tmp/spamc-bench.XXXXXX)
chmod 755 "$W"
H="$W/home"
mkdir -p "$H/bin" "$H/control" "$H/supervise/qmail-spamd"
cp target/release/qmail-spamc "$H/bin/"
cp supervise/qmail-spamd/run "$H/supervise/qmail-spamd/"
cp control/spamassassin.cf "$H/control/"
# the run script asks qmail-showctl for two numbers: answer with their defaults
cat > "$H/bin/qmail-showctl" <<'EOF'
#!/bin/sh
case "$2" in spamdchildren) echo 2 ;; spamdnetwork) echo 0 ;; esac
EOF
chmod 755 "$H/bin/qmail-showctl"
SOCK="$H/spamd/spamd.sock"
echo "$SOCK" > "$H/control/spamd"
trap 'rm -rf "$W"' EXIT
python3 - "$H" "$N" "$SOCK" <<'EOF'
import os, resource, signal, subprocess, sys, time
home, n, sock = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# hold descriptor 3, so no pipe or file lands there; each run puts its envelope on it
if os.open("/dev/null", os.O_RDONLY) != 3:
    sys.exit("descriptor 3 is in use")
# spamd through the run script (which execs it), in a session of its own: its pid is
# the group to measure and to stop
log = open(os.path.join(home, "../spamd.log"), "wb")
spamd_proc = subprocess.Popen(["./run"], cwd=os.path.join(home, "supervise/qmail-spamd"),
                              env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log, start_new_session=True)
pgid = spamd_proc.pid
for _ in range(600):
    if subprocess.run(["spamc", "-U", sock, "-K"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode == 0:
        break
    time.sleep(0.2)
else:
    os.killpg(pgid, signal.SIGTERM)
    sys.exit(open(os.path.join(home, "../spamd.log")).read())
body = ("Shall we meet on Thursday to go through the quarterly budget and the design? " * 52)[:4000]
msg = ("Received: from mx.example.org (192.0.2.7)\n  by mx with SMTP; 6 Dec 2026 08:00:00 -0000\n"
       "From: colleague@example.org\nTo: joe@example.test\nSubject: meeting\n"
       "Message-ID: <m1@example.org>\nDate: Sun, 6 Dec 2026 08:00:00 +0000\n\n" + body + "\n").encode()
env_bytes = b"Fcolleague@example.org\0Tjoe@example.test\0\0"
spamc = os.path.join(home, "bin/qmail-spamc")
def spamd_cpu():
    t = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            if int(f[2]) != pgid:  # spamd and its children only
                continue
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t / os.sysconf("SC_CLK_TCK")
def run(count):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, w0 = spamd_cpu(), time.monotonic()
    last = b""
    for _ in range(count):
        mr, mw = os.pipe(); er, ew = os.pipe()
        os.write(mw, msg); os.close(mw)
        os.write(ew, env_bytes); os.close(ew)
        # the envelope on fd 3 without a preexec_fn: the child is spawned, not forked
        # from Python, so its CPU is qmail-spamc's own
        os.dup2(er, 3, inheritable=True); os.close(er)
        p = subprocess.run([spamc], stdin=mr, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           pass_fds=(3,), env={"TCPREMOTEIP": "192.0.2.7", "PROTO": "TCP"})
        os.close(mr)
        last = p.stderr
    w1, s1 = time.monotonic(), spamd_cpu()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / count * 1000
    return ours, (w1 - w0) / count * 1000, (s1 - s0) / count * 1000, last.decode().strip()
try:
    def setting(v):
        open(os.path.join(home, "control/spamd"), "w").write(v)
    setting("")
    run(5)
    ours, wall, spamd, line = run(n)
    print(f"off:     qmail-spamc {ours:.3f} ms CPU/msg, wall {wall:.1f} ms/msg (N={n}; no control/spamd: start, read, write)")
    setting(sock + "\n")
    run(5)
    ours, wall, spamd, line = run(n)
    print(f"scored:  qmail-spamc {ours:.3f} ms CPU/msg, spamd {spamd:.2f} ms CPU/msg, wall {wall:.1f} ms/msg")
    print(f"         last log line: {line}")
    setting(home + "/spamd/none.sock\n")
    ours, wall, spamd, line = run(n)
    print(f"down:    qmail-spamc {ours:.3f} ms CPU/msg, wall {wall:.1f} ms/msg")
    print(f"         last log line: {line}")
finally:
    os.killpg(pgid, signal.SIGTERM)
    spamd_proc.wait()
EOF
