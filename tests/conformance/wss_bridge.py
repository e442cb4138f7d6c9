#!/usr/bin/env python3
"""A loopback bridge for MQTT test clients that speak plain TCP only: each TCP connection
accepted on 127.0.0.1 is carried over its own WebSocket-over-TLS connection to a moat `wss`
listener (subprotocol `mqtt`, binary messages), byte for byte, both ways.

scripts/conformance runs the Paho interoperability suite through it to test moat's WSS front
door. It uses the `websockets` library (the WebSocket protocol: handshake, framing, masking,
ping/pong and close are its job, not this file's) and only copies bytes:
- TCP -> WS: every chunk read becomes one binary message (moat reassembles MQTT packets that
  span messages);
- WS -> TCP: every binary message is written as it came;
- either side closing closes the other (moat's DISCONNECT-then-close reaches the client as EOF).

usage: wss_bridge.py --connect wss://localhost:PORT/mqtt --ca CA [--listen-port 0]
Prints `listening 127.0.0.1:PORT` on stdout once bound, then runs until killed.
"""
import argparse
import asyncio
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CHUNK = 64 * 1024
# Deadline for the TLS + WebSocket handshake with moat.
OPEN_TIMEOUT = 10


async def tcp_to_ws(reader, ws):
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        await ws.send(data)


async def ws_to_tcp(ws, writer):
    try:
        async for message in ws:
            if isinstance(message, str):
                message = message.encode()
            writer.write(message)
            await writer.drain()
    except ConnectionClosed:
        pass


async def serve_one(reader, writer, url, ctx):
    try:
        async with connect(url, ssl=ctx, subprotocols=["mqtt"], compression=None,
                           open_timeout=OPEN_TIMEOUT, ping_interval=None,
                           max_size=None, max_queue=64) as ws:
            up = asyncio.create_task(tcp_to_ws(reader, ws))
            down = asyncio.create_task(ws_to_tcp(ws, writer))
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() and not isinstance(task.exception(), ConnectionClosed):
                    print(f"bridge: {task.exception()!r}", file=sys.stderr, flush=True)
    except Exception as e:  # a refused or failed WebSocket: the client sees its TCP close
        print(f"bridge: {url}: {e!r}", file=sys.stderr, flush=True)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True, help="wss://HOST:PORT/PATH of the moat listener")
    ap.add_argument("--ca", required=True, help="CA certificate (PEM) of moat's server certificate")
    ap.add_argument("--listen-port", type=int, default=0)
    a = ap.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    server = await asyncio.start_server(
        lambda r, w: serve_one(r, w, a.connect, ctx), "127.0.0.1", a.listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
