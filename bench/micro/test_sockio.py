"""A flush of syslog lines, pure twin (one ``send`` each) vs compiled twin (``sendmmsg``).

256 access-log-sized datagrams to a UDP port on 127.0.0.1 that is held and never read
(as in ``python -m bench``): the kernel's work per datagram is in both figures. Run:
``python -m pytest -q bench/micro/test_sockio.py --benchmark-only``. No timing
assertions; the compiled twin not built skips outside CI and fails in CI.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from bench.micro import twin
from lbcore._fastpath import sockio

LINE = (b'<134>1 2026-11-26T09:55:06.161Z vm lbcore 2551 access - 127.0.0.1:40000 [26/Nov/2026:09:55:06.161] '
        b'bench www/nginx 0/-1/0/0/0 200 137 - - -- 0 - {127.0.0.1:8080|} "GET / HTTP/1.1"')
FLUSH = [LINE] * 256


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_send_a_flush(benchmark: Any, name: str) -> None:
    send_datagrams = twin(sockio, name).send_datagrams
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sender.connect(receiver.getsockname())
    try:
        benchmark.group = "send 256 syslog lines"
        assert benchmark(send_datagrams, sender, FLUSH) == len(FLUSH)
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_encode_a_flush(benchmark: Any, name: str) -> None:
    encode_datagrams = twin(sockio, name).encode_datagrams
    lines = [LINE.decode("ascii")] * 256
    benchmark.group = "encode 256 syslog lines"
    assert benchmark(encode_datagrams, lines, 8192) == FLUSH
