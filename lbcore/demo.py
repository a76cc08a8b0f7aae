"""``lbcore demo``: demo members plus the engine on the bundled example Spec.

The demo members are small HTTP/1.1 servers built on h11 (an implementation
independent of the engine's httptools framing). Each answers every request with
a JSON document naming itself and echoing what it received, so the routing
decisions are visible with plain curl.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h11

from lbcore import spec as S

__all__ = ["MemberServer", "run_demo", "example_path"]


def example_path() -> Path:
    """The bundled example Spec (examples/demo.yaml in the source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "examples" / "demo.yaml", here / "examples" / "demo.yaml"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("examples/demo.yaml not found beside the lbcore package")


class MemberServer:
    """A demo member: answers each request with JSON describing it."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is h11.IDLE:
                        break
                    continue
                if isinstance(event, h11.Request):
                    body = b""
                    while True:
                        part = conn.next_event()
                        if part is h11.NEED_DATA:
                            conn.receive_data(await reader.read(65536))
                        elif isinstance(part, h11.Data):
                            body += part.data
                        else:
                            break
                    payload = json.dumps(
                        {
                            "member": self.name,
                            "method": event.method.decode(),
                            "target": event.target.decode(),
                            "headers": {k.decode(): v.decode("latin-1") for k, v in event.headers},
                            "body_bytes": len(body),
                        },
                        indent=1,
                    ).encode() + b"\n"
                    writer.write(
                        conn.send(
                            h11.Response(
                                status_code=200,
                                headers=[("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
                            )
                        )
                    )
                    writer.write(conn.send(h11.Data(data=payload)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        except (h11.RemoteProtocolError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def _curl_lines(spec: S.Spec) -> list[str]:
    lines = []
    for listener in spec.listeners:
        base = f"http://{listener.bind}"
        if listener.protocol == "http" and listener.redirect is None:
            lines.append(f"# listener {listener.name} ({base}): default pool {listener.default_pool}")
            lines.append(f"curl -s {base}/")
            for acl in listener.acls:
                lines.append(f"# acl {acl.name}: {acl.source if isinstance(acl.source, str) else json.dumps(acl.source)} -> pool {acl.pool}")
            lines += [
                f"curl -s -H 'Host: api.example.com' {base}/v1/users      # host routing -> api",
                f"curl -s {base}/static/logo.png                          # path routing -> static",
                f"curl -s -b beta=1 {base}/                                # cookie routing -> beta",
                f"curl -s --interface 127.0.0.2 {base}/                   # client-IP routing (src 127.0.0.2) -> beta",
                f"curl -s -i {base}/ | grep -i set-cookie                  # cookie persistence on pool www",
            ]
        elif listener.redirect is not None:
            lines.append(f"curl -s -i {base}/some/path?q=1 | head -3          # listener {listener.name}: redirect")
        elif listener.protocol == "tcp":
            lines.append(f"curl -s {base}/                                     # listener {listener.name}: TCP (L4) -> pool {listener.default_pool}")
    return lines


async def _run(spec_path: Path, workers: int) -> int:
    spec = S.load_spec(spec_path)
    members = [
        MemberServer(f"{pool.name}/{m.name}", m.address.host, m.address.port) for pool in spec.pools for m in pool.members
    ]
    for member in members:
        await member.start()
    engine = subprocess.Popen([sys.executable, "-m", "lbcore.cli", "serve", str(spec_path), "--workers", str(workers)])
    print(f"lbcore demo: {len(members)} demo members and the engine (pid {engine.pid}) on {spec_path}")
    print("Try:")
    for line in _curl_lines(spec):
        print("  " + line)
    if spec.admin.bind is not None:
        print(f"  # live stats page: http://{spec.admin.bind}/stats   Prometheus: curl -s http://{spec.admin.bind}/metrics")
    if spec.admin.socket:
        print(f"  lbcore ctl --socket {spec.admin.socket} show stat          # runtime API (haproxy-style)")
        print(f"  lbcore ctl --socket {spec.admin.socket} set server www/w1 state drain")
    print("Ctrl-C stops the demo.", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    waiter = loop.run_in_executor(None, engine.wait)
    await asyncio.wait([stop, waiter], return_when=asyncio.FIRST_COMPLETED)
    if engine.poll() is None:
        engine.send_signal(signal.SIGTERM)
    code = await waiter
    for member in members:
        await member.stop()
    return 0 if stop.done() else code


def run_demo(spec_path: str | os.PathLike | None = None, workers: int = 2) -> int:
    path = Path(spec_path) if spec_path else example_path()
    return asyncio.run(_run(path, workers))
