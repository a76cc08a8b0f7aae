"""lbcore.proxy.accesslog: line formats, escaping, the bounded buffer, flushing, sharing.

The line formats run over both twins: ``lbcore.proxy.accesslog_format`` (pure) and
``lbcore._fastpath._logline`` (compiled); tests/unit/test_logline.py checks they agree."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore.proxy.accesslog import TERMINATIONS, AccessLog, AccessLogs, AccessRecord
from lbcore.proxy import accesslog_format as pure_format
from lbcore.proxy.accesslog_format import JSON_KEYS, escape_text, format_json, format_text, make_formatter
from lbcore.spec import AccessLogSettings, parse_spec

T0 = 1714564800.123  # 2024-05-01T12:00:00.123Z
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the two formatter twins --------------------------------------------------------------------
TWINS = ["pure", "compiled"]
_IN_CI = bool(os.environ.get("CI"))


def compiled_twin() -> Any | None:
    """lbcore._fastpath._logline, whatever LBCORE_NO_EXTENSIONS says; None when not built."""
    try:
        from lbcore._fastpath import _logline
    except ImportError:
        return None
    return _logline


def twin(name: str) -> Any:
    """The formatter module ``name`` ("pure" or "compiled"). A compiled twin that is not
    built skips the test outside CI and fails it in CI (which builds it): never hidden."""
    if name == "pure":
        return pure_format
    module = compiled_twin()
    if module is None:
        message = "lbcore._fastpath._logline is not built (cythonize -i -3 lbcore/_fastpath/_logline.pyx)"
        if _IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert module.IMPLEMENTATION == "compiled"
    return module


TEXT_RE = re.compile(
    r"(?P<client>\S+) \[(?P<date>[^\]]+)\] (?P<listener>\S+) (?P<pool>[^/ ]+)/(?P<member>\S+) "
    r"(?P<tq>-?\d+)/(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<tr>-?\d+)/(?P<ta>-?\d+) (?P<status>-?\d+) (?P<bytes>\d+) - - "
    r"(?P<term>\S\S) (?P<retries>\d+) (?P<acl>\S+) \{(?P<host>[^{|}]*)\|(?P<ua>[^{|}]*)\} "
    r'"(?P<request>(?:[^"\\]|\\.)*)"\Z'
)
TCP_RE = re.compile(
    r"(?P<client>\S+) \[(?P<date>[^\]]+)\] (?P<listener>\S+) (?P<pool>[^/ ]+)/(?P<member>\S+) "
    r"(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<tt>-?\d+) (?P<bytes>\d+) (?P<term>\S\S) (?P<retries>\d+)\Z"
)
_UNESCAPE_RE = re.compile(r'\\(["\\]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})')


def unescape(text: str) -> str:
    """The inverse of the text format's escaping."""
    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        return body if body in ('"', "\\") else chr(int(body[1:], 16))

    return _UNESCAPE_RE.sub(one, text)


def record(**changes: Any) -> AccessRecord:
    values: dict[str, Any] = dict(
        accepted=T0, started=100.0, client_ip="192.0.2.7", client_port=51234, listener="web", acl="api",
        pool="api", member="a1", method="GET", target="/v1/x?y=1", http_version="1.1", host="api.example.com",
        user_agent="curl/8.5.0", status=200, bytes_in=78, bytes_out=512, t_request=0.00012, t_queue=0.0,
        t_connect=0.00041, t_first_byte=0.0021, t_total=0.0026,
    )
    values.update(changes)
    return AccessRecord(**values)


