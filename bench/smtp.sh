#!/usr/bin/env bash
# bench/smtp.sh - SMTP-in to Maildir benchmark: ours (tcpserver + qmail-smtpd + qmail-queue
# + qmail-send) against Postfix's smtpd on this machine, same load, same run.
#
# Usage (as root, from anywhere):   bench/smtp.sh
#        N=500 bench/smtp.sh          # messages per run (default 2000)
#        SESSIONS="1 10" ...          # parallel smtp-source sessions (default "1 10 50")
#        SIZE=4096 ...                # body bytes per message (smtp-source -l, default 4096)
#        KEEP=1 ...                   # keep the temp install and logs
#        SKIP_BUILD=1 ...             # use target/$PROFILE as it is
#        PROFILE=debug ...            # binaries from target/debug (default release)
#        SKIP_POSTFIX=1 ...           # only ours (no ratio)
#        CPU=0 ...                    # no CPU-per-program table (no perf, no second run)
#        AHEAD=N ...                  # our tcpserver with -A N (default 100, as the run
#                                     # scripts install it: the qmail-smtpd started ahead
#                                     # forks a process for each connection, N per exec,
#                                     # doc/sessions.md); AHEAD=1: -a (one exec per
#                                     # connection, started ahead of it); AHEAD=0: neither
#                                     # (tcpserver starts qmail-smtpd at each connection)
#        NICE=N ...                   # our tcpserver and qmail-smtpd under nice -n N
#                                     # (default 5, as the run scripts install it from
#                                     # control/nicesmtpd: delivery before intake on a
#                                     # busy CPU, doc/sessions.md); NICE=0: no nice
#        CONCURRENCYLOCAL=50 ...      # our control/concurrencylocal (default: the
#                                     # installed default, 10)
#        FILTER="queued none scan scan-exec scan+clamd"  # ours once per mode (default "queued"):
#                                     # queued = qmail-queued running (qmail-smtpd hands
#                                     # each message to the writer, the installed
#                                     # default, doc/queue-writer.md); none = no writer,
#                                     # qmail-smtpd execs qmail-queue per message; scan = the
#                                     # chain with qmail-scan in control/filters and
#                                     # the default scanrules, qmail-queued and
#                                     # qmail-qfilterd running (the server runs the
#                                     # chain, qmail-smtpd queues its output, as
#                                     # installed); scan-exec = the same without
#                                     # qmail-qfilterd (qmail-smtpd runs qmail-qfilter
#                                     # per message, which hands its output to the
#                                     # writer);
#                                     # scan+clamd = the same with a clamd of our own (a
#                                     # two-signature database, no freshclam) in
#                                     # control/clamd (issue 14 "Performance")
#
# What it does:
#   1. cargo build --release of the programs involved; qmail-install into a fresh dir under
#      /tmp with locals = rcpthosts = bench.test; user benchq (created if missing);
#      ~benchq/Maildir/; qmail-start ./Maildir/; our tcpserver on 127.0.0.1 (ephemeral
#      port, -c 100, -u qmaild -g nofiles) running qmail-smtpd.
#   2. For each S in SESSIONS: Postfix's smtp-source -s S -m N -l SIZE to
#      benchq@bench.test; "accepted" = N / time until smtp-source returned (every message
#      had its 250), "delivered" = N / time until N files are in Maildir/new.
#   3. The same against Postfix, alternating with ours run by run (a change of the
#      machine's load hits both): main.cf and master.cf saved, Postfix reconfigured
#      loopback-only with an extra smtpd on 127.0.0.1:$PFPORT delivering to
#      ~benchq/Maildir-postfix/ (home_mailbox), then both files restored and Postfix left
#      running or stopped as it was.
#   4. Peak RSS of one qmail-smtpd process for one whole session with a message
#      (/usr/bin/time under swaks --pipe), and the largest RSS of any qmail-smtpd and
#      of any Postfix smtpd process seen during the runs (ps samples every 50 ms).
#   5. CPU per message per program, from a second run of each load made only for it
#      (after the timed runs of that load, ours and Postfix alternating again): `perf
#      record -a -e task-clock` samples (one per 0.1 ms of CPU on any core) during the
#      run, counted by process name (comm) with `perf report --sort comm`. The profiler
#      is kept out of the timed runs because at that rate it slowed both systems by
#      15-30 % on the benchmark machine, and not by the same share (bench/README.md,
#      "Session 11"); the profiled runs' own rates are printed beside their CPU figures.
#      Counted: ours per program (tcpserver, qmail-smtpd,
#      qmail-queue, qmail-send, qmail-lspawn, qmail-local, qmail-clean, qmail-rspawn),
#      Postfix per daemon (master, smtpd, cleanup, trivial-rewrite, qmgr, local, ...).
#      Short-lived processes are counted as well as daemons; kernel work done for a
#      process is counted to it; a forked child counts to its parent's name until it
#      exec's (tcpserver's fork before qmail-smtpd starts counts to tcpserver).
#   6. A table and the ratios, also written to bench/out/smtp-<date>.txt.
#
# Nothing leaves the machine: both systems know only bench.test, Postfix has
# default_transport=relay_transport=error, every listener is on 127.0.0.1.

