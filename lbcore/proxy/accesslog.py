"""Access log: a line per HTTP request (per connection on tcp listeners), off the request path.

Theory of operation. The engine fills an ``AccessRecord`` as a request progresses and,
when it ends, hands it to ``AccessLog.log``: an append to a bounded in-memory buffer,
nothing formatted, nothing written. ``flush`` formats the buffer and gives the batch
to the sink (``accesslog_sinks``): every FLUSH_INTERVAL from a loop timer, and soon
(``call_soon``) once FLUSH_BATCH records wait. A stdout or file sink writes from a
thread of its own, one write per flush; a syslog sink sends one non-blocking datagram
per line. Nothing on the request path waits for the log: when a sink cannot keep
up, the oldest records are dropped and counted in ``dropped``.

One ``AccessLogs`` per worker keeps an ``AccessLog`` per distinct settings (listeners
with equal settings share it) and, on each Spec revision, keeps those whose settings
did not change. The engine looks the log up when a request *ends*
(``logs.for_listener(record.listener)``), so a request that outlives a reload is
logged with the settings current when it ends. SIGUSR1 -> ``reopen``: the file is
reopened after what was flushed before (logrotate's move-then-signal).

Timestamps are UTC. Durations are seconds, None (JSON null, text -1) for a phase that
did not happen.

JSON (``format: json``): one object per line, keys always present, in this order::

    {"timestamp":"2024-05-01T12:00:00.123Z","worker":0,"mode":"http","listener":"web",
     "client_ip":"192.0.2.7","client_port":51234,"sni":null,"tls_version":null,"tls_resumed":null,
     "acl":"api","pool":"api","member":"a1","method":"GET","target":"/v1/x?y=1",
     "http_version":"1.1","host":"api.example.com","user_agent":"curl/8.5.0","status":200,
     "bytes_in":78,"bytes_out":512,"retries":0,"termination":"--","t_tls":null,
     "t_request":0.000120,"t_queue":0.000000,"t_connect":0.000410,"t_first_byte":0.002100,
     "t_total":0.002600}

Text (``format: text``), haproxy's httplog::

    192.0.2.7:51234 [01/May/2024:12:00:00.123] web api/a1 0/0/0/2/3 200 512 - - -- 0 api {api.example.com|curl/8.5.0} "GET /v1/x?y=1 HTTP/1.1"

    client:port [accept date] listener pool/member Tq/Tw/Tc/Tr/Ta status bytes_out - - TERM retries acl {host|user-agent} "request"

- Tq t_request, Tw t_queue, Tc t_connect, Tr t_first_byte, Ta t_total, in whole
  milliseconds, -1 when the phase did not happen; status -1 when none was sent.
- ``<NOPOOL>``/``<NOSRV>`` when no pool or member was chosen; ``-`` for no ACL;
  ``[v6addr]:port`` for IPv6 clients; ``"<BADREQ>"`` when no request head was read.
- ``- -`` stand where haproxy writes captured cookies; the braces hold the Host and
  User-Agent headers as haproxy prints captured request headers.

tcp listeners (``mode == "tcp"``) write haproxy's tcplog::

    client:port [accept date] listener pool/member Tw/Tc/Tt bytes_out TERM retries

Termination codes (``termination``), haproxy's first two characters: who or what ended
the session, then in which phase. The engine uses these (``TERMINATIONS``)::

    --  normal end
    CR  client closed before the request head was complete
    cR  client timeout before the request head was complete (http_request: 408)
    CQ  client closed while the request waited for a member slot
    CC  client closed while the proxy was connecting to a member
    CH  client closed while waiting for the response head
    CD  client closed during the data phase (body or response streaming)
    cD  client timeout during the data phase
    PR  proxy refused the request: invalid (400, 413, 431), maxconn, no pool for it (503)
    LR  proxy answered locally by design (a listener redirect)
    SC  no member could be connected to (refused, unreachable, none up: 502/503)
    sC  connect timeout to a member (503 after retries)
    sQ  timed out waiting for a member slot (max_connections_per_member: 503)
    SH  member closed or sent an invalid response before a complete head (502)
    sH  member timeout before the response head (504)
    SD  member closed during the data phase
    sD  member timeout during the data phase
    KD  killed during the data phase by a stop or reload deadline (drain)
    ID  internal error of the engine
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lbcore.proxy.accesslog_format import Formatter, make_formatter
from lbcore.proxy.accesslog_sinks import DatagramSink, StreamSink, make_sink
from lbcore.spec import AccessLogSettings, Spec

__all__ = ["AccessLog", "AccessLogs", "AccessRecord", "TERMINATIONS", "FLUSH_INTERVAL", "FLUSH_BATCH", "MAX_PENDING"]

log = logging.getLogger("lbcore.accesslog")

# Tunables, in one place.
FLUSH_INTERVAL = 0.25  # seconds between timed flushes
FLUSH_BATCH = 512  # records waiting that make a flush come soon, before the timer
MAX_PENDING = 20_000  # records a log holds, in its buffer and again in its writer's queue
CLOSE_TIMEOUT = 2.0  # seconds close() waits for a writer to finish what was flushed

TERMINATIONS = {
    "--": "normal end",
    "CR": "client closed before the request head was complete",
    "cR": "client timeout before the request head was complete",
    "CQ": "client closed while waiting for a member slot",
    "CC": "client closed while connecting to a member",
    "CH": "client closed while waiting for the response head",
    "CD": "client closed during the data phase",
    "cD": "client timeout during the data phase",
    "PR": "proxy refused the request (invalid, maxconn, no pool)",
    "LR": "proxy answered locally (redirect)",
    "SC": "no member could be connected to",
    "sC": "connect timeout to a member",
    "sQ": "timed out waiting for a member slot",
    "SH": "member closed or sent an invalid response before a complete head",
    "sH": "member timeout before the response head",
    "SD": "member closed during the data phase",
    "sD": "member timeout during the data phase",
    "KD": "killed during the data phase by a stop or reload deadline",
    "ID": "internal error",
}


@dataclass(slots=True)
class AccessRecord:
    """One request (one connection on a tcp listener), filled in by the engine as it goes.

    ``accepted`` is wall-clock time (``time.time()``) when this request began: the
    accept for a connection's first request, the first byte of a later keep-alive one
    (haproxy's accept date); it stamps the line. ``started`` is the engine's
    monotonic base for the same moment (``loop.time()``), from which it computes the
    durations; it is not logged. Durations are seconds, None when the phase did not
    happen: ``t_tls`` the TLS handshake; ``t_request`` receiving the request head;
    ``t_queue`` waiting for a member slot; ``t_connect`` connecting to the member (all
    attempts; 0 on a reused connection); ``t_first_byte`` from the request sent to the
    first byte of the response head; ``t_total`` from ``started`` to the last byte
    sent. ``termination`` is one of ``TERMINATIONS``; ``mode`` "http" or "tcp".
    """

    accepted: float
    started: float
    client_ip: str
    client_port: int
    listener: str
    acl: str | None = None
    pool: str | None = None
    member: str | None = None
    method: str = ""
    target: str = ""
    http_version: str = "1.1"
    host: str | None = None
    user_agent: str | None = None
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    t_tls: float | None = None
    t_request: float | None = None
    t_queue: float | None = None
    t_connect: float | None = None
    t_first_byte: float | None = None
    t_total: float | None = None
    retries: int = 0
    termination: str = "--"
    tls_version: str | None = None
    tls_resumed: bool | None = None
    sni: str | None = None
    mode: str = "http"


class AccessLog:
    """One sink with its buffer and flush timer (see the module docstring)."""

    def __init__(
        self,
        settings: AccessLogSettings,
        *,
        worker: int = 0,
        loop: Any = None,
        max_pending: int = MAX_PENDING,
        batch: int = FLUSH_BATCH,
        interval: float = FLUSH_INTERVAL,
        sink: Any = None,
    ) -> None:
        # lifetime: the log
        self.settings = settings
        self.worker = worker
        self.max_pending = max(1, max_pending)
        self.batch = max(1, batch)
        self.interval = interval
        self._format: Formatter = make_formatter(settings, worker)
        # ``sink``: any object with send(messages), reopen(), drain(timeout), close(timeout)
        # and dropped, instead of the one the target names (tests).
        self._sink: StreamSink | DatagramSink = sink or make_sink(settings.sink, max_pending=self.max_pending)
        self._lost = 0  # dropped here: buffer overflow, a record that would not format, logged after close
        self._bad_record_seen = False
        self._closed = False
        # lifetime: the loop
        self._loop = loop
        self._timer: Any = None
        self._soon: Any = None
        # lifetime: until the next flush. A list, typed in accesslog.pxd, so the request
        # path appends without a method call (a deque's append is one: ~230 instructions).
        self._records: list[AccessRecord] = []

    @property
    def dropped(self) -> int:
        """Records that were not written: buffer or writer overflow, send errors."""
        return self._lost + self._sink.dropped

    @property
    def pending(self) -> int:
        return len(self._records)

    # -- the request path -----------------------------------------------------------------
    def log(self, record: AccessRecord) -> None:
        """Buffer ``record``: O(1), no formatting, no I/O. A full buffer drops its oldest."""
        if self._closed:
            self._lost += 1
            return
        records = self._records
        if len(records) >= self.max_pending:
            self._lost += 1
            del records[0]  # the oldest goes (O(n), only while the buffer overflows)
        records.append(record)
        if len(records) >= self.batch and self._soon is None and self._loop is not None:
            self._soon = self._loop.call_soon(self._flush_soon)

    # -- off the request path -----------------------------------------------------------------
    def flush(self) -> None:
        """Format what is buffered and give it to the sink as one batch. Never raises."""
        if not self._records:
            return
        batch, self._records = self._records, []
        # One call for the batch (compiled: each record formatted by C calls). A
        # malformed record is left out, and must not take the batch or the engine with it.
        messages, failures = self._format.format_many(batch)
        if failures:
            self._lost += len(failures)
            if not self._bad_record_seen:
                self._bad_record_seen = True
                record, exc = failures[0]
                log.error("access log %s: cannot format a record (%r): %s", self.settings.target, record, exc)
        if not messages:
            return
        try:
            self._sink.send(messages)
        except Exception:
            self._lost += len(messages)
            log.exception("access log %s: sink failed", self.settings.target)

    def _flush_soon(self) -> None:
        self._soon = None
        self.flush()

    def start(self, loop: Any) -> None:
        """Flush every ``interval`` on ``loop`` (and soon after ``batch`` records)."""
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        if not self._closed:
            self._timer = loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.flush()
        finally:
            if not self._closed and self._loop is not None:
                self._timer = self._loop.call_later(self.interval, self._tick)

    def reopen(self) -> None:
        """SIGUSR1: what was logged so far goes to the current file, later lines to a
        newly opened one (a syslog socket reconnects; stdout stays)."""
        if self._closed:
            return
        self.flush()
        self._sink.reopen()

    def drain(self, timeout: float | None = None) -> bool:
        """Flush and wait until the sink has written it; False on timeout. Blocks: for
        shutdown and tests, never for the request path."""
        self.flush()
        return self._sink.drain(timeout)

    def close(self, timeout: float | None = CLOSE_TIMEOUT) -> None:
        """Flush, stop the timer, close the sink (waiting up to ``timeout`` for its
        writer; 0: let it finish in the background). Later records are dropped."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
        self._sink.close(timeout)

    def __repr__(self) -> str:
        return f"<AccessLog {self.settings.format} -> {self.settings.target} worker={self.worker}>"


class AccessLogs:
    """A worker's access logs: one ``AccessLog`` per distinct settings, found by listener."""

    def __init__(self, *, worker: int = 0, loop: Any = None, **tunables: Any) -> None:
        self.worker = worker
        self._loop = loop
        self._tunables = tunables  # max_pending, batch, interval (tests)
        self._logs: dict[AccessLogSettings, AccessLog] = {}
        self._by_listener: dict[str, AccessLog] = {}
        self._retired_dropped = 0

    def apply(self, spec: Spec) -> None:
        """Take a revision's settings: keep a log whose settings are still used, open
        the new ones, close (without waiting) those no listener uses any more."""
        logs: dict[AccessLogSettings, AccessLog] = {}
        by_listener: dict[str, AccessLog] = {}
        for listener in spec.listeners:
            settings = listener.access_log
            if settings is None:
                continue
            access_log = logs.get(settings) or self._logs.get(settings)
            if access_log is None:
                access_log = AccessLog(settings, worker=self.worker, loop=self._loop, **self._tunables)
                if self._loop is not None:
                    access_log.start(self._loop)
            logs[settings] = access_log
            by_listener[listener.name] = access_log
        for settings, old in self._logs.items():
            if settings not in logs:
                old.close(timeout=0)
                self._retired_dropped += old.dropped
        self._logs, self._by_listener = logs, by_listener

    def for_listener(self, name: str) -> AccessLog | None:
        return self._by_listener.get(name)

    @property
    def logs(self) -> tuple[AccessLog, ...]:
        return tuple(self._logs.values())

    @property
    def dropped(self) -> int:
        return self._retired_dropped + sum(access_log.dropped for access_log in self._logs.values())

    def start(self, loop: Any) -> None:
        self._loop = loop
        for access_log in self._logs.values():
            access_log.start(loop)

    def flush(self) -> None:
        for access_log in self._logs.values():
            access_log.flush()

    def reopen(self) -> None:
        for access_log in self._logs.values():
            access_log.reopen()

    def close(self, timeout: float | None = CLOSE_TIMEOUT) -> None:
        for access_log in self._logs.values():
            access_log.close(timeout)
            self._retired_dropped += access_log.dropped
        self._logs, self._by_listener = {}, {}