class ListSink:
    """Collects batches: what a StreamSink or DatagramSink would be given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.events: list[str] = []
        self.dropped = 0
        self.closed = False

    def send(self, messages: list[str]) -> None:
        self.batches.append(list(messages))
        self.events.append(f"send {len(messages)}")

    def reopen(self) -> None:
        self.events.append("reopen")

    def drain(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
        self.events.append("close")

    @property
    def lines(self) -> list[str]:
        return [line for batch in self.batches for line in batch]


class _Handle:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class StepLoop:
    """The part of an event loop an AccessLog uses, stepped by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ready: list[_Handle] = []
        self.timers: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Any, *args: Any) -> _Handle:
        handle = _Handle(self.now, callback, args)
        self.ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Handle:
        handle = _Handle(self.now + delay, callback, args)
        self.timers.append(handle)
        return handle

    def run_ready(self) -> None:
        ready, self.ready = self.ready, []
        for handle in ready:
            if not handle.cancelled:
                handle.callback(*handle.args)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [h for h in self.timers if h.when <= self.now + 1e-9]
        self.timers = [h for h in self.timers if h not in due]
        for handle in sorted(due, key=lambda h: h.when):
            if not handle.cancelled:
                handle.callback(*handle.args)
        self.run_ready()

    @property
    def live_timers(self) -> list[_Handle]:
        return [h for h in self.timers if not h.cancelled]


def new_log(sink: ListSink | None = None, **kwargs: Any) -> AccessLog:
    settings_ = kwargs.pop("settings", AccessLogSettings(format=kwargs.pop("format", "json")))
    return AccessLog(settings_, sink=sink if sink is not None else ListSink(), **kwargs)


# -- JSON -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TWINS)
def test_json_round_trip_and_stable_keys(name: str) -> None:
    format_json = twin(name).format_json
    rec = record(tls_version="TLSv1.3", tls_resumed=True, sni="api.example.com", t_tls=0.0031, retries=1)
    line = format_json(rec, worker=3)
    data = json.loads(line)
    assert list(data) == list(JSON_KEYS)
    expected = {field.name: getattr(rec, field.name) for field in fields(AccessRecord) if field.name in JSON_KEYS}
    expected.update(timestamp="2024-05-01T12:00:00.123Z", worker=3)
    assert data == expected
    assert datetime.fromisoformat(data["timestamp"]) == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    # Every AccessRecord field is in the JSON, but the engine's monotonic base.
    assert {f.name for f in fields(AccessRecord)} - set(JSON_KEYS) == {"accepted", "started"}


@pytest.mark.parametrize("name", TWINS)
def test_json_nulls_for_what_did_not_happen(name: str) -> None:
    format_json = twin(name).format_json
    rec = AccessRecord(T0, 5.0, "::1", 40000, "edge", method="", target="", http_version="")
    data = json.loads(format_json(rec))
    assert data["status"] is None and data["pool"] is None and data["member"] is None
    assert data["method"] is None and data["target"] is None and data["http_version"] is None
    assert all(data[key] is None for key in ("t_tls", "t_request", "t_queue", "t_connect", "t_first_byte", "t_total"))
    assert data["termination"] == "--" and data["client_ip"] == "::1" and data["tls_resumed"] is None
    assert json.loads(format_json(record(t_total=float("nan"), tls_resumed=False)))["t_total"] is None
    assert json.loads(format_json(record(tls_resumed=False)))["tls_resumed"] is False


# -- text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TWINS)
def test_text_layout_httplog(name: str) -> None:
    format_text = twin(name).format_text
    line = format_text(record(retries=2, termination="SH"))
    assert line == (
        '192.0.2.7:51234 [01/May/2024:12:00:00.123] web api/a1 0/0/0/2/3 200 512 - - SH 2 api '
        '{api.example.com|curl/8.5.0} "GET /v1/x?y=1 HTTP/1.1"'
    )
    fields_ = TEXT_RE.match(line)
    assert fields_ is not None and fields_["term"] == "SH"


@pytest.mark.parametrize("name", TWINS)
def test_text_missing_phases_and_names(name: str) -> None:
    format_text = twin(name).format_text
    rec = AccessRecord(T0, 0.0, "2001:db8::1", 443, "web", method="", status=None, termination="cR", t_request=10.0)
    assert format_text(rec) == (
        '[2001:db8::1]:443 [01/May/2024:12:00:00.123] web <NOPOOL>/<NOSRV> 10000/-1/-1/-1/-1 -1 0 - - cR 0 - '
        '{|} "<BADREQ>"'
    )
    rec = record(member=None, status=503, termination="SC", t_connect=None, t_first_byte=None, acl=None,
                 http_version="HTTP/1.0", host=None, user_agent=None)
    assert format_text(rec).endswith(' web api/<NOSRV> 0/0/-1/-1/3 503 512 - - SC 0 - {|} "GET /v1/x?y=1 HTTP/1.0"')


