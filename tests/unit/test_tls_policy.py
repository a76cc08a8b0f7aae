"""lbcore.tls.policy: the contexts built from the Spec, checked by real handshakes
(versions, ciphers, suites, groups, ALPN, client certificates, CRL, members)."""

from __future__ import annotations

import hashlib
import ssl
import warnings

import pytest

from lbcore._fastpath import _libssl, sslctx
from lbcore.spec import Address, ClientAuth, Hsts, Listener, Pool, PoolTls, Spec, TlsCertificate, TlsSettings
from lbcore.tls import (
    DEFAULT_CIPHERS,
    ServerContexts,
    TlsError,
    build_cert_store,
    build_member_tls,
    build_server_contexts,
    client_cert_headers,
    compile_tls,
    hsts_header,
    load_certificate_into,
    parse_certificate,
    peer_certificate,
)
from tests import tlsgen


@pytest.fixture(scope="module")
def ca() -> tlsgen.Issued:
    return tlsgen.make_ca()


@pytest.fixture(scope="module")
def client_ca() -> tlsgen.Issued:
    return tlsgen.make_ca("lbcore client CA", slot=3)


@pytest.fixture(scope="module")
def store(ca):
    rsa = tlsgen.issue(ca, ["www.example.com"])
    ecdsa = tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa")
    certs = [parse_certificate(c.pem, c.key_pem())[0] for c in (rsa, ecdsa)]
    return build_cert_store(certs, 0)[0]


def listener(**tls) -> Listener:
    certs = (TlsCertificate("rsa.pem", "rsa.key", default=True), TlsCertificate("ec.pem", "ec.key"))
    return Listener("web-tls", Address("127.0.0.1", 8443), protocol="https", default_pool="www",
                    tls=TlsSettings(certs, **tls))


def build(store, base_dir=".", **tls) -> ServerContexts:
    return build_server_contexts(listener(**tls), store, base_dir)


def handshake(client: ssl.SSLContext, contexts: ServerContexts, name: str = "www.example.com") -> tlsgen.Handshake:
    return tlsgen.memory_handshake(client, contexts.context, name)


# -- versions and ciphers ------------------------------------------------------------------------------


def old_client(ca, version: ssl.TLSVersion) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = tlsgen.client_context(ca, maximum=version, ciphers="DEFAULT:@SECLEVEL=0")
        client.minimum_version = ssl.TLSVersion.TLSv1
    return client


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls10_and_tls11_refused(store, ca, version) -> None:
    client = old_client(ca, version)
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL|unsupported protocol|no protocols"):
        handshake(client, build(store))
    # Control: the same client gets through to a server that allows it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
        permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    for certificate in store.sni.default.certificates:
        load_certificate_into(permissive, certificate)
    done = tlsgen.memory_handshake(client, permissive)
    assert done.client.version() == {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[version]


def test_versions(store, ca) -> None:
    contexts = build(store)
    assert handshake(tlsgen.client_context(ca), contexts).client.version() == "TLSv1.3"
    assert handshake(tlsgen.client_context(ca, maximum=ssl.TLSVersion.TLSv1_2), contexts).client.version() == "TLSv1.2"
    strict = build(store, min_version="1.3")
    with pytest.raises(ssl.SSLError):
        handshake(tlsgen.client_context(ca, maximum=ssl.TLSVersion.TLSv1_2), strict)


def test_default_ciphers_are_modern(store, ca) -> None:
    contexts = build(store)
    tls12 = [c for c in contexts.context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert {c["name"] for c in tls12} == set(DEFAULT_CIPHERS.split(":"))
    assert all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12)
    cbc = tlsgen.client_context(ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA:DES-CBC3-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(cbc, contexts)
    options = contexts.context.options
    assert options & ssl.OP_NO_COMPRESSION and options & ssl.OP_CIPHER_SERVER_PREFERENCE and options & ssl.OP_NO_RENEGOTIATION


def test_custom_ciphers_checked(store, ca) -> None:
    contexts = build(store, ciphers="ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256")
    assert [str(w) for w in contexts.warnings] == ["listeners[web-tls].tls.ciphers: cipher AES128-GCM-SHA256: no forward secrecy"]
    client = tlsgen.client_context(ca, maximum=ssl.TLSVersion.TLSv1_2)
    assert handshake(client, contexts).client.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    with pytest.raises(TlsError) as caught:
        build(store, ciphers="NOT-A-CIPHER", ciphersuites="TLS_NOPE", curves="P-999")
    assert str(caught.value).splitlines() == [
        "listeners[web-tls].tls.ciphers: OpenSSL knows no cipher in 'NOT-A-CIPHER'",
        "listeners[web-tls].tls.ciphersuites: OpenSSL refused it: no usable TLS 1.3 cipher suite in 'TLS_NOPE'",
        "listeners[web-tls].tls.curves: OpenSSL refused it: unknown or unsupported group in 'P-999'",
    ]


def test_tls13_ciphersuites(store, ca) -> None:
    contexts = build(store, ciphersuites="TLS_CHACHA20_POLY1305_SHA256")
    assert handshake(tlsgen.client_context(ca), contexts).client.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"


def _groups_client(ca, groups: str) -> ssl.SSLContext:
    client = tlsgen.client_context(ca)
    sslctx.set_groups(client, groups)
    return client


def test_curves(store, ca) -> None:
    contexts = build(store, curves="P-384:P-521")
    assert handshake(_groups_client(ca, "P-384"), contexts).client.version() == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(_groups_client(ca, "X25519"), contexts)
    assert handshake(_groups_client(ca, "X25519"), build(store)).client.version() == "TLSv1.3"  # OpenSSL's defaults


def test_session_cache_setting(store) -> None:
    assert sslctx.session_cache_size(build(store).context) == 20480
    assert sslctx.session_cache_size(build(store, session_cache=100).context) == 100
    assert sslctx.session_cache_size(build(store, session_cache=0).context) == 0


def test_every_context_sends_the_loaded_chain_only(store) -> None:
    contexts = build(store)
    assert all(sslctx.sends_configured_chain_only(context) for context in contexts.contexts)
    assert not sslctx.sends_configured_chain_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))  # OpenSSL's default


