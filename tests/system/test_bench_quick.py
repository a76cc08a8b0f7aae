"""The benchmark harness works: ``python -m bench --quick`` runs every scenario briefly
and writes figures for each server, as JSON, Markdown and a PNG chart.

What is asserted is that numbers were produced (and where lbcore cannot serve a
scenario yet, that the run says so instead of failing), never how big they are:
speed lives in bench/results, not in tests.
"""

from __future__ import annotations

import json
import numbers
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import busy_shares
from bench.scenarios import SCENARIOS
from lbcore import _fastpath as fastpath

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("wrk", "haproxy", "nginx", "stunnel4", "taskset", "openssl")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"the bench needs {', '.join(missing)} (Debian packages; `make deps` installs them)"
    out = tmp_path_factory.mktemp("bench") / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads((out / "results.json").read_text()), out


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@pytest.mark.timeout(600)
def test_every_scenario_ran(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    assert [s["name"] for s in results["scenarios"]] == [s.name for s in SCENARIOS]
    assert all("error" not in s for s in results["scenarios"]), [s.get("error") for s in results["scenarios"]]


@pytest.mark.timeout(600)
def test_load_scenarios_produced_figures(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    for scenario in (s for s in results["scenarios"] if s["kind"] == "wrk"):
        servers = scenario["servers"]
        assert servers["haproxy"]["status"] == "ok", (scenario["name"], servers["haproxy"])
        for label, entry in servers.items():
            if label.startswith("lbcore") and scenario["name"].startswith(("tls-", "https-")):
                # lbcore's https listener may not exist yet: then it is reported, not a failure.
                assert entry["status"] in ("ok", "not available"), (scenario["name"], label, entry)
                if entry["status"] == "not available":
                    assert entry["reason"]
                    continue
            assert entry["status"] == "ok", (scenario["name"], label, entry.get("reason"))
            assert entry["runs"], (scenario["name"], label)
            for run in entry["runs"]:
                assert run["requests"] > 0 and run["cpu_s"] > 0, (scenario["name"], label, run)
                assert _is_number(run["per_cpu_s"]) and run["per_cpu_s"] > 0
                assert len(run["cpu_by_process"]) == run["processes"] and sum(run["cpu_by_process"]) > 0
                assert all(_is_number(count) and count >= 0 for count in run["switches_per_1k"])
            assert _is_number(entry["median"])
            if label != "haproxy":
                assert _is_number(entry["ratio"]), (scenario["name"], label)


@pytest.mark.timeout(600)
def test_two_workers_both_serve(quick_run: tuple[dict, Path]) -> None:
    """lbcore-2w listens with one socket per worker (shards: per-worker), so the kernel
    gives each worker about half of wrk's 50 connections, and both do work: with one
    shared socket, the first worker to wake often took every connection."""
    results, _ = quick_run
    scaling = next(s for s in results["scenarios"] if s["name"] == "scaling")
    for run in scaling["servers"]["lbcore-2w"]["runs"]:
        assert len(busy_shares(run, 0.1)) == 2, run["cpu_by_process"]


@pytest.mark.timeout(600)
def test_tls_servers_are_compared_on_the_same_protocol(quick_run: tuple[dict, Path]) -> None:
    """Every TLS server negotiates TLS 1.3 with the load's client (Debian's nginx 1.22
    stops at TLS 1.2 unless told), and resumes sessions only where the scenario does."""
    results, _ = quick_run
    for scenario in (s for s in results["scenarios"] if s["kind"] == "wrk" and s.get("tls")):
        for label, entry in scenario["servers"].items():
            assert entry.get("tls_version") == "TLSv1.3", (scenario["name"], label, entry.get("tls_version"))
            assert entry.get("comparable", True), (scenario["name"], label, entry.get("note"))


@pytest.mark.timeout(600)
def test_idle_scenarios_produced_figures(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    for scenario in (s for s in results["scenarios"] if s["kind"] == "idle"):
        for label, entry in scenario["servers"].items():
            if label == "lbcore" and scenario["name"] == "idle-https" and entry["status"] == "not available":
                continue
            assert entry["status"] == "ok", (scenario["name"], label, entry.get("reason"))
            idle = entry["idle"]
            assert idle["opened"] > 0, (scenario["name"], label, idle)
            assert _is_number(idle["bytes_per_connection"]), (scenario["name"], label, idle)


@pytest.mark.timeout(600)
def test_openssl_speed_and_machine_recorded(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    speed = next(s for s in results["scenarios"] if s["kind"] == "speed")["speed"]
    for key in ("rsa2048", "ecdsa-p256"):
        assert _is_number(speed[key]["sign_per_s"]) and speed[key]["sign_per_s"] > 0
    machine = results["machine"]
    assert machine["cpu_model"] and machine["cores"] and machine["kernel"]
    assert all(machine["versions"][tool] for tool in ("haproxy", "nginx", "stunnel", "wrk", "openssl"))
    # the interpreter that ran lbcore: this one (the harness starts lbcore with it), its libpython as mapped here
    python = machine["python"]
    assert python["executable"] == sys.executable
    assert python["libpython_shared"] == any("libpython" in line for line in Path("/proc/self/maps").read_text().splitlines())
    # which request-path modules ran compiled: each of the list, as the finder chose
    in_place = machine["lbcore"]["compiled_in_place"]
    assert list(in_place) == list(fastpath.COMPILED_IN_PLACE)
    assert set(in_place.values()) <= {"compiled", "pure"}


@pytest.mark.timeout(600)
def test_markdown_and_chart_written(quick_run: tuple[dict, Path]) -> None:
    results, out = quick_run
    text = (out / "results.md").read_text()
    assert "| keepalive | lbcore |" in text and "## Targets (issue 7)" in text
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in results["problems"] if p.startswith("no chart")]


@pytest.mark.timeout(300)
def test_inproc_counts_instructions_per_request() -> None:
    # bench.inproc --instructions: two callgrind runs, their difference per request.
    assert shutil.which("valgrind"), "valgrind is a test dependency (make deps installs it)"
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", "--instructions", "--requests", "64"],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, _, rest = done.stdout.strip().partition(" ")
    assert int(count) > 0 and rest.startswith("instructions per request under callgrind"), done.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["lbcore", "haproxy"])
def test_access_logs_over_tcp_reach_the_harness(server: str, tmp_path: Path) -> None:
    # lbcore's syslog+tcp sink, haproxy's ring: each server's own run, so the bytes
    # the harness read can only be that server's log lines.
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "keepalive", "--servers", server,
         "--access-log-tcp", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    results = json.loads((out / "results.json").read_text())
    settings = results["settings"]
    assert settings["access_log"] and settings["access_log_transport"] == "tcp", results["problems"]
    requests = sum(run["requests"] for run in results["scenarios"][0]["servers"][server]["runs"])
    assert requests > 0
    assert settings["access_log_tcp_bytes"] >= requests * 100  # a text line is longer than 100 bytes
