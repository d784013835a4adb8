#!/usr/bin/env bash
# bench/pop3.sh - POP3 retrieval rate: our qmail-popup/checkpassword/qmail-pop3d under our
# tcpserver against Dovecot's POP3 server (Debian's dovecot-pop3d), same Maildir, same run.
#
# Usage:  sudo bench/pop3.sh                  # N=10000 messages of 4 KiB, 3 rounds
#         sudo N=2000 ROUNDS=1 bench/pop3.sh
#         sudo SKIP_BUILD=1 ...               # use target/release as it is
#         sudo SKIP_DOVECOT=1 ...             # ours only
#         sudo KEEP=1 ...                     # keep the temp dir (install, logs)
#
# Needs root: our chain then runs as it does in production (tcpserver as root, qmail-popup's
# network child as qmaild, checkpassword setuid to the user, qmail-pop3d as the user), and
# Dovecot is installed and started privately. Installs dovecot-pop3d with apt-get if it is
# missing (with a policy-rc.d that keeps Debian from starting the system-wide service) and
# creates the user `benchp` (kept; its password is reset to a random one each run).
#
# Each round: the Maildir is rebuilt from a template (N files of 4,096 body bytes in new/,
# mtimes in the past), `sync`; then one Python poplib client logs in (USER/PASS), STAT,
# RETR i + DELE i for every message, QUIT; the clock runs from connect to the QUIT reply.
# Both servers listen on 127.0.0.1 with TCP_NODELAY (ours: tcpserver -D; Dovecot sets it).
# msgs/s = N / elapsed. server-ms/msg = CPU (user+sys) of the server's process tree (ours:
# tcpserver and its children, whose time is collected when they exit; Dovecot: master and
# its children), from /proc before and after, divided by N. The best round of each is
# reported, with the ratio ours/Dovecot. Rounds alternate between the servers.
# Nothing leaves the machine. Output also goes to bench/out/pop3-DATE.txt.

set -euo pipefail
export LC_ALL=C
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REL=$REPO/target/release
OUTDIR=$REPO/bench/out
mkdir -p "$OUTDIR"
OUT=$OUTDIR/pop3-$(date +%Y%m%d-%H%M%S).txt
USER_NAME=benchp

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$REPO" && cargo build --release -p qmail-install -p tcpserver -p qmail-popup \
        -p qmail-pop3d -p checkpassword >&2)
fi

TMP=$(mktemp -d /tmp/qmail-bench-pop3.XXXXXX)
chmod 755 "$TMP"
pids=()
created_policy=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$TMP/dovecot.conf" ] && [ -x /usr/sbin/dovecot ]; then
        /usr/sbin/dovecot -c "$TMP/dovecot.conf" stop 2>/dev/null || true
    fi
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "${KEEP:-0}" = 1 ] && echo "bench: kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

# the user and its password
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd -m -s /bin/sh "$USER_NAME"
fi
PASS=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
echo "$USER_NAME:$PASS" | chpasswd
UHOME=$(getent passwd "$USER_NAME" | cut -d: -f6)

# the template mailbox
TEMPLATE=$TMP/template
mkdir -p "$TEMPLATE"/{new,cur,tmp}
"$PY" - "$TEMPLATE" "$N" <<'EOF'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
body = ("x" * 63 + "\n") * 64
base = int(time.time()) - 100000
for i in range(n):
    p = os.path.join(d, "new", "%d.M%dP1.bench.test" % (base + i, i))
    with open(p, "w") as f:
        f.write("From: bench@bench.test\nTo: %s@bench.test\nSubject: message %d\n\n%s" % ("benchp", i, body))
    os.utime(p, (base + i, base + i))
EOF
reset_maildir() {
    rm -rf "$UHOME/Maildir"
    cp -a "$TEMPLATE" "$UHOME/Maildir"
    chown -R "$USER_NAME": "$UHOME/Maildir"
    chmod -R go-rwx "$UHOME/Maildir"
    sync
    sleep 1
}

# ours
"$REL/qmail-install" --root "$TMP/qmail" --me bench.test >/dev/null
echo 1 > "$TMP/qmail/control/pop3plaintext"
"$TMP/qmail/bin/tcpserver" -1 -D -H -R -c 40 127.0.0.1 0 \
    "$TMP/qmail/bin/qmail-popup" bench.test "$TMP/qmail/bin/checkpassword" \
    "$TMP/qmail/bin/qmail-pop3d" Maildir >"$TMP/ours.port" 2>"$TMP/ours.log" &
pids+=($!)
OURS_PID=$!
for _ in $(seq 100); do [ -s "$TMP/ours.port" ] && break; sleep 0.05; done
OURS_PORT=$(cat "$TMP/ours.port")

