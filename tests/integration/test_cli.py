"""The lbcore command: check, diff, route, serve refusing a bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.yaml"


def lbcore(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lbcore.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_check_valid_example():
    r = lbcore("check", str(DEMO))
    assert r.returncode == 0
    assert "valid, revision" in r.stdout


def test_check_reports_every_error_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nlisteners:\n"
        "  - {name: w, bind: '127.0.0.1:99999', protocol: htp, acls: [{name: a, condition: 'hots x', pool: nope}]}\n"
        "pools: []\n"
    )
    r = lbcore("check", str(bad))
    assert r.returncode == 2
    for expected in (
        "listeners[0].acls[0].condition: unknown fetch 'hots' (did you mean 'host'?)",
        "listeners[0].bind: invalid port 99999",
        "listeners[0].protocol: 'htp' is not one of",
        "listeners[0].acls[0].pool: unknown pool 'nope'",
    ):
        assert expected in r.stderr


def test_diff_lists_changes(tmp_path):
    spec = yaml.safe_load(DEMO.read_text())
    spec["pools"][0]["members"][0]["weight"] = 5
    spec["pools"][0]["members"].append({"name": "w3", "address": "127.0.0.1:9004"})
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(spec))
    r = lbcore("diff", str(DEMO), str(new))
    assert r.returncode == 0
    assert "~ pools[www].members[w1].weight: 10 -> 5" in r.stdout
    assert "+ pools[www].members[w3]" in r.stdout
    assert lbcore("diff", str(DEMO), str(new), "--exit-code").returncode == 1
    assert "no changes" in lbcore("diff", str(DEMO), str(DEMO)).stdout


def test_route_explains_acl_pool_and_member():
    r = lbcore("route", str(DEMO), "--host", "api.example.com", "--path", "/v1/users")
    assert r.returncode == 0, r.stderr
    assert "listener web" in r.stdout
    assert "acl api -> pool api: match" in r.stdout
    assert "result: pool api via acl api" in r.stdout
    r = lbcore("route", str(DEMO), "--path", "/", "--client-ip", "10.9.8.7")
    assert "acl beta -> pool beta: match" in r.stdout
    assert "acl api -> pool api: no match" in r.stdout
    r = lbcore("route", str(DEMO), "--path", "/", "--client-ip", "192.0.2.1", "--cookie", "other=1")
    assert "result: pool www via default pool" in r.stdout
    assert "persistence: cookie" in r.stdout
    r = lbcore("route", str(DEMO), "--listener", "db", "--client-ip", "10.0.0.1")
    assert "result: pool beta via acl internal" in r.stdout
    assert lbcore("route", str(DEMO), "--client-ip", "not-an-ip").returncode == 2


def test_serve_refuses_an_invalid_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nlisteners: []\npools: []\n")
    r = lbcore("serve", str(bad), "--workers", "1")
    assert r.returncode == 2
    assert "version" in r.stderr
