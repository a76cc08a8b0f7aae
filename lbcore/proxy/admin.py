"""The admin listener: Prometheus /metrics and the live stats page, over HTTP/1.1.

    GET /metrics      Prometheus text (OpenMetrics when the scraper asks for it)
    GET /stats        the stats page (HTML), refreshed in place from /stats.json
    GET /stats.json   the snapshot (lbcore.proxy.stats), as is
    GET /stats.csv    haproxy's "show stat" CSV (the runtime socket's rows)
    GET /stats.js     the page's script
    GET /             redirects to /stats (or /metrics when the page is off)

Theory of operation
- Every response is computed from ``controller.snapshot()`` when it is asked for;
  nothing is cached and nothing here counts anything.
- /metrics: ``SnapshotCollector`` is a prometheus_client custom collector that turns
  one snapshot into metric families; it is registered in a private registry, so the
  process's own default metrics (and anything else in the default registry) stay out.
- The stats page is a fixed HTML shell with the snapshot of the moment embedded as
  JSON, and a script that renders it and then, every ``refresh`` seconds (2 by
  default, ``/stats?refresh=N``), fetches /stats.json and updates the same DOM in
  place: rows are keyed by stable ids (``listener-NAME``, ``member-POOL-MEMBER``,
  ``backend-POOL``) and carry ``data-status``, which the colours key on; only cells
  whose text changed are written. The script builds every element with
  ``textContent``, never HTML strings, so no name or check detail is ever parsed as
  markup; the embedded JSON escapes ``<``, ``>`` and ``&``; the Content-Security-Policy
  allows only this server's script. The page is read-only: changes go through the
  runtime socket.
- HTTP: one coroutine per connection, h11 for the framing, keep-alive, GET and HEAD.
  Request bodies are read and discarded up to MAX_BODY.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import h11
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from lbcore import __version__
from lbcore.proxy.runtime_api import HEALTHY, RESPONSE_CLASSES, USABLE, Controller, format_csv, stat_rows

__all__ = ["AdminServer", "SnapshotCollector", "render_metrics", "render_page", "DEFAULT_REFRESH"]

log = logging.getLogger("lbcore.admin")

DEFAULT_REFRESH = 2.0  # seconds between two refreshes of the stats page
REFRESH_RANGE = (0.5, 3600.0)  # what ?refresh= may ask for, seconds
IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may wait for its next request
MAX_HEAD = 16384  # bytes of request line and headers (haproxy's tune.bufsize)
MAX_BODY = 65536  # bytes of request body read and discarded before closing instead
READ_SIZE = 65536
STATUSES = ("UP", "DOWN", "DRAIN", "MAINT", "NO_CHECK")
_CHECK_PASSED = re.compile(r"L\dOK")  # haproxy check codes: L4OK, L6OK, L7OK, L7OKC


# -- /metrics ---------------------------------------------------------------------------------

# (metric name, type, help, snapshot key): one sample per listener / pool / member.
# Counters are named without "_total"; prometheus_client appends it.
LISTENER_METRICS = (
    ("lbcore_listener_current_connections", "gauge", "Client connections open now.", "conns_cur"),
    ("lbcore_listener_max_connections", "gauge", "Most client connections open at once since the start.", "conns_max"),
    ("lbcore_listener_connections", "counter", "Client connections accepted.", "conns_total"),
    ("lbcore_listener_requests", "counter", "HTTP requests received.", "requests"),
    ("lbcore_listener_bytes_in", "counter", "Bytes received from clients.", "bytes_in"),
    ("lbcore_listener_bytes_out", "counter", "Bytes sent to clients.", "bytes_out"),
    ("lbcore_listener_denied", "counter", "Requests or connections denied.", "denied"),
    ("lbcore_listener_errors", "counter", "Client-side errors: bad requests, client timeouts and aborts.", "errors"),
)
LISTENER_WORKER_METRICS = (
    ("lbcore_listener_worker_current_connections", "gauge", "Client connections open now, in one worker.", "conns_cur"),
    ("lbcore_listener_worker_connections", "counter", "Client connections one worker accepted.", "conns_total"),
)
POOL_METRICS = (
    ("lbcore_pool_active_connections", "gauge", "Connections to the pool's members in flight now.", "active"),
    ("lbcore_pool_requests", "counter", "Requests sent to the pool.", "requests"),
    ("lbcore_pool_connect_errors", "counter", "Failed connection attempts to the pool's members.", "connect_errors"),
    ("lbcore_pool_response_errors", "counter", "Members' responses that failed (reset, timeout).", "response_errors"),
    ("lbcore_pool_retries", "counter", "Connection attempts retried.", "retries"),
    ("lbcore_pool_redispatches", "counter", "Requests retried on another member.", "redispatches"),
    ("lbcore_pool_queued", "counter", "Requests that waited for a member connection slot.", "queued"),
    ("lbcore_pool_queue_timeouts", "counter", "Requests answered 503 after too long in the queue.", "queue_timeouts"),
    ("lbcore_pool_no_member", "counter", "Requests answered 503 because no member was available.", "no_member"),
)
MEMBER_METRICS = (
    ("lbcore_member_weight", "gauge", "The member's weight (configured, or set at runtime).", "weight"),
    ("lbcore_member_effective_weight", "gauge", "The weight the balancer uses now (0 when down).", "effective_weight"),
    ("lbcore_member_active_connections", "gauge", "Connections to the member in flight now.", "active"),
    ("lbcore_member_connections", "counter", "Connections made to the member.", "conns_total"),
    ("lbcore_member_requests", "counter", "Requests sent to the member.", "requests"),
    ("lbcore_member_connect_errors", "counter", "Failed connection attempts to the member.", "connect_errors"),
    ("lbcore_member_response_errors", "counter", "The member's responses that failed.", "response_errors"),
    ("lbcore_member_bytes_in", "counter", "Bytes received from the member.", "bytes_in"),
    ("lbcore_member_bytes_out", "counter", "Bytes sent to the member.", "bytes_out"),
)
_FAMILIES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}


class SnapshotCollector:
    """A prometheus_client collector over ``snapshot()`` (one call per scrape)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        listeners = snap.get("listeners", ())
        pools = snap.get("pools", ())
        members = [(pool["name"], member) for pool in pools for member in pool.get("members", ())]
        yield from _info_metrics(snap.get("info", {}))

        yield from _table(LISTENER_METRICS, ["listener"], [((l["name"],), l) for l in listeners])
        yield _responses("lbcore_http_responses", "HTTP responses sent to clients, by status class.",
                         ["listener"], [((l["name"],), l) for l in listeners])
        tls = CounterMetricFamily("lbcore_listener_tls_handshakes", "TLS handshakes with clients, by result.",
                                  labels=["listener", "result"])
        for listener in listeners:
            for result, count in (listener.get("tls") or {}).items():
                tls.add_metric([listener["name"], result], count)
        yield tls
        # By worker: how a listener's connections split between the workers (with
        # shards: shared, the first worker awake takes them; per-worker, the kernel).
        yield from _table(LISTENER_WORKER_METRICS, ["listener", "worker"],
                          [((l["name"], str(w["worker"])), w) for l in listeners for w in l.get("workers") or ()])

        yield from _table(POOL_METRICS, ["pool"], [((p["name"],), p) for p in pools])
        yield _responses("lbcore_pool_http_responses", "Responses from the pool's members, by status class.",
                         ["pool"], [((p["name"],), p) for p in pools])
        usable = GaugeMetricFamily("lbcore_pool_usable_members",
                                   "Members that take new traffic (UP, or up and unchecked).", labels=["pool"])
        for pool in pools:
            usable.add_metric([pool["name"]], sum(1 for m in pool.get("members", ()) if m.get("status") in USABLE))
        yield usable

        yield from _member_state_metrics(members)
        yield from _table(MEMBER_METRICS, ["pool", "member"], [((p, m["name"]), m) for p, m in members])
        yield _responses("lbcore_member_http_responses", "Responses from the member, by status class.",
                         ["pool", "member"], [((p, m["name"]), m) for p, m in members])
        latency = HistogramMetricFamily("lbcore_member_request_duration_seconds",
                                        "Time from sending a request to the member to its complete response.",
                                        labels=["pool", "member"])
        for pool, member in members:
            histogram = member.get("latency")
            if histogram:
                buckets = [(_le(bound), count) for bound, count in histogram["buckets"]]
                latency.add_metric([pool, member["name"]], buckets, histogram.get("sum", 0.0))
        yield latency
        yield from _check_metrics(members)


