"""The engine's request path in one process, without sockets: what Python costs per request.

``python -m bench.inproc [--requests N] [--profile] [--instructions] [--no-access-log] [--acls 3|50] [--close]``

A real ``Worker`` with the bench's Spec (``bench/configs.lbcore_spec``: the ACLs,
X-Forwarded-For/-Proto, the access log to syslog over UDP), one ``ClientConnection``
and one pooled ``BackendConnection`` on in-memory transports. Each request is the
bytes wrk sends, handed to the client connection; the member's answer (nginx's
small response) is handed to the backend connection; the response head comes out of
the client transport. Everything but the kernel and uvloop's own work runs: parsing,
routing, balancing, head rewriting, stats, timers, the access log (formatted and
sent to a UDP port this process holds and never reads).

It prints microseconds of CPU per request (``time.process_time``), so a change to
the request path can be judged in seconds instead of a full ``python -m bench`` run;
``--profile`` adds cProfile's top functions. ``LBCORE_NO_EXTENSIONS=1`` runs the pure
twins. The figures say nothing about haproxy: ratios come only from ``python -m bench``.

``--instructions`` counts instead of timing: it runs this program twice under
valgrind's callgrind, with N and 5N requests, and prints the difference in
instructions executed divided by 4N: instructions per request, start-up and warm-up
cancelled out. The count repeats to within a few hundred instructions whatever else
the machine does, so a change worth 1-2% shows where the CPU-time figure (±10% on
this VM) cannot; it does not see cache misses, so confirm a gain in time as well.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from bench.configs import Frontend, lbcore_spec

__all__ = ["RequestPath", "main"]

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"  # what wrk sends
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
RESPONSE = (  # Debian's nginx answering the bench's small fixed response
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 23:58:51 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world\n"
)


class MemoryTransport:
    """Just enough of asyncio.Transport: writes are kept, nothing is sent."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default=None):
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class RequestPath:
    """One client connection and one member connection of a real Worker, in memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, acls: int = 3, access_log: bool = True) -> None:
        from lbcore import spec as S
        from lbcore.proxy.backend import BackendConnection
        from lbcore.proxy.http import ClientConnection
        from lbcore.proxy.runtime import compile_revision
        from lbcore.proxy.worker import Worker

        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        fe = Frontend(port=8080, backend_port=8081, acls=acls,
                      access_log_port=self.sink.getsockname()[1] if access_log else None)
        spec = S.parse_spec(lbcore_spec(fe))
        worker = self.worker = Worker(loop, None, 0, 1)  # type: ignore[arg-type]
        worker.revision = compile_revision(spec, worker.registry)
        worker.access_logs.apply(spec)
        worker.apply_member_states()
        worker.admission.maxconn = {listener.name: listener.maxconn for listener in spec.listeners}
        self.connection_type = ClientConnection  # imported once: an import per connection cost ~7.5k instructions
        self.client = ClientConnection(worker, "bench")
        self.client_transport = MemoryTransport(("127.0.0.1", 40000))
        self.client.connection_made(self.client_transport)
        # A warm member connection in every pool's MemberPool (the bench's traffic goes to "www").
        self.member_transport = MemoryTransport(("127.0.0.1", 8081))
        pool = worker.revision.pools["www"]
        mpool = worker.backends.get("127.0.0.1", 8081, 256, 60.0, pool.conn_key, pool.connect_kwargs)
        self.backend = BackendConnection(mpool)
        self.backend.connection_made(self.member_transport)
        mpool.put_idle(self.backend)

    def one(self) -> None:
        """One request and its response through the engine."""
        self.client.data_received(REQUEST)
        self.backend.data_received(RESPONSE)

    def one_connection(self) -> None:
        """A client connection that sends one request and closes (wrk's Connection: close)."""
        client = self.connection_type(self.worker, "bench")
        client.connection_made(self.client_transport)
        client.data_received(CLOSE_REQUEST)
        self.backend.data_received(RESPONSE)
        client.connection_lost(None)

    def check(self) -> None:
        """The last exchange went through: the member got a head, the client a 200."""
        sent = b"".join(self.member_transport.written)
        got = b"".join(self.client_transport.written)
        if not sent.startswith(b"GET / HTTP/1.1\r\n") or not got.startswith(b"HTTP/1.1 200 OK\r\n"):
            raise RuntimeError(f"the request path did not complete: sent {sent[:80]!r}, got {got[:80]!r}")
        self.member_transport.written.clear()
        self.client_transport.written.clear()

    def close(self) -> None:
        self.sink.close()


async def _run(path: RequestPath, requests: int, batch: int = 256, close: bool = False) -> float:
    one = path.one_connection if close else path.one
    start = time.process_time()
    done = 0
    while done < requests:
        for _ in range(min(batch, requests - done)):
            one()
        done += batch
        path.check()
        await asyncio.sleep(0)  # let the access log's flush (call_soon) run, as the loop would
    return time.process_time() - start


def instructions_per_request(requests: int, extra: list[str]) -> int:
    """Instructions per request under callgrind: runs of ``requests`` and ``5 * requests``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (requests, 5 * requests):
            out = os.path.join(tmp, f"callgrind.{n}")
            cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                   sys.executable, "-m", "bench.inproc", "--requests", str(n), *extra]
            # One hash seed for both runs: str hashes decide dict and set layouts, and
            # with them a few hundred instructions per request.
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            found = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or found is None:
                raise SystemExit(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
            counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) // (4 * requests)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=None, help="default 50,000 (--instructions: 1,024)")
    p.add_argument("--acls", type=int, default=3)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--close", action="store_true", help="a new client connection per request")
    p.add_argument("--profile", action="store_true", help="cProfile's top functions (slows every call)")
    p.add_argument("--instructions", action="store_true",
                   help="instructions per request under callgrind (--requests N: runs of N and 5N; default 1024)")
    args = p.parse_args(argv)
    options = [*(["--no-access-log"] if args.no_access_log else []), "--acls", str(args.acls),
               *(["--close"] if args.close else [])]
    from lbcore._fastpath import USE_EXTENSIONS

    what = (f"{args.acls} ACLs, access log {'off' if args.no_access_log else 'on'}"
            f"{', a connection per request' if args.close else ''}")
    if args.instructions:
        per_request = instructions_per_request(args.requests or 1024, options)
        print(f"{per_request} instructions per request under callgrind (extensions "
              f"{'on' if USE_EXTENSIONS else 'off'}, {what})")
        return 0
    args.requests = args.requests or 50_000
    import uvloop

    loop = uvloop.new_event_loop()
    path = RequestPath(loop, acls=args.acls, access_log=not args.no_access_log)
    try:
        loop.run_until_complete(_run(path, 2_000, close=args.close))  # warm up
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            loop.run_until_complete(_run(path, args.requests, close=args.close))
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)
        seconds = loop.run_until_complete(_run(path, args.requests, close=args.close))
    finally:
        path.close()
        loop.close()
    print(f"{seconds / args.requests * 1e6:.2f} µs CPU per request over {args.requests} requests "
          f"(extensions {'on' if USE_EXTENSIONS else 'off'}, {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
