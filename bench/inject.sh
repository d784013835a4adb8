#!/usr/bin/env bash
# bench/inject.sh - end-to-end injection benchmark: ours against Postfix on this machine.
#
# Usage (as root, from anywhere):   bench/inject.sh
#        N=200 bench/inject.sh      # fewer messages (default 1000)
#        KEEP=1 bench/inject.sh     # keep the temp install and logs for inspection
#        SKIP_BUILD=1 ...           # use target/release as it is
#        SKIP_POSTFIX=1 ...         # only ours (no ratio)
#
# What it does (see bench/README.md):
#   1. cargo build --release --workspace --bins; qmail-install into a fresh dir under /tmp
#      with control/locals = bench.test; user benchq (created if missing, left in place);
#      ~benchq/Maildir/ (maildirmake); qmail-start ./Maildir/.
#   2. N sequential injections of the same ~4 KiB message to benchq@bench.test with our
#      `sendmail -t -i` (else `qmail-inject -a`, else raw `qmail-queue`; the first that
#      works on a warm-up message is used and printed). Timed from the first injection until
#      N files are in ~benchq/Maildir/new/ (bounded wait, fails loudly).
#   3. The same load through Postfix's own sendmail, Postfix configured local-only for the
#      run (main.cf saved first and restored at the end; started/stopped as needed).
#      Postfix delivers to the same user and home but into a SEPARATE Maildir,
#      ~benchq/Maildir-postfix/ (home_mailbox=Maildir-postfix/), so the two runs never
#      count each other's files; both Maildirs' new/ cur/ tmp/ are recreated before a run.
#   4. Prints a table (system, messages, seconds, msgs/s, CPU per message) and the ratio
#      ours/Postfix, with what a process start costs on this machine (/bin/true and our
#      static qmail-queue --help, 200 runs each), and writes the same lines to
#      bench/out/inject-<date>.txt.
#   5. Cleans up: stops our qmail-send (by pid), removes the temp install (unless KEEP=1),
#      restores Postfix's main.cf and its running state, empties the bench Maildirs.
#
# Nothing leaves the machine: our install only knows bench.test as local (and is stopped
# before Postfix runs); Postfix runs with inet_interfaces=loopback-only and
# default_transport=relay_transport=error.

set -euo pipefail
export LC_ALL=C                        # '.' as the decimal point in $EPOCHREALTIME and awk