Rows = list[tuple[tuple[str, ...], dict[str, Any]]]  # (label values, snapshot item)


def _table(table: tuple[tuple[str, str, str, str], ...], labels: list[str], rows: Rows) -> Iterator[Metric]:
    for name, kind, help_text, key in table:
        family = _FAMILIES[kind](name, help_text, labels=labels)
        for label_values, row in rows:
            value = row.get(key)
            if value is not None:
                family.add_metric(list(label_values), value)
        yield family


def _responses(name: str, help_text: str, labels: list[str], rows: Rows) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels + ["code"])
    for label_values, row in rows:
        responses = row.get("responses") or {}
        for klass in RESPONSE_CLASSES:
            family.add_metric(list(label_values) + [klass], responses.get(klass, 0))
    return family


def _info_metrics(info: dict[str, Any]) -> Iterator[Metric]:
    labels = {"version": str(info.get("version", __version__)), "revision": str(info.get("revision", ""))}
    yield InfoMetricFamily("lbcore", "The engine's version and the Spec revision it runs.", value=labels)
    for name, help_text, key in (
        ("lbcore_start_time_seconds", "When the engine started, seconds since the epoch.", "started_at"),
        ("lbcore_uptime_seconds", "Seconds since the engine started.", "uptime_s"),
        ("lbcore_workers", "Worker processes.", "workers"),
    ):
        if info.get(key) is not None:
            yield GaugeMetricFamily(name, help_text, value=info[key])