def test_unreachable_openssl_is_reported_per_setting(store, monkeypatch) -> None:
    monkeypatch.setattr(_libssl, "_lib", None)
    monkeypatch.setattr(_libssl, "_error", "simulated")
    assert build(store).context  # the defaults need nothing Python's ssl lacks
    with pytest.raises(TlsError) as caught:
        build(store, ciphersuites="TLS_AES_128_GCM_SHA256", session_cache=0)
    assert str(caught.value).splitlines() == [
        "listeners[web-tls].tls.ciphersuites: cannot be set here: simulated",
        "listeners[web-tls].tls.session_cache: cannot be set here: simulated",
    ]


# -- ALPN ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offered, alpn, chosen", [
    (["h2", "http/1.1"], ("http/1.1",), "http/1.1"),
    (["h2"], ("http/1.1",), None),  # never a protocol we do not speak
    (["http/1.0", "http/1.1"], ("http/1.1", "http/1.0"), "http/1.1"),
    (["h2", "http/1.1"], (), None),
    ([], ("http/1.1",), None),
])
def test_alpn(store, ca, offered, alpn, chosen) -> None:
    client = tlsgen.client_context(ca, alpn=offered)
    assert handshake(client, build(store, alpn=alpn)).client.selected_alpn_protocol() == chosen


# -- client certificates -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_files(tmp_path_factory, client_ca):
    base = tmp_path_factory.mktemp("clients")
    good = tlsgen.issue(client_ca, [], common_name="Zoë Client", client=True, slot=4)
    revoked = tlsgen.issue(client_ca, [], common_name="revoked", client=True, slot=5)
    stranger = tlsgen.issue(tlsgen.make_ca("other CA", slot=6), [], common_name="stranger", client=True, slot=6)
    (base / "clients-ca.pem").write_bytes(client_ca.pem)
    (base / "clients.crl").write_bytes(tlsgen.make_crl(client_ca, [revoked]))
    (base / "empty.crl").write_bytes(tlsgen.make_crl(client_ca, []))
    (base / "junk.pem").write_bytes(b"not a bundle\n")
    paths = {}
    for name, issued in (("good", good), ("revoked", revoked), ("stranger", stranger)):
        paths[name] = tlsgen.write_pair(base, name, issued)
    return base, paths, good


def mtls_client(ca, paths, who: str | None) -> ssl.SSLContext:
    client = tlsgen.client_context(ca)
    if who is not None:
        client.load_cert_chain(*paths[who])
    return client