set -euo pipefail
export LC_ALL=C

N=${N:-2000}
SESSIONS=${SESSIONS:-"1 10 50"}
SIZE=${SIZE:-4096}
PROFILE=${PROFILE:-release}
PFPORT=${PFPORT:-2525}
DOMAIN=bench.test
BUSER=benchq
KEEP=${KEEP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_POSTFIX=${SKIP_POSTFIX:-0}
CPU=${CPU:-1}
FILTER=${FILTER:-queued}
PERF_PERIOD_NS=100000
OURS_COMMS="tcpserver qmail-smtpd qmail-queue qmail-queued qmail-send qmail-lspawn qmail-local qmail-clean qmail-rspawn"
FILTER_COMMS="qmail-qfilter qmail-qfilterd qmail-scan clamd"
PF_COMMS="master smtpd cleanup trivial-rewrite qmgr local postlogd anvil proxymap tlsmgr scache"
POLL=0.02
SEND_LIMIT=$((120 + N / 5))
DRAIN_LIMIT=$((120 + N / 10))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTDIR=$REPO/bench/out
STAMP=$(date +%Y%m%d-%H%M%S)

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FATAL: %s\n' "$*" >&2; exit 1; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ $(id -u) == 0 ]] || die "run as root (real users, tcpserver -u qmaild, drives Postfix)"
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[[ -x $SMTP_SOURCE ]] || die "smtp-source (package postfix) is missing"
if [[ $CPU == 1 ]] && ! command -v perf >/dev/null; then
    say "perf is missing (package linux-perf): no CPU-per-program table"
    CPU=0
fi
for t in cargo useradd runuser getent awk swaks; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
for m in $FILTER; do
    [[ $m == queued || $m == none || $m == scan || $m == scan-exec || $m == scan+clamd ]] || die "FILTER modes are queued, none, scan, scan-exec, scan+clamd (got '$m')"
    [[ $m == scan+clamd ]] && { command -v clamd >/dev/null || die "clamd (package clamav-daemon) is missing"; }
done

WORK="" QPID="" QDPID="" QFPID="" Q="" TCPPID="" BHOME="" PERFPID="" CLAMPID="" CLAMSOCK=""
PF_TOUCHED=0 PF_WAS_RUNNING=0 PF_MAIN="" PF_MASTER=""
RESULTS=()

postfix_running() { postfix status >/dev/null 2>&1; }
wait_postfix_down() {
    local i
    for ((i = 0; i < 100; i++)); do postfix_running || return 0; sleep 0.1; done
    say "WARNING: Postfix still running 10s after postfix stop"
}

stop_ours() {
    local i
    if [[ -n $TCPPID ]]; then
        kill -TERM "$TCPPID" 2>/dev/null || true
        wait "$TCPPID" 2>/dev/null || true
        TCPPID=""
    fi
    [[ -n $QPID ]] || return 0
    if kill -0 "$QPID" 2>/dev/null; then
        kill -TERM "$QPID" 2>/dev/null
        for ((i = 0; i < 300; i++)); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$QPID" 2>/dev/null && kill -KILL "$QPID" 2>/dev/null
    fi
    wait "$QPID" 2>/dev/null || true
    QPID=""
}

cleanup() {
    local rc=$?
    set +e
    cpu_stop
    stop_queued
    stop_qfilterd
    stop_ours
    if [[ -n $CLAMPID ]]; then kill -TERM "$CLAMPID" 2>/dev/null; wait "$CLAMPID" 2>/dev/null; fi
    if ((PF_TOUCHED)); then
        postfix stop >/dev/null 2>&1
        wait_postfix_down
        [[ -n $PF_MAIN && -f $PF_MAIN ]] && cp -p "$PF_MAIN" /etc/postfix/main.cf
        [[ -n $PF_MASTER && -f $PF_MASTER ]] && cp -p "$PF_MASTER" /etc/postfix/master.cf
        say "restored /etc/postfix/main.cf and master.cf"
        if ((PF_WAS_RUNNING)); then postfix start >/dev/null 2>&1; fi
    fi
    if [[ $KEEP != 1 && -n $BHOME ]]; then
        for d in "$BHOME/Maildir" "$BHOME/Maildir-postfix"; do
            [[ -d $d/new ]] && find "$d/new" "$d/cur" "$d/tmp" -mindepth 1 -maxdepth 1 -type f -delete
        done
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then say "KEEP=1: left $WORK"; else rm -rf -- "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { printf '%s' "$EPOCHREALTIME"; }
count_new() {
    local f
    shopt -s nullglob
    f=("$1"/new/*)
    shopt -u nullglob
    COUNT=${#f[@]}
}
wait_count() {
    local dir=$1 want=$2 limit=$3 end
    end=$(awk -v a="$(now)" -v b="$limit" 'BEGIN { printf "%.6f", a + b }')
    while :; do
        count_new "$dir"
        ((COUNT >= want)) && return 0
        if awk -v a="$(now)" -v b="$end" 'BEGIN { exit !(a > b) }'; then return 1; fi
        sleep "$POLL"
    done
}
# The last run's messages are moved aside into $WORK/trash, not deleted: on ext4 without
# a journal (this VM's root) the inode allocator skips every inode freed in the last
# 60-360 s, one inode-table lookup each, from the start of the block group, so deleting
# the 1,000 files of the last run made every delivery of the next one scan past them
# (half of qmail-lspawn's CPU in perf, and Postfix's local alike). The trash is deleted
# when the benchmark ends.
TRASH_N=0
reset_maildir() {
    local dir=$1 d
    install -d -m 700 -o "$BUSER" -g "$BUSER" "$dir"
    mkdir -p "$WORK/trash"
    for d in new cur tmp; do
        if [[ -d $dir/$d ]]; then
            TRASH_N=$((TRASH_N + 1))
            mv -- "${dir:?}/$d" "$WORK/trash/$TRASH_N"
        fi
        install -d -m 700 -o "$BUSER" -g "$BUSER" "$dir/$d"
    done
    sync
    sleep 1
}

# Largest RSS (KiB) of processes named NAME, sampled until the file STOP exists.
sample_rss() {
    local name=$1 stop=$2 out=$3 max=0 r
    while [[ ! -e $stop ]]; do
        for r in $(ps -C "$name" -o rss= 2>/dev/null); do ((r > max)) && max=$r; done
        sleep 0.05
    done
    echo "$max" >"$out"
}

# cpu_start FILE: system-wide CPU samples into FILE until cpu_stop.
cpu_start() {
    [[ $CPU == 1 ]] || return 0
    rm -f "$1"
    perf record -q -a -e task-clock -c "$PERF_PERIOD_NS" -o "$1" >/dev/null 2>"$1.err" &
    PERFPID=$!
    local i
    for ((i = 0; i < 100; i++)); do [[ -s $1 ]] && break; sleep 0.02; done
    sleep 0.2 # perf opens its per-CPU events after it writes the file header
}
cpu_stop() {
    [[ -n $PERFPID ]] || return 0
    kill -INT "$PERFPID" 2>/dev/null || true
    wait "$PERFPID" 2>/dev/null || true # perf exits 130 on SIGINT
    PERFPID=""
}
# cpu_line FILE MESSAGES "COMM..." : "total T | comm ms ..." in ms of CPU per message for
# the named processes (and "other" for every process not named and not perf itself).
cpu_line() {
    local file=$1 n=$2 comms=$3
    [[ -s $file ]] || { echo "no perf data"; return 0; }
    perf report -i "$file" --sort comm -n --stdio -q 2>/dev/null |
        awk -v n="$n" -v per="$PERF_PERIOD_NS" -v comms="$comms" '
            NF >= 3 && $1 !~ /^#/ { c = $3; for (i = 4; i <= NF; i++) c = c " " $i; s[c] += $2 }
            END {
                k = split(comms, want, " "); line = ""; tot = 0
                for (i = 1; i <= k; i++) {
                    ms = s[want[i]] * per / 1e6 / n; tot += ms; mine[want[i]] = 1
                    line = line sprintf(" %s %.2f", want[i], ms)
                }
                for (c in s) if (!(c in mine) && c != "perf") other += s[c]
                printf "total %.2f |%s | other %.2f\n", tot, line, other * per / 1e6 / n
            }'
}

# start_clamd: a clamd of our own in $WORK/clamd (the test harness's recipe,
# tests/src/clamd.rs: EICAR's MD5 and text as the whole database); sets CLAMSOCK once it
# listens.
start_clamd() {
    local d=$WORK/clamd i hex
    mkdir -p "$d/db" "$d/tmp"
    chmod 755 "$d" # qmailf (the filters' user) must reach the socket
    printf '44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR-HDB\n' >"$d/db/test.hdb"
    hex=$(printf 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' | od -An -tx1 | tr -d ' \n')
    printf 'Test.EICAR-NDB:0:*:%s\n' "$hex" >"$d/db/test.ndb"
    printf '%s\n' "LocalSocket $d/clamd.sock" "LocalSocketMode 666" "FixStaleSocket yes" \
        "Foreground yes" "DatabaseDirectory $d/db" "TemporaryDirectory $d/tmp" \
        "LogFile $d/clamd.log" "PidFile $d/clamd.pid" "StreamMaxLength 10M" "SelfCheck 0" \
        "Bytecode no" >"$d/clamd.conf"
    clamd -c "$d/clamd.conf" >/dev/null 2>&1 &
    CLAMPID=$!
    for ((i = 0; i < 600; i++)); do [[ -S $d/clamd.sock ]] && break; sleep 0.1; done
    [[ -S $d/clamd.sock ]] || die "clamd did not start (see $d/clamd.log)"
    CLAMSOCK=$d/clamd.sock
    say "clamd listening on $CLAMSOCK"
}

# start_queued / stop_queued: our qmail-queued (as qmailq, as its run script starts it),
# logging to $WORK/queued.log; stopped, its socket is removed (qmail-smtpd then execs
# qmail-queue per message).
start_queued() {
    [[ -n $QDPID ]] && return 0
    rm -f "$Q/queued/socket"
    (cd / && exec env - PATH="$Q/bin:/usr/bin:/bin" "$Q/bin/setuidgid" qmailq "$Q/bin/qmail-queued" \
        >>"$WORK/queued.log" 2>&1) &
    QDPID=$!
    local i
    for ((i = 0; i < 100; i++)); do [[ -S $Q/queued/socket ]] && return 0; sleep 0.05; done
    cat "$WORK/queued.log" >&2
    die "qmail-queued did not start"
}
stop_queued() {
    [[ -n $QDPID ]] || return 0
    kill -TERM "$QDPID" 2>/dev/null || true
    wait "$QDPID" 2>/dev/null || true
    QDPID=""
    rm -f "$Q/queued/socket"
}

# start_qfilterd / stop_qfilterd: our qmail-qfilterd (started by root, it becomes
# qmailf itself, as from its run script), logging to $WORK/qfilterd.log; stopped, its socket is removed (qmail-smtpd
# then runs qmail-qfilter per message).
start_qfilterd() {
    [[ -n $QFPID ]] && return 0
    rm -f "$Q/qfilterd/socket"
    (cd / && exec env - PATH="$Q/bin:/usr/bin:/bin" "$Q/bin/qmail-qfilterd" \
        >>"$WORK/qfilterd.log" 2>&1) &
    QFPID=$!
    local i
    for ((i = 0; i < 100; i++)); do [[ -S $Q/qfilterd/socket ]] && return 0; sleep 0.05; done
    cat "$WORK/qfilterd.log" >&2
    die "qmail-qfilterd did not start"
}
stop_qfilterd() {
    [[ -n $QFPID ]] || return 0
    kill -TERM "$QFPID" 2>/dev/null || true
    wait "$QFPID" 2>/dev/null || true
    QFPID=""
    rm -f "$Q/qfilterd/socket"
}

# set_filter MODE: control/filters and control/clamd for FILTER mode MODE (read by
# qmail-smtpd's queue client and qmail-scan per message: no restart needed).
set_filter() {
    : >"$Q/control/filters"
    rm -f "$Q/control/clamd"
    # the writer runs in every mode but none, as installed: the chain hands its
    # message to it as qmail-smtpd does (doc/queue-writer.md section 7)
    if [[ $1 == none ]]; then stop_queued; else start_queued; fi
    if [[ $1 == scan || $1 == scan+clamd ]]; then start_qfilterd; else stop_qfilterd; fi
    [[ $1 == none || $1 == queued ]] && return 0
    printf '%s\n' "$Q/bin/qmail-scan" >"$Q/control/filters"
    [[ $1 == scan+clamd ]] && printf '%s\n' "$CLAMSOCK" >"$Q/control/clamd"
    return 0
}

# run_load LABEL MAILDIR PORT SESSIONS PROCNAME PROFILE: sets ACC_RATE DEL_RATE DEL_SECS RSS,
# and with PROFILE=1 (and CPU=1) CPU_LINE (ms of CPU per message per program, see cpu_line).
run_load() {
    local label=$1 dir=$2 port=$3 s=$4 pname=$5 profile=$6 t0 t1 t2 stop=$WORK/stop.$$ rssf=$WORK/rss.$$
    reset_maildir "$dir"
    rm -f "$stop"
    sample_rss "$pname" "$stop" "$rssf" &
    local spid=$!
    CPU_LINE=""
    [[ $profile == 1 ]] && cpu_start "$WORK/perf.data"
    local how=""
    [[ $profile == 1 ]] && how=", under perf"
    say "$label: $N messages, $s sessions$how"
    t0=$(now)
    if ! timeout "$SEND_LIMIT" "$SMTP_SOURCE" -s "$s" -m "$N" -l "$SIZE" -f "bench@$DOMAIN" \
        -t "$BUSER@$DOMAIN" "127.0.0.1:$port"; then
        touch "$stop"
        cpu_stop
        die "$label: smtp-source failed or took over ${SEND_LIMIT}s"
    fi
    t1=$(now)
    if ! wait_count "$dir" "$N" "$DRAIN_LIMIT"; then
        touch "$stop"
        cpu_stop
        count_new "$dir"
        die "$label: only $COUNT of $N messages in $dir/new after ${DRAIN_LIMIT}s"
    fi
    t2=$(now)
    touch "$stop"
    cpu_stop
    local comms=$OURS_COMMS
    [[ $label == ours/scan* ]] && comms="$OURS_COMMS $FILTER_COMMS"
    [[ $label == postfix ]] && comms=$PF_COMMS
    [[ $profile == 1 && $CPU == 1 ]] && CPU_LINE=$(cpu_line "$WORK/perf.data" "$N" "$comms")
    wait "$spid" || true
    RSS=$(cat "$rssf")
    ACC_RATE=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "%.1f", n / (b - a) }')
    DEL_RATE=$(awk -v a="$t0" -v b="$t2" -v n="$N" 'BEGIN { printf "%.1f", n / (b - a) }')
    DEL_SECS=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
    say "$label: accepted $ACC_RATE msgs/s, delivered $DEL_RATE msgs/s (${DEL_SECS}s), peak process RSS ${RSS} KiB"
    [[ -n $CPU_LINE ]] && say "$label: CPU ms per message: $CPU_LINE"
    return 0
}

# ---------------------------------------------------------------- setup
cd "$REPO"
BIN=$REPO/target/$PROFILE
if [[ $SKIP_BUILD != 1 ]]; then
    say "building $PROFILE binaries"
    flag=()
    [[ $PROFILE == release ]] && flag=(--release)
    cargo build "${flag[@]}" -p qmail-install -p qmail-queue -p qmail-start -p qmail-send \
        -p qmail-lspawn -p qmail-local -p qmail-rspawn -p qmail-remote -p qmail-clean \
        -p qmail-smtpd -p tcpserver -p maildirmake -p qmail-qfilter -p qmail-qfilterd -p qmail-scan \
        -p qmail-queued -p setuidgid
fi
[[ -x $BIN/qmail-install && -x $BIN/qmail-smtpd && -x $BIN/tcpserver ]] || die "binaries missing in $BIN"

WORK=$(mktemp -d /tmp/qmail-smtpbench.XXXXXX)
chmod 755 "$WORK"
Q=$WORK/qmail
LOG=$WORK/qmail-send.log
"$BIN/qmail-install" --root "$Q" --me "mx.$DOMAIN" >&2
printf 'mx.%s\n%s\n' "$DOMAIN" "$DOMAIN" >"$Q/control/locals"
printf 'mx.%s\n%s\n' "$DOMAIN" "$DOMAIN" >"$Q/control/rcpthosts"
[[ -n ${CONCURRENCYLOCAL:-} ]] && printf '%s\n' "$CONCURRENCYLOCAL" >"$Q/control/concurrencylocal"

getent passwd "$BUSER" >/dev/null || { say "creating user $BUSER"; useradd -m "$BUSER"; }
BHOME=$(getent passwd "$BUSER" | cut -d: -f6)
OURS_MD=$BHOME/Maildir
PF_MD=$BHOME/Maildir-postfix

say "starting our system from $Q"
(cd / && exec env - PATH="$Q/bin:/usr/bin:/bin" "$Q/bin/qmail-start" ./Maildir/ >"$LOG" 2>&1) &
QPID=$!
sleep 0.5
kill -0 "$QPID" 2>/dev/null || { cat "$LOG" >&2; die "qmail-start exited"; }
PORTF=$WORK/port
AHEADARGS=()
AHEAD=${AHEAD:-100}
NICE=${NICE:-5}
if [[ $AHEAD -gt 1 ]]; then AHEADARGS=(-A "$AHEAD"); elif [[ $AHEAD == 1 ]]; then AHEADARGS=(-a); fi
nice -n "$NICE" "$Q/bin/tcpserver" -1 -q "${AHEADARGS[@]}" -H -R -l "mx.$DOMAIN" -c 100 -b 100 -u "$(id -u qmaild)" \
    -g "$(getent group nofiles | cut -d: -f3)" 127.0.0.1 0 "$Q/bin/qmail-smtpd" >"$PORTF" \
    2>"$WORK/smtpd.log" &
TCPPID=$!
for ((i = 0; i < 100; i++)); do [[ -s $PORTF ]] && break; sleep 0.05; done
PORT=$(tr -dc 0-9 <"$PORTF")
[[ -n $PORT ]] || die "our tcpserver did not start"
say "ours: tcpserver on 127.0.0.1:$PORT"
[[ " $FILTER " == *" scan+clamd "* ]] && start_clamd

# Peak RSS of one qmail-smtpd session with one message. swaks ignores SIGCHLD and its
# children inherit that; the wrapper restores it so that it can wait for qmail-smtpd.
RSSF=$WORK/smtpd.rss
printf '%s\n' '#!/usr/bin/env python3' \
    'import os, signal, sys' \
    'signal.signal(signal.SIGCHLD, signal.SIG_DFL)' \
    'os.execv("/usr/bin/time", ["time", "-f", "%M", "-o", sys.argv[2], "env", "TCPREMOTEIP=127.0.0.1", sys.argv[1]])' \
    >"$WORK/rss-wrap"
chmod 755 "$WORK/rss-wrap"
swaks --pipe "$WORK/rss-wrap $Q/bin/qmail-smtpd $RSSF" \
    --from "bench@$DOMAIN" --to "$BUSER@$DOMAIN" --silent 2 >/dev/null 2>&1 ||
    say "WARNING: swaks session for the RSS measurement failed"
SMTPD_RSS=$(tr -dc 0-9 <"$RSSF" 2>/dev/null || echo "?")
say "ours: one qmail-smtpd session peaked at ${SMTPD_RSS} KiB RSS"

# ---------------------------------------------------------------- Postfix, configured
# alongside ours; the runs alternate (ours, Postfix, ours, ...) so that a change in the
# machine's load during the benchmark hits both systems alike.
PF_VER="" PF_RSS=0
if [[ $SKIP_POSTFIX != 1 ]]; then
    command -v postfix >/dev/null && command -v postconf >/dev/null || die "Postfix is not installed"
    PF_VER=$(postconf -d -h mail_version)
    postfix_running && PF_WAS_RUNNING=1
    PF_MAIN=$WORK/main.cf.saved PF_MASTER=$WORK/master.cf.saved
    cp -p /etc/postfix/main.cf "$PF_MAIN"
    cp -p /etc/postfix/master.cf "$PF_MASTER"
    PF_TOUCHED=1
    if ((PF_WAS_RUNNING)); then postfix stop >/dev/null 2>&1 || true; wait_postfix_down; fi
    postconf -e inet_interfaces=loopback-only "mydestination=localhost, $DOMAIN, mx.$DOMAIN" \
        home_mailbox=Maildir-postfix/ mailbox_command= mailbox_transport= fallback_transport= \
        default_transport=error relay_transport=error relayhost= mynetworks=127.0.0.0/8 \
        default_process_limit=200 maillog_file="$WORK/postfix.log" \
        "maillog_file_prefixes=/var, /dev/stdout, $WORK"
    postconf -M "127.0.0.1:$PFPORT/inet=127.0.0.1:$PFPORT inet n - n - - smtpd"
    postfix check || die "postfix check failed"
    postfix start >/dev/null 2>&1 || die "postfix start failed"
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PFPORT") 2>/dev/null && break
        sleep 0.1
    done
fi

# ---------------------------------------------------------------- the runs
declare -A O_ACC O_DEL P_ACC P_DEL O_CPU P_CPU
O_RSS=0
# the label of ours in FILTER mode M: "ours" without a chain, else "ours/M"
ours_label() { if [[ $1 == none ]]; then echo ours; else echo "ours/$1"; fi; }
# one pass of load S: ours in each FILTER mode, then Postfix; PROFILE=1 is the pass
# under perf, which keeps only the CPU figures (with the rates it ran at)
load_pass() {
    local s=$1 profile=$2 m
    for m in $FILTER; do
        set_filter "$m"
        run_load "$(ours_label "$m")" "$OURS_MD" "$PORT" "$s" qmail-smtpd "$profile"
        if [[ $profile == 1 ]]; then
            O_CPU[$s/$m]="[delivered $DEL_RATE/s under perf] $CPU_LINE"
        else
            O_ACC[$s/$m]=$ACC_RATE O_DEL[$s/$m]=$DEL_RATE
        fi
        if ((RSS > O_RSS)); then O_RSS=$RSS; fi
    done
    set_filter none
    stop_queued
    if [[ $SKIP_POSTFIX != 1 ]]; then
        run_load "postfix" "$PF_MD" "$PFPORT" "$s" smtpd "$profile"
        if [[ $profile == 1 ]]; then
            P_CPU[$s]="[delivered $DEL_RATE/s under perf] $CPU_LINE"
        else
            P_ACC[$s]=$ACC_RATE P_DEL[$s]=$DEL_RATE
        fi
        if ((RSS > PF_RSS)); then PF_RSS=$RSS; fi
    fi
}
for s in $SESSIONS; do
    load_pass "$s" 0
    [[ $CPU == 1 ]] && load_pass "$s" 1
done
stop_ours

# ---------------------------------------------------------------- report
ver=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]] && ver="$ver+dirty"
RESULTS+=("smtp benchmark $STAMP on $(hostname), $(nproc) CPUs; ours at $ver ($PROFILE build)")
RESULTS+=("ours with FILTER modes: $FILTER; the ratio to Postfix is for the first; concurrencylocal ${CONCURRENCYLOCAL:-default}; tcpserver ${AHEADARGS[*]:-without -a/-A}, nice -n $NICE")
RESULTS+=("load: smtp-source -m $N -l $SIZE to $BUSER@$DOMAIN over 127.0.0.1; accepted = until smtp-source returned, delivered = until $N files in Maildir/new")
RESULTS+=("")
RESULTS+=("$(printf '%-9s %-16s %12s %12s' sessions system accepted/s delivered/s)")
first=${FILTER%% *}
for s in $SESSIONS; do
    for m in $FILTER; do
        RESULTS+=("$(printf '%-9s %-16s %12s %12s' "$s" "$(ours_label "$m")" "${O_ACC[$s/$m]}" "${O_DEL[$s/$m]}")")
    done
    O_ACC[$s]=${O_ACC[$s/$first]} O_DEL[$s]=${O_DEL[$s/$first]}
    if [[ -n ${P_DEL[$s]:-} ]]; then
        RESULTS+=("$(printf '%-9s %-16s %12s %12s' "$s" "postfix $PF_VER" "${P_ACC[$s]}" "${P_DEL[$s]}")")
        RESULTS+=("$(printf '%-9s %-16s %12s %12s' "$s" "ratio ours/pf" \
            "$(awk -v a="${O_ACC[$s]}" -v b="${P_ACC[$s]}" 'BEGIN { printf "%.2f", a / b }')" \
            "$(awk -v a="${O_DEL[$s]}" -v b="${P_DEL[$s]}" 'BEGIN { printf "%.2f", a / b }')")")
    fi
done
if [[ $CPU == 1 ]]; then
    RESULTS+=("")
    RESULTS+=("CPU ms per message by process name, from a second run of each load under perf (perf record -a -e task-clock, 1 sample per $((PERF_PERIOD_NS / 1000)) us of CPU; whole run from the first connection to the last delivery; \"other\" = every other process on the machine but perf, incl. smtp-source); the rates above are from runs without the profiler")
    for s in $SESSIONS; do
        for m in $FILTER; do
            RESULTS+=("$(printf '%-9s %-8s %s' "$s" "$(ours_label "$m")" "${O_CPU[$s/$m]}")")
        done
        [[ -n ${P_CPU[$s]:-} ]] && RESULTS+=("$(printf '%-9s %-8s %s' "$s" postfix "${P_CPU[$s]}")")
    done
fi
RESULTS+=("")
RESULTS+=("peak RSS of one qmail-smtpd session with a message (getrusage): ${SMTPD_RSS} KiB")
RESULTS+=("largest RSS seen under load (ps): qmail-smtpd ${O_RSS} KiB, Postfix smtpd ${PF_RSS} KiB")
mkdir -p "$OUTDIR"
OUT=$OUTDIR/smtp-$STAMP.txt
printf '%s\n' "${RESULTS[@]}" | tee "$OUT"
say "written to $OUT"