def _member_state_metrics(members: list[tuple[str, dict[str, Any]]]) -> Iterator[Metric]:
    up = GaugeMetricFamily("lbcore_member_up", "1 if the member is healthy (UP, DRAIN or up, unchecked), else 0.",
                           labels=["pool", "member"])
    status = GaugeMetricFamily("lbcore_member_status", "1 for the member's current status, 0 for the others.",
                               labels=["pool", "member", "status"])
    for pool, member in members:
        current = member.get("status")
        up.add_metric([pool, member["name"]], 1 if current in HEALTHY else 0)
        for name in STATUSES:
            status.add_metric([pool, member["name"], name], 1 if current == name else 0)
    yield up
    yield status


def _check_metrics(members: list[tuple[str, dict[str, Any]]]) -> Iterator[Metric]:
    labels = ["pool", "member"]
    enabled = GaugeMetricFamily("lbcore_member_check_enabled", "1 if the member's health checks run.", labels=labels)
    passed = GaugeMetricFamily("lbcore_member_check_success", "1 if the last health check passed.", labels=labels)
    duration = GaugeMetricFamily("lbcore_member_check_duration_seconds", "How long the last health check took.",
                                 labels=labels)
    at = GaugeMetricFamily("lbcore_member_check_timestamp_seconds",
                           "When the last health check ended, seconds since the epoch.", labels=labels)
    for pool, member in members:
        check = member.get("check")
        if not check:
            continue
        key = [pool, member["name"]]
        enabled.add_metric(key, 1 if check.get("enabled") else 0)
        if check.get("code"):
            passed.add_metric(key, 1 if _CHECK_PASSED.match(check["code"]) else 0)
        if check.get("duration_ms") is not None:
            duration.add_metric(key, check["duration_ms"] / 1000)
        if check.get("at") is not None:
            at.add_metric(key, check["at"])
    yield from (enabled, passed, duration, at)


def _le(bound: Any) -> str:
    return bound if isinstance(bound, str) else floatToGoString(bound)