def test_mtls_required(store, ca, client_files) -> None:
    base, paths, good = client_files
    contexts = build(store, base, client_auth=ClientAuth("required", ca="clients-ca.pem"))
    with pytest.raises(ssl.SSLError):  # no certificate: refused
        handshake(mtls_client(ca, paths, None), contexts)
    with pytest.raises(ssl.SSLError):  # a certificate from another CA: refused
        handshake(mtls_client(ca, paths, "stranger"), contexts)
    done = handshake(mtls_client(ca, paths, "good"), contexts)
    peer = peer_certificate(done.server)
    assert peer is not None and peer.subject == "CN=Zo\\C3\\AB Client"  # RFC 4514 hex escapes: header-safe
    assert peer.fingerprint_sha256 == hashlib.sha256(good.der).hexdigest()
    assert client_cert_headers(peer, contexts.client_auth) == (  # type: ignore[arg-type]
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-SSL-Client-DN", "CN=Zo\\C3\\AB Client"),
        ("X-SSL-Client-SHA256", peer.fingerprint_sha256),
    )


def test_mtls_optional(store, ca, client_files) -> None:
    base, paths, _ = client_files
    auth = ClientAuth("optional", ca="clients-ca.pem", subject_header=None, verify_header="X-Client-Verified")
    contexts = build(store, base, client_auth=auth)
    done = handshake(mtls_client(ca, paths, None), contexts)
    assert peer_certificate(done.server) is None
    assert client_cert_headers(None, auth) == (("X-Client-Verified", "NONE"),)
    assert auth.headers == ("X-SSL-Client-SHA256", "X-Client-Verified")
    with pytest.raises(ssl.SSLError):  # a certificate that is sent must verify
        handshake(mtls_client(ca, paths, "stranger"), contexts)
    done = handshake(mtls_client(ca, paths, "good"), contexts)
    names = [name for name, _ in client_cert_headers(peer_certificate(done.server), auth)]
    assert names == ["X-Client-Verified", "X-SSL-Client-SHA256"]


def test_crl(store, ca, client_files) -> None:
    base, paths, _ = client_files
    contexts = build(store, base, client_auth=ClientAuth("required", ca="clients-ca.pem", crl="clients.crl"))
    assert handshake(mtls_client(ca, paths, "good"), contexts)
    with pytest.raises(ssl.SSLError, match="revoked"):
        handshake(mtls_client(ca, paths, "revoked"), contexts)
    clean = build(store, base, client_auth=ClientAuth("required", ca="clients-ca.pem", crl="empty.crl"))
    assert handshake(mtls_client(ca, paths, "revoked"), clean)


def test_client_auth_file_errors(store, client_files) -> None:
    base, _, _ = client_files
    with pytest.raises(TlsError) as caught:
        build(store, base, client_auth=ClientAuth("required", ca="missing.pem", crl="junk.pem"))
    lines = str(caught.value).splitlines()
    assert lines[0] == f"listeners[web-tls].tls.client_auth.ca: cannot read {base}/missing.pem: no such file"
    assert lines[1].startswith(f"listeners[web-tls].tls.client_auth.crl: {base}/junk.pem is not a PEM CRL")


def test_hsts_header() -> None:
    certs = (TlsCertificate("a.pem"),)
    assert hsts_header(TlsSettings(certs)) is None
    settings = TlsSettings(certs, hsts=Hsts(max_age="365d", include_subdomains=True, preload=True))
    assert hsts_header(settings) == ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload")


# -- members -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def member_files(tmp_path_factory, ca, client_ca):
    base = tmp_path_factory.mktemp("members")
    (base / "members-ca.pem").write_bytes(ca.pem)
    lb = tlsgen.issue(client_ca, [], common_name="lbcore", client=True, slot=7)
    tlsgen.write_pair(base, "lb-client", lb, passphrase="pw")
    (base / "other.key").write_bytes(tlsgen.key_pem(tlsgen.new_key("rsa", fresh=True)))
    return base


def member_server(store, client_ca=None) -> ssl.SSLContext:
    auth = ClientAuth("required", ca="ca.pem") if client_ca is not None else None
    contexts = build(store, client_auth=None)
    context = contexts.context
    if auth is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.pem.decode())
    return context


def pool(**tls) -> Pool:
    return Pool("secure", members=(), tls=PoolTls(**tls))


