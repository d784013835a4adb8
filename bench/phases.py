#!/usr/bin/env python3
"""bench/phases.py - one SMTP transaction, phase by phase: where a message's time goes.

Usage: bench/phases.py HOST PORT N [RCPT]   (RCPT default benchq@bench.test)

Makes N transactions one after another, a new connection each (as Postfix's smtp-source
does by default): connect and banner, EHLO, MAIL, RCPT, DATA (to the 354), the 4 KiB
message and the dot (to the 250), QUIT. Prints the median of each phase and of the whole,
in ms. Point it at a running system (ours under tcpserver, or Postfix's smtpd) that
accepts RCPT; bench/README.md ("The hot path, session 5") has figures for both.
"""
import socket
import statistics
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rcpt = sys.argv[4] if len(sys.argv) > 4 else 'benchq@bench.test'
body = b'Subject: x\r\n\r\n' + (b'x' * 76 + b'\r\n') * 52 + b'.\r\n'
phases = ['banner', 'ehlo', 'mail', 'rcpt', 'data', 'dot', 'quit', 'total']
t = {p: [] for p in phases}
def reply(f):
    while True:
        l = f.readline()
        if not l or l[3:4] != b'-':
            return l
for i in range(n):
    t0 = time.perf_counter()
    s = socket.create_connection((host, port)); f = s.makefile('rb')
    marks = [t0]
    reply(f); marks.append(time.perf_counter())
    for cmd in [b'EHLO x\r\n', b'MAIL FROM:<b@bench.test>\r\n', b'RCPT TO:<' + rcpt.encode() + b'>\r\n', b'DATA\r\n', body, b'QUIT\r\n']:
        s.sendall(cmd); r = reply(f); marks.append(time.perf_counter())
    s.close()
    for k, p in enumerate(phases[:-1]):
        t[p].append((marks[k + 1] - marks[k]) * 1000)
    t['total'].append((marks[-1] - t0) * 1000)
print(' '.join(f'{p} {statistics.median(v):.3f}' for p, v in t.items()))