@pytest.mark.parametrize("name", TWINS)
def test_text_tcplog(name: str) -> None:
    format_text = twin(name).format_text
    rec = AccessRecord(T0, 0.0, "198.51.100.2", 5555, "db", pool="pg", member="pg1", mode="tcp", t_queue=0.0,
                       t_connect=0.0015, t_total=12.5, bytes_out=4096, termination="CD", retries=1)
    line = format_text(rec)
    assert line == "198.51.100.2:5555 [01/May/2024:12:00:00.123] db pg/pg1 0/2/12500 4096 CD 1"
    assert TCP_RE.match(line)


def test_termination_codes_are_two_characters() -> None:
    assert all(len(code) == 2 for code in TERMINATIONS) and "--" in TERMINATIONS and "PR" in TERMINATIONS


# -- escaping: a request's content can neither split nor forge a line -----------------------------

NASTY = [
    'x" 200 0 - - -- 0 - {a|b} "GET /forged HTTP/1.1',
    "/a\r\n192.0.2.9:1 [01/Jan/2024:00:00:00.000] web www/w1 0/0/0/0/0 200 0",
    "\x00\x1b[31mred\x7f",
    "line\u2028sep\u2029para\x85nel\x0bvt\x0cff\x1cfs",
    "back\\slash \\\" quote",
    "{brace|bar}",
    "caf\u00e9 \u65e5\u672c \U0001f600",
    "\udc80\udcff",  # bytes kept by surrogateescape
]


def _one_ascii_line(line: str) -> None:
    assert line.isascii() and line.isprintable()
    assert line.splitlines() == [line]


@pytest.mark.parametrize("name", TWINS)
@pytest.mark.parametrize("nasty", NASTY)
def test_escaping_keeps_one_line_and_fields(nasty: str, name: str) -> None:
    format_text, format_json = twin(name).format_text, twin(name).format_json
    rec = record(target=nasty, user_agent=nasty, host=nasty, method="GET")
    text = format_text(rec)
    _one_ascii_line(text)
    match = TEXT_RE.match(text)
    assert match is not None, text
    assert unescape(match["ua"]) == nasty and unescape(match["host"]) == nasty
    assert unescape(match["request"]) == f"GET {nasty} HTTP/1.1"
    line = format_json(rec)
    _one_ascii_line(line)
    data = json.loads(line)
    assert data["target"] == data["user_agent"] == data["host"] == nasty


@pytest.mark.parametrize("name", TWINS)
@SETTINGS
@given(st.text(), st.text(), st.text(), st.text(max_size=5))
def test_escaping_any_text(name: str, target: str, user_agent: str, host: str, term: str) -> None:
    format_text, format_json = twin(name).format_text, twin(name).format_json
    rec = record(target=target, user_agent=user_agent, host=host, termination=term or "--")
    text = format_text(rec)
    _one_ascii_line(text)
    if len(term) == 2 and term.isascii() and term.isprintable() and " " not in term and '"' not in term and "\\" not in term:
        match = TEXT_RE.match(text)
        assert match is not None
        assert (unescape(match["request"]), unescape(match["ua"]), unescape(match["host"])) == (
            f"GET {target} HTTP/1.1", user_agent, host)
    line = format_json(rec)
    _one_ascii_line(line)
    data = json.loads(line)
    assert (data["target"] or "", data["user_agent"], data["host"]) == (target, user_agent, host)


def test_escape_text_forms() -> None:
    assert escape_text('a"b\\c\n\x7f\u00e9\u2028\U0001f600') == 'a\\"b\\\\c\\x0a\\x7f\\xe9\\u2028\\U0001f600'
    assert escape_text("plain /path?q=1 ok") == "plain /path?q=1 ok"


