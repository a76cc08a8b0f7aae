"""Test harness: members the tests run, and the engine as a subprocess.

Members are HTTP/1.1 servers on 127.0.0.1 built on h11 (independent of the engine's
framing), run on an asyncio loop in a background thread. They count the TCP
connections they accept (to prove backend connection reuse) and answer by path:

    /                 JSON: member name, connection number, method, target, headers, body size
    /big?bytes=N      N bytes of body (Content-Length); its 64 KiB block n is the byte n % 251
    /chunked?parts=N  chunked body of N parts, with a trailer
    /close            body delimited by closing the connection
    /drip?parts=N&every=S  N body parts (Content-Length), S seconds apart: a member that
                      answers slowly but keeps sending (the server timeout is per read)
    /hang             never answers (the engine's server timeout fires)
    /status/NNN       an empty response with that status
    /ws               101 Switching Protocols, then echoes raw bytes (a WebSocket-like tunnel)

The engine runs as ``python -m lbcore.cli serve``; its log lines are collected by a
thread, and ``wait_for_log`` blocks on a condition variable until a line matches:
synchronisation by event, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import yaml

ROOT = Path(__file__).resolve().parents[2]


BIG_BLOCK = 65536  # /big's blocks


def big_piece(block: int, left: int) -> bytes:
    """Block ``block`` of a /big body with ``left`` bytes still to send: the byte
    ``block % 251``, so a reader can check the order."""
    return bytes([block % 251]) * min(left, BIG_BLOCK)


def big_body(size: int) -> bytes:
    """The whole body of /big?bytes=``size``, to compare with what arrived."""
    return b"".join(big_piece(n, size - n * BIG_BLOCK) for n in range(-(-size // BIG_BLOCK)))


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, never one this process was given before: the kernel may give
    the same ephemeral port to two binds in a row (seen: a test's two listeners on
    one port, its reload refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no port this process has not used before")


class LoopThread:
    """An asyncio loop running in a daemon thread, shared by the test's members."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Member:
    """One test member server."""

    def __init__(self, loops: LoopThread, name: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.loops = loops
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.accepted = 0  # TCP connections accepted
        self.requests = 0
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, threading.Event] = {}
        self.big_sent = 0
        self.big_blocked = threading.Event()
        self.big_done = threading.Event()

    def _gate(self, name: str) -> asyncio.Event:
        if name not in self.gates:
            self.gates[name] = asyncio.Event()
            self.waiting.setdefault(name, threading.Event())
        return self.gates[name]

    def wait_arrived(self, gate: str, timeout: float = 10.0) -> None:
        """Block until a request is parked at /wait?gate=NAME."""
        self.waiting.setdefault(gate, threading.Event())
        assert self.waiting[gate].wait(timeout), f"no request arrived at gate {gate}"

    def open_gate(self, gate: str) -> None:
        self.loops.loop.call_soon_threadsafe(lambda: self._gate(gate).set())

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> "Member":
        async def start():
            self.server = await asyncio.start_server(self._serve, self.host, self.port)

        self.loops.run(start())
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (a member that died)."""

        async def stop():
            if self.server is not None:
                self.server.close()
                self.server = None
            for w in list(self.writers):
                w.transport.abort()

        self.loops.run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn_no = self.accepted
        self.writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    break
                if not isinstance(event, h11.Request):
                    break
                body = bytearray()
                trailers: list = []
                while True:
                    part = conn.next_event()
                    if part is h11.NEED_DATA:
                        if conn.they_are_waiting_for_100_continue:
                            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                        conn.receive_data(await reader.read(65536))
                    elif isinstance(part, h11.Data):
                        body += part.data
                    elif isinstance(part, h11.EndOfMessage):
                        trailers = [(k.decode(), v.decode()) for k, v in part.headers]
                        break
                    else:
                        break
                self.requests += 1
                keep = await self._respond(conn, event, bytes(body), trailers, conn_no, reader, writer)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, h11.LocalProtocolError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _respond(self, conn, request, body, trailers, conn_no, reader, writer) -> bool:
        url = urlsplit(request.target.decode())
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        send = lambda ev: writer.write(conn.send(ev))  # noqa: E731
        if path == "/hang":
            await reader.read()  # until the engine gives up and closes
            return False
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            send(h11.Response(status_code=status, headers=[("Content-Length", "0")] if status >= 200 and status not in (204, 304) else []))
            if status >= 200:
                send(h11.EndOfMessage())
            await writer.drain()
            return True
        if path == "/wait":
            gate = query.get("gate", "default")
            event = self._gate(gate)
            self.waiting[gate].set()
            await event.wait()
        if path == "/big":
            size = int(query.get("bytes", "1048576"))
            send(h11.Response(status_code=200, headers=[("Content-Length", str(size)), ("X-Member", self.name)]))
            left = size
            block = 0
            while left > 0:
                piece = big_piece(block, left)
                block += 1
                send(h11.Data(data=piece))
                left -= len(piece)
                self.big_sent += len(piece)
                if writer.transport.get_write_buffer_size() > 0:
                    self.big_blocked.set()  # the kernel buffers towards the engine are full
                await writer.drain()
            send(h11.EndOfMessage())
            await writer.drain()
            self.big_done.set()
            return True
        if path == "/chunked":
            parts = int(query.get("parts", "3"))
            send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum"), ("X-Member", self.name)]))
            for i in range(parts):
                send(h11.Data(data=f"part{i};".encode()))
            send(h11.EndOfMessage(headers=[("X-Checksum", str(parts))]))
            await writer.drain()
            return True
        if path == "/drip":
            parts, every = int(query.get("parts", "3")), float(query.get("every", "0.1"))
            send(h11.Response(status_code=200, headers=[("Content-Length", str(parts * 5)), ("X-Member", self.name)]))
            await writer.drain()
            for i in range(parts):
                try:  # the member's pace is what the test is about; stop if the engine gave up
                    if not await asyncio.wait_for(reader.read(1), every):
                        return False
                except asyncio.TimeoutError:
                    pass
                send(h11.Data(data=f"drip{i % 10}".encode()))
                await writer.drain()
            send(h11.EndOfMessage())
            await writer.drain()
            return True
        if path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Member: " + self.name.encode() + b"\r\n\r\nuntil-close body")
            await writer.drain()
            return False
        if path == "/ws" and request.method == b"GET":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            await writer.drain()
            # Echo whatever arrives until EOF.
            leftover = conn.trailing_data[0]
            if leftover:
                writer.write(b"echo:" + leftover)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(b"echo:" + data)
                await writer.drain()
            return False
        payload = json.dumps(
            {
                "member": self.name,
                "connection": conn_no,
                "method": request.method.decode(),
                "target": request.target.decode(),
                "http_version": request.http_version.decode(),
                "headers": [[k.decode(), v.decode("latin-1")] for k, v in request.headers],
                "body_bytes": len(body),
                "body_sha": __import__("hashlib").sha256(body).hexdigest(),
                "trailers": trailers,
            }
        ).encode()
        send(h11.Response(status_code=200, headers=[("Content-Type", "application/json"), ("Content-Length", str(len(payload))), ("X-Member", self.name)]))
        send(h11.Data(data=payload))
        send(h11.EndOfMessage())
        await writer.drain()
        return True


class Engine:
    """``lbcore serve`` as a subprocess, with its log collected."""

    def __init__(self, tmp_path: Path, spec: dict[str, Any], workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        self.spec_file = tmp_path / "spec.yaml"
        self.workers = workers
        self.env = env
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.extra_args: list[str] = []
        self.write_spec(spec)

    def write_spec(self, spec: dict[str, Any] | str) -> None:
        text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
        self.spec_file.write_text(text)

    def start(self, wait: bool = True) -> "Engine":
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lbcore.cli", "serve", str(self.spec_file), "--workers", str(self.workers), *self.extra_args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            text=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()
        if wait:
            self.wait_for_log(r"serving on \d+ workers")
        return self

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<<exited>>")
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 20.0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    if rx.search(line):
                        return line
                if "<<exited>>" in self.lines[since:]:
                    raise AssertionError(f"engine exited waiting for {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                self.cond.wait(left)

    def log_text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def reload(self, spec: dict[str, Any] | str | None = None, expect: str = r"serving on \d+ workers") -> str:
        if spec is not None:
            self.write_spec(spec)
        since = self.mark()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_for_log(expect + r"|reload refused|unchanged", since)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(p) for p in children]

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None, host: str = "127.0.0.1", source: str | None = None, timeout: float = 10.0):
    """One request on a fresh connection; returns (status, headers dict lower-case, body bytes)."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes, half-close, read until the engine closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        if read_until_close:
            s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return bytes(out)
