"""HTTPS through haproxy (bind ... ssl crt-list) and through stunnel in front of haproxy.

openssl s_client shows which certificate each SNI name gets; curl (verifying the
test CA) shows the request reaching the member the Spec routes it to, with the
headers the listener adds. Client addresses come from 127.0.0.x, and reach haproxy
through stunnel by the PROXY protocol.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from lbcore.spec import parse_spec
from tests.integration.harness import free_port
from tests.system.conftest import needs_haproxy, needs_stunnel

pytestmark = needs_haproxy


def served_name(port: int, server_name: str | None) -> str:
    """The CN of the certificate haproxy or stunnel presents for ``server_name``."""
    sni = ["-servername", server_name] if server_name else ["-noservername"]
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *sni],
        input="", capture_output=True, text=True, timeout=30,
    )
    match = re.search(r"^subject=.*CN ?= ?([^,\n]+)", done.stdout, re.MULTILINE)
    assert match, done.stdout + done.stderr
    return match.group(1).strip()


def curl_https(port: int, host: str, ca: str, *args: str) -> tuple[dict, dict]:
    """(member's JSON, response headers) for https://HOST:PORT/ resolved to 127.0.0.1."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-D", "-", "--cacert", ca,
         "--resolve", f"{host}:{port}:127.0.0.1", *args, f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return json.loads(body), headers


def echoed(member_json: dict) -> dict:
    return {name.lower(): value for name, value in member_json["headers"]}


def tls_spec(port: int, certs: dict, m: dict, *, sni_acl: bool = True, client_auth: bool = False) -> dict:
    tls = {
        "certificates": [
            {"cert": certs["www"][0], "key": certs["www"][1], "default": True},
            {"cert": certs["api"][0], "key": certs["api"][1]},
            {"cert": certs["wild"][0], "key": certs["wild"][1]},
        ],
        "hsts": {"max_age": "1d"},
    }
    if client_auth:
        tls["client_auth"] = {"mode": "optional", "ca": str(certs["ca"])}
    acls = [{"name": "api", "condition": "host api.example.com", "pool": "api"}]
    if sni_acl:
        acls.append({"name": "apps", "condition": {"ssl_sni": "*.apps.example.com"}, "pool": "apps"})
    return {
        "version": 1,
        "listeners": [{"name": "web-tls", "bind": f"127.0.0.1:{port}", "protocol": "https", "tls": tls,
                       "acls": acls, "default_pool": "www"}],
        "pools": [
            {"name": "api", "members": [{"name": "a1", "address": m["a1"].address}]},
            {"name": "apps", "members": [{"name": "p1", "address": m["p1"].address}]},
            {"name": "www", "members": [{"name": "w1", "address": m["w1"].address}]},
        ],
    }


@pytest.fixture
def site(members):
    return {name: members(name) for name in ("a1", "p1", "w1")}


def test_haproxy_terminates_tls_with_sni_certificates(site, certs, haproxy_driver):
    port = free_port()
    haproxy_driver(tls_spec(port, certs, site, client_auth=True))
    assert served_name(port, "api.example.com") == "api.example.com"
    assert served_name(port, "www.example.com") == "www.example.com"
    assert served_name(port, "x.apps.example.com") == "*.apps.example.com"
    assert served_name(port, "unknown.test") == "www.example.com", "no name matches: the default"
    assert served_name(port, None) == "www.example.com", "no SNI: the default"
    ca = str(certs["ca"])
    body, headers = curl_https(port, "api.example.com", ca)
    assert body["member"] == "a1"
    assert headers["strict-transport-security"] == "max-age=86400"
    sent = echoed(body)
    assert sent["x-forwarded-proto"] == "https" and sent["x-ssl-client-verify"] == "NONE"
    body, _ = curl_https(port, "x.apps.example.com", ca)
    assert body["member"] == "p1", "routed by the SNI"
    cert, key = certs["client"]
    body, _ = curl_https(port, "www.example.com", ca, "--cert", cert, "--key", key, "-H", "X-SSL-Client-Verify: forged")
    sent = echoed(body)
    assert body["member"] == "w1"
    assert sent["x-ssl-client-verify"] == "SUCCESS"
    leaf = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    assert sent["x-ssl-client-sha256"] == hashlib.sha256(leaf.public_bytes(serialization_der())).hexdigest()
    assert "lbcore test client" in sent["x-ssl-client-dn"]


def serialization_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


@needs_stunnel
def test_stunnel_terminates_tls_in_front_of_haproxy(site, certs, haproxy_driver):
    port = free_port()
    driver = haproxy_driver(tls_spec(port, certs, site, sni_acl=False), tls_termination="stunnel")
    assert served_name(port, "api.example.com") == "api.example.com"
    assert served_name(port, "x.apps.example.com") == "*.apps.example.com"
    assert served_name(port, None) == "www.example.com"
    ca = str(certs["ca"])
    body, headers = curl_https(port, "api.example.com", ca, "--interface", "127.0.0.5")
    assert body["member"] == "a1"
    sent = echoed(body)
    assert sent["x-forwarded-for"] == "127.0.0.5", "the client address reached haproxy by the PROXY protocol"
    assert sent["x-forwarded-proto"] == "https"
    assert headers["strict-transport-security"] == "max-age=86400"
    # A revision with other certificates reloads stunnel: api.example.com now gets the default.
    spec = tls_spec(port, certs, site, sni_acl=False)
    del spec["listeners"][0]["tls"]["certificates"][1]
    assert driver.apply(parse_spec(spec)).action == "reload"
    assert served_name(port, "api.example.com") == "www.example.com"
    assert curl_https(port, "www.example.com", ca)[0]["member"] == "w1"


@needs_stunnel
def test_stunnel_mode_refuses_sni_acls(site, certs, haproxy_driver):
    from lbcore.control.drivers.haproxy import ApplyError

    with pytest.raises(ApplyError, match=r"listeners\[web-tls\]\.acls\[apps\]\.condition"):
        haproxy_driver(tls_spec(free_port(), certs, site), tls_termination="stunnel")