@pytest.mark.parametrize("name", TWINS)
def test_bare_fields_escape_spaces(name: str) -> None:
    format_text = twin(name).format_text
    line = format_text(record(termination="a b", acl=None, client_ip="1.2.3.4 evil"))
    assert line.startswith("1.2.3.4\\x20evil:51234 ")
    assert " a\\x20b 0 - {" in line


# -- syslog frame -------------------------------------------------------------------------------------


def test_syslog_frame_rfc5424(tmp_path: Path) -> None:
    target = f"syslog+unix://{tmp_path}/log.sock"
    fmt = make_formatter(AccessLogSettings(format="text", target=target, facility="local3", tag="edge-lb"), worker=2)
    message = fmt(record())
    match = re.match(r"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (.*)\Z", message)
    assert match is not None
    assert int(match[1]) == 19 * 8 + 6  # local3, informational
    assert match[2] == "2024-05-01T12:00:00.123Z"
    assert match[3] == (socket.gethostname() or "-")
    assert (match[4], int(match[5]), match[6]) == ("edge-lb", os.getpid(), "access")
    assert match[7] == format_text(record())
    plain = make_formatter(AccessLogSettings(format="json"), worker=2)(record())
    assert plain == format_json(record(), worker=2)


# -- buffer, flushing, dropping ----------------------------------------------------------------------


def test_log_is_buffered_until_flush() -> None:
    sink = ListSink()
    access_log = new_log(sink)
    for port in range(3):
        access_log.log(record(client_port=port))
    assert sink.batches == [] and access_log.pending == 3
    access_log.flush()
    assert len(sink.batches) == 1 and [json.loads(line)["client_port"] for line in sink.lines] == [0, 1, 2]
    access_log.flush()  # nothing new: no empty batch
    assert len(sink.batches) == 1 and access_log.dropped == 0


def test_bounded_buffer_drops_the_oldest_and_counts() -> None:
    sink = ListSink()
    access_log = new_log(sink, max_pending=5)
    for port in range(12):
        access_log.log(record(client_port=port))
    assert access_log.pending == 5 and access_log.dropped == 7
    access_log.flush()
    assert [json.loads(line)["client_port"] for line in sink.lines] == [7, 8, 9, 10, 11]
    sink.dropped = 4  # drops counted by the sink (writer overflow, send errors) add up
    assert access_log.dropped == 11


def test_periodic_flush_on_a_stepped_loop() -> None:
    sink, loop = ListSink(), StepLoop()
    access_log = new_log(sink, interval=0.25)
    access_log.start(loop)
    assert [h.when for h in loop.live_timers] == [0.25]
    access_log.log(record(client_port=1))
    loop.advance(0.2)
    assert sink.batches == []
    loop.advance(0.05)
    assert len(sink.batches) == 1 and [h.when for h in loop.live_timers] == [0.5]
    loop.advance(0.25)  # nothing logged: nothing sent, timer goes on
    assert len(sink.batches) == 1 and [h.when for h in loop.live_timers] == [0.75]
    access_log.log(record(client_port=2))
    loop.advance(0.25)
    assert [json.loads(b[0])["client_port"] for b in sink.batches] == [1, 2]
    access_log.close()
    assert loop.live_timers == [] and sink.closed


def test_full_batch_flushes_soon_once() -> None:
    sink, loop = ListSink(), StepLoop()
    access_log = new_log(sink, loop=loop, batch=3)
    access_log.log(record())
    access_log.log(record())
    assert loop.ready == []
    access_log.log(record())
    access_log.log(record())
    assert len(loop.ready) == 1 and sink.batches == []  # no I/O on the request path
    loop.run_ready()
    assert [len(batch) for batch in sink.batches] == [4]
    access_log.log(record())
    access_log.log(record())
    access_log.log(record())
    assert len(loop.ready) == 1


