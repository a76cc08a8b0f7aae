"""Seamless reloads: revisions applied while clients send requests, none of which fails.

Clients on keep-alive connections and clients opening a connection per request run
a bounded number of requests (and stop at a deadline); the test applies a new
revision each time the clients have made a sixth of their progress, waiting on a
condition variable that the clients signal. Every request must get a 200 from a
member: no refused connection, no reset, no error status.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from lbcore.spec import parse_spec
from tests.integration.harness import free_port
from tests.system.conftest import needs_haproxy

pytestmark = [needs_haproxy, pytest.mark.slow]

CLIENTS = 4  # half on keep-alive connections, half with a new connection per request
REQUESTS = 150  # per client
RELOADS = 5
DEADLINE = 60.0  # seconds for the whole loop


def spec_for(port: int, m: dict, version: int) -> dict:
    # Each revision routes /v/N to a different pool and adds a header: a real change.
    return {
        "version": 1,
        "defaults": {"timeouts": {"drain": "5s"}},
        "listeners": [{
            "name": "web",
            "bind": f"127.0.0.1:{port}",
            "acls": [{"name": "versioned", "condition": f"path_beg /v/{version}", "pool": "b"}],
            "default_pool": "a",
            "add_headers": {"X-Revision": str(version)},
        }],
        "pools": [
            {"name": "a", "members": [{"name": "a1", "address": m["a1"].address}, {"name": "a2", "address": m["a2"].address}]},
            {"name": "b", "members": [{"name": "b1", "address": m["b1"].address}]},
        ],
    }


def test_reloads_under_load_fail_no_request(members, haproxy_driver):
    site = {name: members(name) for name in ("a1", "a2", "b1")}
    port = free_port()
    driver = haproxy_driver(spec_for(port, site, 0))
    progress = threading.Condition()
    done = [0]
    failures: list[str] = []
    deadline = time.monotonic() + DEADLINE

    def client(index: int, keepalive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        for n in range(REQUESTS):
            if time.monotonic() > deadline:
                failures.append(f"client {index}: deadline reached after {n} requests")
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(f"127.0.0.{10 + index}", 0))
                conn.request("GET", f"/r/{index}/{n}")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or not json.loads(body)["member"]:
                    failures.append(f"client {index} request {n}: status {response.status}")
                if not keepalive or response.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:  # any failure of any kind is what this test looks for
                failures.append(f"client {index} request {n}: {exc!r}")
                if conn is not None:
                    conn.close()
                conn = None
            with progress:
                done[0] += 1
                progress.notify_all()
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i, i % 2 == 0), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    total = CLIENTS * REQUESTS
    actions = []
    for version in range(1, RELOADS + 1):
        target = total * version // (RELOADS + 1)
        with progress:
            assert progress.wait_for(lambda target=target: done[0] >= target or failures,
                                     timeout=max(0.0, deadline - time.monotonic())), "clients stalled"
        actions.append(driver.apply(parse_spec(spec_for(port, site, version))).action)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [], failures[:10]
    assert done[0] == total
    assert actions == ["reload"] * RELOADS
    assert driver.revision == parse_spec(spec_for(port, site, RELOADS)).revision
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", f"/v/{RELOADS}/x")
    response = conn.getresponse()
    assert json.loads(response.read())["member"] == "b1"
    conn.close()
