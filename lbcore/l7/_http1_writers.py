"""HTTP/1.1 writers: heads, chunks and small complete responses as bytes.

Every field is checked before it is written (names are tokens, values hold no
CTL but HTAB), so nothing the engine forwards or adds can split a head or
inject a header; a bad field is a ValueError, the caller's bug. Text is
encoded latin-1, the inverse of the readers' decoding.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import Iterable

from ._http1_headers import BAD_VALUE_RE, TOKEN_LIST_RE, TOKEN_RE

__all__ = [
    "encode_request_head",
    "encode_response_head",
    "encode_chunk",
    "encode_last_chunk",
    "error_response",
]

_VERSIONS = ("1.0", "1.1")


def _fields(headers: Iterable[tuple[str, str]]) -> str:
    names: list[str] = []
    values: list[str] = []
    lines: list[str] = []
    for name, value in headers:
        names.append(name)
        values.append(value)
        lines.append(f"{name}: {value}\r\n")
    # One regex over the names joined by LF; a name with an LF of its own would pass
    # as two tokens, so the number of LFs must be exactly the joins.
    joined = "\n".join(names)
    if names and (TOKEN_LIST_RE.fullmatch(joined) is None or joined.count("\n") != len(names) - 1):
        bad = next(n for n in names if TOKEN_RE.fullmatch(n) is None)
        raise ValueError(f"invalid header name {bad!r}")
    # HTAB is a legal value character, so it can join the values for one search.
    if values and BAD_VALUE_RE.search("\t".join(values)) is not None:
        bad = next(v for v in values if BAD_VALUE_RE.search(v) is not None)
        raise ValueError(f"invalid character in header value {bad!r}")
    return "".join(lines)


def _check_version(http_version: str) -> None:
    if http_version not in _VERSIONS:
        raise ValueError(f"http_version must be 1.0 or 1.1, not {http_version!r}")


def encode_request_head(
    method: str, target: str, headers: Iterable[tuple[str, str]], http_version: str = "1.1"
) -> bytes:
    """``METHOD target HTTP/x.y`` CRLF, the fields, CRLF."""
    if TOKEN_RE.fullmatch(method) is None:
        raise ValueError(f"invalid method {method!r}")
    # RFC 9112 3.2: the request-target holds no whitespace or CTL.
    if not target or not target.isprintable() or " " in target or not target.isascii():
        raise ValueError(f"invalid request target {target!r}")
    _check_version(http_version)
    return f"{method} {target} HTTP/{http_version}\r\n{_fields(headers)}\r\n".encode("latin-1")


def encode_response_head(
    status: int, reason: str, headers: Iterable[tuple[str, str]], http_version: str = "1.1"
) -> bytes:
    """``HTTP/x.y status reason`` CRLF, the fields, CRLF (the SP before an empty reason is kept)."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status {status!r}")
    if BAD_VALUE_RE.search(reason) is not None:
        raise ValueError(f"invalid character in reason {reason!r}")
    _check_version(http_version)
    return f"HTTP/{http_version} {status:03d} {reason}\r\n{_fields(headers)}\r\n".encode("latin-1")


def encode_chunk(data: bytes) -> bytes:
    """One chunk; empty data gives b"" (a zero-size chunk would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The last chunk, the trailer fields and the final CRLF."""
    return f"0\r\n{_fields(trailers)}\r\n".encode("latin-1")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Status"


@functools.lru_cache(maxsize=64)
def _plain_error(status: int, keep_alive: bool) -> bytes:
    return _build_error(status, (), keep_alive)


def _build_error(status: int, extra_headers: Iterable[tuple[str, str]], keep_alive: bool) -> bytes:
    phrase = _phrase(status)
    body = f"{status} {phrase}\n".encode("latin-1")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    if not keep_alive:
        headers.append(("Connection", "close"))
    headers.extend(extra_headers)
    return encode_response_head(status, phrase, headers) + body


def error_response(
    status: int, *, extra_headers: Iterable[tuple[str, str]] = (), keep_alive: bool = False
) -> bytes:
    """A complete small response, e.g. ``error_response(502)``.

    Body ``b"502 Bad Gateway\\n"`` as text/plain, Content-Length, Cache-Control:
    no-cache, and Connection: close unless ``keep_alive``; ``extra_headers``
    (a Location, a Retry-After, ...) come last. Reasons are http.HTTPStatus
    phrases. Statuses that cannot carry a body (1xx, 204, 304) are refused.
    """
    if not 200 <= status <= 999 or status in (204, 304):
        raise ValueError(f"error_response cannot make a {status} response: it has a body")
    extra = tuple(extra_headers)
    if not extra:
        return _plain_error(status, keep_alive)
    return _build_error(status, extra, keep_alive)
