"""Access-log line formatting, pure twin vs compiled twin (lbcore._fastpath.logline).

A typical line: a wrk GET answered 200, Host and User-Agent set, nothing to escape.
Run: ``python -m pytest -q bench/micro/test_logline.py --benchmark-only``. No timing
assertions; the compiled twin not built skips outside CI and fails in CI.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.micro import twin
from lbcore._fastpath import logline
from lbcore.proxy import accesslog_format as pure
from lbcore.proxy.accesslog import AccessRecord

TYPICAL = AccessRecord(
    accepted=1714564800.123, started=100.0, client_ip="127.0.0.1", client_port=51234, listener="web",
    acl="default", pool="app", member="app-1", method="GET", target="/", http_version="1.1",
    host="127.0.0.1:8080", user_agent="wrk/4.2.0", status=200, bytes_in=40, bytes_out=215,
    t_request=0.000012, t_queue=0.0, t_connect=0.0, t_first_byte=0.000183, t_total=0.000241,
)


@pytest.mark.parametrize("name", ["pure", "compiled"])
@pytest.mark.parametrize("fmt", ["format_text", "format_json"])
def test_format(benchmark: Any, fmt: str, name: str) -> None:
    benchmark.group = fmt
    function = getattr(twin(logline, name), fmt)
    line = benchmark(function, TYPICAL, 1)
    assert line == getattr(pure, fmt)(TYPICAL, 1)