def member_handshake(member, server: ssl.SSLContext) -> tlsgen.Handshake:
    kwargs = member.connect_kwargs()
    return tlsgen.memory_handshake(kwargs["ssl"], server, kwargs["server_hostname"] or None)


def test_member_verify_and_sni(store, member_files) -> None:
    member, warnings = build_member_tls(pool(ca="members-ca.pem", sni="www.example.com"), member_files)
    assert warnings == [] and member is not None
    assert member.connect_kwargs()["server_hostname"] == "www.example.com"
    server = member_server(store)
    seen: list[str | None] = []
    forward = server.sni_callback
    server.sni_callback = lambda obj, name, ctx: (seen.append(name), forward(obj, name, ctx))[1]  # type: ignore[misc]
    member_handshake(member, server)
    assert seen == ["www.example.com"]
    wrong, _ = build_member_tls(pool(ca="members-ca.pem", sni="db.internal"), member_files)
    with pytest.raises(ssl.SSLCertVerificationError):
        member_handshake(wrong, member_server(store))
    # verify required without sni: the chain is checked, no name.
    chain_only, _ = build_member_tls(pool(ca="members-ca.pem"), member_files)
    assert chain_only.connect_kwargs()["server_hostname"] == ""  # type: ignore[union-attr]
    assert member_handshake(chain_only, member_server(store))
    # The system store does not know the test CA.
    system, _ = build_member_tls(pool(sni="www.example.com"), member_files)
    with pytest.raises(ssl.SSLCertVerificationError):
        member_handshake(system, member_server(store))
    loose, _ = build_member_tls(pool(verify="none"), member_files)
    assert member_handshake(loose, member_server(store))


def test_member_client_certificate(store, client_ca, member_files) -> None:
    server = member_server(store, client_ca)
    anonymous, _ = build_member_tls(pool(verify="none"), member_files)
    with pytest.raises(ssl.SSLError):
        member_handshake(anonymous, server)
    member, warnings = build_member_tls(pool(verify="none", cert="lb-client.pem", key="lb-client.key", passphrase="pw"), member_files)
    assert warnings == []
    done = member_handshake(member, server)
    assert peer_certificate(done.server).subject == "CN=lbcore"  # type: ignore[union-attr]


def test_member_errors_and_plain_pools(member_files) -> None:
    assert build_member_tls(Pool("plain"), member_files) == (None, [])
    assert build_member_tls(pool(enabled=False), member_files) == (None, [])
    with pytest.raises(TlsError) as caught:
        build_member_tls(pool(ca="nope.pem", cert="lb-client.pem", key="other.key"), member_files)
    assert str(caught.value).splitlines() == [
        f"pools[secure].tls.ca: cannot read {member_files}/nope.pem: no such file",
        "pools[secure].tls.cert: key does not match certificate",
    ]


def test_compile_tls_reports_every_listener_and_pool(tmp_path, ca) -> None:
    good = tlsgen.issue(ca, ["www.example.com"])
    tlsgen.write_pair(tmp_path, "www", good)
    (tmp_path / "wrong.key").write_bytes(tlsgen.key_pem(tlsgen.new_key("rsa", fresh=True)))
    https = Listener("a-tls", Address("127.0.0.1", 8443), protocol="https", default_pool="p",
                     tls=TlsSettings((TlsCertificate("www.pem", "wrong.key"),)))
    fine = Listener("b-tls", Address("127.0.0.1", 8444), protocol="https", default_pool="p",
                    tls=TlsSettings((TlsCertificate("www.pem", "www.key"),)))
    spec = Spec(listeners=(https, fine), pools=(Pool("p", tls=PoolTls(ca="missing-ca.pem")),))
    with pytest.raises(TlsError) as caught:
        compile_tls(spec, tmp_path)
    assert str(caught.value).splitlines() == [
        "listeners[a-tls].tls.certificates[0]: key does not match certificate",
        f"pools[p].tls.ca: cannot read {tmp_path}/missing-ca.pem: no such file",
    ]
    ok_spec = Spec(listeners=(fine,), pools=(Pool("p", tls=PoolTls(verify="none")),))
    compiled, warnings = compile_tls(ok_spec, tmp_path)
    assert set(compiled.listeners) == {"b-tls"} and set(compiled.pools) == {"p"} and warnings == []
