"""The Python baseline: a naive HTTP/1.1 reverse proxy on asyncio + uvloop + httptools.

One backend, pooled keep-alive connections to it, X-Forwarded-For/-Proto added,
hop-by-hop headers dropped and Connection rewritten on both sides, the response
head sent in the same write as the body bytes that came with it, a slow client
pausing its backend connection, optional TLS. No routing, no timeouts, no
retries: what a first "proxy in Python" looks like, and what lbcore must beat.

    python bench/naive_proxy.py --listen 127.0.0.1:8080 --backend 127.0.0.1:9000 [--cert C --key K [--no-resume]]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections import deque
from http import HTTPStatus

import httptools
import uvloop

HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"transfer-encoding"})
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One backend connection; relays one response at a time to its current client."""

    def __init__(self, pool: "Pool") -> None:
        self.pool, self.transport, self.client = pool, None, None
        self.parser = httptools.HttpResponseParser(self)
        self.out: list[bytes] = []
        self.headers: list[bytes] = []
        self.chunked = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, client: "Client", data: bytes) -> None:
        self.client, self.headers, self.chunked = client, [], False
        client.upstream = self
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()
        if self.out and self.client is not None:
            self.client.transport.write(b"".join(self.out))  # head + body bytes: one write
        self.out.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif lname not in HOP:
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        framing = b"Transfer-Encoding: chunked\r\n" if self.chunked else b""
        conn = b"keep-alive" if self.client.keep else b"close"
        self.out.append(b"HTTP/1.1 %d %s\r\n%s%sConnection: %s\r\n\r\n" % (
            status, REASONS.get(status, b"Unknown"), b"".join(self.headers), framing, conn))

    def on_body(self, body: bytes) -> None:
        self.out.append(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.out.append(b"0\r\n\r\n")
        client, self.client = self.client, None
        client.transport.write(b"".join(self.out))
        self.out.clear()
        if self.parser.should_keep_alive():
            self.pool.idle.append(self)  # before response_done: the next request may reuse it
        else:
            self.transport.close()
        client.response_done()

    def connection_lost(self, exc) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.client is not None:
            self.client.transport.close()


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.idle = host, port, deque()

    def send(self, client: "Client", data: bytes) -> None:
        while self.idle:
            upstream = self.idle.pop()
            if not upstream.transport.is_closing():
                return upstream.send(client, data)
        asyncio.ensure_future(self.connect(client, data))

    async def connect(self, client: "Client", data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        except OSError:
            client.transport.write(BAD_GATEWAY)
            client.transport.close()
            return
        upstream.send(client, data)


class Client(asyncio.Protocol):
    """One client connection; its requests go to the backend one at a time, in order."""

    def __init__(self, pool: Pool, scheme: bytes) -> None:
        self.pool, self.scheme = pool, scheme
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[tuple[bytes, bool]] = deque()
        self.busy, self.keep, self.upstream, self.paused = False, True, None, None
        self.url, self.headers, self.body, self.chunked = b"", [], [], False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        lines, forwarded, self.chunked = [], self.peer, False
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"x-forwarded-for":
                forwarded = value + b", " + self.peer
            elif lname == b"transfer-encoding":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            elif lname not in HOP and lname != b"x-forwarded-proto":
                lines.append(b"%s: %s\r\n" % (name, value))
        self.head = b"%s %s HTTP/1.1\r\n%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n\r\n" % (
            self.parser.get_method(), self.url, b"".join(lines), forwarded, self.scheme)

    def on_body(self, body: bytes) -> None:
        self.body.append(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.body.append(b"0\r\n\r\n")
        self.queue.append((self.head + b"".join(self.body), self.parser.should_keep_alive()))
        self.url, self.headers, self.body = b"", [], []
        self.next()

    def next(self) -> None:
        if not self.busy and self.queue:
            self.busy = True
            data, self.keep = self.queue.popleft()
            self.pool.send(self, data)

    def response_done(self) -> None:
        self.busy, self.upstream = False, None
        if self.keep:
            self.next()
        else:
            self.transport.close()

    def pause_writing(self) -> None:  # a slow client pauses the backend connection feeding it
        if self.upstream is not None and not self.upstream.transport.is_closing():
            self.upstream.transport.pause_reading()
            self.paused = self.upstream

    def resume_writing(self) -> None:
        if self.paused is not None and not self.paused.transport.is_closing():
            self.paused.transport.resume_reading()
        self.paused = None

    def connection_lost(self, exc) -> None:
        self.resume_writing()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--backend", required=True, help="HOST:PORT")
    ap.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    ap.add_argument("--key", help="PEM private key")
    ap.add_argument("--no-resume", action="store_true", help="TLS: send no session tickets (every handshake is full)")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.no_resume:
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
    host, _, port = args.listen.rpartition(":")
    backend_host, _, backend_port = args.backend.rpartition(":")
    pool = Pool(backend_host, int(backend_port))
    scheme = b"https" if ctx else b"http"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Client(pool, scheme), host, int(port), ssl=ctx, backlog=4096)
        print(f"naive proxy on {args.listen} -> {args.backend}", flush=True)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
