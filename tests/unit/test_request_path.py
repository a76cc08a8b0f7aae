"""A real Worker's request path, in memory (``bench.inproc.RequestPath``).

- The access record an exchange hands to the access log, every field by name:
  ``Exchange.access_record`` builds it positionally (keyword matching was the
  dearest part of it).
- A closed client connection is freed by reference counting, not left in a cycle
  for the garbage collector.
- The last response of a plain connection is corked (TCP_CORK) so that it leaves
  with the FIN; never on a keep-alive response, a TLS connection, or when the client
  pipelined bytes the engine has not handled.
"""

from __future__ import annotations

import dataclasses
import gc
import socket
import time

import pytest
import uvloop

from bench.inproc import CLOSE_REQUEST, RESPONSE, MemoryTransport, RequestPath
from bench.inproc import REQUEST as KEEP_ALIVE_REQUEST
from lbcore.proxy.accesslog import AccessLog, AccessRecord
from lbcore.proxy.flow import ReadGate
from lbcore.proxy.http import ClientConnection, TlsClientConnection, new_connection

REQUEST = (b"POST /upload?x=1 HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: probe/2\r\n"
           b"Content-Length: 5\r\n\r\nhello")


def test_every_field_of_a_proxied_request() -> None:
    loop = uvloop.new_event_loop()
    path = RequestPath(loop)
    records: list[AccessRecord] = []

    class Capture(AccessLog):
        def log(self, record: AccessRecord) -> None:
            records.append(record)

    # Every listener's log replaced by one that keeps the records (an AccessLog: the
    # compiled request path takes nothing else); __new__ alone, as nothing else is used.
    logs = path.worker.access_logs
    logs._by_listener = dict.fromkeys(logs._by_listener, Capture.__new__(Capture))

    async def one() -> None:
        path.client.data_received(REQUEST)
        path.backend.data_received(RESPONSE)

    wall, mono = time.time(), time.monotonic()
    try:
        loop.run_until_complete(one())
    finally:
        path.close()
        loop.close()
    assert len(records) == 1
    record = records[0]
    sent = sum(len(chunk) for chunk in path.client_transport.written)
    expected = {
        "client_ip": "127.0.0.1",
        "client_port": 40000,
        "listener": "bench",
        "acl": None,  # the default pool: no ACL matched
        "pool": "www",
        "member": "nginx",
        "method": "POST",
        "target": "/upload?x=1",
        "http_version": "1.1",
        "host": "shop.example:8080",
        "user_agent": "probe/2",
        "status": 200,
        "bytes_in": 5,  # the request body
        "bytes_out": sent,
        "t_tls": None,
        "t_queue": None,
        "t_connect": 0.0,  # a pooled member connection
        "retries": 0,
        "termination": "--",
        "tls_version": None,
        "tls_resumed": None,
        "sni": None,
        "mode": "http",
    }
    assert {name: getattr(record, name) for name in expected} == expected
    assert abs(record.accepted - wall) < 60 and abs(record.started - mono) < 60
    for name in ("t_request", "t_first_byte", "t_total"):
        assert getattr(record, name) >= 0.0, name
    assert record.t_total >= record.t_first_byte
    assert set(expected) | {"accepted", "started", "t_request", "t_first_byte", "t_total"} == {
        field.name for field in dataclasses.fields(AccessRecord)
    }


def test_a_closed_connection_leaves_no_cycle_for_the_garbage_collector() -> None:
    loop = uvloop.new_event_loop()
    path = RequestPath(loop)

    async def connections() -> None:
        for _ in range(20):
            path.one_connection()

    gc.collect()
    gc.disable()
    try:
        loop.run_until_complete(connections())
        assert gc.collect() == 0  # nothing unreachable: all of it was freed when released
    finally:
        gc.enable()
        path.close()
        loop.close()


class _RecordingTransport(MemoryTransport):
    """Writes (with whether the socket was corked then) and closes, in the order the
    engine did them, over a real TCP socket: the one ``get_extra_info("socket")`` gives."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(("127.0.0.1", 40001))
        self.sock = sock
        self.events: list[tuple] = []

    def write(self, data: bytes) -> None:
        self.events.append(("write", self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)))
        super().write(data)

    def close(self) -> None:
        self.events.append(("close",))
        super().close()

    def get_extra_info(self, name: str, default=None):
        if name == "socket":
            return self.sock
        return super().get_extra_info(name, default)


WRITE, WRITE_CORKED, CLOSE = ("write", 0), ("write", 1), ("close",)


@pytest.mark.parametrize(("connection_class", "requests", "paused", "expected"), [
    pytest.param(ClientConnection, [CLOSE_REQUEST], False, [WRITE_CORKED, CLOSE], id="close-corked"),
    pytest.param(ClientConnection, [KEEP_ALIVE_REQUEST], False, [WRITE], id="keep-alive-not-corked"),
    pytest.param(ClientConnection, [KEEP_ALIVE_REQUEST, CLOSE_REQUEST], False, [WRITE, WRITE_CORKED, CLOSE],
                 id="pipelined-last-corked"),
    # Reading paused (a limit): the kernel may hold bytes the client sent after its request.
    pytest.param(ClientConnection, [CLOSE_REQUEST], True, [WRITE, CLOSE], id="reading-paused-not-corked"),
    pytest.param(TlsClientConnection, [CLOSE_REQUEST], False, [WRITE, CLOSE], id="tls-not-corked"),
])
def test_the_last_response_of_a_plain_connection_leaves_corked(connection_class, requests, paused, expected) -> None:
    """The requests arrive in one read; the member answers each (its writes are not recorded)."""
    loop = uvloop.new_event_loop()
    path = RequestPath(loop)
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    transport = _RecordingTransport(sock)

    async def exchange() -> None:
        client = connection_class(path.worker, "bench")
        client.connection_made(transport)
        client.data_received(b"".join(requests))
        if paused:
            client.gate.pause(ReadGate.LIMIT)
        for _ in requests:
            path.backend.data_received(RESPONSE)

    try:
        loop.run_until_complete(exchange())
    finally:
        path.close()
        loop.close()
        sock.close()
        server.close()
    assert transport.events == expected
    assert b"".join(transport.written).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("cls", [ClientConnection, TlsClientConnection])
def test_the_factorys_connection_is_the_constructors(cls: type) -> None:
    """``new_connection``, which the protocol factory calls per accept, makes the
    connection ``cls(worker, listener)`` makes: same type, same state."""
    loop = uvloop.new_event_loop()
    path = RequestPath(loop)
    try:
        made = new_connection(cls is TlsClientConnection, path.worker, path.worker.context, "bench")
        expected = cls(path.worker, "bench")
        assert type(made) is cls
        for name in ClientConnection.__slots__:
            value, wanted = getattr(made, name), getattr(expected, name)
            if name in ("gate", "deadline", "pending"):  # a new one each, alike
                assert type(value) is type(wanted) and value is not wanted, name
            else:
                assert value == wanted, name
        assert made.context is path.worker.context and made.tunnel_backlog is None
    finally:
        path.close()
        loop.close()