# Dovecot
DOVECOT_PORT=
DOVECOT_PID=
if [ "${SKIP_DOVECOT:-0}" != 1 ]; then
    if [ ! -x /usr/sbin/dovecot ] || ! dpkg -s dovecot-pop3d >/dev/null 2>&1; then
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            created_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-pop3d >&2
        if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; created_policy=0; fi
    fi
    DOVECOT_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$TMP/dovecot-run" "$TMP/dovecot-state"
    cat > "$TMP/dovecot.conf" <<EOF
base_dir = $TMP/dovecot-run
state_dir = $TMP/dovecot-state
log_path = $TMP/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
pop3_uidl_format = %f
passdb {
  driver = shadow
}
userdb {
  driver = passwd
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DOVECOT_PORT
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
}
EOF
    /usr/sbin/dovecot -c "$TMP/dovecot.conf"
    for _ in $(seq 100); do [ -s "$TMP/dovecot-run/master.pid" ] && break; sleep 0.05; done
    DOVECOT_PID=$(cat "$TMP/dovecot-run/master.pid")
fi

# one timed client run: prints "seconds"
client() { # $1 port
    "$PY" - "$1" "$USER_NAME" "$PASS" "$N" <<'EOF'
import poplib, sys, time
port, user, pw, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
p = poplib.POP3('127.0.0.1', port, timeout=60)
p.user(user); p.pass_(pw)
count, size = p.stat()
if count != n:
    sys.exit("expected %d messages, server says %d" % (n, count))
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    if len(lines) < 68:
        sys.exit("short message %d: %d lines" % (i, len(lines)))
    p.dele(i)
p.quit()
print("%.3f" % (time.perf_counter() - t0))
EOF
}

# CPU ticks (user+sys, own and reaped children) of a process and its live descendants
cputicks() { # $1 pid
    "$PY" - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1])
kids = {}
stats = {}
for d in os.listdir('/proc'):
    if not d.isdigit():
        continue
    try:
        s = open('/proc/%s/stat' % d).read()
    except OSError:
        continue
    f = s[s.rindex(')') + 2:].split()
    stats[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    kids.setdefault(int(f[1]), []).append(int(d))
tot, todo = 0, [root]
while todo:
    p = todo.pop()
    if p in stats:
        tot += stats[p][1]
    todo.extend(kids.get(p, []))
print(tot)
EOF
}
HZ=$(getconf CLK_TCK)

round() { # $1 name, $2 port, $3 server pid -> "rate ms_per_msg"
    reset_maildir
    local c0 c1 secs
    c0=$(cputicks "$3")
    secs=$(client "$2")
    sleep 0.2
    c1=$(cputicks "$3")
    left=$(find "$UHOME/Maildir/new" "$UHOME/Maildir/cur" -type f ! -name 'dovecot*' | wc -l)
    [ "$left" = 0 ] || { echo "bench: $1 left $left messages" >&2; exit 1; }
    awk -v n="$N" -v s="$secs" -v c=$((c1 - c0)) -v hz="$HZ" \
        'BEGIN{printf "%.0f %.3f %.2f\n", n/s, c*1000/hz/n, s}'
}

best_o=0 best_d=0 cpu_o=0 cpu_d=0
{
    echo "POP3 RETR+DELE of $N x 4 KiB messages, one poplib client, 127.0.0.1, $(date -u +%FT%TZ)"
    echo "ours: $(cd "$REPO" && git rev-parse --short HEAD) release; Dovecot: $( [ -n "$DOVECOT_PID" ] && /usr/sbin/dovecot --version || echo skipped)"
} | tee "$OUT"
for r in $(seq "$ROUNDS"); do
    read -r rate cpu secs < <(round ours "$OURS_PORT" "$OURS_PID")
    line="round $r: ours $rate msgs/s (${secs}s, $cpu server-ms/msg)"
    if awk -v a="$rate" -v b="$best_o" 'BEGIN{exit !(a>b)}'; then best_o=$rate cpu_o=$cpu; fi
    if [ -n "$DOVECOT_PID" ]; then
        read -r drate dcpu dsecs < <(round dovecot "$DOVECOT_PORT" "$DOVECOT_PID")
        line="$line, Dovecot $drate msgs/s (${dsecs}s, $dcpu server-ms/msg)"
        if awk -v a="$drate" -v b="$best_d" 'BEGIN{exit !(a>b)}'; then best_d=$drate cpu_d=$dcpu; fi
    fi
    echo "$line" | tee -a "$OUT"
done
{
    echo
    printf '%-10s %10s %15s\n' system msgs/s server-ms/msg
    printf '%-10s %10s %15s\n' ours "$best_o" "$cpu_o"
    if [ -n "$DOVECOT_PID" ]; then
        printf '%-10s %10s %15s\n' Dovecot "$best_d" "$cpu_d"
        echo "ratio ours/Dovecot: $(awk -v a="$best_o" -v b="$best_d" 'BEGIN{printf "%.2f", a/b}')"
    fi
} | tee -a "$OUT"