N=${N:-1000}
DOMAIN=bench.test
BUSER=benchq
KEEP=${KEEP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_POSTFIX=${SKIP_POSTFIX:-0}
POLL=0.02                              # seconds between Maildir counts
INJECT_LIMIT=$((120 + N / 2))          # seconds allowed for the whole injection loop
DRAIN_LIMIT=$((60 + N / 10))           # seconds allowed after it for the last deliveries
WARM_LIMIT=30                          # seconds for one warm-up message

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTDIR=$REPO/bench/out
STAMP=$(date +%Y%m%d-%H%M%S)
TCK=$(getconf CLK_TCK)

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FATAL: %s\n' "$*" >&2; exit 1; }

[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"
[[ $(id -u) == 0 ]] || die "run as root (it installs with real users, creates $BUSER, drives Postfix)"
for t in cargo useradd runuser getent awk find; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done

# ---------------------------------------------------------------- state for cleanup
WORK=""            # temp dir: our install, logs, saved main.cf
QPID=""            # our qmail-send (qmail-start execs into it)
Q=""               # our install root
PF_SAVED=""        # saved copy of Postfix's main.cf, when we changed it
PF_WAS_RUNNING=0
PF_TOUCHED=0
BHOME=""
RESULTS=()         # lines of the final report

cleanup() {
    local rc=$?
    set +e
    stop_ours
    if ((PF_TOUCHED)); then
        # After an interrupted run, let bench mail drain while bench.test is still local
        # (with the old main.cf it would bounce); bounded, and it never deletes mail.
        if postfix_running; then
            local i
            for ((i = 0; i < 300; i++)); do
                postqueue -p 2>/dev/null | grep -q 'Mail queue is empty' && break
                sleep 0.1
            done
            ((i < 300)) || say "WARNING: Postfix's queue did not drain in 30s (see postqueue -p)"
        fi
        postfix stop >/dev/null 2>&1
        wait_postfix_down
        if [[ -n $PF_SAVED && -f $PF_SAVED ]]; then
            cp -p "$PF_SAVED" /etc/postfix/main.cf && say "restored /etc/postfix/main.cf"
        fi
        if ((PF_WAS_RUNNING)); then
            postfix start >/dev/null 2>&1 && say "Postfix restarted (it was running before)"
        else
            say "Postfix stopped (it was not running before)"
        fi
    fi
    if [[ $KEEP != 1 && -n $BHOME ]]; then
        for d in "$BHOME/Maildir" "$BHOME/Maildir-postfix"; do
            [[ -d $d/new ]] && find "$d/new" "$d/cur" "$d/tmp" -mindepth 1 -maxdepth 1 -type f -delete
        done
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then
            say "KEEP=1: install and logs left in $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# Seconds since the epoch with microseconds, no fork.
now() { printf '%s' "$EPOCHREALTIME"; }

# Count files in DIR/new into the global COUNT (glob, no fork).
count_new() {
    local f
    shopt -s nullglob
    f=("$1"/new/*)
    shopt -u nullglob
    COUNT=${#f[@]}
}

# Wait until DIR/new holds at least WANT files, at most LIMIT seconds. 0 ok, 1 timeout.
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

# Recreate DIR/{new,cur,tmp} empty, owned by the bench user; then sync and settle. The
# last run's messages are moved into $WORK/trash, deleted when the benchmark ends: on
# ext4 without a journal (this VM) every inode freed in the last minutes is skipped, one
# lookup each, by every allocation in its block group (bench/smtp.sh says more).
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
}
settle() { sync; sleep 1; }

# CPU ticks (user+sys, own + waited-for children) of PID and all its live descendants.
# Children that exit during a run are counted in their parent's cutime/cstime.
tree_ticks() {
    awk -v root="$1" '
        {
            pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
            ppid[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            keep[root] = 1; changed = 1
            while (changed) { changed = 0
                for (p in ppid) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; changed = 1 } }
            s = 0; for (p in keep) if (p in t) s += t[p]; print s
        }' < <(cat /proc/[0-9]*/stat 2>/dev/null || true)
}

# The injection loop; run in its own bash under `timeout`. Prints "cutime cstime" (ticks of
# all injections, which it waited for) on stdout at the end.
inject_loop() {
    local mode=$1 n=$2 msg=$3 envf=$4 i rc s
    shift 4
    for ((i = 1; i <= n; i++)); do
        if [[ $mode == raw ]]; then
            "$@" <"$msg" 1<"$envf" || { rc=$?; echo "injection $i of $n failed (exit $rc)" >&2; return 1; }
        else
            "$@" <"$msg" >/dev/null || { rc=$?; echo "injection $i of $n failed (exit $rc)" >&2; return 1; }
        fi
    done
    read -r s </proc/$BASHPID/stat
    s=${s##*) }
    read -r -a f <<<"$s"
    echo "${f[13]} ${f[14]}"
}

# run_load LABEL MAILDIR MODE ENVFILE CMD... : the timed run. Sets SECS, RATE, INJ_MS, SRV_MS.
run_load() {
    local label=$1 dir=$2 mode=$3 envf=$4 root=$5
    shift 5
    local t0 t1 ticks0 ticks1 inj
    reset_maildir "$dir"
    settle
    say "$label: injecting $N messages ($*)"
    ticks0=$(tree_ticks "$root")
    t0=$(now)
    if ! inj=$(timeout "$INJECT_LIMIT" bash -c "$(declare -f inject_loop); inject_loop \"\$@\"" _ \
        "$mode" "$N" "$MSG" "$envf" "$@"); then
        die "$label: injection loop failed or took over ${INJECT_LIMIT}s"
    fi
    count_new "$dir"
    say "$label: all injected after $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')s, $COUNT delivered so far; waiting (max ${DRAIN_LIMIT}s)"
    if ! wait_count "$dir" "$N" "$DRAIN_LIMIT"; then
        count_new "$dir"
        die "$label: only $COUNT of $N messages in $dir/new after ${DRAIN_LIMIT}s"
    fi
    t1=$(now)
    ticks1=$(tree_ticks "$root")
    count_new "$dir"
    ((COUNT == N)) || say "$label: WARNING: $COUNT files in $dir/new, expected $N"
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    RATE=$(awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "%.1f", n / (b - a) }')
    INJ_MS=$(awk -v c="$inj" -v n="$N" -v h="$TCK" 'BEGIN { split(c, x, " "); printf "%.2f", (x[1] + x[2]) * 1000 / h / n }')
    SRV_MS=$(awk -v a="$ticks0" -v b="$ticks1" -v n="$N" -v h="$TCK" 'BEGIN { printf "%.2f", (b - a) * 1000 / h / n }')
    say "$label: $N messages in ${SECS}s = $RATE msgs/s (server CPU $SRV_MS ms/msg, injection CPU $INJ_MS ms/msg)"
}

# Warm-up: inject one message with MODE/CMD, wait for it. 0 delivered, 2 injection failed,
# 1 injected but not delivered in time.
warm_up() {
    local dir=$1 mode=$2 envf=$3
    shift 3
    reset_maildir "$dir"
    if [[ $mode == raw ]]; then
        timeout "$WARM_LIMIT" "$@" <"$MSG" 1<"$envf" || return 2
    else
        timeout "$WARM_LIMIT" "$@" <"$MSG" >/dev/null || return 2
    fi
    wait_count "$dir" 1 "$WARM_LIMIT" || return 1
    return 0
}

stop_ours() {
    [[ -n $QPID ]] || return 0
    local i pids
    if kill -0 "$QPID" 2>/dev/null; then
        kill -TERM "$QPID" 2>/dev/null
        for ((i = 0; i < 300; i++)); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$QPID" 2>/dev/null; then
            say "qmail-send ($QPID) did not exit in 30s; killing it"
            kill -KILL "$QPID" 2>/dev/null
        fi
    fi
    wait "$QPID" 2>/dev/null
    # lspawn/rspawn/clean exit on EOF from qmail-send; give them a bounded moment.
    for ((i = 0; i < 100; i++)); do
        pids=$(pgrep -f "^$Q/bin/qmail-" || true)
        [[ -z $pids ]] && break
        sleep 0.1
    done
    if [[ -n $pids ]]; then
        say "helpers still running after qmail-send exited: $pids; terminating them"
        kill -TERM $pids 2>/dev/null
    fi
    QPID=""
}

postfix_running() { postfix status >/dev/null 2>&1; }
wait_postfix_down() {
    local i
    for ((i = 0; i < 100; i++)); do postfix_running || return 0; sleep 0.1; done
    say "WARNING: Postfix still running 10s after postfix stop"
}

# Postfix's own sendmail: /usr/sbin/sendmail.postfix if present, else $sendmail_path or
# /usr/sbin/sendmail, as long as it resolves to a Postfix binary (not ours).
postfix_sendmail() {
    local c real
    for c in /usr/sbin/sendmail.postfix "$(postconf -h sendmail_path 2>/dev/null)" /usr/sbin/sendmail; do
        [[ -n $c && -x $c ]] || continue
        real=$(readlink -f "$c")
        if grep -qa libpostfix "$real" || dpkg-query -S "$real" 2>/dev/null | grep -q '^postfix'; then
            echo "$c"
            return 0
        fi
        say "$c -> $real is not Postfix's sendmail; skipping it"
    done
    return 1
}

# ---------------------------------------------------------------- setup
cd "$REPO"
if [[ $SKIP_BUILD != 1 ]]; then
    say "building release binaries"
    cargo build --release --workspace --bins
fi
REL=$REPO/target/release
[[ -x $REL/qmail-install ]] || die "no $REL/qmail-install; build first"

WORK=$(mktemp -d /tmp/qmail-bench.XXXXXX)
chmod 755 "$WORK"                       # qmailq, qmails, benchq must traverse it
Q=$WORK/qmail
LOG=$WORK/qmail-send.log
"$REL/qmail-install" --root "$Q" --me "$DOMAIN" >&2
grep -qx "$DOMAIN" "$Q/control/locals" || echo "$DOMAIN" >>"$Q/control/locals"

if ! getent passwd "$BUSER" >/dev/null; then
    say "creating user $BUSER"
    useradd -m "$BUSER"
fi
BHOME=$(getent passwd "$BUSER" | cut -d: -f6)
[[ -d $BHOME ]] || die "$BUSER's home $BHOME does not exist"
OURS_MD=$BHOME/Maildir
PF_MD=$BHOME/Maildir-postfix
if [[ ! -d $OURS_MD ]]; then
    runuser -u "$BUSER" -- "$Q/bin/maildirmake" "$OURS_MD"
fi

# The message: same header and ~4 KiB body for both systems.
MSG=$WORK/message
ENVF=$WORK/envelope
{
    printf 'From: bench@%s\nTo: %s@%s\nSubject: injection benchmark\n\n' "$DOMAIN" "$BUSER" "$DOMAIN"
    for ((i = 0; i < 64; i++)); do
        printf '%02d %s\n' "$i" 'The quick brown fox jumps over the lazy dog; 0123456789 abcde.'
    done
} >"$MSG"
printf 'Fbench@%s\0T%s@%s\0\0' "$DOMAIN" "$BUSER" "$DOMAIN" >"$ENVF"
chmod 644 "$MSG" "$ENVF"
MSG_BYTES=$(wc -c <"$MSG")

# ---------------------------------------------------------------- ours
say "starting our system from $Q"
(cd / && exec env - PATH="$Q/bin:/usr/bin:/bin" "$Q/bin/qmail-start" ./Maildir/ >"$LOG" 2>&1) &
QPID=$!
sleep 0.5
kill -0 "$QPID" 2>/dev/null || { cat "$LOG" >&2; die "qmail-start exited"; }

OURS_MODE="" OURS_CMD=()
for m in sendmail inject raw; do
    case $m in
        sendmail) cmd=("$Q/bin/sendmail" -t -i) mode=stdio ;;
        inject) cmd=("$Q/bin/qmail-inject" -a "$BUSER@$DOMAIN") mode=stdio ;;
        raw) cmd=("$Q/bin/qmail-queue") mode=raw ;;
    esac
    set +e
    warm_up "$OURS_MD" "$mode" "$ENVF" "${cmd[@]}"
    rc=$?
    set -e
    case $rc in
        0) OURS_MODE=$mode OURS_CMD=("${cmd[@]}"); break ;;
        1) tail -20 "$LOG" >&2; die "ours: '${cmd[*]}' queued a message but it was not delivered in ${WARM_LIMIT}s" ;;
        2) say "ours: '${cmd[*]}' failed; trying the next way in" ;;
    esac
