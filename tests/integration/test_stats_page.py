"""The stats page in headless Chromium: rendered from the snapshot, refreshed in place.

The admin listener runs on 127.0.0.1 with a fake Controller whose snapshot the test
changes, standing in for the engine (a member killed shows as its status going DOWN).
The browser is driven with tests/chromium.py, which the engine tests reuse.
"""

from __future__ import annotations

import re

import pytest

from lbcore.proxy.admin import AdminServer
from tests.chromium import Chromium, StatsPage, chromium_path
from tests.unit.test_runtime_api import FakeController, make_snapshot, member_book_controller

COLOURS = {  # the page's CSS, as computed styles
    "UP": "rgb(192, 240, 192)",
    "DOWN": "rgb(255, 144, 144)",
    "DRAIN": "rgb(160, 200, 255)",
    "MAINT": "rgb(200, 160, 112)",
    "NO_CHECK": "rgb(224, 224, 224)",
}


@pytest.fixture(scope="module")
def browser():
    # No skip: CI installs Chromium (`make deps`); a missing browser is a failure to see.
    assert chromium_path() is not None, "no Chromium (Debian: apt-get install chromium; `make deps` installs it)"
    with Chromium() as chromium:
        yield chromium


@pytest.fixture
def open_stats(loops, browser):
    """Factory: open_stats(controller, query="", expected_errors=None) -> StatsPage of a
    new admin listener's /stats in a new tab. Closed (tab and listener) after the test,
    which checks that the page logged no error but those matching ``expected_errors``."""
    opened: list[tuple[AdminServer, StatsPage, str | None]] = []

    def start(controller: FakeController, query: str = "", expected_errors: str | None = None) -> StatsPage:
        server = AdminServer()
        loops.run(server.start("127.0.0.1", 0, controller))
        page = StatsPage(browser.open(f"http://127.0.0.1:{server.port}/stats{query}"))
        opened.append((server, page, expected_errors))
        return page

    yield start
    for server, stats, expected in opened:
        errors = [e for e in stats.page.errors() if expected is None or not re.search(expected, e)]
        stats.page.close()
        loops.run(stop(server))
        assert errors == [], errors


async def stop(server: AdminServer) -> None:
    server.close()
    await server.wait_closed()


def mark_page(stats: StatsPage, row_id: str) -> None:
    """Remember this document and one row element, to prove later nothing reloaded."""
    stats.page.evaluate(f"window.__sameDocument = true; window.__row = document.getElementById('{row_id}'); true")


def assert_same_page(stats: StatsPage, row_id: str) -> None:
    assert stats.page.evaluate(
        f"window.__sameDocument === true && window.__row === document.getElementById('{row_id}')") is True


def test_a_member_going_down_turns_its_row_down_in_place(open_stats):
    fake = FakeController()
    stats = open_stats(fake)  # the default refresh, every 2 s
    assert stats.member_status("www", "w1") == "UP"
    assert stats.background("member-www-w1") == COLOURS["UP"]
    mark_page(stats, "member-www-w1")
    seen = stats.updates()

    fake.change("www", "w1", status="DOWN", operating_status="ERROR",
                check={"enabled": True, "code": "L4CON", "status": None, "duration_ms": 0.4,
                       "detail": "Connection refused", "at": fake.snapshot()["info"]["started_at"], "rise": 2, "fall": 3})
    stats.wait_member_status("www", "w1", "DOWN", timeout=10)

    assert_same_page(stats, "member-www-w1")
    assert stats.updates() > seen
    assert stats.background("member-www-w1") == COLOURS["DOWN"]
    cells = stats.cells("member-www-w1")
    assert (cells["status"], cells["operating"], cells["check"], cells["detail"]) == (
        "DOWN", "ERROR", "L4CON", "Connection refused")
    assert stats.member_status("www", "w2") == "DRAIN"  # the others unchanged