def test_close_flushes_then_drops_later_records() -> None:
    sink, loop = ListSink(), StepLoop()
    access_log = new_log(sink, loop=loop, batch=1)
    access_log.start(loop)
    access_log.log(record())
    access_log.close()
    assert sink.events == ["send 1", "close"] and loop.live_timers == []
    assert all(h.cancelled for h in loop.ready)
    access_log.log(record())
    access_log.flush()
    access_log.reopen()
    access_log.close()
    assert sink.events == ["send 1", "close"] and access_log.dropped == 1


def test_reopen_flushes_first() -> None:
    sink = ListSink()
    access_log = new_log(sink)
    access_log.log(record())
    access_log.reopen()
    access_log.log(record())
    access_log.flush()
    assert sink.events == ["send 1", "reopen", "send 1"]


def test_bad_record_or_sink_never_raises() -> None:
    sink = ListSink()
    access_log = new_log(sink)
    access_log.log(record(client_port=1))
    access_log.log(record(bytes_out="lots"))  # the engine filled it wrong
    access_log.log(record(client_port=3))
    access_log.flush()
    assert [json.loads(line)["client_port"] for line in sink.lines] == [1, 3] and access_log.dropped == 1

    class Broken(ListSink):
        def send(self, messages: list[str]) -> None:
            raise RuntimeError("boom")

    broken = new_log(Broken())
    broken.log(record())
    broken.log(record())
    broken.flush()
    assert broken.dropped == 2


# -- one per distinct settings, kept across revisions -----------------------------------------------


def _spec(tmp_path: Path, logs: dict[str, Any]) -> Any:
    listeners = []
    for index, (name, access_log) in enumerate(sorted(logs.items())):
        listener: dict[str, Any] = {"name": name, "bind": f"127.0.0.1:{8080 + index}", "default_pool": "p"}
        if access_log != "inherit":
            listener["access_log"] = access_log
        listeners.append(listener)
    return parse_spec({
        "defaults": {"access_log": {"enabled": False, "target": f"syslog+unix://{tmp_path}/log.sock", "tag": "lb"}},
        "listeners": listeners,
        "pools": [{"name": "p"}],
    })


def test_access_logs_share_keep_and_retire(tmp_path: Path) -> None:
    loop = StepLoop()
    logs = AccessLogs(worker=1, loop=loop)
    logs.apply(_spec(tmp_path, {"a": {}, "b": {"enabled": True}, "c": "inherit", "d": None, "e": {"format": "text"}}))
    a, b, e = logs.for_listener("a"), logs.for_listener("b"), logs.for_listener("e")
    assert a is not None and a is b and e is not None and e is not a
    assert logs.for_listener("c") is None and logs.for_listener("d") is None and logs.for_listener("zz") is None
    assert a.worker == 1 and a.settings.tag == "lb" and e.settings.format == "text"
    assert len(logs.logs) == 2 and len(loop.live_timers) == 2

    e.log(record())
    logs.apply(_spec(tmp_path, {"a": {}, "b": {"format": "text", "tag": "lb2"}, "e": {"format": "text"}}))
    assert logs.for_listener("a") is a and logs.for_listener("e") is e  # unchanged settings: same log
    b2 = logs.for_listener("b")
    assert b2 is not None and b2 is not a and b2.settings.tag == "lb2"
    assert len(logs.logs) == 3

    logs.apply(_spec(tmp_path, {"a": None, "b": {"format": "text", "tag": "lb2"}}))
    assert logs.for_listener("a") is None and logs.for_listener("b") is b2 and logs.logs == (b2,)
    assert a._closed and e._closed and e.dropped == 1  # e flushed on close; nothing listens on log.sock
    assert logs.dropped == 1
    a.log(record())  # a request that ends after its log was retired: counted, not raised
    logs.close()
    assert b2._closed and logs.logs == () and logs.for_listener("b") is None
    assert loop.live_timers == []


def test_access_logs_start_later(tmp_path: Path) -> None:
    logs = AccessLogs()
    logs.apply(_spec(tmp_path, {"a": {}}))
    loop = StepLoop()
    logs.start(loop)
    assert len(loop.live_timers) == 1
    logs.reopen()
    logs.flush()
    logs.close()
    assert loop.live_timers == []
