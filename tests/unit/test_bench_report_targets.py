"""The report's targets table: a ratio is shown precisely enough to agree with its status."""

from __future__ import annotations

import pytest

from bench.report import targets


def results(lbcore: float, haproxy: float) -> dict:
    servers = {name: {"status": "ok", "median": median} for name, median in (("lbcore", lbcore), ("haproxy", haproxy))}
    return {"scenarios": [{"name": "tls-full-ecdsa", "servers": servers}]}


def ecdsa_row(lbcore: float, haproxy: float) -> dict:
    return next(row for row in targets(results(lbcore, haproxy)) if row["scenario"] == "tls-full-ecdsa")


@pytest.mark.parametrize("lbcore, haproxy, measured, status", [
    (4631, 3873, "1.196x", "not met"),  # 1.19571: two decimals would say 1.20x
    (4649, 3873, "1.200x", "met"),  # 1.20036
    (4800, 3873, "1.24x", "met"),
    (4500, 3873, "1.16x", "not met"),
    (4800, 4000, "1.20x", "met"),  # exactly the goal
])
def test_a_ratio_near_its_goal_shows_the_digit_that_decides(lbcore, haproxy, measured, status):
    row = ecdsa_row(lbcore, haproxy)
    assert (row["measured"], row["status"]) == (measured, status)


def test_a_scenario_not_run_is_not_measured():
    row = next(row for row in targets(results(1, 1)) if row["scenario"] == "tls-full-rsa")
    assert row["status"] == "not measured (scenario not run)" and "measured" not in row
