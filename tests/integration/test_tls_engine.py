"""TLS through the running engine: SNI selection, RSA/ECDSA, live certificate change, bad keys,
client certificates, TLS versions, session tickets across workers and engines, passthrough,
re-encryption to members. Certificates are made by the test (tests/tlsgen.py)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess

import pytest

from tests import tlsgen
from tests.integration.harness import ROOT, big_body, free_port

OPENSSL = "openssl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = tlsgen.make_ca()
    certs = {
        "www": tlsgen.issue(ca, ["www.example.com"], key_type="rsa"),
        "www-ec": tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa"),
        "wild": tlsgen.issue(ca, ["*.apps.example.com"], key_type="rsa"),
        "default": tlsgen.issue(ca, ["default.example.com"], key_type="rsa"),
        "multi": tlsgen.issue(ca, ["a.example.net", "b.example.net"], key_type="ecdsa"),
        "client": tlsgen.issue(ca, [], common_name="client-one", client=True, key_type="ecdsa"),
    }
    paths = {name: tlsgen.write_pair(d, name, leaf) for name, leaf in certs.items()}
    (d / "ca.pem").write_bytes(ca.pem)
    return {"dir": d, "ca": ca, "certs": certs, "paths": paths}


def cert_entry(pki, name, default=False):
    cert, key = pki["paths"][name]
    entry = {"cert": cert, "key": key}
    if default:
        entry["default"] = True
    return entry


def https_spec(port, member, certificates, **tls):
    return {
        "version": 1,
        "listeners": [{"name": "tls", "bind": f"127.0.0.1:{port}", "protocol": "https", "default_pool": "p",
                       "tls": {"certificates": certificates, **tls}}],
        "pools": [{"name": "p", "members": [{"name": member.name, "address": member.address}]}],
    }


def served_cert(port, server_name, *, context=None):
    """Handshake with SNI ``server_name`` (None: no SNI); the leaf certificate's DER and the TLS object."""
    ctx = context or tlsgen.client_context(None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True), tls.version(), tls.cipher()


def der(pki, name):
    return pki["certs"][name].der


def https_get(port, host, path="/", context=None, headers=""):
    ctx = context or tlsgen.client_context(None)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.fixture
def sni_engine(pki, members, engine):
    m = members("m1")
    port = free_port()
    certs = [cert_entry(pki, "default", default=True), cert_entry(pki, "www"), cert_entry(pki, "www-ec"),
             cert_entry(pki, "wild"), cert_entry(pki, "multi")]
    eng = engine(https_spec(port, m, certs, hsts={"max_age": 31536000}), workers=2)
    return port, m, eng


def test_sni_selects_exact_wildcard_default(pki, sni_engine):
    port, _, _ = sni_engine
    rsa_only = tlsgen.client_context(None, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert served_cert(port, "www.example.com", context=rsa_only)[0] == der(pki, "www")
    assert served_cert(port, "x.apps.example.com")[0] == der(pki, "wild")
    assert served_cert(port, "y.x.apps.example.com")[0] == der(pki, "default")  # wildcard covers one label
    assert served_cert(port, "b.example.net")[0] == der(pki, "multi")
    assert served_cert(port, "unknown.example.org")[0] == der(pki, "default")
    assert served_cert(port, None)[0] == der(pki, "default")


def test_a_large_https_response_to_a_slow_reader_arrives_whole_and_in_order(sni_engine):
    # The TLS layer writes its records straight to the socket while the transport holds
    # none, and through the transport once the kernel is full: the records must keep
    # their order across the two (the member's block n of 64 KiB is the byte n % 251).
    port, _, _ = sni_engine
    blocks = 160
    total = blocks * 65536 + 1000
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    with tlsgen.client_context(None).wrap_socket(raw, server_hostname="www.example.com") as tls:
        tls.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == big_body(total)


def test_ecdsa_client_gets_ecdsa_rsa_only_client_gets_rsa(pki, sni_engine):
    port, _, _ = sni_engine
    out = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "www.example.com",
                          "-sigalgs", "ECDSA+SHA256"], input=b"", capture_output=True, timeout=20)
    assert b"Peer signature type: ECDSA" in out.stdout or b"Server public key is 256 bit" in out.stdout
    rsa = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "www.example.com",
                          "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"], input=b"", capture_output=True, timeout=20)
    assert b"Server public key is 2048 bit" in rsa.stdout


def test_https_request_headers_and_hsts(pki, sni_engine):
    port, _, _ = sni_engine
    head, body = https_get(port, "www.example.com")
    assert head.startswith("HTTP/1.1 200")
    assert "Strict-Transport-Security: max-age=31536000" in head
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the client's address, from the TCP connection under TLS


