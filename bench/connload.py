#!/usr/bin/env python3
"""Connection load for bench/tcpserver.sh: open N TCP connections to HOST:PORT, at most C at
a time, read each until the server closes it, and print the rate.

Usage: connload.py HOST PORT N C
Prints: "<connections> <seconds> <connections per second> <failures>"
"""
import asyncio
import sys
import time


async def one(host, port, sem, stats):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            data = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            if not data:
                stats["fail"] += 1
        except Exception:
            stats["fail"] += 1


async def main(host, port, n, c):
    sem = asyncio.Semaphore(c)
    stats = {"fail": 0}
    start = time.monotonic()
    await asyncio.gather(*(one(host, port, sem, stats) for _ in range(n)))
    secs = time.monotonic() - start
    print(f"{n} {secs:.3f} {n / secs:.1f} {stats['fail']}")


if __name__ == "__main__":
    h, p, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(main(h, p, n, c))
