"""Access-log lines: JSON, haproxy-like text, and the RFC 5424 syslog frame around them.

Every line is printable ASCII: whatever a request carries (a target, a Host, a
User-Agent) is escaped, so it can neither split a line (no CR, LF, NEL, U+2028) nor
forge a field (no bare quote or, in the text format, brace or bar where they delimit).
JSON strings use the standard ``\\uXXXX`` escapes; the text format writes ``\\"`` and
``\\\\`` and every other byte outside printable ASCII as ``\\xHH`` (``\\uHHHH`` beyond
Latin-1). Being ASCII also means a syslog datagram cut at its size limit never splits
a character.

The layouts are documented in ``lbcore.proxy.accesslog``; ``JSON_KEYS`` is the order
of the JSON keys.

This module is the pure twin of ``lbcore._fastpath._logline`` (Cython, same output for
every record); ``make_formatter`` uses the one ``lbcore._fastpath.logline`` selects.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from functools import lru_cache
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]  # the C escaper when built
from typing import TYPE_CHECKING, Any, Callable

from lbcore.spec import AccessLogSettings

if TYPE_CHECKING:
    from lbcore.proxy.accesslog import AccessRecord

__all__ = [
    "IMPLEMENTATION",
    "JSON_KEYS",
    "SYSLOG_MSGID",
    "SYSLOG_SEVERITY_INFO",
    "escape_text",
    "format_json",
    "format_text",
    "Formatter",
    "iso_timestamp",
    "make_formatter",
    "new_record",
    "RecordMaker",
    "syslog_frame",
    "syslog_hostname",
]

IMPLEMENTATION = "pure"
JSON_KEYS = (
    "timestamp", "worker", "mode", "listener", "client_ip", "client_port", "sni", "tls_version", "tls_resumed",
    "acl", "pool", "member", "method", "target", "http_version", "host", "user_agent", "status",
    "bytes_in", "bytes_out", "retries", "termination",
    "t_tls", "t_request", "t_queue", "t_connect", "t_first_byte", "t_total",
)
SYSLOG_SEVERITY_INFO = 6  # RFC 5424 6.2.1 table 2: informational
SYSLOG_MSGID = "access"  # RFC 5424 6.2.7: the type of message
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# -- time ---------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _second(second: int) -> tuple[str, str]:
    """(ISO-8601 UTC, haproxy date) of a whole second: one batch shares a few seconds."""
    t = time.gmtime(second)
    iso = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    text = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return iso, text


def _split(timestamp: float) -> tuple[int, int]:
    """(whole second, milliseconds), rounded to the nearest millisecond (a float
    1714564800.123 is 1714564800.12299990...)."""
    second, ms = divmod(round(timestamp * 1000), 1000)
    return second, ms


def iso_timestamp(timestamp: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds), as JSON and RFC 5424 write it."""
    second, ms = _split(timestamp)
    return f"{_second(second)[0]}.{ms:03d}Z"


def text_timestamp(timestamp: float) -> str:
    """``01/May/2024:12:00:00.123`` (UTC), haproxy's accept date."""
    second, ms = _split(timestamp)
    return f"{_second(second)[1]}.{ms:03d}"


# -- escaping -----------------------------------------------------------------------------------
# Kept as is: printable ASCII but the quote and the backslash (and, per context, more).
_QUOTED_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')  # inside "..."
_TOKEN_UNSAFE = re.compile(r'[^\x21\x23-\x5b\x5d-\x7e]')  # a bare field: no space either
_CAPTURE_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7a\x7e]')  # inside {..|..}: no { | }


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == '"':
        return '\\"'
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(value: Any, unsafe: re.Pattern[str] = _QUOTED_UNSAFE) -> str:
    """``value`` with everything but printable ASCII (and ``"``, ``\\``) escaped."""
    return unsafe.sub(_escape_char, value if isinstance(value, str) else str(value))


def _token(value: Any) -> str:
    """A bare text field: escaped, never empty (``-``)."""
    if value is None or value == "":
        return "-"
    return _TOKEN_UNSAFE.sub(_escape_char, value if isinstance(value, str) else str(value))


