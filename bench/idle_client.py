"""Open many keep-alive connections, make one request on each, and hold them idle.

Run by the harness as a subprocess pinned to the load generator's CPU; it speaks
JSON lines on stdout:

    {"event": "ready", "open": N, "failed": {"reason": count, ...}, "seconds": S}
        every connection was tried (at most ``--concurrency`` at a time): N are open,
        each has had one request answered 200 and is now idle;
    then it waits for a line on stdin (the harness measures the server meanwhile),
    {"event": "done", "alive": M}
        how many of the N the server had not closed, then it closes them all.

Bounded: connecting stops at ``--deadline`` seconds, and an idle wait longer than
``--hold`` seconds ends the run.

    python bench/idle_client.py --port 8080 --count 10000 [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time
from collections import Counter

import uvloop

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench-idle\r\n\r\n"


async def open_one(host: str, port: int, ctx: ssl.SSLContext | None, timeout: float):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname="bench.local" if ctx else None), timeout
    )
    try:
        writer.write(REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await asyncio.wait_for(reader.readexactly(length), timeout)
    except BaseException:
        writer.close()
        raise
    if status != 200:
        writer.close()
        raise ValueError(f"status {status}")
    return reader, writer


async def main() -> int:
    ap = argparse.ArgumentParser(description="hold idle keep-alive connections")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--concurrency", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds to open them all")
    ap.add_argument("--hold", type=float, default=120.0, help="longest idle wait, seconds")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    deadline = started + args.deadline
    semaphore = asyncio.Semaphore(args.concurrency)
    conns = []
    failed: Counter[str] = Counter()

    async def one() -> None:
        async with semaphore:
            left = deadline - time.monotonic()
            if left <= 0:
                failed["deadline"] += 1
                return
            try:
                conns.append(await open_one(args.host, args.port, ctx, min(left, 15.0)))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as exc:
                failed[str(exc) if isinstance(exc, ValueError) else type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(args.count)))
    print(json.dumps({"event": "ready", "open": len(conns), "failed": dict(failed),
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.hold)
    except asyncio.TimeoutError:
        pass
    alive = sum(1 for reader, writer in conns if not reader.at_eof() and not writer.is_closing())
    print(json.dumps({"event": "done", "alive": alive}), flush=True)
    for _, writer in conns:
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
