#!/bin/sh
# authcheck.sh: CPU and latency per message of qmail-authcheck with a local DNS.
#
# Installs into a temporary root (qmail-install from target/debug), puts BIN (default
# target/release/qmail-authcheck, else target/debug) in its bin/, starts dnsmasq on
# 127.0.0.1 with an SPF record, an RSA DKIM key and a DMARC p=reject record for
# bench.test, signs a 4 KiB message with python3-dkim, and runs the filter N times (the
# message on fd 0, the envelope on fd 3, TCPREMOTEIP=127.0.0.1, SMTPHELO) as qmail-qfilter
# would. Prints wall-clock latency (mean, p50, p95) and CPU (user+system of the filter
# process) per message. Each run makes the DNS lookups its log line counts (lookups=7:
# SPF, the DKIM key, DMARC's tree walk) against dnsmasq: the figures are the filter's
# own cost plus loopback DNS round trips, not a remote resolver's.
#
# Usage: bench/authcheck.sh [N]      (needs dnsmasq, python3-dkim; root not needed)
set -eu
N=${1:-300}
top=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$top/target/release/qmail-authcheck}
[ -x "$BIN" ] || BIN=$top/target/debug/qmail-authcheck
tmp=$(mktemp -d /tmp/authcheck-bench.XXXXXX)
trap 'kill $dnspid 2>/dev/null; rm -rf "$tmp"' EXIT
"$top/target/debug/qmail-install" --root "$tmp/root" --me mx.bench.test >/dev/null
cp "$BIN" "$tmp/root/bin/qmail-authcheck"
openssl genrsa -out "$tmp/rsa.pem" 2048 2>/dev/null
p=$(openssl rsa -in "$tmp/rsa.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
p1=$(printf %s "$p" | cut -c1-200)
p2=$(printf %s "$p" | cut -c201-)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/sbin/dnsmasq --no-daemon --port="$port" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --pid-file= --local=/test/ $( [ "$(id -u)" = 0 ] && echo --user=root ) \
  "--txt-record=bench.test,v=spf1 ip4:127.0.0.1 -all" \
  "--txt-record=_dmarc.bench.test,v=DMARC1; p=reject" \
  "--txt-record=sel._domainkey.bench.test,v=DKIM1; k=rsa; p=$p1,$p2" 2>/dev/null &
dnspid=$!
echo "127.0.0.1:$port" > "$tmp/root/control/nameservers"
/usr/bin/python3 - "$tmp" "$N" <<'EOF'
import sys, os, time, resource, subprocess, dkim, socket
tmp, n = sys.argv[1], int(sys.argv[2])
port = int(open(tmp + '/root/control/nameservers').read().split(':')[1])
for _ in range(100):
    try:
        socket.create_connection(('127.0.0.1', port)).close(); break
    except OSError:
        time.sleep(0.05)
body = ('x' * 75 + '\n') * 54
msg = ('From: joe@bench.test\nTo: postmaster@mx.bench.test\nSubject: bench\n'
       'Date: Sun, 6 Dec 2026 09:00:00 +0000\nMessage-ID: <b@bench.test>\n\n' + body).encode()
crlf = msg.replace(b'\n', b'\r\n')
sig = dkim.sign(crlf, b'sel', b'bench.test', open(tmp + '/rsa.pem', 'rb').read(),
                include_headers=[b'from', b'to', b'subject'])
open(tmp + '/msg', 'wb').write(sig.replace(b'\r\n', b'\n') + msg)
open(tmp + '/env', 'wb').write(b'Fjoe@bench.test\0Tpostmaster@mx.bench.test\0\0')
env = {'TCPREMOTEIP': '127.0.0.1', 'SMTPHELO': 'mail.bench.test', 'PATH': '/usr/bin:/bin'}
prog = tmp + '/root/bin/qmail-authcheck'
efd = os.open(tmp + '/env', os.O_RDONLY)
if efd != 3:
    os.dup2(efd, 3)
def once(out=subprocess.DEVNULL):
    os.lseek(3, 0, 0)
    with open(tmp + '/msg', 'rb') as m:
        return subprocess.run([prog], stdin=m, stdout=out, stderr=subprocess.PIPE, env=env, pass_fds=(3,))
r = once(subprocess.PIPE)
head = r.stdout.split(b'\n\n')[0].decode()
print(head.split('X-Qmail-Authcheck')[0].strip())
print(r.stderr.decode().strip())
assert b'dkim=pass' in r.stdout and b'spf=pass' in r.stdout and b'dmarc=pass' in r.stdout, r
for _ in range(20):
    once()
lat = []
c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
for _ in range(n):
    t = time.perf_counter()
    once()
    lat.append((time.perf_counter() - t) * 1000)
c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ((c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)) * 1000 / n
lat.sort()
print(f'runs {n}  latency ms: mean {sum(lat)/n:.2f} p50 {lat[n//2]:.2f} p95 {lat[int(n*0.95)]:.2f}  '
      f'CPU ms/msg (filter) {cpu:.2f}  bytes {len(open(tmp + "/msg","rb").read())}')
EOF
