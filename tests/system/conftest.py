"""Fixtures for the haproxy/stunnel driver tests: test members, the driver, certificates.

Members are ``tests.integration.harness.Member`` servers (JSON naming the member at
``/``). ``haproxy_driver(spec_dict)`` starts a ``HaproxyDriver`` in the test's own
directory and stops it after the test, printing haproxy's log when the test failed.
Everything listens on 127.0.0.0/8.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lbcore.spec import parse_spec
from tests.integration.conftest import loops, members  # noqa: F401  (the same test members)
from tests.integration.harness import Engine

HAPROXY = shutil.which("haproxy")
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")

# Outside CI a missing haproxy/stunnel skips; in CI (which installs them) it must fail, never hide.
_IN_CI = bool(os.environ.get("CI"))
needs_haproxy = pytest.mark.skipif(HAPROXY is None and not _IN_CI, reason="haproxy is not installed (make deps installs it)")
needs_stunnel = pytest.mark.skipif(STUNNEL is None and not _IN_CI, reason="stunnel4 is not installed (make deps installs it)")


@pytest.fixture
def haproxy_driver(tmp_path):
    """Factory: haproxy_driver(spec_dict, **driver_options) -> a started HaproxyDriver."""
    from lbcore.control.drivers.haproxy import HaproxyDriver

    started: list[HaproxyDriver] = []

    def make(spec: dict[str, Any], *, spec_dir: Path | None = None, **options: Any) -> HaproxyDriver:
        state = tmp_path / f"haproxy-{len(started)}"
        driver = HaproxyDriver(str(state), spec_dir=str(spec_dir or tmp_path), **options)
        started.append(driver)
        driver.start(parse_spec(spec))
        return driver

    yield make
    for driver in started:
        log = driver.log_text()
        driver.stop()
        print(f"--- haproxy/stunnel log ({driver.state_dir}) ---\n{log}")


@pytest.fixture
def native_engine(tmp_path):
    """Factory: native_engine(spec_dict) starts ``lbcore serve`` (one worker); stopped after."""
    started: list[Engine] = []

    def make(spec: dict[str, Any], workers: int = 1) -> Engine:
        directory = tmp_path / f"native-{len(started)}"
        directory.mkdir()
        eng = Engine(directory, spec, workers=workers)
        started.append(eng)
        return eng.start()

    yield make
    for eng in started:
        eng.stop()
        print(f"--- lbcore log ({eng.spec_file}) ---\n{eng.log_text()}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and certificates on disk: www (RSA, www.example.com + example.com, the
    default), api (ECDSA, api.example.com), wild (RSA, *.apps.example.com), a client
    certificate; paths by name, plus the CA file."""
    from tests.tlsgen import issue, make_ca, write_pair

    directory = tmp_path_factory.mktemp("certs")
    ca = make_ca()
    out: dict[str, Any] = {"dir": directory, "ca": directory / "ca.pem"}
    out["ca"].write_bytes(ca.pem)
    for name, hosts, key_type in (
        ("www", ["www.example.com", "example.com"], "rsa"),
        ("api", ["api.example.com"], "ecdsa"),
        ("wild", ["*.apps.example.com"], "rsa"),
    ):
        cert, key = write_pair(directory, name, issue(ca, hosts, key_type=key_type, slot=len(out)), chain=[ca])
        out[name] = (cert, key)
    client = issue(ca, [], common_name="lbcore test client", client=True, slot=9)
    out["client"] = write_pair(directory, "client", client, chain=[ca])
    return out