def test_curl_with_resolve_verifies_the_chain(pki, sni_engine):
    port, _, _ = sni_engine
    out = subprocess.run(["curl", "-s", "--cacert", str(pki["dir"] / "ca.pem"), "--resolve", f"www.example.com:{port}:127.0.0.1",
                          f"https://www.example.com:{port}/curl"], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["target"] == "/curl"


def test_old_tls_versions_are_refused(sni_engine):
    port, _, _ = sni_engine
    for version in ("-tls1", "-tls1_1"):
        out = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", version, "-cipher", "DEFAULT@SECLEVEL=0"],
                             input=b"", capture_output=True, timeout=20)
        assert b"Cipher is (NONE)" in out.stdout or out.returncode != 0


def test_certificate_replaced_live_and_bad_key_refused_whole(pki, members, engine, tmp_path):
    m = members("m1")
    port = free_port()
    eng = engine(https_spec(port, m, [cert_entry(pki, "www", default=True)]))
    # a long-lived connection made before the change keeps working
    ctx = tlsgen.client_context(None)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    held = ctx.wrap_socket(raw, server_hostname="www.example.com")
    assert served_cert(port, "www.example.com")[0] == der(pki, "www")
    eng.reload(https_spec(port, m, [cert_entry(pki, "default", default=True)]))
    assert served_cert(port, "www.example.com")[0] == der(pki, "default")
    held.sendall(b"GET /held HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
    assert held.recv(65536).startswith(b"HTTP/1.1 200")
    held.close()
    # a revision whose key does not match its certificate is refused whole
    bad = [{"cert": pki["paths"]["www"][0], "key": pki["paths"]["multi"][1], "default": True}]
    line = eng.reload(https_spec(port, m, bad))
    assert "reload refused" in line
    assert "listeners[tls].tls.certificates[0]" in eng.log_text() and "does not match" in eng.log_text()
    assert served_cert(port, "www.example.com")[0] == der(pki, "default")  # the old revision serves
    # no key material in the log
    key_lines = [l for l in pki["certs"]["multi"].key_pem().decode().splitlines() if l and "-----" not in l]
    assert not any(l in eng.log_text() for l in key_lines)


def test_client_certificate_required(pki, members, engine):
    m = members("m1")
    port = free_port()
    spec = https_spec(port, m, [cert_entry(pki, "www", default=True)],
                      client_auth={"mode": "required", "ca": str(pki["dir"] / "ca.pem")})
    engine(spec)
    try:
        head, _ = https_get(port, "www.example.com")
    except (ssl.SSLError, ConnectionResetError):
        head = ""  # TLS 1.3: the refusal may come as an alert on the first read
    assert head == "" and m.requests == 0  # refused: nothing answered, nothing forwarded
    ctx = tlsgen.client_context(None)
    client = pki["paths"]["client"]
    ctx.load_cert_chain(client[0], client[1])
    head, body = https_get(port, "www.example.com", context=ctx, headers="X-SSL-Client-DN: forged\r\n")
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "client-one" in seen["x-ssl-client-dn"] and seen["x-ssl-client-verify"] == "SUCCESS"
    assert len(seen["x-ssl-client-sha256"]) == 64


def certificates_sent(port, server_name):
    """How many certificates the server sends (``openssl s_client -showcerts``)."""
    out = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name, "-showcerts"],
                         input=b"", capture_output=True, timeout=20)
    assert b"Verify return code" in out.stdout, out.stderr  # the handshake finished
    return out.stdout.count(b"-----BEGIN CERTIFICATE-----")


def test_the_chain_sent_is_the_certificate_files_never_one_completed_from_the_client_ca(pki, members, engine, tmp_path):
    # The client-auth bundle holds the CA that issued both certificates: OpenSSL left to
    # itself would complete default.pem (a leaf alone) from it at every handshake.
    m = members("m1")
    port = free_port()
    chained = tlsgen.write_pair(tmp_path, "www-chained", pki["certs"]["www"], chain=[pki["ca"]])
    spec = https_spec(port, m, [cert_entry(pki, "default", default=True), {"cert": chained[0], "key": chained[1]}],
                      client_auth={"mode": "optional", "ca": str(pki["dir"] / "ca.pem")})
    engine(spec)
    assert certificates_sent(port, "default.example.com") == 1
    assert certificates_sent(port, "www.example.com") == 2


def _s_client_resume(port, sess_file, reconnect_in: bool):
    args = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "www.example.com", "-tls1_3", "-ign_eof"]
    args += ["-sess_in", str(sess_file)] if reconnect_in else ["-sess_out", str(sess_file)]
    out = subprocess.run(args, input=b"GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
                         capture_output=True, timeout=20)
    return out.stdout


