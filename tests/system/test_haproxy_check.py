"""``lbcore render --driver haproxy`` on real files, then ``haproxy -c`` on the output.

The specs are the unit tests' whole-file cases (tests/unit/data/haproxy/) and the
bundled example; certificates, CA, CRL and ticket keys they name are made here.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.conftest import HAPROXY, needs_haproxy
from tests.tlsgen import (
    issue,
    make_ca,
    make_crl,
    ticket_key_line,
    write_pair,
    write_ticket_keys,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "unit" / "data" / "haproxy"
CASES = {"basic": "haproxy", "l4": "haproxy", "acls": "haproxy", "tls": "haproxy", "stunnel": "stunnel"}

pytestmark = needs_haproxy


def make_files(directory: Path) -> None:
    """Every file the cases name, relative to their spec."""
    ca = make_ca()
    certs = directory / "certs"
    for name, hosts, key_type in (
        ("api", ["api.example.com", "*.api.example.com"], "rsa"),
        ("www", ["www.example.com", "example.com"], "rsa"),
        ("www-ecdsa", ["www.example.com", "example.com"], "ecdsa"),
        ("wild", ["*.example.com"], "ecdsa"),
        ("shadow", ["www.example.com", "shadow.example.com"], "rsa"),
    ):
        write_pair(certs, name, issue(ca, hosts, key_type=key_type, slot=3 if name == "shadow" else 0), chain=[ca])
    write_pair(certs, "lb-client", issue(ca, [], common_name="lb", client=True, slot=4), chain=[ca])
    (certs / "clients-ca.pem").write_bytes(ca.pem)
    (certs / "members-ca.pem").write_bytes(ca.pem)
    (certs / "clients.crl").write_bytes(make_crl(ca))
    write_ticket_keys(directory / "tickets.keys", [ticket_key_line(), ticket_key_line()])


def render(spec: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lbcore.cli", "render", "--driver", "haproxy", str(spec), str(out), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def haproxy_check(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_configuration_passes_haproxy_check(case, tmp_path):
    work = tmp_path / "spec"
    work.mkdir()
    shutil.copy(DATA / case / "spec.yaml", work / "spec.yaml")
    make_files(work)
    out = tmp_path / "out"
    done = render(work / "spec.yaml", out, "--tls-termination", CASES[case])
    assert done.returncode == 0, done.stderr
    check = haproxy_check(out / "haproxy.cfg")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr
    for line in done.stdout.splitlines():
        mode, path = line.split(" ", 1)
        assert stat.S_IMODE(os.stat(path).st_mode) == int(mode, 8), line
        if "/certs/" in path or "/tickets/" in path:
            assert mode == "600", line


def test_bundled_example_renders_and_checks(tmp_path):
    out = tmp_path / "out"
    done = render(ROOT / "examples" / "demo.yaml", out)
    assert done.returncode == 0, done.stderr
    check = haproxy_check(out / "haproxy.cfg")
    assert check.returncode == 0, check.stdout + check.stderr


def test_render_refuses_with_the_field(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\n"
        "listeners:\n"
        "  - {name: web, bind: '127.0.0.1:8080', default_pool: p, access_log: {format: json}}\n"
        "pools: [{name: p, members: []}]\n"
    )
    done = render(spec, tmp_path / "out")
    assert done.returncode == 2
    assert "listeners[web].access_log.format" in done.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for a refused Spec"
