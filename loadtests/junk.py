#!/usr/bin/env python3
"""Sprays junk at a media port for a while: RTP-looking datagrams of 150 random bytes from one
address no peer uses, at a steady rate (bursts every 10 ms). It measures what junk costs the
server (BENCHMARKS.md, "Junk at the media port").

    python3 loadtests/junk.py HOST:PORT SECONDS PACKETS_PER_SECOND
"""
import os
import socket
import sys
import time

try:
    host, port = sys.argv[1].rsplit(":", 1)
    port, seconds, rate = int(port), float(sys.argv[2]), int(sys.argv[3])
except (IndexError, ValueError):
    sys.exit("usage: junk.py HOST:PORT SECONDS PACKETS_PER_SECOND (e.g. 127.0.0.1:40000 25 20000)")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((host, 0))
datagram = bytes([0x80, 96]) + os.urandom(148)
burst = max(1, rate // 100)
end = time.monotonic() + seconds
due = time.monotonic()
sent = 0
while time.monotonic() < end:
    for _ in range(burst):
        try:
            sock.sendto(datagram, (host, port))
            sent += 1
        except OSError:
            pass
    due += 0.01
    time.sleep(max(0.0, due - time.monotonic()))
print(f"{sent} junk datagrams sent", file=sys.stderr)