def test_session_tickets_resume_across_workers_and_engines(pki, members, engine, tmp_path):
    from tests.integration.test_stats_engine import wait_metric

    m = members("m1")
    keys = tlsgen.write_ticket_keys(tmp_path / "tickets.keys", [tlsgen.ticket_key_line(), tlsgen.ticket_key_line()])
    port = free_port()
    eng = engine(https_spec(port, m, [cert_entry(pki, "www", default=True)], ticket_keys=keys), workers=2)
    sess = tmp_path / "sess.pem"
    _s_client_resume(port, sess, reconnect_in=False)
    assert sess.exists()
    # kill every worker: the new ones, fresh processes, still resume the session
    for pid in eng.worker_pids():
        os.kill(pid, 9)
    since = eng.mark()
    eng.wait_for_log(r"serving on 2 workers", since)
    assert b"Reused, TLSv1.3" in _s_client_resume(port, sess, reconnect_in=True)
    # a second engine (another node) sharing the key file resumes it too, and counts it so
    port2, admin_port = free_port(), free_port()
    spec = https_spec(port2, m, [cert_entry(pki, "www", default=True)], ticket_keys=keys)
    spec["admin"] = {"bind": f"127.0.0.1:{admin_port}"}
    engine(spec)
    assert b"Reused, TLSv1.3" in _s_client_resume(port2, sess, reconnect_in=True)
    resumed = ("lbcore_listener_tls_handshakes_total", (("listener", "tls"), ("result", "resumed")))
    assert wait_metric(admin_port, resumed, 1) == 1
    # without the shared keys: a full handshake
    port3 = free_port()
    engine(https_spec(port3, m, [cert_entry(pki, "www", default=True)]))
    assert b"New, TLSv1.3" in _s_client_resume(port3, sess, reconnect_in=True)


def test_passthrough_routes_by_sni_without_terminating(pki, members, engine, tmp_path):
    # members are TLS servers of their own (openssl s_server), each with its certificate
    port = free_port()
    servers = {}
    try:
        for name in ("www", "multi"):
            mport = free_port()
            cert, key = pki["paths"][name]
            servers[name] = (mport, subprocess.Popen([OPENSSL, "s_server", "-accept", f"127.0.0.1:{mport}", "-cert", cert, "-key", key,
                                                      "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for mport, _ in servers.values():
            _wait_port(mport)
        spec = {
            "version": 1,
            "listeners": [{"name": "pt", "bind": f"127.0.0.1:{port}", "protocol": "tls-passthrough",
                           "acls": [{"name": "net", "condition": "req.ssl_sni -m end .example.net", "pool": "net"}],
                           "default_pool": "www"}],
            "pools": [{"name": "www", "members": [{"name": "w", "address": f"127.0.0.1:{servers['www'][0]}"}]},
                      {"name": "net", "members": [{"name": "n", "address": f"127.0.0.1:{servers['multi'][0]}"}]}],
        }
        engine(spec)
        assert served_cert(port, "a.example.net")[0] == der(pki, "multi")
        assert served_cert(port, "www.example.com")[0] == der(pki, "www")
        # garbage instead of a ClientHello: closed, nothing forwarded
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100) == b""
    finally:
        for _, proc in servers.values():
            proc.kill()
            proc.wait()


def test_reencryption_to_member_verifies_it(pki, members, engine):
    # a TLS member: lbcore itself, https in front of a plain member
    inner_member = members("inner")
    inner_port = free_port()
    engine(https_spec(inner_port, inner_member, [cert_entry(pki, "www", default=True)]))
    port = free_port()
    spec = {
        "version": 1,
        "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "tlspool"}],
        "pools": [{"name": "tlspool", "tls": {"enabled": True, "verify": "required", "ca": str(pki["dir"] / "ca.pem"), "sni": "www.example.com"},
                   "members": [{"name": "t", "address": f"127.0.0.1:{inner_port}"}]}],
    }
    engine(spec)
    from tests.integration.harness import http_get

    status, _, body = http_get(port, "/reencrypted")
    assert status == 200 and json.loads(body)["target"] == "/reencrypted"
    # wrong expected name: verification fails, the member is unusable -> 502
    spec["pools"][0]["tls"]["sni"] = "other.example.com"
    port2 = free_port()
    spec["listeners"][0]["bind"] = f"127.0.0.1:{port2}"
    engine(spec)
    assert http_get(port2)[0] == 502


def _wait_port(port, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # bounded wait for openssl s_server to listen


def test_full_and_failed_handshakes_are_counted(pki, members, engine):
    from tests.integration.test_stats_engine import wait_metric

    m = members("m1")
    port, admin_port = free_port(), free_port()
    spec = https_spec(port, m, [cert_entry(pki, "www", default=True)], min_version="1.3")
    spec["admin"] = {"bind": f"127.0.0.1:{admin_port}"}
    engine(spec)
    head, _ = https_get(port, "www.example.com")
    assert head.startswith("HTTP/1.1 200")
    # A client that offers only TLS 1.2 is refused: OpenSSL's alert, no request.
    old = tlsgen.client_context(None, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        served_cert(port, "www.example.com", context=old)
    # A client that connects and leaves without a handshake.
    socket.create_connection(("127.0.0.1", port), timeout=10).close()

    def key(result):
        return ("lbcore_listener_tls_handshakes_total", (("listener", "tls"), ("result", result)))

    assert wait_metric(admin_port, key("failed"), 2) == 2
    assert wait_metric(admin_port, key("full"), 1) == 1
