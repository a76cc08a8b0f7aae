"""The readers' fast lane (lbcore._fastpath.heads): llhttp only, pure twin, compiled twin.

- RequestReader.feed of a wrk-like GET (what ``wrk`` sends: request line and Host),
  one keep-alive request per call;
- ResponseReader.feed of an nginx-like 200 (Server, Date, Content-Type,
  Content-Length, Connection) with a 13-byte body, one response per call.

Each for ``fast_lane`` None (the llhttp path), the pure twin and the compiled
twin, plus the scans on their own. Run: ``python -m pytest -q
bench/micro/test_heads.py --benchmark-only``. No timing assertions; the compiled
twin not built skips outside CI and fails in CI.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from bench.micro import twin
from lbcore._fastpath import heads
from lbcore.l7.http1 import (
    Data,
    EndOfMessage,
    Request,
    RequestReader,
    Response,
    ResponseReader,
)

WRK_GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
NGINX_200 = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Wed, 25 Nov 2026 19:08:25 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world!"
)
LANES = ["none", "pure", "compiled"]


def lane_twin(lane: str) -> ModuleType | None:
    """The fast lane's twin, or None for no fast lane (llhttp only)."""
    return None if lane == "none" else twin(heads, lane)


@pytest.mark.parametrize("lane", LANES)
def test_request_reader_feed(benchmark: Any, lane: str) -> None:
    benchmark.group = "RequestReader.feed wrk GET"
    module = lane_twin(lane)
    reader = RequestReader(fast_lane=module and module.scan_request)
    events = benchmark(reader.feed, WRK_GET)
    assert [type(e) for e in events] == [Request, EndOfMessage]


@pytest.mark.parametrize("lane", LANES)
def test_response_reader_feed(benchmark: Any, lane: str) -> None:
    benchmark.group = "ResponseReader.feed nginx 200"
    module = lane_twin(lane)
    reader = ResponseReader(fast_lane=module and module.scan_response_event)

    def one_response() -> list:
        reader.expect("GET")
        return reader.feed(NGINX_200)

    events = benchmark(one_response)
    assert [type(e) for e in events] == [Response, Data, EndOfMessage]


@pytest.mark.parametrize("lane", ["pure", "compiled"])
def test_scan_request(benchmark: Any, lane: str) -> None:
    benchmark.group = "scan_request wrk GET"
    assert benchmark(twin(heads, lane).scan_request, WRK_GET, 0, 8192, 32768, 100) is not None


@pytest.mark.parametrize("lane", ["pure", "compiled"])
def test_scan_response(benchmark: Any, lane: str) -> None:
    benchmark.group = "scan_response nginx 200"
    assert benchmark(twin(heads, lane).scan_response, NGINX_200, 0, "GET", 65536, 200) is not None