def render_metrics(controller: Controller, accept: str = "") -> tuple[bytes, str]:
    """The /metrics body and its content type, in the format ``accept`` asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(controller.snapshot))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


# -- /stats -----------------------------------------------------------------------------------

_PAGE_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
             "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 12px; margin: 8px 12px; color: #000; background: #fff; }
h1 { font-size: 18px; margin: 4px 0; }
h2 { font-size: 14px; margin: 14px 0 4px; }
h2 .sub { font-weight: normal; color: #333; font-size: 12px; margin-left: 8px; }
#info span { margin-right: 14px; }
#refresh-state { margin: 4px 0; color: #070; }
body[data-state="stale"] #refresh-state { color: #fff; background: #c00; padding: 2px 4px; display: inline-block; }
table { border-collapse: collapse; margin-bottom: 6px; }
th, td { border: 1px solid #999; padding: 1px 4px; white-space: nowrap; }
th { background: #20408a; color: #fff; font-weight: normal; }
td { text-align: right; }
td[data-field="name"], td[data-field="address"], td[data-field="status"], td[data-field="operating"],
td[data-field="admin"], td[data-field="check"], td[data-field="detail"], td[data-field="protocol"],
td[data-field="bind"] { text-align: left; }
td[data-field="detail"] { max-width: 24em; overflow: hidden; text-overflow: ellipsis; }
tr.backend td { background: #e8e8ff; font-weight: bold; }
tr[data-status="UP"] td, .legend .UP { background: #c0f0c0; }
tr[data-status="DOWN"] td, .legend .DOWN { background: #ff9090; }
tr[data-status="DRAIN"] td, .legend .DRAIN { background: #a0c8ff; }
tr[data-status="MAINT"] td, .legend .MAINT { background: #c8a070; }
tr[data-status="NO_CHECK"] td, .legend .NO_CHECK { background: #e0e0e0; }
.legend span { padding: 1px 6px; margin-right: 4px; border: 1px solid #999; }
"""

