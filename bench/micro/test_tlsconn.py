"""Server-side TLS layer, pure twin vs compiled twin (lbcore._fastpath.tlsconn).

In memory, against a real TLS client (``ssl.SSLObject``), whose own cost is in both
figures: a full handshake (ECDSA P-256, TLS 1.3) with one request and response, and
one request/response on an established connection. Run:
``python -m pytest -q bench/micro/test_tlsconn.py --benchmark-only``. No timing
assertions; the compiled twin not built skips outside CI and fails in CI.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from bench.micro import twin
from lbcore._fastpath import tlsconn
from tests import tlsgen

REQUEST = b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world\n"


class Tcp:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        pass

    close = abort


class Echo:
    """Answers every request with RESPONSE."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(RESPONSE)

    def connection_lost(self, exc: Any) -> None:
        pass


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = tlsgen.make_ca()
    cert, key = tlsgen.write_pair(tmp_path_factory.mktemp("tls"), "www",
                                  tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    server.num_tickets = 0  # no tickets to write: the handshake alone
    return server, tlsgen.client_context(ca)


class Connection:
    def __init__(self, impl: Any, server_context: ssl.SSLContext, client_context: ssl.SSLContext, loop: Any) -> None:
        self.server = impl.TlsServer([server_context], lambda name: 0, 0, 10.0, loop)
        self.tcp = Tcp()
        self.conn = self.server.connection(Echo())
        self.conn.connection_made(self.tcp)
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_context.wrap_bio(self.c_in, self.c_out, server_hostname="www.example.com")
        while True:
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.conn.data_received(self.c_out.read())
                self.c_in.write(self.tcp.take())
        self.conn.data_received(self.c_out.read())  # the client's Finished

    def exchange(self) -> bytes:
        self.client.write(REQUEST)
        self.conn.data_received(self.c_out.read())
        self.c_in.write(self.tcp.take())
        return self.client.read(1024)


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_handshake_and_one_request(benchmark: Any, contexts: Any, name: str) -> None:
    impl = twin(tlsconn, name)
    loop = asyncio.new_event_loop()
    benchmark.group = "tlsconn handshake"
    try:
        answer = benchmark(lambda: Connection(impl, *contexts, loop).exchange())
    finally:
        loop.close()
    assert answer == RESPONSE


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_request_on_an_open_connection(benchmark: Any, contexts: Any, name: str) -> None:
    impl = twin(tlsconn, name)
    loop = asyncio.new_event_loop()
    benchmark.group = "tlsconn request"
    try:
        connection = Connection(impl, *contexts, loop)
        answer = benchmark(connection.exchange)
    finally:
        loop.close()
    assert answer == RESPONSE
