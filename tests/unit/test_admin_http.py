"""lbcore.proxy.admin: the admin listener on 127.0.0.1 with a fake Controller.

/metrics is parsed with prometheus_client's own parser and checked against the numbers
of the snapshot, before and after the test changes it; /stats.json, /stats.csv, the
page shell (escaping, headers), routing, HEAD, keep-alive and bad requests.
"""

from __future__ import annotations

import http.client
import json
import socket
from html.parser import HTMLParser
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lbcore.proxy.admin import AdminServer, render_page
from lbcore.proxy.runtime_api import format_csv, stat_rows
from tests.integration.harness import LoopThread
from tests.unit.test_runtime_api import NOW, FakeController


@pytest.fixture(scope="module")
def loops():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def serve(loops):
    """Factory: serve(controller, **options) -> the started AdminServer; closed after the test."""
    started: list[AdminServer] = []

    def start(controller: FakeController, **options: Any) -> AdminServer:
        server = AdminServer()
        loops.run(server.start("127.0.0.1", 0, controller, **options))
        started.append(server)
        return server

    yield start
    for server in started:
        loops.run(stop(server))


async def stop(server: AdminServer) -> None:
    server.close()  # on the server's loop, like every asyncio call
    await server.wait_closed()


def get(server: AdminServer, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def scrape(server: AdminServer) -> dict[str, Any]:
    """{family name: {(sample name, sorted labels): value}}."""
    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(body.decode()):
        samples = out.setdefault(family.name, {"type": family.type})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    return metrics[family][(sample or family, tuple(sorted(labels.items())))]


# -- /metrics -----------------------------------------------------------------------------------


def test_metrics_match_the_snapshot(serve):
    fake = FakeController()
    server = serve(fake)
    snap = fake.snapshot()
    m = scrape(server)

    assert value(m, "lbcore_info", version="0.1.0", revision="0123456789abcdef") == 1
    assert value(m, "lbcore_uptime_seconds") == pytest.approx(3723.4)
    assert value(m, "lbcore_start_time_seconds") == pytest.approx(NOW - 3723.4)
    assert value(m, "lbcore_workers") == 2

    for listener in snap["listeners"]:
        name = listener["name"]
        assert m["lbcore_listener_connections"]["type"] == "counter"
        assert value(m, "lbcore_listener_connections", "lbcore_listener_connections_total", listener=name) == listener["conns_total"]
        assert value(m, "lbcore_listener_current_connections", listener=name) == listener["conns_cur"]
        assert value(m, "lbcore_listener_max_connections", listener=name) == listener["conns_max"]
        assert value(m, "lbcore_listener_requests", "lbcore_listener_requests_total", listener=name) == listener["requests"]
        assert value(m, "lbcore_listener_bytes_out", "lbcore_listener_bytes_out_total", listener=name) == listener["bytes_out"]
        assert value(m, "lbcore_listener_denied", "lbcore_listener_denied_total", listener=name) == listener["denied"]
        for code, count in listener["responses"].items():
            assert value(m, "lbcore_http_responses", "lbcore_http_responses_total", listener=name, code=code) == count
        for result, count in listener["tls"].items():
            assert value(m, "lbcore_listener_tls_handshakes", "lbcore_listener_tls_handshakes_total",
                         listener=name, result=result) == count

    for pool in snap["pools"]:
        p = pool["name"]
        for key in ("requests", "connect_errors", "response_errors", "retries", "redispatches", "queued",
                    "queue_timeouts", "no_member"):
            assert value(m, f"lbcore_pool_{key}", f"lbcore_pool_{key}_total", pool=p) == pool[key], key
        assert value(m, "lbcore_pool_active_connections", pool=p) == pool["active"]
        for code, count in pool["responses"].items():
            assert value(m, "lbcore_pool_http_responses", "lbcore_pool_http_responses_total", pool=p, code=code) == count
        for member in pool["members"]:
            who = {"pool": p, "member": member["name"]}
            assert value(m, "lbcore_member_up", **who) == (member["status"] in ("UP", "DRAIN", "NO_CHECK"))
            for status in ("UP", "DOWN", "DRAIN", "MAINT", "NO_CHECK"):
                assert value(m, "lbcore_member_status", **who, status=status) == (member["status"] == status)
            assert value(m, "lbcore_member_weight", **who) == member["weight"]
            assert value(m, "lbcore_member_effective_weight", **who) == member["effective_weight"]
            assert value(m, "lbcore_member_active_connections", **who) == member["active"]
            assert value(m, "lbcore_member_requests", "lbcore_member_requests_total", **who) == member["requests"]
            assert value(m, "lbcore_member_connections", "lbcore_member_connections_total", **who) == member["conns_total"]
            assert value(m, "lbcore_member_bytes_in", "lbcore_member_bytes_in_total", **who) == member["bytes_in"]
            for code, count in member["responses"].items():
                assert value(m, "lbcore_member_http_responses", "lbcore_member_http_responses_total", **who, code=code) == count
            latency = member["latency"]
            family = "lbcore_member_request_duration_seconds"
            assert m[family]["type"] == "histogram"
            for bound, cumulative in latency["buckets"]:
                le = bound if isinstance(bound, str) else repr(float(bound))
                assert value(m, family, family + "_bucket", **who, le=le) == cumulative
            assert value(m, family, family + "_count", **who) == latency["count"]
            assert value(m, family, family + "_sum", **who) == pytest.approx(latency["sum"])
            check = member["check"]
            if check is None:
                assert (("lbcore_member_check_duration_seconds", tuple(sorted(who.items())))
                        not in m["lbcore_member_check_duration_seconds"])
                continue
            assert value(m, "lbcore_member_check_duration_seconds", **who) == pytest.approx(check["duration_ms"] / 1000)
            assert value(m, "lbcore_member_check_timestamp_seconds", **who) == check["at"]
            assert value(m, "lbcore_member_check_enabled", **who) == 1
            assert value(m, "lbcore_member_check_success", **who) == (check["code"] == "L7OK")
    assert value(m, "lbcore_pool_usable_members", pool="www") == 2  # w1 UP, w3 NO_CHECK (w2 drains)
    assert value(m, "lbcore_pool_usable_members", pool="api") == 0
    # w1's histogram is not empty: 200 requests over the first five buckets
    assert value(m, "lbcore_member_request_duration_seconds", "lbcore_member_request_duration_seconds_count",
                 pool="www", member="w1") == 200


def test_metrics_follow_the_snapshot_as_it_changes(serve):
    fake = FakeController()
    server = serve(fake)
    before = scrape(server)
    assert value(before, "lbcore_member_up", pool="www", member="w1") == 1
    fake.change("www", "w1", status="DOWN", requests=205, responses={"1xx": 0, "2xx": 185, "3xx": 0, "4xx": 20,
                                                                       "5xx": 0, "other": 0})
    with fake.lock:
        fake.snap["listeners"][0]["conns_total"] += 10
    after = scrape(server)
    assert value(after, "lbcore_member_up", pool="www", member="w1") == 0
    assert value(after, "lbcore_member_status", pool="www", member="w1", status="DOWN") == 1
    assert value(after, "lbcore_member_requests", "lbcore_member_requests_total", pool="www", member="w1") == 205
    assert value(after, "lbcore_member_http_responses", "lbcore_member_http_responses_total",
                 pool="www", member="w1", code="4xx") == 20
    assert value(after, "lbcore_listener_connections", "lbcore_listener_connections_total", listener="web") == 130


def test_metrics_openmetrics_when_asked(serve):
    server = serve(FakeController())
    status, headers, body = get(server, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_of_an_empty_engine(serve):
    server = serve(FakeController({"info": {"version": "0.1.0", "revision": "r"}, "listeners": [], "pools": []}))
    m = scrape(server)
    assert value(m, "lbcore_info", version="0.1.0", revision="r") == 1
    assert "lbcore_uptime_seconds" not in m


# -- the stats endpoints ---------------------------------------------------------------------------


def test_stats_json_is_the_snapshot(serve):
    fake = FakeController()
    server = serve(fake)
    status, headers, body = get(server, "/stats.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == fake.snapshot()
    fake.change("api", "a1", status="UP")
    assert json.loads(get(server, "/stats.json")[2])["pools"][1]["members"][0]["status"] == "UP"


def test_stats_csv_is_show_stat(serve):
    fake = FakeController()
    server = serve(fake)
    status, headers, body = get(server, "/stats.csv")
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    # lastchg is the only time-dependent column and the fixture has no last_change
    assert body.decode() == format_csv(stat_rows(fake.snapshot(), now=NOW))


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.body: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))
        elif tag == "body":
            self.body = dict(attrs)

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def test_stats_page_shell_embeds_the_snapshot_escaped(serve):
    fake = FakeController()
    hostile = "</script><img src=x onerror=alert(1)> & <!-- \u2028"
    fake.change("www", "w1", check={**fake.snapshot()["pools"][0]["members"][0]["check"], "detail": hostile})
    server = serve(fake)
    status, headers, body = get(server, "/stats")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["content-security-policy"]
    page = body.decode()
    assert "<img" not in page and "</script><" not in page.split('id="snapshot">')[1].split("</script>")[0]
    parser = _Scripts()
    parser.feed(page)
    (data_attrs, data), (src_attrs, _) = parser.scripts
    assert data_attrs == {"type": "application/json", "id": "snapshot"} and src_attrs == {"src": "stats.js"}
    assert json.loads(data) == fake.snapshot()
    assert parser.body["data-refresh"] == "2000"


@pytest.mark.parametrize("query, ms", [("?refresh=0.5", "500"), ("?refresh=10", "10000"), ("?refresh=0", "500"),
                                       ("?refresh=nan", "2000"), ("?refresh=x", "2000"), ("?refresh=1e9", "3600000")])
def test_stats_page_refresh_interval(serve, query, ms):
    server = serve(FakeController())
    parser = _Scripts()
    parser.feed(get(server, "/stats" + query)[2].decode())
    assert parser.body["data-refresh"] == ms


def test_render_page_alone():
    page = render_page({"info": {}, "listeners": [], "pools": []}, refresh=1.5)
    assert 'data-refresh="1500"' in page and '{"info":{},"listeners":[],"pools":[]}' in page


def test_stats_script(serve):
    status, headers, body = get(serve(FakeController()), "/stats.js")
    assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"textContent" in body and b"innerHTML" not in body


# -- routing and HTTP ---------------------------------------------------------------------------------


def test_routes(serve):
    server = serve(FakeController())
    status, headers, _ = get(server, "/")
    assert status == 302 and headers["location"] == "/stats"
    status, _, body = get(server, "/nope")
    assert status == 404 and b"/metrics" in body and b"/stats.json" in body
    status, headers, _ = get(server, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert get(server, "/favicon.ico")[0] == 404


def test_head_has_the_headers_and_no_body(serve):
    server = serve(FakeController())
    _, got, body = get(server, "/stats.json")
    status, headers, empty = get(server, "/stats.json", method="HEAD")
    assert status == 200 and empty == b"" and headers["content-length"] == str(len(body))


def test_surfaces_can_be_turned_off(serve):
    only_metrics = serve(FakeController(), stats_page=False)
    assert get(only_metrics, "/stats")[0] == 404 and get(only_metrics, "/stats.json")[0] == 404
    assert get(only_metrics, "/metrics")[0] == 200
    assert get(only_metrics, "/")[1]["location"] == "/metrics"
    only_page = serve(FakeController(), metrics=False)
    assert get(only_page, "/metrics")[0] == 404 and get(only_page, "/stats")[0] == 200
    nothing = serve(FakeController(), metrics=False, stats_page=False)
    status, _, body = get(nothing, "/")
    assert status == 404 and b"stats_page and metrics are off" in body


def test_keep_alive_serves_several_requests_on_one_connection(serve):
    server = serve(FakeController())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/stats.json", "/metrics", "/stats", "/nope", "/stats.csv"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 404)
        assert conn.sock is not None  # never reconnected
    finally:
        conn.close()


def raw(server: AdminServer, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bad_requests_get_400_and_close(serve):
    server = serve(FakeController())
    assert raw(server, b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(server, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET /stats HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw(server, huge).startswith(b"HTTP/1.1 431 ")


def test_oversized_body_gets_413(serve):
    server = serve(FakeController())
    body = b"x" * 70000
    reply = raw(server, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_a_failing_controller_is_a_500_and_the_server_goes_on(serve, caplog):
    fake = FakeController()
    server = serve(fake)
    fake.fail_with = RuntimeError("aggregate lost")
    status, _, body = get(server, "/stats.json")
    assert status == 500 and b"internal error" in body and b"aggregate" not in body
    assert "aggregate lost" in caplog.text
    fake.fail_with = None
    assert get(server, "/stats.json")[0] == 200


def test_close_stops_listening_and_closes_idle_connections(loops):
    server = AdminServer()
    loops.run(server.start("127.0.0.1", 0, FakeController()))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/stats.json")
    conn.getresponse().read()
    loops.run(stop(server))
    assert conn.sock.recv(1) == b""  # the idle keep-alive connection was closed
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