PAGE_SCRIPT = r"""
"use strict";
(function () {
  const body = document.body;
  const REFRESH_MS = Math.max(500, Number(body.dataset.refresh) || 2000);
  const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
  const USABLE = new Set(["UP", "NO_CHECK"]);
  const STATUS_TEXT = { NO_CHECK: "no check" };

  // -- formatting (every cell is plain text) --
  const dash = "-";
  const num = (v) => (v === undefined || v === null ? dash : String(v));
  function bytes(v) {
    if (v === undefined || v === null) return dash;
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? v + " B" : v.toFixed(1) + " " + units[i];
  }
  function age(seconds) {
    if (seconds === undefined || seconds === null || !isFinite(seconds)) return dash;
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    s %= 60;
    const two = (x) => String(x).padStart(2, "0");
    if (d) return d + "d" + two(h) + "h";
    if (h) return h + "h" + two(m) + "m";
    if (m) return m + "m" + two(s) + "s";
    return s + "s";
  }
  const millis = (v) => (v === undefined || v === null ? dash : Number(v).toFixed(1) + " ms");
  const sum = (items, key) => items.reduce((total, item) => total + (item[key] || 0), 0);

  // -- rates: per second, from the previous rendering --
  let previous = null;
  let current = null;
  function rate(key, value) {
    current.values.set(key, value);
    if (!previous || !previous.values.has(key) || value === undefined) return dash;
    const seconds = (current.at - previous.at) / 1000;
    const delta = value - previous.values.get(key);
    if (seconds <= 0 || delta < 0) return dash;
    const r = delta / seconds;
    return r >= 10 ? r.toFixed(0) : r.toFixed(1);
  }

  // -- tables: built once, rows keyed by id, cells updated in place --
  const LISTENER_COLUMNS = [
    ["name", "", "Listener"], ["protocol", "", "Protocol"], ["bind", "", "Bind"], ["status", "", "Status"],
    ["cur", "Connections", "Cur"], ["max", "Connections", "Max"], ["total", "Connections", "Total"],
    ["conn_rate", "Connections", "Rate/s"],
    ["requests", "Requests", "Total"], ["req_rate", "Requests", "Rate/s"],
    ["bytes_in", "Bytes", "In"], ["bytes_out", "Bytes", "Out"],
    ["denied", "", "Denied"], ["errors", "", "Errors"],
  ].concat(CLASSES.map((c) => [c, "Responses", c]), [
    ["tls_full", "TLS handshakes", "Full"], ["tls_resumed", "TLS handshakes", "Resumed"],
    ["tls_failed", "TLS handshakes", "Failed"],
  ]);
  const MEMBER_COLUMNS = [
    ["name", "", "Member"], ["address", "", "Address"], ["status", "", "Status"], ["operating", "", "Operating"],
    ["admin", "", "Admin"], ["weight", "", "Weight"], ["backup", "", "Bck"],
    ["cur", "Sessions", "Cur"], ["total", "Sessions", "Total"], ["conn_rate", "Sessions", "Rate/s"],
    ["requests", "Requests", "Total"], ["req_rate", "Requests", "Rate/s"],
    ["bytes_in", "Bytes", "In"], ["bytes_out", "Bytes", "Out"],
    ["econ", "Errors", "Conn"], ["eresp", "Errors", "Resp"],
  ].concat(CLASSES.map((c) => [c, "Responses", c]), [
    ["latency", "", "Avg time"],
    ["check", "Last check", "Result"], ["check_duration", "Last check", "Took"], ["check_age", "Last check", "Age"],
    ["detail", "Last check", "Detail"],
  ]);

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function buildTable(table, columns) {
    const head = table.createTHead();
    const top = head.insertRow();
    const bottom = head.insertRow();
    let i = 0;
    while (i < columns.length) {
      const group = columns[i][1];
      if (!group) {
        top.appendChild(make("th", { rowspan: "2" }, columns[i][2]));
        i += 1;
        continue;
      }
      let span = 0;
      while (i + span < columns.length && columns[i + span][1] === group) {
        bottom.appendChild(make("th", {}, columns[i + span][2]));
        span += 1;
      }
      top.appendChild(make("th", { colspan: String(span) }, group));
      i += span;
    }
    table.appendChild(make("tbody"));
    return table;
  }

  const makeTable = (id, columns) => buildTable(make("table", { id: id }), columns);

  function placeRow(tbody, id, columns, position) {
    let row = document.getElementById(id);
    if (!row) {
      row = make("tr", { id: id });
      for (const column of columns) row.appendChild(make("td", { "data-field": column[0] }));
    }
    if (tbody.rows[position] !== row) tbody.insertBefore(row, tbody.rows[position] || null);
    return row;
  }

  function fill(row, columns, values, data) {
    columns.forEach((column, i) => {
      const value = values[column[0]];
      const text = value === undefined || value === null || value === "" ? dash : String(value);
      if (row.cells[i].textContent !== text) row.cells[i].textContent = text;
    });
    for (const [key, value] of Object.entries(data)) {
      const text = value === undefined || value === null ? "" : String(value);
      if (row.getAttribute("data-" + key) !== text) row.setAttribute("data-" + key, text);
    }
  }

  function prune(parent, keep) {
    for (const child of Array.from(parent.children)) if (!keep.has(child.id)) child.remove();
  }

  function responses(item) {
    const out = {};
    for (const c of CLASSES) out[c] = num((item.responses || {})[c]);
    return out;
  }

  // -- rendering one snapshot --
  function renderInfo(info) {
    const parts = [
      ["version", "lbcore " + num(info.version)], ["revision", "revision " + num(info.revision)],
      ["pid", "pid " + num(info.pid)], ["workers", "workers " + num(info.workers)],
      ["uptime", "up " + age(info.uptime_s)],
    ];
    const box = document.getElementById("info");
    for (const [key, text] of parts) {
      let span = document.getElementById("info-" + key);
      if (!span) span = box.appendChild(make("span", { id: "info-" + key }));
      if (span.textContent !== text) span.textContent = text;
    }
  }

  function renderListeners(listeners) {
    const table = document.getElementById("listeners-table");
    if (!table.tHead) buildTable(table, LISTENER_COLUMNS);
    const tbody = table.tBodies[0];
    const keep = new Set();
    listeners.forEach((l, position) => {
      const id = "listener-" + l.name;
      keep.add(id);
      const row = placeRow(tbody, id, LISTENER_COLUMNS, position);
      const tls = l.tls || {};
      fill(row, LISTENER_COLUMNS, Object.assign({
        name: l.name, protocol: l.protocol, bind: l.bind, status: l.status,
        cur: num(l.conns_cur), max: num(l.conns_max), total: num(l.conns_total),
        conn_rate: rate(id + "/conns", l.conns_total),
        requests: num(l.requests), req_rate: rate(id + "/requests", l.requests),
        bytes_in: bytes(l.bytes_in), bytes_out: bytes(l.bytes_out), denied: num(l.denied), errors: num(l.errors),
        tls_full: num(tls.full), tls_resumed: num(tls.resumed), tls_failed: num(tls.failed),
      }, responses(l)), { status: l.status, listener: l.name });
    });
    prune(tbody, keep);
  }

  function checkText(check) {
    if (!check) return dash;
    if (check.enabled === false) return "disabled" + (check.code ? " (last " + check.code + ")" : "");
    return [check.code, check.status].filter((x) => x !== undefined && x !== null && x !== "").join(" ");
  }

  function memberValues(id, m, serverNow) {
    const check = m.check;
    const latency = m.latency;
    const weight = m.effective_weight !== undefined && m.effective_weight !== m.weight
      ? m.effective_weight + "/" + m.weight : num(m.weight);
    return Object.assign({
      name: m.name, address: m.address, status: STATUS_TEXT[m.status] || m.status,
      operating: m.operating_status, admin: m.admin, weight: weight, backup: m.backup ? "Y" : dash,
      cur: num(m.active), total: num(m.conns_total), conn_rate: rate(id + "/conns", m.conns_total),
      requests: num(m.requests), req_rate: rate(id + "/requests", m.requests),
      bytes_in: bytes(m.bytes_in), bytes_out: bytes(m.bytes_out),
      econ: num(m.connect_errors), eresp: num(m.response_errors),
      latency: latency && latency.count ? millis((latency.sum / latency.count) * 1000) : dash,
      check: checkText(check), check_duration: check ? millis(check.duration_ms) : dash,
      check_age: check && check.at ? age(serverNow - check.at) : dash, detail: check ? check.detail : dash,
    }, responses(m));
  }

  function backendValues(id, pool) {
    const members = pool.members || [];
    const total = sum(members, "conns_total");
    const usable = members.filter((m) => USABLE.has(m.status));
    const primaries = usable.filter((m) => !m.backup);
    const weightOf = (m) => (m.effective_weight !== undefined ? m.effective_weight : m.weight || 0);
    const weight = primaries.reduce((w, m) => w + weightOf(m), 0);
    const backups = usable.length - primaries.length;
    const count = members.reduce((n, m) => n + ((m.latency || {}).count || 0), 0);
    const seconds = members.reduce((n, m) => n + ((m.latency || {}).sum || 0), 0);
    return Object.assign({
      name: "Backend", status: pool.status, operating: pool.operating_status,
      weight: String(weight), backup: backups ? String(backups) : dash,
      cur: num(pool.active), total: String(total), conn_rate: rate(id + "/conns", total),
      requests: num(pool.requests), req_rate: rate(id + "/requests", pool.requests),
      bytes_in: bytes(sum(members, "bytes_in")), bytes_out: bytes(sum(members, "bytes_out")),
      econ: num(pool.connect_errors), eresp: num(pool.response_errors),
      latency: count ? millis((seconds / count) * 1000) : dash,
    }, responses(pool));
  }

  function renderPool(container, pool, position, serverNow) {
    const sectionId = "pool-" + pool.name;
    let section = document.getElementById(sectionId);
    if (!section) {
      section = make("section", { id: sectionId, class: "pool" });
      const title = section.appendChild(make("h2", {}, pool.name));
      title.appendChild(make("span", { class: "sub", "data-field": "summary" }));
      section.appendChild(makeTable("pool-table-" + pool.name, MEMBER_COLUMNS));
    }
    if (container.children[position] !== section) container.insertBefore(section, container.children[position] || null);
    const summary = section.querySelector("[data-field=summary]");
    const text = [
      pool.algorithm, "status " + num(pool.status), "retries " + num(pool.retries),
      "redispatches " + num(pool.redispatches), "queued " + num(pool.queued),
      "queue timeouts " + num(pool.queue_timeouts), "no member " + num(pool.no_member),
    ].filter(Boolean).join(" \u00b7 ");
    if (summary.textContent !== text) summary.textContent = text;
    section.setAttribute("data-status", pool.status === undefined ? "" : String(pool.status));

    const tbody = section.querySelector("table").tBodies[0];
    const keep = new Set();
    const members = pool.members || [];
    members.forEach((m, index) => {
      const id = "member-" + pool.name + "-" + m.name;
      keep.add(id);
      const row = placeRow(tbody, id, MEMBER_COLUMNS, index);
      fill(row, MEMBER_COLUMNS, memberValues(id, m, serverNow), {
        status: m.status, admin: m.admin, pool: pool.name, member: m.name, operating: m.operating_status,
      });
      row.className = "member";
      const detail = m.check && m.check.detail ? String(m.check.detail) : "";
      if (row.title !== detail) row.title = detail;
    });
    const backendId = "backend-" + pool.name;
    keep.add(backendId);
    const backend = placeRow(tbody, backendId, MEMBER_COLUMNS, members.length);
    backend.className = "backend";
    fill(backend, MEMBER_COLUMNS, backendValues(backendId, pool), { pool: pool.name });
    prune(tbody, keep);
    return sectionId;
  }

  function render(snapshot) {
    current = { at: performance.now(), values: new Map() };
    const info = snapshot.info || {};
    const serverNow = info.started_at !== undefined && info.uptime_s !== undefined
      ? info.started_at + info.uptime_s : Date.now() / 1000;
    renderInfo(info);
    renderListeners(snapshot.listeners || []);
    const container = document.getElementById("pools");
    const keep = new Set();
    (snapshot.pools || []).forEach((pool, position) => keep.add(renderPool(container, pool, position, serverNow)));
    prune(container, keep);
    previous = current;
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
  }

  function setState(state, text) {
    body.dataset.state = state;
    const box = document.getElementById("refresh-state");
    if (box.textContent !== text) box.textContent = text;
  }

  async function refresh() {
    try {
      const response = await fetch("stats.json", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      setState("live", "updated " + new Date().toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s");
    } catch (error) {
      setState("stale", "refresh failed (" + error.message + "); the figures below are stale; retrying");
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  render(JSON.parse(document.getElementById("snapshot").textContent));
  setState("live", "refreshing every " + REFRESH_MS / 1000 + " s");
  setTimeout(refresh, REFRESH_MS);
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lbcore stats</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body data-refresh="{refresh_ms}" data-state="loading">
<h1>lbcore stats</h1>
<div id="info"></div>
<div id="refresh-state"></div>
<div class="legend">
<span class="UP">UP</span><span class="DOWN">DOWN</span><span class="DRAIN">DRAIN</span><span class="MAINT">MAINT</span>
<span class="NO_CHECK">up, no check</span>
</div>
<noscript><p>This page renders with JavaScript. The same figures:
<a href="stats.csv">stats.csv</a>, <a href="stats.json">stats.json</a>.</p></noscript>
<section id="listeners"><h2>Listeners</h2><table id="listeners-table"></table></section>
<div id="pools"></div>
<script type="application/json" id="snapshot">{snapshot}</script>
<script src="stats.js"></script>
</body>
</html>
"""