done
[[ -n $OURS_MODE ]] || die "ours: no way of injecting worked (sendmail, qmail-inject, qmail-queue)"
OURS_HOW=${OURS_CMD[0]##*/}
((${#OURS_CMD[@]} > 1)) && OURS_HOW="$OURS_HOW ${OURS_CMD[*]:1}"
say "ours: injecting with: $OURS_HOW"

run_load "ours" "$OURS_MD" "$OURS_MODE" "$ENVF" "$QPID" "${OURS_CMD[@]}"
O_SECS=$SECS O_RATE=$RATE O_INJ=$INJ_MS O_SRV=$SRV_MS
O_FAIL=$(grep -c 'failure\|deferral' "$LOG" || true)
stop_ours
say "ours stopped; its log had $O_FAIL failure/deferral lines"

# ---------------------------------------------------------------- Postfix
P_SECS="" P_RATE="" PF_VER=""
if [[ $SKIP_POSTFIX != 1 ]]; then
    command -v postfix >/dev/null && command -v postconf >/dev/null || die "Postfix is not installed (SKIP_POSTFIX=1 to skip it)"
    PF_VER=$(postconf -d -h mail_version)
    PF_SM=$(postfix_sendmail) || die "cannot find Postfix's own sendmail"
    say "Postfix $PF_VER, injecting with $PF_SM -t -i"
    if postfix_running; then PF_WAS_RUNNING=1; fi
    PF_SAVED=$WORK/main.cf.saved
    cp -p /etc/postfix/main.cf "$PF_SAVED"
    PF_TOUCHED=1
    if ((PF_WAS_RUNNING)); then
        say "Postfix is running; stopping it to reconfigure (restarted at the end)"
        postfix stop >/dev/null 2>&1 || true
        wait_postfix_down
    fi
    PF_LOG=$WORK/postfix.log
    postconf -e \
        inet_interfaces=loopback-only \
        "mydestination=localhost, $DOMAIN" \
        home_mailbox=Maildir-postfix/ \
        mailbox_command= mailbox_transport= fallback_transport= \
        default_transport=error relay_transport=error relayhost= \
        maillog_file="$PF_LOG" "maillog_file_prefixes=/var, /dev/stdout, $WORK"
    postfix check || die "postfix check failed with the benchmark settings"
    postfix start >/dev/null 2>&1 || die "postfix start failed"
    PF_QDIR=$(postconf -h queue_directory)
    PF_PID=""
    for ((i = 0; i < 100; i++)); do
        if [[ -s $PF_QDIR/pid/master.pid ]]; then
            PF_PID=$(tr -dc 0-9 <"$PF_QDIR/pid/master.pid")
            [[ -n $PF_PID ]] && kill -0 "$PF_PID" 2>/dev/null && break
        fi
        PF_PID=""
        sleep 0.1
    done
    [[ -n $PF_PID ]] || die "Postfix master did not come up"
    sleep 1
    if [[ -n $(postqueue -p 2>/dev/null | grep -v 'Mail queue is empty') ]]; then
        say "WARNING: Postfix's queue is not empty before the run:"
        postqueue -p | tail -5 >&2
    fi

    set +e
    warm_up "$PF_MD" stdio "$ENVF" "$PF_SM" -t -i
    rc=$?
    set -e
    if ((rc != 0)); then
        postqueue -p | tail -20 >&2
        [[ -f $PF_LOG ]] && tail -20 "$PF_LOG" >&2
        die "Postfix: warm-up message not delivered to $PF_MD (rc $rc)"
    fi
    run_load "postfix" "$PF_MD" stdio "$ENVF" "$PF_PID" "$PF_SM" -t -i
    P_SECS=$SECS P_RATE=$RATE P_INJ=$INJ_MS P_SRV=$SRV_MS
fi

# ---------------------------------------------------------------- process start
# What starting a program costs on this machine, wall time per run of a loop of 200 from
# bash: an injection starts two on either system (ours: sendmail, qmail-queue; Postfix:
# sendmail, postdrop), so the ratio depends on it (bench/README.md, session 13: on a VM
# where CPUID traps to the hypervisor, glibc's start-up alone costs ~0.65 ms).
start_ms() {
    local t0 i
    t0=$(now)
    for ((i = 0; i < 200; i++)); do "$@" >/dev/null 2>&1; done
    awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", (b - a) * 1000 / 200 }'
}
START_TRUE=$(start_ms /bin/true)
START_QQ=$(start_ms "$REL/qmail-queue" --help)

# ---------------------------------------------------------------- report
ver=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$REPO" status --porcelain 2>/dev/null | head -1) ]] && ver="$ver+dirty"
RESULTS+=("inject benchmark $STAMP on $(hostname), $(nproc) CPUs, $(uname -r); ours at $ver (release build)")
RESULTS+=("load: $N sequential injections of one ${MSG_BYTES}-byte message to $BUSER@$DOMAIN, timed from the first injection until $N files are in Maildir/new")
RESULTS+=("ours injected with: $OURS_HOW; Postfix ${PF_VER:-skipped} with: ${PF_SM:-}${PF_SM:+ -t -i}")
RESULTS+=("durability: Postfix fsyncs queue files and Maildir files (not directories); ours fsyncs queue files, queue directories and Maildir files and new/")
RESULTS+=("CPU: server = the daemons' process trees (qmail-send and children / Postfix master and children); inject = sendmail and what it runs")
RESULTS+=("process start (ms of wall time per run, 200 runs from bash): /bin/true $START_TRUE, our static qmail-queue --help $START_QQ")
RESULTS+=("")
RESULTS+=("$(printf '%-22s %8s %8s %9s %14s %14s' system messages seconds msgs/s server-ms/msg inject-ms/msg)")
RESULTS+=("$(printf '%-22s %8s %8s %9s %14s %14s' "ours" "$N" "$O_SECS" "$O_RATE" "$O_SRV" "$O_INJ")")
if [[ -n $P_RATE ]]; then
    RESULTS+=("$(printf '%-22s %8s %8s %9s %14s %14s' "postfix $PF_VER" "$N" "$P_SECS" "$P_RATE" "$P_SRV" "$P_INJ")")
    RESULTS+=("")
    RESULTS+=("ratio ours/postfix (msgs/s): $(awk -v a="$O_RATE" -v b="$P_RATE" 'BEGIN { printf "%.2f", a / b }')")
fi
mkdir -p "$OUTDIR"
OUT=$OUTDIR/inject-$STAMP.txt
printf '%s\n' "${RESULTS[@]}" | tee "$OUT"
say "written to $OUT"
