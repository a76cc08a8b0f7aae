"""Shared session tickets: the key file, both twins of the OpenSSL shim, resumption
across separate contexts (as two workers or two nodes have), rotation, tickets off."""

from __future__ import annotations

import base64
import os
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore._fastpath import _libssl, sslctx
from lbcore.spec import parse_spec
from lbcore.tls import (
    TicketKeyFile,
    TicketKeys,
    TlsError,
    build_cert_store,
    build_server_contexts,
    compile_tls,
    generate_ticket_key,
    install_ticket_keys,
    load_ticket_keys,
    parse_certificate,
    parse_ticket_keys,
)
from tests import tlsgen

TWINS = list(sslctx.IMPLEMENTATIONS.items())
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def ca() -> tlsgen.Issued:
    return tlsgen.make_ca()


@pytest.fixture(scope="module")
def leaf(ca) -> tlsgen.Issued:
    return tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa")


@pytest.fixture(scope="module")
def clients(ca) -> dict[ssl.TLSVersion, ssl.SSLContext]:
    return {TLS13: tlsgen.client_context(ca), TLS12: tlsgen.client_context(ca, maximum=TLS12)}


def server(leaf: tlsgen.Issued, tmp_path) -> ssl.SSLContext:
    """A server context of its own, as another worker process would build."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_path, key_path = tlsgen.write_pair(tmp_path, "leaf", leaf)
    context.load_cert_chain(cert_path, key_path)
    return context


def keys(count: int, size: int = 80) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def resumes(client: ssl.SSLContext, context: ssl.SSLContext, session: ssl.SSLSession) -> tuple[bool, ssl.SSLSession]:
    done = tlsgen.memory_handshake(client, context, session=session)
    assert done.client.session_reused == done.server.session_reused
    return done.client.session_reused, done.client.session


# -- the key file ---------------------------------------------------------------------------------------


def test_parse_key_file() -> None:
    lines = [tlsgen.ticket_key_line(), tlsgen.ticket_key_line(128), generate_ticket_key()]
    text = "# rotated hourly\n\n" + "\n".join(lines) + "\n"
    ring = parse_ticket_keys(text)
    assert [len(k) for k in ring.keys] == [80, 48, 80]
    assert ring.names == tuple(base64.b64decode(line)[:16].hex() for line in lines)
    assert repr(ring) == f"<TicketKeys 3 key(s), newest {ring.names[-1]}>"
    assert base64.b64decode(lines[0])[16:].hex() not in repr(ring)


def test_key_file_errors_name_lines_not_keys() -> None:
    good = tlsgen.ticket_key_line()
    short = base64.b64encode(os.urandom(32)).decode()
    text = "\n".join([good, "not base64!", short, good, "#ok"])
    with pytest.raises(TlsError) as caught:
        parse_ticket_keys(text, "keys.txt")
    assert str(caught.value).splitlines() == [
        "keys.txt line 2: not base64",
        "keys.txt line 3: a ticket key is 48 or 80 bytes, this one is 32",
        "keys.txt line 4: same key name as line 1",
    ]
    for secret in (good[:20], short[:20]):
        assert secret not in str(caught.value)
    with pytest.raises(TlsError, match="no key"):
        parse_ticket_keys("# nothing\n")
    with pytest.raises(TlsError, match="65 keys, at most 64"):
        parse_ticket_keys("\n".join(tlsgen.ticket_key_line() for _ in range(65)))
    with pytest.raises(TlsError, match="not a text file"):
        parse_ticket_keys(b"\xff\xfe")
    with pytest.raises(TlsError, match="ticket key 1 must be 48 or 80 bytes, got 10"):
        TicketKeys((b"x" * 10,))


def test_key_file_refresh(tmp_path) -> None:
    path = tlsgen.write_ticket_keys(tmp_path / "tickets.keys", [tlsgen.ticket_key_line()])
    watched = TicketKeyFile(path)
    first = watched.keys
    assert not watched.refresh()
    lines = open(path).read().splitlines() + [tlsgen.ticket_key_line()]
    tlsgen.write_ticket_keys(tmp_path / "new.keys", lines)
    os.replace(tmp_path / "new.keys", path)  # how a rotation tool writes it
    assert watched.refresh() and watched.keys.keys[0] == first.keys[0] and len(watched.keys.keys) == 2
    (tmp_path / "tickets.keys").write_text("garbage\n")
    with pytest.raises(TlsError, match="line 1: not base64"):
        watched.refresh()
    assert len(watched.keys.keys) == 2  # the previous ring stays
    with pytest.raises(TlsError, match="cannot read ticket key file .*missing.keys: No such file"):
        load_ticket_keys(str(tmp_path / "missing.keys"))


# -- the shim, both twins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, twin", TWINS)
@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_ticket_resumes_on_another_context(name, twin, version, leaf, clients, tmp_path) -> None:
    ring = keys(1)
    worker_a, worker_b, stranger = server(leaf, tmp_path), server(leaf, tmp_path), server(leaf, tmp_path)
    twin.install_ticket_keys(worker_a, ring)
    twin.install_ticket_keys(worker_b, ring)
    client = clients[version]
    first = tlsgen.memory_handshake(client, worker_a)
    assert first.client.version() == version.name.replace("v", "v").replace("_", ".") and first.client.session.has_ticket
    assert resumes(client, worker_b, first.client.session)[0]
    assert resumes(client, worker_a, first.client.session)[0]
    # A context with OpenSSL's own random key (a worker without the key file) cannot.
    assert not resumes(client, stranger, first.client.session)[0]
    assert twin.ticket_key_names(worker_b) == (ring[0][:16],)
    assert twin.ticket_key_names(stranger) == ()


@pytest.mark.parametrize("name, twin", TWINS)
@pytest.mark.parametrize("version", [TLS13, TLS12])
@pytest.mark.parametrize("size", [80, 48])
def test_rotation_keeps_old_tickets_and_renews_them(name, twin, version, size, leaf, clients, tmp_path) -> None:
    old, new = keys(2, size)
    before, rotated, only_new = server(leaf, tmp_path), server(leaf, tmp_path), server(leaf, tmp_path)
    twin.install_ticket_keys(before, [old])
    twin.install_ticket_keys(rotated, [old])
    twin.install_ticket_keys(only_new, [new])
    client = clients[version]
    ticket = tlsgen.memory_handshake(client, before).client.session
    twin.install_ticket_keys(rotated, [old, new])  # rotation, live, on the same context
    assert twin.ticket_key_names(rotated) == (old[:16], new[:16])
    assert not resumes(client, only_new, ticket)[0]  # the old key is needed to read it...
    reused, renewed = resumes(client, rotated, ticket)  # ...and the ring still has it
    assert reused
    assert resumes(client, only_new, renewed)[0]  # the renewed ticket is under the newest key


@pytest.mark.parametrize("name, twin", TWINS)
@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_every_reconnection_resumes_with_the_last_session(name, twin, version, leaf, clients, tmp_path) -> None:
    # A client that reconnects with the session of its last connection (wrk, browsers):
    # TLS 1.3 clients use a ticket once, so a resumed handshake must hand out a new
    # ticket, or every other reconnection is a full handshake.
    ring = keys(1)
    a, b = server(leaf, tmp_path), server(leaf, tmp_path)
    twin.install_ticket_keys(a, ring)
    twin.install_ticket_keys(b, ring)
    client = clients[version]
    session = tlsgen.memory_handshake(client, a).client.session
    for context in (a, b, a, b, a):
        reused, renewed = resumes(client, context, session)
        assert reused
        if version is TLS13:  # a new ticket came (a TLS 1.3 client names a session by its ticket's hash)
            assert renewed.has_ticket and renewed.id != session.id
        session = renewed


@pytest.mark.skipif(len(TWINS) < 2, reason="the compiled twin is not built")
@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_twins_agree(version, leaf, clients, tmp_path) -> None:
    ring = keys(3)
    pure, compiled = server(leaf, tmp_path), server(leaf, tmp_path)
    sslctx.IMPLEMENTATIONS["pure"].install_ticket_keys(pure, ring)
    sslctx.IMPLEMENTATIONS["compiled"].install_ticket_keys(compiled, ring)
    client = clients[version]
    assert resumes(client, compiled, tlsgen.memory_handshake(client, pure).client.session)[0]
    assert resumes(client, pure, tlsgen.memory_handshake(client, compiled).client.session)[0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([48, 80, 10, 81]), min_size=0, max_size=5), st.booleans())
def test_twins_check_and_name_alike(sizes, duplicate) -> None:
    ring = [os.urandom(size) for size in sizes]
    if duplicate and ring:
        ring.append(ring[0])
    outcomes = []
    for _, twin in TWINS:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            twin.install_ticket_keys(context, ring)
            outcomes.append(("ok", twin.ticket_key_names(context)))
        except ValueError as exc:
            outcomes.append(("error", str(exc)))
    assert all(outcome == outcomes[0] for outcome in outcomes)
    if outcomes[0][0] == "ok":
        assert outcomes[0][1] == tuple(key[:16] for key in ring)


def test_selector_and_pointer_checks() -> None:
    assert sslctx.IMPLEMENTATION in sslctx.IMPLEMENTATIONS
    assert sslctx.unavailable_reason() is None
    assert sslctx.library_version() == ssl.OPENSSL_VERSION
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pointer = _libssl.ssl_ctx_pointer(context)
    assert pointer and _libssl.load().SSL_CTX_get_options(pointer) == context.options
    with pytest.raises(TypeError):
        _libssl.ssl_ctx_pointer(object())  # type: ignore[arg-type]
    sslctx.set_session_cache_size(context, 100)
    assert sslctx.session_cache_size(context) == 100
    sslctx.set_session_cache_size(context, 0)
    assert sslctx.session_cache_size(context) == 0
    with pytest.raises(ValueError):
        sslctx.set_groups(context, "NOPE-999")
    with pytest.raises(ValueError):
        sslctx.set_ciphersuites(context, "TLS_NOT_A_SUITE")


def test_refuses_a_different_libssl(monkeypatch) -> None:
    monkeypatch.setattr(ssl, "OPENSSL_VERSION", "OpenSSL 9.9.9 1 Jan 2099")
    with pytest.raises(_libssl.OpenSSLUnavailable, match=r"is not the one Python's ssl module uses \(OpenSSL 9.9.9"):
        _libssl._bind(_libssl._open())


def test_unavailable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(_libssl, "_lib", None)
    monkeypatch.setattr(_libssl, "_error", "simulated: no libssl")
    assert sslctx.unavailable_reason() == "simulated: no libssl"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TlsError, match="^cannot set session ticket keys: simulated: no libssl$"):
        install_ticket_keys(context, TicketKeys(tuple(keys(1))))


# -- through the Spec: tickets shared, rotated, or off --------------------------------------------------


def _spec(tmp_path, leaf, **tls) -> tuple[object, str]:
    tlsgen.write_pair(tmp_path / "certs", "www", leaf)
    data = {
        "listeners": [{"name": "web-tls", "bind": "127.0.0.1:8443", "protocol": "https", "default_pool": "www",
                       "tls": {"certificates": [{"cert": "certs/www.pem", "key": "certs/www.key"}], **tls}}],
        "pools": [{"name": "www", "members": [{"name": "w1", "address": "127.0.0.1:9001"}]}],
    }
    return parse_spec(data), str(tmp_path)


@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_two_workers_share_tickets_through_the_spec(version, leaf, clients, tmp_path) -> None:
    tlsgen.write_ticket_keys(tmp_path / "tickets.keys", [tlsgen.ticket_key_line()])
    spec, base = _spec(tmp_path, leaf, ticket_keys="tickets.keys")
    worker_a, _ = compile_tls(spec, base)  # each worker compiles the revision itself
    worker_b, _ = compile_tls(spec, base)
    a, b = worker_a.listeners["web-tls"].context, worker_b.listeners["web-tls"].context
    assert a is not b
    client = clients[version]
    ticket = tlsgen.memory_handshake(client, a).client.session
    assert resumes(client, b, ticket)[0]
    # Rotation without restart: a key is appended; both workers pick it up.
    lines = open(tmp_path / "tickets.keys").read().split()
    tlsgen.write_ticket_keys(tmp_path / "tickets.keys", lines + [tlsgen.ticket_key_line()])
    os.utime(tmp_path / "tickets.keys", ns=(1, 1))  # a distinct mtime whatever the clock's resolution
    assert worker_a.refresh_ticket_keys() == [] and worker_b.refresh_ticket_keys() == []
    assert len(sslctx.ticket_key_names(a)) == 2
    reused, renewed = resumes(client, b, ticket)  # the old ticket still resumes
    assert reused
    only_new = server(leaf, tmp_path)
    sslctx.install_ticket_keys(only_new, [base64.b64decode(open(tmp_path / "tickets.keys").read().split()[-1])])
    assert resumes(client, only_new, renewed)[0]
    # A bad file keeps the running ring and says so.
    (tmp_path / "tickets.keys").write_text("oops!\n")
    issues = worker_a.refresh_ticket_keys()
    assert [str(i) for i in issues] == [f"ticket key file {tmp_path}/tickets.keys line 1: not base64"]
    assert resumes(client, a, renewed)[0]


@pytest.mark.parametrize("version", [TLS13, TLS12])
def test_full_handshake_mode_resumes_nothing(version, leaf, clients, tmp_path) -> None:
    spec, base = _spec(tmp_path, leaf, session_tickets=False, session_cache=0)
    compiled, _ = compile_tls(spec, base)
    context = compiled.listeners["web-tls"].context
    client = clients[version]
    first = tlsgen.memory_handshake(client, context)
    first.close()
    assert not first.client.session.has_ticket
    assert not resumes(client, context, first.client.session)[0]  # not even on the same context


def test_tickets_off_alone_still_allows_session_ids_on_one_worker(leaf, clients, tmp_path) -> None:
    spec, base = _spec(tmp_path, leaf, session_tickets=False)
    one, _ = compile_tls(spec, base)
    two, _ = compile_tls(spec, base)
    client = clients[TLS12]
    first = tlsgen.memory_handshake(client, one.listeners["web-tls"].context)
    session = first.client.session
    first.close()  # a clean close keeps the session in the server's cache
    assert not session.has_ticket
    assert resumes(client, one.listeners["web-tls"].context, session)[0]  # its own session cache
    assert not resumes(client, two.listeners["web-tls"].context, session)[0]  # another worker: no
    # TLS 1.3 sends no ticket at all.
    assert not tlsgen.memory_handshake(clients[TLS13], one.listeners["web-tls"].context).client.session.has_ticket


def test_ticket_key_file_errors_carry_the_spec_path(leaf, tmp_path) -> None:
    spec, base = _spec(tmp_path, leaf, ticket_keys="nope.keys")
    with pytest.raises(TlsError) as caught:
        compile_tls(spec, base)
    assert str(caught.value) == (f"listeners[web-tls].tls.ticket_keys: cannot read ticket key file "
                                 f"{tmp_path}/nope.keys: No such file or directory")


def test_every_context_of_a_listener_gets_the_ring(ca, leaf, clients, tmp_path) -> None:
    """SNI moves a connection to another context; tickets must still work there."""
    other = tlsgen.issue(ca, ["api.example.com"], slot=3)
    certificates = [parse_certificate(c.pem, c.key_pem())[0] for c in (leaf, other)]
    store, _ = build_cert_store(certificates, 0)
    spec, _ = _spec(tmp_path, leaf)
    listener = spec.listener("web-tls")  # type: ignore[attr-defined]
    ring = TicketKeys(tuple(keys(1)))
    one = build_server_contexts(listener, store, ticket_keys=ring)
    two = build_server_contexts(listener, store, ticket_keys=ring)
    assert all(sslctx.ticket_key_names(c) == (ring.keys[0][:16],) for c in one.contexts)
    client = clients[TLS13]
    ticket = tlsgen.memory_handshake(client, one.context, "api.example.com").client.session
    done = tlsgen.memory_handshake(client, two.context, "api.example.com", session=ticket)
    assert done.client.session_reused
    assert done.peer_cert.subject.rfc4514_string() == "CN=api.example.com"