_JSON_IN_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_for_html(value: Any) -> str:
    """JSON that cannot end the <script> element it sits in, nor open any markup."""
    return json.dumps(value, separators=(",", ":"), default=str).translate(_JSON_IN_HTML)


def render_page(snapshot: dict[str, Any], refresh: float = DEFAULT_REFRESH) -> str:
    return _PAGE.format(css=PAGE_CSS, refresh_ms=int(refresh * 1000), snapshot=json_for_html(snapshot))


def _refresh_from(query: str) -> float:
    values = parse_qs(query).get("refresh")
    if not values:
        return DEFAULT_REFRESH
    try:
        seconds = float(values[0])
    except ValueError:
        return DEFAULT_REFRESH
    low, high = REFRESH_RANGE
    return min(max(seconds, low), high) if seconds == seconds else DEFAULT_REFRESH


# -- HTTP -------------------------------------------------------------------------------------

Response = tuple[int, list[tuple[str, str]], bytes]
_NO_STORE = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]


class AdminServer:
    """The admin HTTP listener. ``start`` binds; ``port`` is the bound port (useful
    with port 0); ``close`` stops listening and closes open connections."""

    def __init__(self) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self.stats_page = True
        self.metrics = True
        self._controller: Controller | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int, controller: Controller, *, stats_page: bool = True,
                    metrics: bool = True) -> None:
        if self._server is not None:
            raise RuntimeError("the admin listener is already started")
        self._controller, self.stats_page, self.metrics = controller, stats_page, metrics
        self._server = await asyncio.start_server(self._serve, host, port, limit=READ_SIZE, reuse_address=True)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        log.info("admin listener on %s:%d (%s)", self.host, self.port,
                 ", ".join(name for name, on in (("stats page", stats_page), ("metrics", metrics)) if on) or "nothing")

    def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        for writer in list(self._writers):
            writer.close()

    async def wait_closed(self) -> None:
        for writer in list(self._writers):
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    # -- routing --------------------------------------------------------------------------
    def respond(self, method: str, target: str, accept: str = "") -> Response:
        """The response to one request (no I/O: the connection code sends it)."""
        assert self._controller is not None
        parts = urlsplit(target)
        path = parts.path
        routes: dict[str, Callable[[], Response]] = {}
        if self.metrics:
            routes["/metrics"] = lambda: self._metrics(accept)
        if self.stats_page:
            routes["/stats"] = lambda: self._page(parts.query)
            routes["/stats.js"] = lambda: (200, [("Content-Type", "text/javascript; charset=utf-8"), *_NO_STORE],
                                           PAGE_SCRIPT.encode())
            routes["/stats.json"] = self._json
            routes["/stats.csv"] = self._csv
        home = "/stats" if self.stats_page else "/metrics" if self.metrics else None
        if path == "/" and home is not None:
            return 302, [("Location", home), ("Content-Type", "text/plain; charset=utf-8")], f"see {home}\n".encode()
        handler = routes.get(path)
        if handler is None:
            known = ", ".join(sorted(routes)) or "nothing (stats_page and metrics are off)"
            message = f"not found; this listener serves {known}\n".encode()
            return 404, [("Content-Type", "text/plain; charset=utf-8")], message
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")], b"only GET and HEAD\n"
        return handler()

    def _metrics(self, accept: str) -> Response:
        body, content_type = render_metrics(self._controller, accept)  # type: ignore[arg-type]
        return 200, [("Content-Type", content_type), *_NO_STORE], body

    def _page(self, query: str) -> Response:
        page = render_page(self._controller.snapshot(), _refresh_from(query))  # type: ignore[union-attr]
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", _PAGE_CSP),
                   ("Referrer-Policy", "no-referrer"), *_NO_STORE]
        return 200, headers, page.encode()

    def _json(self) -> Response:
        body = json.dumps(self._controller.snapshot(), default=str).encode()  # type: ignore[union-attr]
        return 200, [("Content-Type", "application/json"), *_NO_STORE], body

    def _csv(self) -> Response:
        rows = stat_rows(self._controller.snapshot(), now=time.time())  # type: ignore[union-attr]
        return 200, [("Content-Type", "text/csv; charset=utf-8"), *_NO_STORE], format_csv(rows).encode()

    # -- connections ----------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._writers.add(writer)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, OSError, TimeoutError, h11.LocalProtocolError) as exc:
            log.debug("admin connection ended: %r", exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection may carry another."""
        try:
            event = await _next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return False  # the client closed (ConnectionClosed) between requests
            method, target = event.method.decode("ascii", "replace"), event.target.decode("ascii", "replace")
            if len(event.target) + sum(len(name) + len(value) for name, value in event.headers) > MAX_HEAD:
                # h11 bounds only a head still incomplete; one that arrived whole is measured here
                await _send(conn, writer, method, (431, [("Connection", "close")], b"request head too large\n"))
                return False
            accept = next((value.decode("latin-1") for name, value in event.headers if name == b"accept"), "")
            size = 0
            while not isinstance(event, h11.EndOfMessage):
                event = await _next_event(conn, reader)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_BODY:
                        await _send(conn, writer, method, (413, [("Connection", "close")], b"request body too large\n"))
                        return False
                elif isinstance(event, h11.ConnectionClosed):
                    return False
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                message = f"bad request: {exc}\n".encode()
                await _send(conn, writer, "GET", (exc.error_status_hint, [("Connection", "close")], message))
            return False
        try:
            response = self.respond(method, target, accept)
        except Exception:  # the controller failed: a 500, and the traceback in the log
            log.exception("admin: %s %s failed", method, target)
            response = (500, [("Content-Type", "text/plain; charset=utf-8")], b"internal error; see the engine log\n")
        await _send(conn, writer, method, response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
        conn.receive_data(data)


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, method: str, response: Response) -> None:
    status, headers, body = response
    headers = [*headers, ("Content-Length", str(len(body))), ("Server", f"lbcore/{__version__}")]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    if method != "HEAD" and body:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
