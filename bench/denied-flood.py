#!/usr/bin/env python3
"""One flooding process for bench/denied-flood.sh: opens TCP connections to HOST:PORT from
denied loopback sources (127.66.X.Y, SOURCES of them starting at FIRST) as fast as it can for
SECS seconds, each a non-blocking connect closed at once with a reset (SO_LINGER 0: no
TIME_WAIT, no FIN exchange). Open loop: it never waits for an answer, so a SYN the kernel drops
costs it as much as one the server accepts and refuses.

Prints one line: attempts errors utime_s stime_s (its own CPU, from getrusage). On loopback the
kernel's receive path (the listener's SYN handling, the socket filter) runs in the sender's
softirq, so stime includes much of the defender's kernel work.

usage: denied-flood.py HOST PORT SECS FIRST SOURCES
"""
import resource
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    secs, first, count = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    sources = []
    for i in range(first, first + count):
        sources.append("127.66.%d.%d" % ((i // 254) % 256, i % 254 + 1))
    linger = struct.pack("ii", 1, 0)
    end = time.monotonic() + secs
    n = errors = 0
    while True:
        if n % 256 == 0 and time.monotonic() >= end:
            break
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((sources[n % len(sources)], 0))
            s.setblocking(False)
            s.connect_ex((host, port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            errors += 1
        s.close()
        n += 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(n, errors, ru.ru_utime, ru.ru_stime)


if __name__ == "__main__":
    main()