def test_every_pool_member_and_listener_has_its_row_and_colour(open_stats):
    fake = FakeController()
    stats = open_stats(fake)
    snap = fake.snapshot()
    page = stats.page
    ids = page.evaluate("Array.from(document.querySelectorAll('tr[id]'), r => r.id)")
    assert ids == ["listener-web", "listener-db",
                   "member-www-w1", "member-www-w2", "member-www-w3", "backend-www",
                   "member-api-a1", "member-api-a2", "backend-api"]
    for pool in snap["pools"]:
        for member in pool["members"]:
            row_id = f"member-{pool['name']}-{member['name']}"
            assert stats.member_status(pool["name"], member["name"]) == member["status"]
            assert stats.background(row_id) == COLOURS[member["status"]], row_id
    assert page.evaluate("document.getElementById('member-www-w1').dataset.pool") == "www"
    assert page.evaluate("document.getElementById('member-www-w1').dataset.member") == "w1"
    assert stats.cells("member-www-w3")["status"] == "no check"
    assert stats.cells("member-www-w3")["backup"] == "Y"
    assert stats.background("listener-web") == "rgba(0, 0, 0, 0)"  # listeners are not coloured by status
    legend = page.evaluate("Array.from(document.querySelectorAll('.legend span'), "
                           "s => [s.className, getComputedStyle(s).backgroundColor])")
    assert dict(legend) == COLOURS


def test_cells_show_the_snapshot_numbers(open_stats):
    stats = open_stats(FakeController())
    w1 = stats.cells("member-www-w1")
    assert {k: w1[k] for k in ("name", "address", "admin", "weight", "cur", "total", "requests", "2xx", "4xx",
                               "econ", "check", "check_duration", "latency")} == {
        "name": "w1", "address": "127.0.0.1:9001", "admin": "enabled", "weight": "10", "cur": "2", "total": "201",
        "requests": "200", "2xx": "180", "4xx": "20", "econ": "0", "check": "L7OK 200", "check_duration": "1.2 ms",
        "latency": "12.3 ms"}
    assert w1["bytes_in"] == "195.3 KiB" and re.fullmatch(r"\d+s", w1["check_age"])
    backend = stats.cells("backend-www")
    assert {k: backend[k] for k in ("name", "status", "total", "requests", "econ", "eresp", "5xx", "weight", "backup")} == {
        "name": "Backend", "status": "UP", "total": "293", "requests": "290", "econ": "1", "eresp": "2", "5xx": "4",
        "weight": "10", "backup": "1"}
    web = stats.cells("listener-web")
    assert {k: web[k] for k in ("name", "protocol", "bind", "status", "cur", "max", "total", "requests", "denied")} == {
        "name": "web", "protocol": "http", "bind": "127.0.0.1:8080", "status": "OPEN", "cur": "3", "max": "9",
        "total": "120", "requests": "300", "denied": "2"}
    summary = stats.page.evaluate("document.querySelector('#pool-www [data-field=summary]').textContent")
    assert summary == "roundrobin \u00b7 status UP \u00b7 retries 3 \u00b7 redispatches 1 \u00b7 queued 4 \u00b7 queue timeouts 0 \u00b7 no member 0"
    info = stats.page.evaluate("document.getElementById('info').textContent")
    assert "lbcore 0.1.0" in info and "revision 0123456789abcdef" in info and "up 1h02m" in info


def test_rows_come_and_go_in_place(open_stats):
    fake = FakeController()
    stats = open_stats(fake, "?refresh=0.5")
    mark_page(stats, "member-www-w2")
    with fake.lock:
        www, api = fake.snap["pools"]
        new_member = dict(www["members"][0], name="w4", address="127.0.0.1:9004", status="NO_CHECK", check=None)
        www["members"].insert(1, new_member)
        del api["members"][1]
        fake.snap["pools"].append(dict(api, name="extra", members=[dict(new_member, name="e1")]))
        fake.snap["listeners"].pop()
    stats.page.wait_for("document.getElementById('member-extra-e1') !== null", timeout=10)
    ids = stats.page.evaluate("Array.from(document.querySelectorAll('tr[id]'), r => r.id)")
    assert ids == ["listener-web",
                   "member-www-w1", "member-www-w4", "member-www-w2", "member-www-w3", "backend-www",
                   "member-api-a1", "backend-api",
                   "member-extra-e1", "backend-extra"]
    assert stats.page.evaluate("Array.from(document.querySelectorAll('#pools > section'), s => s.id)") == [
        "pool-www", "pool-api", "pool-extra"]
    assert_same_page(stats, "member-www-w2")


