"""lbcore.tls.sni: the selection table, and real handshakes through the contexts
lbcore.tls.policy builds from it (every SNI branch, RSA vs ECDSA)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from lbcore._fastpath import _libssl
from lbcore.spec import Address, Listener, TlsCertificate, TlsSettings
from lbcore.tls import ServerContexts, SniTable, build_cert_store, build_server_contexts, parse_certificate
from tests import tlsgen


def cert(ca, names, key_type="rsa", slot=0, common_name=""):
    issued = tlsgen.issue(ca, names, key_type=key_type, slot=slot, common_name=common_name)
    return parse_certificate(issued.pem, issued.key_pem())[0]


@pytest.fixture(scope="module")
def ca() -> tlsgen.Issued:
    return tlsgen.make_ca()


@pytest.fixture(scope="module")
def certs(ca):
    return {
        "default": cert(ca, ["default.example.com"]),
        "default-ec": cert(ca, ["default.example.com"], "ecdsa"),
        "www": cert(ca, ["www.example.com", "example.com"], slot=1),
        "www-ec": cert(ca, ["www.example.com", "example.com"], "ecdsa", slot=1),
        "apps": cert(ca, ["*.apps.example.com"], "ecdsa", slot=2),
        "api": cert(ca, ["api.apps.example.com"], slot=2),
        "idn": cert(ca, ["xn--bcher-kva.example"], "ecdsa", slot=3),
    }


ORDER = ["default", "www", "www-ec", "apps", "api", "idn", "default-ec"]


@pytest.fixture(scope="module")
def table(certs) -> SniTable:
    return SniTable([certs[name] for name in ORDER], default=0)


# -- the table --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, how, rsa, ecdsa", [
    ("www.example.com", "exact", "www", "www-ec"),
    ("WWW.Example.COM.", "exact", "www", "www-ec"),
    ("example.com", "exact", "www", "www-ec"),
    ("x.apps.example.com", "wildcard", None, "apps"),
    ("api.apps.example.com", "exact", "api", None),  # exact RSA beats the ECDSA wildcard
    ("a.b.apps.example.com", "default", "default", "default-ec"),  # a wildcard covers one label
    ("apps.example.com", "default", "default", "default-ec"),
    ("bücher.example", "exact", None, "idn"),
    ("xn--bcher-kva.example", "exact", None, "idn"),
    ("unknown.example.org", "default", "default", "default-ec"),
    ("*.apps.example.com", "default", "default", "default-ec"),
    ("not a name", "default", "default", "default-ec"),
    (None, "no-sni", "default", "default-ec"),
    ("", "no-sni", "default", "default-ec"),
])
def test_lookup_tiers(table: SniTable, certs, name, how, rsa, ecdsa) -> None:
    found = table.match(name)
    assert found.how == how
    assert found.entry.rsa is (certs[rsa] if rsa else None)
    assert found.entry.ecdsa is (certs[ecdsa] if ecdsa else None)
    assert table.lookup(name) == found.index


def test_choose_by_client_capability(table: SniTable, certs) -> None:
    assert table.select("www.example.com", offers_ecdsa=True) is certs["www-ec"]
    assert table.select("www.example.com", offers_ecdsa=False) is certs["www"]
    # Only ECDSA for the name: the client gets it anyway (as haproxy does).
    assert table.select("x.apps.example.com", offers_ecdsa=False) is certs["apps"]
    assert table.select(None, offers_ecdsa=False) is certs["default"]


def test_entries_are_distinct_and_default_pairs_its_twin(table: SniTable, certs) -> None:
    pairs = [(e.rsa, e.ecdsa) for e in table.entries]
    assert len(pairs) == len(set(pairs)) == 5
    assert table.default.certificates == (certs["default"], certs["default-ec"])
    assert table.names() == ("api.apps.example.com", "default.example.com", "example.com", "www.example.com",
                             "xn--bcher-kva.example", "*.apps.example.com")


def test_first_certificate_of_a_type_wins(ca, certs) -> None:
    again = cert(ca, ["www.example.com"], slot=4)
    table = SniTable([certs["default"], certs["www"], again], default=2)
    assert table.select("www.example.com") is certs["www"]
    assert [str(s) for s in table.shadowed] == ["host name www.example.com is also on certificates[1], which is used for it"]
    assert table.select(None) is again  # the default is the default, whatever it shadows


def test_table_needs_certificates() -> None:
    with pytest.raises(ValueError):
        SniTable([])


# -- real handshakes ----------------------------------------------------------------------------------


def _listener(n: int) -> Listener:
    certs = tuple(TlsCertificate(f"c{i}.pem", f"c{i}.key", default=i == 0) for i in range(n))
    return Listener("web-tls", Address("127.0.0.1", 8443), protocol="https", default_pool="www", tls=TlsSettings(certs))


@pytest.fixture(scope="module")
def contexts(certs) -> ServerContexts:
    store, _ = build_cert_store([certs[name] for name in ORDER], 0)
    return build_server_contexts(_listener(len(ORDER)), store)


def _subject_of(handshake: tlsgen.Handshake) -> str:
    return handshake.peer_cert.subject.rfc4514_string()


def _sigalgs_client(ca, sigalgs: str) -> ssl.SSLContext:
    """A TLS 1.3 client offering only ``sigalgs`` (Python cannot say this itself)."""
    context = tlsgen.client_context(ca)
    lib = _libssl.load()
    assert lib.SSL_CTX_ctrl(_libssl.ssl_ctx_pointer(context), 98, 0, sigalgs.encode())  # SSL_CTRL_SET_SIGALGS_LIST
    return context


@pytest.mark.parametrize("sni, subject, key_type", [
    ("www.example.com", "CN=www.example.com", "ecdsa"),
    ("example.com", "CN=www.example.com", "ecdsa"),
    ("x.apps.example.com", "CN=*.apps.example.com", "ecdsa"),
    ("api.apps.example.com", "CN=api.apps.example.com", "rsa"),
    ("xn--bcher-kva.example", "CN=xn--bcher-kva.example", "ecdsa"),
    ("unknown.example.org", "CN=default.example.com", "ecdsa"),
    (None, "CN=default.example.com", "ecdsa"),
])
def test_each_sni_branch(contexts: ServerContexts, ca, sni, subject, key_type) -> None:
    client = tlsgen.client_context(ca)
    if sni is None or sni == "unknown.example.org":
        client.check_hostname = False  # the default certificate does not name it
    done = tlsgen.memory_handshake(client, contexts.context, sni)
    assert (_subject_of(done), done.key_type) == (subject, key_type)


@pytest.mark.parametrize("maximum, ciphers, sigalgs, key_type", [
    (None, None, "rsa_pss_rsae_sha256:ecdsa_secp256r1_sha256", "ecdsa"),  # ECDSA listed last, still chosen
    (None, None, "rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "rsa"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256", None, "ecdsa"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256", None, "rsa"),
    (ssl.TLSVersion.TLSv1_2, None, "RSA+SHA256:RSA-PSS+SHA256", "rsa"),
])
def test_rsa_or_ecdsa_by_what_the_client_offers(contexts, ca, maximum, ciphers, sigalgs, key_type) -> None:
    client = _sigalgs_client(ca, sigalgs) if sigalgs else tlsgen.client_context(ca)
    if maximum is not None:
        client.maximum_version = maximum
    if ciphers is not None:
        client.set_ciphers(ciphers)
    done = tlsgen.memory_handshake(client, contexts.context, "www.example.com")
    assert _subject_of(done) == "CN=www.example.com" and done.key_type == key_type
    # The default entry pairs the default certificate with its ECDSA twin the same way.
    client.check_hostname = False
    assert tlsgen.memory_handshake(client, contexts.context, None).key_type == key_type


def test_rsa_only_client_still_gets_the_ecdsa_only_name(contexts, ca) -> None:
    client = _sigalgs_client(ca, "rsa_pss_rsae_sha256")
    with pytest.raises(ssl.SSLError):
        tlsgen.memory_handshake(client, contexts.context, "x.apps.example.com")


def test_attach_switches_a_kept_server(ca, certs) -> None:
    old_store, _ = build_cert_store([certs["default"]], 0)
    old = build_server_contexts(_listener(1), old_store)
    new_store, _ = build_cert_store([certs["www"], certs["apps"]], 0)
    new = build_server_contexts(_listener(2), new_store)
    client = tlsgen.client_context(ca)
    assert _subject_of(tlsgen.memory_handshake(client, old.context, "default.example.com")) == "CN=default.example.com"
    new.attach(old.context)  # a new revision's certificates through the kept server's context
    assert _subject_of(tlsgen.memory_handshake(client, old.context, "www.example.com")) == "CN=www.example.com"
    assert _subject_of(tlsgen.memory_handshake(client, old.context, "a.apps.example.com")) == "CN=*.apps.example.com"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_sigalgs(contexts: ServerContexts, ca, tmp_path) -> None:
    """A real client on a real socket: openssl s_client -servername -sigalgs."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listening.accept()
            conn.settimeout(5)
            try:
                with contexts.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except (ssl.SSLError, OSError):
                pass

    cases = [("www.example.com", "ECDSA+SHA256:RSA-PSS+SHA256", "ECDSA"),
             ("www.example.com", "RSA-PSS+SHA256", "RSA-PSS"),
             ("api.apps.example.com", "ECDSA+SHA256:RSA-PSS+SHA256", "RSA-PSS")]
    thread = threading.Thread(target=serve, args=(len(cases),), daemon=True)
    thread.start()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    try:
        for name, sigalgs, expected in cases:
            out = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-sigalgs", sigalgs,
                 "-CAfile", str(tmp_path / "ca.pem"), "-verify_return_error", "-verify_hostname", name],
                input=b"", capture_output=True, timeout=10,
            ).stdout.decode()
            assert f"Peer signature type: {expected}" in out, out[-800:]
            assert "Verify return code: 0 (ok)" in out
    finally:
        thread.join(10)
        listening.close()