def _capture(value: Any) -> str:
    return "" if value is None else _CAPTURE_UNSAFE.sub(_escape_char, value if isinstance(value, str) else str(value))


def _ms(seconds: float | None) -> int:
    """haproxy timers: whole milliseconds, -1 for a phase that did not happen."""
    if seconds is None or not math.isfinite(seconds):
        return -1
    return max(0, round(seconds * 1000))


def _client(ip: Any, port: Any) -> str:
    ip = _token(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _version(version: Any) -> str:
    version = escape_text(version or "")
    return version if version.startswith("HTTP/") else f"HTTP/{version}"


# -- text ---------------------------------------------------------------------------------------


def format_text(record: "AccessRecord", worker: int = 0) -> str:
    """haproxy's httplog layout (tcplog for ``mode == "tcp"``); see ``lbcore.proxy.accesslog``."""
    head = (
        f"{_client(record.client_ip, record.client_port)} [{text_timestamp(record.accepted)}] "
        f"{_token(record.listener)} {_token(record.pool or '<NOPOOL>')}/{_token(record.member or '<NOSRV>')}"
    )
    if record.mode == "tcp":
        return (
            f"{head} {_ms(record.t_queue)}/{_ms(record.t_connect)}/{_ms(record.t_total)} "
            f"{int(record.bytes_out)} {_token(record.termination)} {int(record.retries)}"
        )
    if record.method:
        request = f"{escape_text(record.method)} {escape_text(record.target)} {_version(record.http_version)}"
    else:
        request = "<BADREQ>"
    status = -1 if record.status is None else int(record.status)
    return (
        f"{head} {_ms(record.t_request)}/{_ms(record.t_queue)}/{_ms(record.t_connect)}/"
        f"{_ms(record.t_first_byte)}/{_ms(record.t_total)} {status} {int(record.bytes_out)} - - "
        f"{_token(record.termination)} {int(record.retries)} {_token(record.acl)} "
        f"{{{_capture(record.host)}|{_capture(record.user_agent)}}} \"{request}\""
    )


# -- JSON ---------------------------------------------------------------------------------------


def _js(value: Any) -> str:
    if value is None:
        return "null"
    return encode_basestring_ascii(value if isinstance(value, str) else str(value))


def _ji(value: Any) -> str:
    return "null" if value is None else str(int(value))


def _jf(value: float | None) -> str:
    """Seconds to the microsecond; null for a phase that did not happen."""
    if value is None or not math.isfinite(value):
        return "null"
    return f"{value:.6f}"


def _jb(value: bool | None) -> str:
    return "null" if value is None else ("true" if value else "false")


def format_json(record: "AccessRecord", worker: int = 0) -> str:
    """One JSON object, keys in ``JSON_KEYS`` order; durations in seconds."""
    r = record
    return (
        f'{{"timestamp":"{iso_timestamp(r.accepted)}","worker":{int(worker)},"mode":{_js(r.mode)},'
        f'"listener":{_js(r.listener)},"client_ip":{_js(r.client_ip)},"client_port":{_ji(r.client_port)},'
        f'"sni":{_js(r.sni)},"tls_version":{_js(r.tls_version)},"tls_resumed":{_jb(r.tls_resumed)},'
        f'"acl":{_js(r.acl)},"pool":{_js(r.pool)},"member":{_js(r.member)},'
        f'"method":{_js(r.method or None)},"target":{_js(r.target or None)},"http_version":{_js(r.http_version or None)},'
        f'"host":{_js(r.host)},"user_agent":{_js(r.user_agent)},"status":{_ji(r.status)},'
        f'"bytes_in":{_ji(r.bytes_in)},"bytes_out":{_ji(r.bytes_out)},"retries":{_ji(r.retries)},'
        f'"termination":{_js(r.termination)},'
        f'"t_tls":{_jf(r.t_tls)},"t_request":{_jf(r.t_request)},"t_queue":{_jf(r.t_queue)},'
        f'"t_connect":{_jf(r.t_connect)},"t_first_byte":{_jf(r.t_first_byte)},"t_total":{_jf(r.t_total)}}}'
    )


# -- syslog -------------------------------------------------------------------------------------


def new_record(*values: Any) -> "AccessRecord":
    """``AccessRecord(*values)``: the constructor (the compiled twin fills the slots)."""
    from lbcore.proxy.accesslog import AccessRecord  # not at the top: accesslog imports this module

    return AccessRecord(*values)


class RecordMaker:
    """``make(...)``: ``new_record`` of an HTTP request's 24 values (the compiled twin's
    is a C method that the compiled engine calls without packing them in a tuple)."""

    __slots__ = ()

    def make(self, accepted, started, client_ip, client_port, listener, acl, pool, member,
             method, target, http_version, host, user_agent, status, bytes_in, bytes_out,
             t_tls, t_request, t_queue, t_connect, t_first_byte, t_total, retries, termination) -> "AccessRecord":
        return new_record(accepted, started, client_ip, client_port, listener, acl, pool,
                          member, method, target, http_version, host, user_agent, status,
                          bytes_in, bytes_out, t_tls, t_request, t_queue, t_connect,
                          t_first_byte, t_total, retries, termination)


def syslog_frame(
    record: "AccessRecord", worker: int, prefix: str, middle: str, line_format: Callable[["AccessRecord", int], str]
) -> str:
    """A syslog message: ``prefix`` + the record's RFC 5424 timestamp + ``middle`` + its
    line (``line_format(record, worker)``); ``make_formatter`` builds the two parts."""
    return f"{prefix}{iso_timestamp(record.accepted)}{middle}{line_format(record, worker)}"


def syslog_hostname() -> str:
    """RFC 5424 6.2.4 HOSTNAME: 1*255 PRINTUSASCII, ``-`` when unknown."""
    name = "".join(ch for ch in socket.gethostname() if 33 <= ord(ch) <= 126)[:255]
    return name or "-"


class Formatter:
    """One log's records to messages: ``formatter(record)`` is one record's message,
    ``format_many(records)`` a batch's, as ``(messages, failures)``: the messages in
    order, and ``(record, exception)`` for each record that would not format (it is
    left out; the rest are not lost with it). A message is the line (``format_json``
    when ``json``, else ``format_text``), inside the syslog frame ``prefix`` +
    timestamp + ``middle`` when a prefix is given (``syslog_frame``).

    The compiled twin's ``format_many`` formats a whole batch in C: no Python call per
    record, where the flush called a closure and ``syslog_frame`` for each."""

    __slots__ = ("json", "worker", "prefix", "middle")

    def __init__(self, json: bool = False, worker: int = 0, prefix: str | None = None,
                 middle: str | None = None) -> None:
        if (prefix is None) != (middle is None):
            raise ValueError("a syslog frame needs both its prefix and its middle")
        self.json = json
        self.worker = worker
        self.prefix = prefix
        self.middle = middle

    def __call__(self, record: "AccessRecord") -> str:
        line = format_json if self.json else format_text
        if self.prefix is None:
            return line(record, self.worker)
        return syslog_frame(record, self.worker, self.prefix, self.middle, line)  # type: ignore[arg-type]

    def format_many(self, records: list["AccessRecord"]) -> tuple[list[str], list[tuple[Any, Exception]]]:
        messages: list[str] = []
        failures: list[tuple[Any, Exception]] = []
        for record in records:
            try:
                messages.append(self(record))
            except Exception as exc:  # one bad record must not take the batch with it
                failures.append((record, exc))
        return messages, failures


def make_formatter(settings: AccessLogSettings, worker: int = 0) -> Formatter:
    """The formatter of a log with ``settings``: the line, inside an RFC 5424 frame for
    syslog targets (``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG``)."""
    # The selected twin, imported here and not at the top: logline imports this module.
    from lbcore._fastpath import logline

    json = settings.format == "json"
    if not settings.sink.is_syslog:
        return logline.Formatter(json, worker)
    prefix = f"<{settings.priority_facility * 8 + SYSLOG_SEVERITY_INFO}>1 "
    middle = f" {syslog_hostname()} {settings.tag} {os.getpid()} {SYSLOG_MSGID} - "
    return logline.Formatter(json, worker, prefix, middle)
