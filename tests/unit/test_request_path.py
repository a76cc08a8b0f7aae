"""A real Worker's request path, in memory (``bench.inproc.RequestPath``).

- The access record an exchange hands to the access log, every field by name:
  ``Exchange.access_record`` builds it positionally (keyword matching was the
  dearest part of it).
- A closed client connection is freed by reference counting, not left in a cycle
  for the garbage collector.
"""

from __future__ import annotations

import dataclasses
import gc
import time

import uvloop

from bench.inproc import RESPONSE, RequestPath
from lbcore.proxy.accesslog import AccessRecord

REQUEST = (b"POST /upload?x=1 HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: probe/2\r\n"
           b"Content-Length: 5\r\n\r\nhello")


def test_every_field_of_a_proxied_request() -> None:
    loop = uvloop.new_event_loop()
    path = RequestPath(loop)
    records: list[AccessRecord] = []

    class Capture:
        def log(self, record: AccessRecord) -> None:
            records.append(record)

    path.worker.access_logs.for_listener = lambda name: Capture()

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