def test_names_and_details_are_shown_as_text_never_as_markup(open_stats):
    snap = make_snapshot()
    hostile = '<img src=x onerror="window.__pwned=1">'
    pool = snap["pools"][0]
    pool["name"] = 'p"<b>&amp;'
    pool["members"][0]["name"] = hostile
    pool["members"][0]["check"]["detail"] = "</script><script>window.__pwned=2</script>"
    snap["listeners"][0]["name"] = "<svg onload=window.__pwned=3>"
    stats = open_stats(FakeController(snap))
    page = stats.page
    assert page.evaluate("document.querySelectorAll('img, svg, b, #pools script').length") == 0
    assert page.evaluate("window.__pwned === undefined") is True
    assert stats.member_status('p"<b>&amp;', hostile) == "UP"
    cells = stats.cells(f'member-p"<b>&amp;-{hostile}')
    assert cells["name"] == hostile and cells["detail"] == "</script><script>window.__pwned=2</script>"
    assert page.evaluate("document.querySelector('#pools h2').firstChild.textContent") == 'p"<b>&amp;'
    assert stats.cells("listener-<svg onload=window.__pwned=3>")["name"] == "<svg onload=window.__pwned=3>"


def test_a_failed_refresh_marks_the_page_stale_until_the_next_one(open_stats):
    fake = FakeController()
    stats = open_stats(fake, "?refresh=0.5", expected_errors="the server responded with a status of 500")
    page = stats.page
    page.wait_for("document.body.dataset.state === 'live'", timeout=5)
    fake.fail_with = RuntimeError("aggregate lost")
    page.wait_for("document.body.dataset.state === 'stale'", timeout=10)
    text = page.evaluate("document.getElementById('refresh-state').textContent")
    assert text.startswith("refresh failed (HTTP 500)")
    assert stats.member_status("www", "w1") == "UP"  # the last figures stay
    fake.fail_with = None
    fake.change("www", "w1", status="MAINT", admin="maint")
    stats.wait_member_status("www", "w1", "MAINT", timeout=10)
    assert page.evaluate("document.body.dataset.state") == "live"
    assert any("status of 500" in e for e in page.errors())  # Chromium logs the failed fetch


def test_rates_come_from_consecutive_refreshes(open_stats):
    fake = FakeController()
    stats = open_stats(fake, "?refresh=0.5")
    assert stats.cells("member-www-w1")["req_rate"] == "-"  # one snapshot: no rate yet
    count = stats.updates()
    stats.wait_updates(count + 1, timeout=10)
    with fake.lock:
        member = fake.snap["pools"][0]["members"][0]
        member["requests"] += 1000
        member["conns_total"] += 1000
    rate = "document.querySelector('#member-www-w1 [data-field=req_rate]').textContent"
    stats.page.wait_for(f"Number({rate}) > 0", show=rate, timeout=10)
    cells = stats.cells("member-www-w1")
    assert float(cells["req_rate"]) > 0 and float(cells["conn_rate"]) > 0
    assert cells["requests"] == "1200"


def test_the_page_renders_the_supervisors_snapshot(open_stats):
    """The snapshot as the supervisor's MemberBook builds it (pool statuses are
    operating statuses there), and a runtime change showing up on the next refresh."""
    book = member_book_controller()
    stats = open_stats(book, "?refresh=0.5")
    assert stats.member_status("www", "w1") == "NO_CHECK" and stats.member_status("www", "w2") == "DRAIN"
    assert stats.cells("member-www-w1")["requests"] == "5"
    assert stats.cells("backend-www")["status"] == book.snapshot()["pools"][0]["status"]
    book.set_member_admin("www", "w1", "maint")
    stats.wait_member_status("www", "w1", "MAINT", timeout=10)
    assert stats.background("member-www-w1") == COLOURS["MAINT"]
