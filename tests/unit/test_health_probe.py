"""The probe's pure helpers: SNI and Host header from the check, error descriptions."""

from __future__ import annotations

import ssl

import pytest

from lbcore.proxy._checks import CHECK_CODES, _describe, _host_header, _server_name, _shown
from lbcore.proxy.health import CheckResult
from lbcore.spec import HealthCheck


@pytest.mark.parametrize(("host", "sni"), [
    (None, None),
    ("health.example.com", "health.example.com"),
    ("Health.Example.com:8443", "health.example.com"),  # the Spec lower-cases it
    ("10.0.0.1", None),
    ("10.0.0.1:8443", None),
    ("[2001:db8::1]", None),
    ("[2001:db8::1]:8443", None),
])
def test_server_name(host: str | None, sni: str | None) -> None:
    assert _server_name(HealthCheck("https", host=host)) == sni


@pytest.mark.parametrize(("kind", "host", "address", "port", "header"), [
    ("http", None, "127.0.0.1", 80, "127.0.0.1"),
    ("http", None, "127.0.0.1", 8080, "127.0.0.1:8080"),
    ("https", None, "127.0.0.1", 443, "127.0.0.1"),
    ("https", None, "127.0.0.1", 80, "127.0.0.1:80"),
    ("http", None, "::1", 80, "[::1]"),
    ("http", None, "::1", 9000, "[::1]:9000"),
    ("http", "app.example.com", "127.0.0.1", 9000, "app.example.com"),
    ("http", "app.example.com:8080", "127.0.0.1", 9000, "app.example.com:8080"),
])
def test_host_header(kind: str, host: str | None, address: str, port: int, header: str) -> None:
    assert _host_header(HealthCheck(kind, host=host), address, port) == header


def test_describe() -> None:
    assert _describe(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert _describe(ConnectionResetError(104, "Connection reset by peer")) == "connection reset"
    assert _describe(OSError(113, "No route to host")) == "no route to host"
    assert _describe(EOFError("connection closed")) == "connection closed"
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"
    assert _describe(error) == "TLS error: WRONG_VERSION_NUMBER"
    assert _shown(b"SSH-2.0-OpenSSH_9.6\r\nmore") == "'SSH-2.0-OpenSSH_9.6\\r'"


def test_result_shape() -> None:
    result = CheckResult(False, "L7STS", 503, 0.002, "HTTP 503 not in 200-399", 1.5)
    assert result.to_dict() == {"ok": False, "code": "L7STS", "status": 503, "duration": 0.002,
                                "detail": "HTTP 503 not in 200-399", "at": 1.5}
    assert hash(result) == hash(CheckResult(False, "L7STS", 503, 0.002, "HTTP 503 not in 200-399", 1.5))
    with pytest.raises(AttributeError):
        result.ok = True  # type: ignore[misc]
    assert CHECK_CODES == ("L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP",
                           "L7OK", "L7STS", "L7TOUT", "L7RSP", "HANA")
