#!/usr/bin/env bash
# bench/tcpserver.sh - connections per second: our tcpserver against Debian's ucspi-tcp.
#
# Usage:  bench/tcpserver.sh            # N=5000 connections, C=20 at a time, 3 rounds
#         N=2000 C=50 ROUNDS=1 bench/tcpserver.sh
#         SKIP_BUILD=1 ...              # use target/release/tcpserver as it is
#
# Both servers run the same trivial program (/bin/echo ok) with the same options
# (-R -H -l0 -c 40 -b 100: no ident or DNS lookups, 40 children at most), listening on
# 127.0.0.1. bench/connload.py (asyncio) opens N connections, C at a time, and reads each
# until the server closes it. Rounds alternate between the two servers so that machine
# noise hits both; the best round of each is reported, with the ratio ours/Debian.
# Nothing leaves the machine. Needs the Debian package ucspi-tcp and python3.

set -euo pipefail
export LC_ALL=C
N=${N:-5000}
C=${C:-20}
ROUNDS=${ROUNDS:-3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OURS=$REPO/target/release/tcpserver
THEIRS=/usr/bin/tcpserver
OUTDIR=$REPO/bench/out
mkdir -p "$OUTDIR"
OUT=$OUTDIR/tcpserver-$(date +%Y%m%d-%H%M%S).txt

[ -x "$THEIRS" ] || { echo "bench: Debian's tcpserver missing: apt-get install ucspi-tcp" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$REPO" && cargo build --release -p tcpserver >&2)
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() { # $1 = binary, $2 = the variable to set to its port (not in a subshell: the
          # server's pid must reach pids for the cleanup)
    local portfile
    portfile=$(mktemp)
    "$1" -1 -R -H -l0 -c 40 -b 100 127.0.0.1 0 /bin/echo ok >"$portfile" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$portfile" ] && break; sleep 0.05; done
    printf -v "$2" '%s' "$(cat "$portfile")"; rm -f "$portfile"
}

start "$OURS" p_ours
start "$THEIRS" p_theirs
python3 "$REPO/bench/connload.py" 127.0.0.1 "$p_ours" 200 "$C" >/dev/null     # warm-up
python3 "$REPO/bench/connload.py" 127.0.0.1 "$p_theirs" 200 "$C" >/dev/null

best_ours=0 best_theirs=0
for r in $(seq "$ROUNDS"); do
    read -r _ s_o rate_o fail_o < <(python3 "$REPO/bench/connload.py" 127.0.0.1 "$p_ours" "$N" "$C")
    read -r _ s_t rate_t fail_t < <(python3 "$REPO/bench/connload.py" 127.0.0.1 "$p_theirs" "$N" "$C")
    echo "round $r: ours $rate_o conn/s (${s_o}s, $fail_o failed), Debian $rate_t conn/s (${s_t}s, $fail_t failed)" | tee -a "$OUT"
    best_ours=$(awk -v a="$best_ours" -v b="$rate_o" 'BEGIN{print (b>a)?b:a}')
    best_theirs=$(awk -v a="$best_theirs" -v b="$rate_t" 'BEGIN{print (b>a)?b:a}')
done
ratio=$(awk -v a="$best_ours" -v b="$best_theirs" 'BEGIN{printf "%.2f", a/b}')
{
    echo
    echo "| server | best conn/s (N=$N, C=$C, $ROUNDS rounds) |"
    echo "|---|---|"
    echo "| ours (target/release/tcpserver) | $best_ours |"
    echo "| Debian ucspi-tcp 0.88 | $best_theirs |"
    echo "| ratio ours/Debian | $ratio |"
} | tee -a "$OUT"
