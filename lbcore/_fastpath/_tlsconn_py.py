"""Server-side TLS over a plain TCP transport: the reference twin of ``_tlsconn``.

An https listener's server hands every accepted connection to a ``TlsConnection``:
to the event loop it is the protocol of a plain TCP transport; to the engine's
protocol (``ClientConnection``) it is the transport, carrying plaintext. It
terminates TLS on memory buffers: ciphertext in from ``data_received``, out through
the TCP transport's ``write``.

Why not the loop's own TLS (``create_server(ssl=...)``): uvloop's ``SSLProtocol``
drives Python's ``ssl.SSLObject``: Python frames around every OpenSSL call, an
``SSLWantReadError`` built and caught several times per handshake. With the
compiled twin instead, a resumed handshake costs lbcore 92 µs of interpreter time
against 154 (``bench/results/perf-tls-resumed.md``).
The compiled twin (``_tlsconn.pyx``) drives the same ``SSL_CTX`` through OpenSSL's
C API instead; this twin does it through ``ssl.SSLObject`` and is the reference
for what the compiled one must do.

Behaviour, the same in both twins:

- Handshake: ``TlsServer(contexts, lookup, default_index, handshake_timeout, loop,
  on_failed=None)``;
  the ClientHello's server name picks ``contexts[lookup(name)]`` (SNI; ``lookup``
  gets None without one) and is kept, lower case without a trailing dot, as
  ``lbcore_sni``. ``lookup`` must answer a name the same way for the server's
  life: the compiled twin asks it once per name and remembers the answer (up to
  ``_tlsconn.SNI_CHOICES`` names at a time); a name it fails for is asked again.
  A handshake that fails or does not finish in ``handshake_timeout`` closes the
  connection (OpenSSL's alert is sent first); the engine's protocol then never
  sees ``connection_made``, and ``on_failed()``
  is called once the connection is gone (any connection that ends before its
  handshake completed: refused, timed out, or the client left).
- Data: plaintext is delivered to ``data_received`` as it is decrypted, in
  batches of up to ``READ_BATCH`` bytes; ``pause_reading`` holds what is
  decrypted back until ``resume_reading``.
- ``close()``: after the buffered writes, a close_notify, then the write side is
  shut (FIN); the connection ends when the client closes its side or after
  ``SHUTDOWN_TIMEOUT``. Waiting for the client's end instead of closing at once
  keeps the kernel from resetting the connection (and dropping the response's
  tail on the client's side) when the client sent something not read yet.
- The client's close_notify or a TCP EOF: ``eof_received`` on the engine's
  protocol; unless it returns true (a response still to finish), ``close()``.
- ``get_extra_info("ssl_object")`` is the connection itself: ``session_reused``
  (also as a method, ``resumed()``), ``lbcore_sni``, ``version()``, ``cipher()``,
  ``selected_alpn_protocol()``, ``getpeercert(binary_form=True)``, ``context``. Other names go to the TCP
  transport (``peername``, ``sockname``, ``socket``).
- An error someone else left in the thread's OpenSSL error queue (which OpenSSL's
  SSL_get_error reads to tell "want more bytes" from a failure) fails no handshake,
  read or write: the queue is emptied before each, when it holds one. Python's ssl
  does not do it itself; this twin does it through ``_libssl`` when that loads.
- ``direct_socket`` (``TlsServer``'s last argument, optional): called with each TCP
  transport, it returns the transport's socket when the connection may write to it
  directly (``lbcore.proxy.flow.direct_socket``: a uvloop TCP transport), else None.
  The compiled twin then writes its ciphertext straight to that socket while the
  transport holds nothing of it, the rest through the transport after it (in
  order); this twin writes through the transport. Both answer
  ``get_extra_info("socket")`` with that socket.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Callable, Sequence

from lbcore._fastpath import _libssl

__all__ = ["IMPLEMENTATION", "READ_BATCH", "SHUTDOWN_TIMEOUT", "TlsConnection", "TlsServer", "check_contexts"]

IMPLEMENTATION = "pure"


def _openssl_errors() -> Any:
    """The ctypes library that empties the error queue; None when it does not load
    (then nothing is cleared: Python's ssl as it is)."""
    try:
        return _libssl.load()
    except _libssl.OpenSSLUnavailable:
        return None


_ERRORS = _openssl_errors()


def _clear_errors() -> None:
    """Empty this thread's OpenSSL error queue when it holds an error (see the module
    docstring); the compiled twin's ``_clear_errors``."""
    if _ERRORS is not None and _ERRORS.ERR_peek_error():
        _ERRORS.ERR_clear_error()
READ_BATCH = 65536  # plaintext bytes handed to data_received at most at once
SHUTDOWN_TIMEOUT = 5.0  # seconds a closed connection waits for the client's end

log = logging.getLogger("lbcore.tls")

_HANDSHAKE, _OPEN, _SHUTDOWN, _CLOSED = range(4)


def check_contexts(contexts: Sequence[ssl.SSLContext]) -> None:
    """ValueError for a context that would call one of CPython's per-connection
    callbacks (key log, message callback): those take an SSL's app data for their
    SSLSocket, and the compiled twin's SSLs have none. Both twins refuse them."""
    for context in contexts:
        if context.keylog_filename or getattr(context, "_msg_callback", None) is not None:
            raise ValueError("a context with keylog_filename or _msg_callback cannot serve lbcore's TLS layer")


class TlsServer:
    """One https listener's TLS for one revision: its contexts and SNI choice."""

    __slots__ = ("contexts", "lookup", "default", "handshake_timeout", "loop", "on_failed", "direct_socket")

    def __init__(self, contexts: Sequence[ssl.SSLContext], lookup: Callable[[str | None], int], default_index: int,
                 handshake_timeout: float, loop: Any, on_failed: Callable[[], None] | None = None,
                 direct_socket: Callable[[Any], Any] | None = None) -> None:
        self.loop = loop
        self.on_failed = on_failed
        self.direct_socket = direct_socket
        self.contexts = tuple(contexts)
        check_contexts(self.contexts)
        self.lookup = lookup
        self.default = self.contexts[default_index]
        self.handshake_timeout = handshake_timeout

    def install_callbacks(self) -> None:
        """The SNI choice on every context (a HelloRetryRequest asks the switched-to one
        again), whatever was set on them since."""
        for context in self.contexts:
            context.sni_callback = self._select

    def connection(self, app: Any) -> "TlsConnection":
        """The protocol for the loop's next accepted TCP connection, carrying ``app``."""
        return TlsConnection(self, app)

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
        sslobj.lbcore_sni = server_name.lower().rstrip(".") if server_name else None  # type: ignore[attr-defined]
        sslobj.context = self.contexts[self.lookup(server_name)]


class TlsConnection:
    """Protocol of the TCP transport below, transport of the engine's protocol above."""

    __slots__ = ("server", "app", "tcp", "state", "app_made", "reading", "timer", "lbcore_sni",
                 "handshaken", "eof_seen", "tcp_eof", "eof_delivered", "shutdown_buffered", "_in", "_out", "_sslobj",
                 "_sock")

    def __init__(self, server: TlsServer, app: Any) -> None:
        self.server = server
        self.app = app
        self.tcp: Any = None
        self.state = _HANDSHAKE
        self.app_made = False
        self.handshaken = False
        self.eof_seen = False  # the client's close_notify or TCP FIN: nothing more will come
        self.tcp_eof = False  # the TCP FIN itself: the client's side is shut
        self.eof_delivered = False  # the engine was told (once)
        self.shutdown_buffered = 0  # write buffer when the shutdown timer was last armed
        self.reading = True
        self.timer: Any = None
        self.lbcore_sni: str | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._sslobj: ssl.SSLObject | None = None
        self._sock: Any = None  # the TCP transport's socket, when direct_socket gave it

    # -- protocol of the TCP transport ---------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.tcp = transport
        server = self.server
        if server.direct_socket is not None:
            self._sock = server.direct_socket(transport)
        self._sslobj = server.default.wrap_bio(self._in, self._out, server_side=True)
        self.timer = server.loop.call_later(server.handshake_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        state = self.state
        if state == _HANDSHAKE:
            self._handshake()
        elif state == _OPEN:
            self._read()
        elif state == _SHUTDOWN:
            self._read_shutdown()

    def eof_received(self) -> bool:
        self.tcp_eof = True
        if self.state == _OPEN:
            self.eof_seen = True
            self._read()  # what came with the FIN, then the EOF (once reading and drained)
            return True  # the transport stays open for our writes; close() ends it
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self._cancel_timer()
        if self.app_made:
            self.app_made = False
            self.app.connection_lost(exc)
        elif not self.handshaken and self.server.on_failed is not None:
            self.server.on_failed()
        self.app = None

    def pause_writing(self) -> None:
        if self.app_made:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app_made:
            self.app.resume_writing()

    # -- transport of the engine's protocol ---------------------------------------------
    def write(self, data: bytes) -> None:
        if self._encrypt(data):
            self._flush()

    def write_last(self, data: bytes) -> None:
        """The connection's last bytes, then close(): their records and the close_notify
        go to the socket in one write, not two."""
        if self._encrypt(data):
            self.close()

    def _encrypt(self, data: bytes) -> bool:
        """``data`` as records into the outgoing buffer, unsent; false if nothing is to be sent."""
        if self.state != _OPEN:
            return False
        if not data:
            return True
        assert self._sslobj is not None
        _clear_errors()
        try:
            self._sslobj.write(data)
        except ssl.SSLError as exc:
            self._failed(exc)
            return False
        return True

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        if self.state == _OPEN:
            self.state = _SHUTDOWN
            _clear_errors()
            try:
                self._sslobj.unwrap()  # type: ignore[union-attr]
            except ssl.SSLWantReadError:  # the close_notify went out; the client's is not awaited
                pass
            except ssl.SSLError:
                pass
            self._flush()
            self._cancel_timer()
            tcp = self.tcp
            if self.tcp_eof:  # the client's side is shut already: nothing to wait for
                tcp.close()
                return
            if tcp.can_write_eof():
                tcp.write_eof()
            if not self.reading:  # the engine had paused: the client's end must be read now
                tcp.resume_reading()
            self.shutdown_buffered = tcp.get_write_buffer_size()
            self.timer = self.server.loop.call_later(SHUTDOWN_TIMEOUT, self._shutdown_timeout)
        elif self.state == _HANDSHAKE:
            self.abort()

    def _shutdown_timeout(self) -> None:
        """The client has not closed its side: abort, unless the response is still
        draining to it (a slow reader), as long as it keeps draining."""
        self.timer = None
        buffered = self.tcp.get_write_buffer_size() if self.tcp is not None else 0
        if self.state == _SHUTDOWN and 0 < buffered < self.shutdown_buffered:
            self.shutdown_buffered = buffered
            self.timer = self.server.loop.call_later(SHUTDOWN_TIMEOUT, self._shutdown_timeout)
            return
        self.abort()

    def abort(self) -> None:
        if self.state != _CLOSED:
            self.state = _CLOSED
            self._cancel_timer()
            if self.tcp is not None:
                self.tcp.abort()

    def is_closing(self) -> bool:
        return self.state != _OPEN or self.tcp.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self
        if name == "sslcontext":
            return self.context
        if name == "socket" and self._sock is not None:
            return self._sock
        return self.tcp.get_extra_info(name, default) if self.tcp is not None else default

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.tcp.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            self.tcp.resume_reading()
            if self.state == _OPEN:
                self.server.loop.call_soon(self._read)  # what was decrypted and held back

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return self.tcp.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.tcp.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.tcp.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot half-close")

    def get_protocol(self) -> Any:
        return self.app

    def set_protocol(self, protocol: Any) -> None:
        self.app = protocol

    # -- ssl_object ---------------------------------------------------------------------
    @property
    def session_reused(self) -> bool:
        return bool(self._sslobj is not None and self._sslobj.session_reused)

    def resumed(self) -> bool:
        """``session_reused``, as a method (the compiled engine's C call to its twin)."""
        return self.session_reused

    @property
    def context(self) -> ssl.SSLContext | None:
        return self._sslobj.context if self._sslobj is not None else None

    def version(self) -> str | None:
        return self._sslobj.version() if self._sslobj is not None else None

    def cipher(self) -> tuple[str, str, int] | None:
        return self._sslobj.cipher() if self._sslobj is not None else None

    def selected_alpn_protocol(self) -> str | None:
        return self._sslobj.selected_alpn_protocol() if self._sslobj is not None else None

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        if not binary_form:
            raise ValueError("only getpeercert(binary_form=True) is supported")
        if self._sslobj is None or self.state == _HANDSHAKE:
            return None
        return self._sslobj.getpeercert(binary_form=True)

    # -- inside -------------------------------------------------------------------------
    def _handshake(self) -> None:
        sslobj = self._sslobj
        assert sslobj is not None
        # The SNI choice is this connection's server's: installed on every context
        # before each step, whatever was set there since.
        self.server.install_callbacks()
        _clear_errors()
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._failed(exc)
            return
        self._flush()  # the server's Finished and session tickets
        self.state = _OPEN
        self._cancel_timer()
        self.lbcore_sni = getattr(sslobj, "lbcore_sni", None)
        self.handshaken = self.app_made = True
        self.app.connection_made(self)
        if self.state == _OPEN:
            self._read()  # a request that came with the client's Finished

    def _read(self) -> None:
        sslobj = self._sslobj
        assert sslobj is not None
        while self.reading and self.state == _OPEN:
            _clear_errors()  # the engine's code ran since the last batch
            chunks = []
            size = 0
            eof = False
            while size < READ_BATCH:
                try:
                    data = sslobj.read(READ_BATCH - size)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    eof = True
                    break
                except ssl.SSLError as exc:
                    self._failed(exc)
                    return
                if not data:
                    eof = True
                    break
                chunks.append(data)
                size += len(data)
            self._flush()  # a key update or a post-handshake message may want an answer
            if eof:
                self.eof_seen = True
            if chunks:
                self.app.data_received(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            if eof or size < READ_BATCH:  # drained
                if self.eof_seen:
                    self._deliver_eof()
                return

    def _deliver_eof(self) -> None:
        """Tell the engine, once, when it reads and nothing decrypted is held back."""
        if self.eof_delivered or not self.reading or self.state != _OPEN:
            return
        self.eof_delivered = True
        if not self.app.eof_received():
            self.close()

    def _read_shutdown(self) -> None:
        """After our close_notify: drop application data, end on the client's close_notify."""
        sslobj = self._sslobj
        assert sslobj is not None
        _clear_errors()
        while True:
            try:
                if not sslobj.read(READ_BATCH):
                    break
            except ssl.SSLWantReadError:
                return
            except ssl.SSLError:
                break
        self.tcp.close()

    def _flush(self) -> None:
        out = self._out
        if out.pending:
            self.tcp.write(out.read())

    def _failed(self, exc: BaseException) -> None:
        log.debug("TLS connection from %s: %s", self.get_extra_info("peername"), exc)
        self._flush()  # the alert, so the client learns why
        self.state = _CLOSED
        self._cancel_timer()
        self.tcp.close()

    def _handshake_timeout(self) -> None:
        self.timer = None
        log.debug("TLS handshake from %s timed out", self.get_extra_info("peername"))
        self.abort()

    def _cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
