"""Header rewriting, pure twin vs compiled twin (lbcore._fastpath.rewrite).

- request: a wrk-like GET (Host, User-Agent) to a member, X-Forwarded-For and
  X-Forwarded-Proto added (the default ForwardingPolicy);
- response: an nginx-like 200 (Server, Date, Content-Type, Content-Length,
  Connection: keep-alive, Last-Modified, ETag, Accept-Ranges) to an HTTP/1.1 client.

Run: ``python -m pytest -q bench/micro/test_rewrite.py --benchmark-only``. No timing
assertions; the compiled twin not built skips outside CI and fails in CI.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.micro import twin
from lbcore._fastpath import _rewrite_py as pure
from lbcore._fastpath import rewrite
from lbcore.l7._forwarding import ForwardingPolicy, ResponseFraming
from lbcore.l7.http1 import Request, Response

WRK_GET = Request(
    method="GET",
    target="/",
    headers=(("Host", "127.0.0.1:8080"), ("User-Agent", "wrk/4.2.0")),
    http_version="1.1",
    keep_alive=True,
    chunked=False,
    content_length=None,
    expect_continue=False,
    upgrade=None,
)
POLICY = ForwardingPolicy("http", 8080)  # xff and xfp on

NGINX_200 = Response(
    status=200,
    reason="OK",
    headers=(
        ("Server", "nginx/1.24.0"),
        ("Date", "Wed, 25 Nov 2026 19:08:25 GMT"),
        ("Content-Type", "text/html"),
        ("Content-Length", "615"),
        ("Connection", "keep-alive"),
        ("Last-Modified", "Tue, 11 Apr 2023 01:45:34 GMT"),
        ("ETag", '"64347a7e-267"'),
        ("Accept-Ranges", "bytes"),
    ),
    http_version="1.1",
    keep_alive=True,
    chunked=False,
    content_length=615,
)


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_request_head_for_member(benchmark: Any, name: str) -> None:
    benchmark.group = "request_head_for_member"
    head = benchmark(twin(rewrite, name).request_head_for_member, WRK_GET, POLICY, "127.0.0.1")
    assert head == pure.request_head_for_member(WRK_GET, POLICY, "127.0.0.1")


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_response_head_for_client(benchmark: Any, name: str) -> None:
    benchmark.group = "response_head_for_client"
    function = twin(rewrite, name).response_head_for_client
    framing = benchmark(function, NGINX_200, request_method="GET", client_version="1.1", client_keep_alive=True)
    expected = pure.response_head_for_client(
        NGINX_200, request_method="GET", client_version="1.1", client_keep_alive=True
    )
    assert [getattr(framing, s) for s in ResponseFraming.__slots__] == [
        getattr(expected, s) for s in ResponseFraming.__slots__
    ]
