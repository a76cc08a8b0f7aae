"""lbcore._fastpath.tlsconn: server-side TLS over a TCP transport, both twins.

Each test runs the pure twin (``_tlsconn_py``: ssl.SSLObject) and the compiled one
(``_tlsconn``: OpenSSL's C API) against a real TLS client (an ``ssl.SSLObject`` on
memory BIOs) through an in-memory TCP transport, and checks what the engine's
protocol above sees. The hypothesis test gives both twins the same client traffic,
cut at the same places, and checks they hand the engine the same events.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import ssl

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbcore._fastpath import _libssl, tlsconn
from tests import tlsgen
from tests.sockets import read_available

TWINS = sorted(tlsconn.IMPLEMENTATIONS)
NAMES = ("www.example.com", "api.example.com")


class Tcp:
    """The loop's TCP transport, in memory: what the TLS layer writes is kept."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.writes = 0
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.eof_written, "write after close"
        self.out += data
        self.writes += 1

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return len(self.out)

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000)}.get(name, default)


class App:
    """The engine's protocol: records what it is told."""

    def __init__(self, *, pause_on_data: bool = False, keep_open: bool = False) -> None:
        self.events: list[tuple] = []
        self.transport = None
        self.pause_on_data = pause_on_data
        self.keep_open = keep_open

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append(("made",))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        if self.pause_on_data:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.events.append(("eof",))
        return self.keep_open

    def connection_lost(self, exc) -> None:
        self.events.append(("lost", exc))

    def received(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tlsconn")
    ca = tlsgen.make_ca()
    contexts = []
    for index, name in enumerate(NAMES):
        leaf = tlsgen.issue(ca, [name], key_type="ecdsa", slot=index)
        cert, key = tlsgen.write_pair(directory, name, leaf)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        contexts.append(context)
    client_ca = tlsgen.make_ca("client CA", slot=3)
    client_leaf = tlsgen.issue(client_ca, [], common_name="alice", key_type="ecdsa", client=True, slot=4)
    client_files = tlsgen.write_pair(directory, "alice", client_leaf)
    return {"ca": ca, "contexts": contexts, "client_ca": client_ca, "client_leaf": client_leaf,
            "client_files": client_files}


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def lookup(name: str | None) -> int:
    return NAMES.index(name) if name in NAMES else 0


class Pair:
    """One TlsConnection of a twin and a real TLS client, wired through ``Tcp``."""

    def __init__(self, twin: str, pki, loop, *, sni: str | None = "www.example.com", app: App | None = None,
                 client: ssl.SSLContext | None = None, contexts=None, server=None) -> None:
        impl = tlsconn.IMPLEMENTATIONS[twin]
        self.failed = 0
        self.server = server or impl.TlsServer(contexts or pki["contexts"], lookup, 0, 10.0, loop, self.count_failure)
        self.loop = loop
        self.app = app or App()
        self.tcp = Tcp()
        self.conn = self.server.connection(self.app)
        self.conn.connection_made(self.tcp)
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = client or tlsgen.client_context(pki["ca"])
        if sni is None:
            context.check_hostname = False
        self.client = context.wrap_bio(self.c_in, self.c_out, server_hostname=sni)

    def count_failure(self) -> None:
        self.failed += 1

    def pump(self, cuts: int = 1) -> None:
        """Client bytes to the server (in ``cuts`` pieces), then the server's back."""
        data = self.c_out.read()
        if data:
            step = max(1, -(-len(data) // cuts))
            for start in range(0, len(data), step):
                self.conn.data_received(data[start:start + step])
        out = self.tcp.take()
        if out:
            self.c_in.write(out)

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.client.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self.pump()
            if done:
                return
        raise AssertionError("no handshake")

    def send(self, data: bytes, cuts: int = 1) -> None:
        self.client.write(data)
        self.pump(cuts)

    def recv(self) -> bytes:
        """What the client can read now; ``closed`` says whether a close_notify ended it."""
        chunks = []
        self.closed = False
        while True:
            try:
                chunk = self.client.read(65536)
            except ssl.SSLWantReadError:
                break
            if not chunk:  # the server's close_notify
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def client_closes(self) -> None:
        """The client sends its close_notify (its answer to ours, or its own first),
        and the server gets it."""
        try:
            self.client.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.pump()

    def tick(self) -> None:
        """Run what the layer scheduled with call_soon."""
        self.loop.run_until_complete(asyncio.sleep(0))


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("name", NAMES)
def test_sni_picks_the_certificate_and_data_flows_both_ways(twin, pki, loop, name):
    pair = Pair(twin, pki, loop, sni=name)
    pair.handshake()  # the client checks the certificate is for ``name``
    assert pair.app.events == [("made",)]
    transport = pair.app.transport
    assert transport is pair.conn
    ssl_object = transport.get_extra_info("ssl_object")
    assert ssl_object.lbcore_sni == name
    assert ssl_object.session_reused is False
    assert ssl_object.version() == "TLSv1.3"
    assert ssl_object.cipher()[1] == "TLSv1.3"
    assert transport.get_extra_info("peername") == ("127.0.0.1", 40000)
    assert transport.get_extra_info("sslcontext") is pki["contexts"][NAMES.index(name)]
    served = x509.load_der_x509_certificate(pair.client.getpeercert(binary_form=True))
    assert served.subject.rfc4514_string() == f"CN={name}"
    pair.send(b"GET / HTTP/1.1\r\n\r\n")
    assert pair.app.received() == b"GET / HTTP/1.1\r\n\r\n"
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    pair.pump()
    assert pair.recv() == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.parametrize("twin", TWINS)
def test_no_sni_gets_the_default_context(twin, pki, loop):
    pair = Pair(twin, pki, loop, sni=None, client=tlsgen.client_context(None))
    pair.handshake()
    assert pair.conn.get_extra_info("ssl_object").lbcore_sni is None
    assert pair.conn.get_extra_info("sslcontext") is pki["contexts"][0]


@pytest.mark.parametrize("twin", TWINS)
def test_a_python_sni_callback_set_later_is_not_what_answers(twin, pki, loop):
    # Something sets sni_callback on the default context after the server was made
    # (a kept context, a reload): the layer's own choice still answers.
    calls = []
    pair = Pair(twin, pki, loop, sni="api.example.com")
    pki["contexts"][0].sni_callback = lambda *args: calls.append(args)
    try:
        pair.handshake()
    finally:
        pki["contexts"][0].sni_callback = None
    assert calls == []
    assert pair.conn.get_extra_info("ssl_object").lbcore_sni == "api.example.com"


@pytest.mark.parametrize("twin", TWINS)
def test_close_sends_close_notify_then_fin_and_ends_on_the_clients(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.conn.write(b"bye")
    pair.conn.close()
    assert pair.conn.is_closing()
    assert pair.tcp.eof_written and not pair.tcp.closed  # waits for the client's end
    pair.conn.write(b"ignored after close")
    pair.pump()
    assert pair.recv() == b"bye"
    assert pair.closed
    pair.client_closes()
    assert pair.tcp.closed and not pair.tcp.aborted
    pair.conn.connection_lost(None)
    assert pair.app.events[-1] == ("lost", None)
    assert pair.failed == 0


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("data", [b"the response's last bytes", b""])
def test_write_last_sends_its_records_and_the_close_notify_in_one_write_then_shuts(twin, pki, loop, data):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.send(b"request")
    writes = pair.tcp.writes
    pair.conn.write_last(data)
    assert pair.tcp.writes == writes + 1
    assert pair.conn.is_closing()
    assert pair.tcp.eof_written and not pair.tcp.closed  # waits for the client's end, as close() does
    pair.conn.close()  # the engine's own close after it: nothing more to do
    pair.conn.write_last(b"ignored")
    assert pair.tcp.writes == writes + 1
    pair.pump()
    assert pair.recv() == data
    assert pair.closed
    pair.client_closes()
    assert pair.tcp.closed and not pair.tcp.aborted
    assert pair.failed == 0


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("keep_open", [False, True])
def test_the_clients_close_notify_is_eof_for_the_engine(twin, pki, loop, keep_open):
    pair = Pair(twin, pki, loop, app=App(keep_open=keep_open))
    pair.handshake()
    pair.client.write(b"last words")
    pair.client_closes()
    assert pair.app.events[1:] == [("data", b"last words"), ("eof",)]
    # Unless the engine still has a response to finish, the layer closes.
    assert pair.tcp.eof_written is (not keep_open)


@pytest.mark.parametrize("twin", TWINS)
def test_tcp_eof_mid_connection_is_eof_for_the_engine_and_closes_at_once(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    assert pair.conn.eof_received() is True  # the layer closes, after its close_notify
    assert pair.app.events == [("made",), ("eof",)]
    assert pair.tcp.closed and not pair.tcp.eof_written  # nothing to wait for: the client's side is shut
    pair.c_in.write(pair.tcp.take())
    assert pair.recv() == b"" and pair.closed


@pytest.mark.parametrize("twin", TWINS)
def test_eof_waits_for_data_held_back_by_a_pause_and_comes_once(twin, pki, loop):
    pair = Pair(twin, pki, loop, app=App(pause_on_data=True, keep_open=True))
    pair.handshake()
    body = bytes(range(256)) * 800  # 200 KiB: held back after the first batch
    pair.client.write(body)
    pair.client_closes()  # the client's close_notify right behind the data
    assert pair.conn.eof_received() is True  # and the TCP FIN
    assert ("eof",) not in pair.app.events
    while ("eof",) not in pair.app.events:
        count = len(pair.app.events)
        pair.conn.resume_reading()
        pair.tick()
        assert len(pair.app.events) > count
    assert pair.app.received() == body
    assert pair.app.events[-1] == ("eof",)
    pair.conn.resume_reading()
    pair.tick()
    assert pair.conn.eof_received() is True
    assert pair.app.events.count(("eof",)) == 1
    pair.conn.close()  # the engine finishes: the client's side is shut, so at once
    assert pair.tcp.closed


@pytest.mark.parametrize("twin", TWINS)
def test_close_while_paused_reads_the_clients_end(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.conn.pause_reading()
    pair.conn.close()
    assert not pair.tcp.paused


@pytest.mark.parametrize("twin", TWINS)
def test_the_shutdown_timer_waits_while_the_response_drains(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.conn.write(b"x" * 100_000)
    pair.conn.close()  # Tcp keeps what is written: its "write buffer"
    del pair.tcp.out[:50_000]  # the client reads some
    pair.conn._shutdown_timeout()
    assert not pair.tcp.aborted
    pair.conn._shutdown_timeout()  # no progress since
    assert pair.tcp.aborted


@pytest.mark.parametrize("twin", TWINS)
def test_contexts_with_per_connection_python_callbacks_are_refused(twin, pki, loop, tmp_path):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.keylog_filename = str(tmp_path / "keys.log")
    with pytest.raises(ValueError):
        tlsconn.IMPLEMENTATIONS[twin].TlsServer([context], lookup, 0, 10.0, loop)


@pytest.mark.parametrize("twin", TWINS)
def test_a_hello_retry_asks_our_sni_choice_again_not_pythons(twin, pki, loop, tmp_path):
    # Server groups P-256 only, the client's first key share X25519: a HelloRetryRequest,
    # after which OpenSSL calls the servername callback of the switched-to context.
    from lbcore._fastpath import sslctx

    contexts = []
    for index, name in enumerate(NAMES):
        cert, key = tlsgen.write_pair(tmp_path, name, tlsgen.issue(pki["ca"], [name], key_type="ecdsa", slot=index))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        sslctx.set_groups(context, "P-256")
        contexts.append(context)
    calls = []
    contexts[1].sni_callback = lambda *args: calls.append(args)
    pair = Pair(twin, pki, loop, sni="api.example.com", contexts=contexts)
    pair.handshake()
    assert calls == []
    assert pair.conn.get_extra_info("ssl_object").lbcore_sni == "api.example.com"


@pytest.mark.parametrize("twin", TWINS)
def test_paused_reading_holds_decrypted_data_until_resumed(twin, pki, loop):
    pair = Pair(twin, pki, loop, app=App(pause_on_data=True))
    pair.handshake()
    body = bytes(range(256)) * 600  # 150 KiB: more than one READ_BATCH
    pair.send(body)
    sizes = [len(e[1]) for e in pair.app.events if e[0] == "data"]
    assert sizes == [tlsconn.IMPLEMENTATIONS[twin].READ_BATCH]
    assert pair.tcp.paused
    while len(pair.app.received()) < len(body):
        count = len(pair.app.events)
        pair.conn.resume_reading()
        assert not pair.tcp.paused
        pair.tick()
        assert len(pair.app.events) == count + 1  # one batch, then paused again
    assert pair.app.received() == body


@pytest.mark.parametrize("twin", TWINS)
def test_a_failed_handshake_sends_the_alert_and_never_reaches_the_engine(twin, pki, loop):
    client = tlsgen.client_context(pki["ca"], maximum=ssl.TLSVersion.TLSv1_3)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    strict.maximum_version = ssl.TLSVersion.TLSv1_2  # no version in common with the client
    pair = Pair(twin, pki, loop, client=client, contexts=[strict])
    with pytest.raises(ssl.SSLError):
        pair.handshake()
    assert pair.tcp.closed and not pair.tcp.aborted
    assert pair.app.events == []
    assert pair.failed == 0  # counted once the connection is gone
    pair.conn.connection_lost(None)
    assert pair.app.events == []
    assert pair.failed == 1


@pytest.mark.parametrize("twin", TWINS)
def test_a_handshake_that_does_not_finish_in_time_is_aborted(twin, pki, loop):
    impl = tlsconn.IMPLEMENTATIONS[twin]
    failures = []
    server = impl.TlsServer(pki["contexts"], lookup, 0, 0.0, loop, lambda: failures.append(1))  # due at once
    app, tcp = App(), Tcp()
    conn = server.connection(app)
    conn.connection_made(tcp)
    assert not tcp.aborted
    loop.run_until_complete(asyncio.sleep(0))
    assert tcp.aborted
    conn.connection_lost(None)
    assert app.events == []
    assert failures == [1]


@pytest.mark.parametrize("twin", TWINS)
def test_only_the_handshakes_not_finished_by_their_deadline_are_aborted(twin, pki, loop):
    # One server's connections, all due at once: two finish their handshake before the
    # loop runs the timer (the first, the last), two do not (one of them in mid-flight).
    failures = []
    server = tlsconn.IMPLEMENTATIONS[twin].TlsServer(pki["contexts"], lookup, 0, 0.0, loop, lambda: failures.append(1))
    pairs = [Pair(twin, pki, loop, server=server) for _ in range(4)]
    pairs[0].handshake()
    with pytest.raises(ssl.SSLWantReadError):
        pairs[1].client.do_handshake()
    pairs[1].pump()  # the ClientHello in, the server's flight out: waiting for the client's Finished
    pairs[3].handshake()
    loop.run_until_complete(asyncio.sleep(0))
    assert [pair.tcp.aborted for pair in pairs] == [False, True, True, False]
    assert [pair.app.events for pair in pairs] == [[("made",)], [], [], [("made",)]]
    for pair in (pairs[0], pairs[3]):  # the two that got through still carry data
        pair.send(b"ping")
        assert pair.app.received() == b"ping"
    for pair in pairs:
        pair.conn.connection_lost(None)
    assert failures == [1, 1]


@pytest.mark.parametrize("twin", TWINS)
def test_a_connection_gone_before_its_deadline_is_not_touched_by_it(twin, pki, loop):
    server = tlsconn.IMPLEMENTATIONS[twin].TlsServer(pki["contexts"], lookup, 0, 0.0, loop)
    pair = Pair(twin, pki, loop, server=server)
    pair.conn.connection_lost(None)  # the client left before sending anything
    loop.run_until_complete(asyncio.sleep(0))
    assert not pair.tcp.aborted


@pytest.mark.parametrize("twin", TWINS)
def test_a_client_that_never_closes_its_side_is_aborted_after_the_shutdown_timeout(twin, pki, loop, monkeypatch):
    impl = tlsconn.IMPLEMENTATIONS[twin]
    monkeypatch.setattr(impl, "SHUTDOWN_TIMEOUT", 0.0)  # read when a server is made (compiled) or closes (pure)
    server = impl.TlsServer(pki["contexts"], lookup, 0, 10.0, loop)
    waits, answers = Pair(twin, pki, loop, server=server), Pair(twin, pki, loop, server=server)
    for pair in (waits, answers):
        pair.handshake()
        pair.conn.close()
        assert pair.tcp.eof_written and not pair.tcp.aborted
    answers.pump()
    answers.conn.connection_lost(None)  # its client closed: gone before the deadline
    loop.run_until_complete(asyncio.sleep(0))
    assert waits.tcp.aborted
    assert not answers.tcp.aborted


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # CPython's ssl reports it
@pytest.mark.parametrize("twin", TWINS)
def test_the_certificate_choice_is_right_for_each_name_again_and_a_failed_one_is_asked_again(twin, pki, loop,
                                                                                              monkeypatch):
    # The compiled twin remembers each name's choice (SNI_CHOICES names at a time, here
    # 2, so that the third name empties its memory): the choices must stay right.
    impl = tlsconn.IMPLEMENTATIONS[twin]
    monkeypatch.setattr(impl, "SNI_CHOICES", 2, raising=False)
    asked = []
    fail_next = {"WWW.example.com."}

    def choose(name: str | None) -> int:
        asked.append(name)
        if name in fail_next:
            fail_next.discard(name)
            raise LookupError(name)
        return lookup(name.lower().rstrip(".") if name else name)

    server = impl.TlsServer(pki["contexts"], choose, 0, 10.0, loop)
    sent = ["WWW.example.com.", "WWW.example.com.", "WWW.example.com.", "api.example.com", "api.example.com", None,
            "www.example.com", "api.example.com", "WWW.example.com.", "unknown.example.com", "api.example.com"]
    served = []
    for name in sent:
        pair = Pair(twin, pki, loop, server=server, sni=name, client=tlsgen.client_context(None))
        try:
            pair.handshake()
        except ssl.SSLError:
            served.append("refused")
            continue
        ssl_object = pair.conn.get_extra_info("ssl_object")
        cert = x509.load_der_x509_certificate(pair.client.getpeercert(binary_form=True))
        served.append((ssl_object.lbcore_sni, cert.subject.rfc4514_string()))
    www, api = ("www.example.com", "CN=www.example.com"), ("api.example.com", "CN=api.example.com")
    assert served == [
        "refused",  # the lookup failed for it, once
        www, www, api, api, (None, "CN=www.example.com"), www, api, www,
        ("unknown.example.com", "CN=www.example.com"),
        api,
    ]
    if twin == "compiled":  # asked once per name while remembered; the failure was not
        assert asked == ["WWW.example.com.", "WWW.example.com.", "api.example.com", None, "www.example.com",
                         "api.example.com", "WWW.example.com.", "unknown.example.com", "api.example.com"]
    else:
        assert asked == sent


@pytest.mark.parametrize("twin", TWINS)
def test_a_client_leaving_mid_handshake_is_a_failure_and_eof_does_not_reach_the_engine(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    try:
        pair.client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    pair.pump()  # the ClientHello in, the server's flight out
    assert pair.conn.eof_received() is False
    pair.conn.connection_lost(None)
    assert pair.app.events == []
    assert pair.failed == 1


@pytest.mark.parametrize("twin", TWINS)
def test_the_client_certificate_is_there_in_der(twin, pki, loop):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*[str(p) for p in pki["client_files"]])  # any certificate will do here
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=pki["client_ca"].pem.decode())
    client = tlsgen.client_context(None)
    client.load_cert_chain(*pki["client_files"])
    pair = Pair(twin, pki, loop, sni=None, client=client, contexts=[server])
    pair.handshake()
    pair.send(b"x")  # TLS 1.3: the server has the client's certificate once its Finished is in
    assert pair.conn.get_extra_info("ssl_object").getpeercert(binary_form=True) == pki["client_leaf"].der
    with pytest.raises(ValueError):
        pair.conn.getpeercert()


@pytest.mark.parametrize("twin", TWINS)
def test_writes_after_abort_are_dropped(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.conn.abort()
    assert pair.tcp.aborted
    pair.conn.write(b"nothing")
    assert pair.tcp.take() == b""
    assert not pair.conn.can_write_eof()


@pytest.mark.skipif(len(TWINS) < 2, reason="the compiled twin is not built (test_fastpath fails for that in CI)")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=4),
    cuts=st.integers(min_value=1, max_value=7),
    pause=st.booleans(),
)
def test_both_twins_hand_the_engine_the_same_events(pki, messages, cuts, pause):
    seen = {}
    # The compiled twin twice: an app it calls by its bound method, and one it calls in C
    # (a compiled StreamProtocol, as the engine's connections are).
    for twin, app_type in (("pure", App), ("compiled", App), ("compiled-typed", typed_app())):
        loop = asyncio.new_event_loop()
        try:
            pair = Pair(twin.removesuffix("-typed"), pki, loop, app=app_type(pause_on_data=pause))
            pair.handshake()
            for number, size in enumerate(messages):
                pair.send(bytes([number % 256]) * size, cuts)
                while pause and not pair.conn.is_reading():
                    count = len(pair.app.events)
                    pair.conn.resume_reading()
                    pair.tick()
                    if len(pair.app.events) == count:
                        break
            pair.conn.write(b"response")
            pair.conn.close()
            pair.pump()
            assert pair.recv() == b"response" and pair.closed
            seen[twin] = [(e[0], len(e[1])) if e[0] == "data" else e for e in pair.app.events]
        finally:
            loop.close()
    assert seen["pure"] == seen["compiled"] == seen["compiled-typed"]
    assert sum(event[1] for event in seen["pure"] if event[0] == "data") == sum(messages)


def typed_app() -> type[App]:
    """An App that is a compiled StreamProtocol: the compiled twin calls its data_received
    in C (the engine's client connections are such protocols)."""
    from lbcore._fastpath import _streams

    class TypedApp(App, _streams.StreamProtocol):  # App first: its data_received is found
        pass

    return TypedApp


@pytest.mark.skipif(len(TWINS) < 2, reason="the compiled twin is not built (test_fastpath fails for that in CI)")
def test_set_protocol_hands_the_rest_to_the_new_app_typed_or_not(pki, loop):
    typed = typed_app()
    first = typed()
    pair = Pair("compiled", pki, loop, app=first)
    pair.handshake()
    pair.send(b"one")
    second = App()
    pair.conn.set_protocol(second)
    assert pair.conn.get_protocol() is second
    pair.send(b"two")
    third = typed()
    pair.conn.set_protocol(third)
    pair.send(b"three")
    assert (first.received(), second.received(), third.received()) == (b"one", b"two", b"three")



@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # CPython's ssl reports the name
@pytest.mark.parametrize("twin", TWINS)
def test_a_server_name_that_is_not_ascii_is_refused_with_internal_error(twin, pki, loop):
    # RFC 6066: HostName is ASCII. A ClientHello naming "\xc3\xa9w.example.com" (the same
    # length as www.example.com, so every length field stays right) gets a fatal
    # internal_error alert from both twins (what CPython's ssl sends), and is counted.
    pair = Pair(twin, pki, loop)
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.do_handshake()
    hello = pair.c_out.read()
    assert hello.count(b"www.example.com") == 1
    pair.conn.data_received(hello.replace(b"www.example.com", b"\xc3\xa9w.example.com"))
    out = pair.tcp.take()
    assert out[:1] == b"\x15" and out[-2:] == b"\x02\x50"  # an alert record: fatal, internal_error (80)
    assert pair.tcp.closed and pair.app.events == []
    pair.conn.connection_lost(None)
    assert pair.failed == 1 and pair.app.events == []


def failing_lookup(name: str | None) -> int:
    raise LookupError(f"no entry for {name!r}")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # CPython's ssl reports it
@pytest.mark.parametrize("twin", TWINS)
def test_a_failing_certificate_choice_is_refused_with_handshake_failure(twin, pki, loop):
    pair = Pair(twin, pki, loop)
    pair.server = tlsconn.IMPLEMENTATIONS[twin].TlsServer(pki["contexts"], failing_lookup, 0, 10.0, loop,
                                                          pair.count_failure)
    pair.conn = pair.server.connection(pair.app)
    pair.conn.connection_made(pair.tcp)
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.do_handshake()
    pair.conn.data_received(pair.c_out.read())
    out = pair.tcp.take()
    assert out[:1] == b"\x15" and out[-2:] == b"\x02\x28"  # an alert record: fatal, handshake_failure (40)
    assert pair.tcp.closed and pair.app.events == []
    pair.conn.connection_lost(None)
    assert pair.failed == 1


class SocketTcp(Tcp):
    """``Tcp`` over a real socket: what the layer sends it directly, the socket's peer
    receives; what it writes, the fake holds as unsent (``take`` drains it)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default=None):
        return self.sock if name == "socket" else super().get_extra_info(name, default)


@pytest.mark.parametrize("twin", TWINS)
def test_ciphertext_goes_to_the_socket_only_while_the_transport_holds_none(twin, pki, loop):
    """With ``direct_socket``, the compiled twin writes its records to the socket while
    the TCP transport holds nothing of them, and behind what it holds otherwise; the
    pure twin writes through the transport. Either way the client reads it all, in order."""
    server = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    sock.setblocking(False)
    peer.setblocking(False)
    try:
        pair = Pair(twin, pki, loop)
        tcp = SocketTcp(sock)
        pair.server = tlsconn.IMPLEMENTATIONS[twin].TlsServer(pki["contexts"], lookup, 0, 10.0, loop,
                                                              pair.count_failure, lambda transport: transport.sock)
        pair.conn = pair.server.connection(pair.app)
        pair.conn.connection_made(tcp)
        pair.tcp = tcp
        direct = twin == "compiled"

        def pump() -> None:  # the client's bytes in; the server's out, from the socket then the transport
            data = pair.c_out.read()
            if data:
                pair.conn.data_received(data)
            pair.c_in.write(read_available(peer) + tcp.take())

        for _ in range(10):
            try:
                pair.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        pump()
        assert pair.app.events == [("made",)]
        assert pair.conn.get_extra_info("socket") is sock
        big = bytes(range(256)) * 16384  # 4 MiB: more than the kernel takes at once
        pair.conn.write(big)
        sent = read_available(peer)
        assert (0 < len(sent) and tcp.get_write_buffer_size() > 0) if direct else sent == b""
        pair.conn.write(b"after")  # the kernel has room again, but the transport holds the rest
        assert read_available(peer) == b""
        pair.c_in.write(sent + tcp.take())
        assert pair.recv() == big + b"after"
        pair.conn.write(b"later")  # drained: straight to the socket again (compiled)
        sent = read_available(peer)
        assert (sent != b"" and tcp.take() == b"") if direct else sent == b""
        pair.c_in.write(sent + tcp.take())
        assert pair.recv() == b"later"
    finally:
        sock.close()
        peer.close()
        server.close()


def _leave_an_openssl_error() -> None:
    """Put an error in this thread's OpenSSL queue, as another user of the library
    (Python's ssl, a health check's TLS) can leave one behind."""
    lib = _libssl._open()
    lib.ERR_new()
    lib.ERR_set_error(20, 65, None)  # ERR_LIB_SSL, any reason, no text
    assert _openssl_errors_queued()


def _openssl_errors_queued() -> bool:
    lib = _libssl._open()
    lib.ERR_peek_error.restype = ctypes.c_ulong
    return lib.ERR_peek_error() != 0


@pytest.mark.parametrize("twin", TWINS)
def test_an_error_left_in_the_threads_openssl_queue_fails_no_read_or_write(twin, pki, loop):
    # SSL_get_error reads the thread's queue: an error left there by someone else
    # must not turn the layer's next "want read" into a failed connection.
    pair = Pair(twin, pki, loop)
    pair.handshake()
    pair.client.write(b"GET / HTTP/1.1\r\n\r\n")
    _leave_an_openssl_error()
    pair.pump()
    assert pair.app.received() == b"GET / HTTP/1.1\r\n\r\n"
    _leave_an_openssl_error()
    pair.conn.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert not pair.conn.is_closing() and pair.failed == 0
    assert not _openssl_errors_queued()
    pair.pump()
    assert pair.recv() == b"HTTP/1.1 200 OK\r\n\r\n"
    assert ("lost", None) not in pair.app.events and not any(e[0] == "lost" for e in pair.app.events)
