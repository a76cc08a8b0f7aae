"""A sans-IO reader of the TLS ClientHello, for routing without terminating TLS.

A tls-passthrough listener reads the client's first bytes, learns the server name
(SNI), ALPN, versions and signature algorithms from the ClientHello, picks a pool
(ACLs on ``req.ssl_sni``), then sends the member every byte read so far and tunnels.

    reader = ClientHelloReader()
    hello = reader.feed(data)        # ClientHello, None (need more bytes), or raises
    ...                              # ClientHelloError: not TLS / malformed / too big
    reader.feed_eof()                # at EOF: raises unless the hello was complete
    member.write(reader.raw)         # every byte fed, ClientHello and what followed

Theory of operation. The byte stream is TLS records (RFC 8446 5.1: type, version,
16-bit length, at most 2^14 bytes of fragment); the ClientHello is one handshake
message (type 1, 24-bit length) that may be split across several records, and
records may be split across reads at any byte. The reader is a two-state machine
over the stream, ``record header -> record body -> record header ...``; each
complete record's fragment is appended to the handshake bytes, and once those
hold the whole message it is parsed, the reader is done, and it keeps returning
the same event. Everything is checked as early as the bytes allow (a first byte
that is not a handshake record fails at once, not after 5 bytes), and a
failure is sticky. Limits: a ClientHello of at most ``max_size`` bytes (16 KiB by
default: the largest in the wild, with post-quantum key shares, are under 2 KiB;
haproxy needs it within one 16 KiB buffer) spread over at most ``max_records``
records.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = [
    "ClientHello",
    "ClientHelloError",
    "ClientHelloReader",
    "MAX_HELLO_SIZE",
    "MAX_RECORDS",
    "TLS_VERSION_NAMES",
    "parse_client_hello",
]

MAX_HELLO_SIZE = 16384
MAX_RECORDS = 64
MAX_FRAGMENT = 1 << 14  # RFC 8446 5.1: a record's plaintext is at most 2^14 bytes
RECORD_HEADER = 5
CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
# TLS alert descriptions (RFC 8446 6.2) a server would send for each kind of problem.
ALERT_UNEXPECTED_MESSAGE = 10
ALERT_RECORD_OVERFLOW = 22
ALERT_ILLEGAL_PARAMETER = 47
ALERT_DECODE_ERROR = 50
ALERT_PROTOCOL_VERSION = 70

TLS_VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
# TLS 1.2 cipher suites authenticated by ECDSA (IANA registry: ECDHE_ECDSA_*), for a
# client without signature_algorithms (TLS 1.0/1.1 style), as haproxy decides.
ECDSA_SUITES = frozenset(
    list(range(0xC006, 0xC00B)) + [0xC023, 0xC024, 0xC02B, 0xC02C, 0xC048, 0xC049, 0xC05C, 0xC05D,
                                    0xC072, 0xC073, 0xC086, 0xC087, 0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xCCA9]
)
_HOST_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._*")


class ClientHelloError(ValueError):
    """The client's bytes are not a usable TLS ClientHello (the client's fault).
    ``alert`` is the TLS alert a server would answer with; a passthrough proxy
    simply closes."""

    def __init__(self, message: str, alert: int = ALERT_DECODE_ERROR) -> None:
        super().__init__(message)
        self.alert = alert


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello offers. ``server_name`` is lower case without a trailing
    dot (None: no SNI); ``versions`` is supported_versions, or the legacy version
    alone when the client sent none; ``size`` counts the record bytes up to the end
    of the message. Lists keep the client's order (GREASE values included)."""

    legacy_version: int
    versions: tuple[int, ...]
    server_name: str | None
    alpn: tuple[str, ...]
    signature_algorithms: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    groups: tuple[int, ...]
    extensions: tuple[int, ...]
    size: int

    @property
    def offers_ecdsa(self) -> bool:
        """Whether the client can verify an ECDSA certificate: an ECDSA signature
        algorithm, or, without that extension, an ECDSA cipher suite."""
        if EXT_SIGNATURE_ALGORITHMS in self.extensions:
            return any(_is_ecdsa_sigalg(code) for code in self.signature_algorithms)
        return any(code in ECDSA_SUITES for code in self.cipher_suites)

    @property
    def highest_version(self) -> str:
        """The newest known version offered, like ``TLSv1.3`` (``unknown`` if none)."""
        known = [code for code in self.versions if code in TLS_VERSION_NAMES]
        return TLS_VERSION_NAMES[max(known)] if known else "unknown"


def _is_ecdsa_sigalg(code: int) -> bool:
    # TLS 1.2 SignatureAndHashAlgorithm: low byte 3 is ecdsa (RFC 5246 7.4.1.4.1), which
    # the TLS 1.3 codes 0x0403/0x0503/0x0603 keep; 0x081a-0x081c are ecdsa_brainpool*.
    return (code < 0x0800 and code & 0xFF == 3) or code in (0x081A, 0x081B, 0x081C)


# -- the message --------------------------------------------------------------------------------


class _Cursor:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining:
            raise ClientHelloError(f"truncated {self.what}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(int.from_bytes(self.take(length_bytes), "big"))

    def end(self) -> None:
        if self.remaining:
            raise ClientHelloError(f"{self.remaining} unexpected bytes after {self.what}")


def _u16_list(data: bytes, what: str, *, empty_ok: bool = False) -> tuple[int, ...]:
    if len(data) % 2 or (not data and not empty_ok):
        raise ClientHelloError(f"malformed {what} list")
    return tuple(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))


def _server_name(data: bytes) -> dict[str, object]:
    cursor = _Cursor(data, "server_name extension")
    names = _Cursor(cursor.vector(2), "server name list")
    cursor.end()
    host = None
    while names.remaining:
        kind = names.u8()
        name = names.vector(2)
        if kind != 0:  # only host_name (0) is defined (RFC 6066 3)
            continue
        if host is not None:
            raise ClientHelloError("two host names in server_name", ALERT_ILLEGAL_PARAMETER)
        if not name or len(name) > 255 or not _HOST_BYTES.issuperset(name):
            raise ClientHelloError("server_name is not a host name", ALERT_ILLEGAL_PARAMETER)
        host = name.decode("ascii").lower()
        if host.endswith("."):
            host = host[:-1]
        if not host:
            raise ClientHelloError("server_name is not a host name", ALERT_ILLEGAL_PARAMETER)
    return {"server_name": host}


def _alpn(data: bytes) -> dict[str, object]:
    cursor = _Cursor(data, "ALPN extension")
    ids = _Cursor(cursor.vector(2), "ALPN protocol list")
    cursor.end()
    protocols = []
    while ids.remaining:
        protocol = ids.vector(1)
        if not protocol:
            raise ClientHelloError("empty ALPN protocol name")
        protocols.append(protocol.decode("latin-1"))
    if not protocols:
        raise ClientHelloError("empty ALPN protocol list")
    return {"alpn": tuple(protocols)}


def _versions(data: bytes) -> dict[str, object]:
    cursor = _Cursor(data, "supported_versions extension")
    versions = _u16_list(cursor.vector(1), "supported_versions")
    cursor.end()
    return {"versions": versions}


def _sigalgs(data: bytes) -> dict[str, object]:
    cursor = _Cursor(data, "signature_algorithms extension")
    codes = _u16_list(cursor.vector(2), "signature_algorithms")
    cursor.end()
    return {"signature_algorithms": codes}


def _groups(data: bytes) -> dict[str, object]:
    cursor = _Cursor(data, "supported_groups extension")
    codes = _u16_list(cursor.vector(2), "supported_groups")
    cursor.end()
    return {"groups": codes}


# Extension type -> reader of its data; the others are listed, not read.
_EXTENSIONS: dict[int, Callable[[bytes], dict[str, object]]] = {
    EXT_SERVER_NAME: _server_name,
    EXT_ALPN: _alpn,
    EXT_SUPPORTED_VERSIONS: _versions,
    EXT_SIGNATURE_ALGORITHMS: _sigalgs,
    EXT_SUPPORTED_GROUPS: _groups,
}


def parse_client_hello(body: bytes, size: int = 0) -> ClientHello:
    """A ClientHello from the body of its handshake message (after type and length)."""
    cursor = _Cursor(body, "ClientHello")
    legacy = cursor.u16()
    if legacy >> 8 != 3:
        raise ClientHelloError(f"unknown protocol version {legacy:#06x}", ALERT_PROTOCOL_VERSION)
    cursor.take(32)  # random
    if len(cursor.vector(1)) > 32:  # legacy_session_id
        raise ClientHelloError("session id longer than 32 bytes", ALERT_ILLEGAL_PARAMETER)
    suites = _u16_list(cursor.vector(2), "cipher suite")
    if not cursor.vector(1):
        raise ClientHelloError("no compression method")
    fields: dict[str, object] = {
        "server_name": None, "alpn": (), "versions": (legacy,), "signature_algorithms": (), "groups": (),
    }
    types: list[int] = []
    if cursor.remaining:  # extensions are optional before TLS 1.3
        block = _Cursor(cursor.vector(2), "extensions")
        cursor.end()
        while block.remaining:
            kind = block.u16()
            data = block.vector(2)
            if kind in types:
                raise ClientHelloError(f"extension {kind} sent twice", ALERT_ILLEGAL_PARAMETER)
            types.append(kind)
            reader = _EXTENSIONS.get(kind)
            if reader is not None:
                fields.update(reader(data))
    return ClientHello(
        legacy_version=legacy,
        versions=fields["versions"],  # type: ignore[arg-type]
        server_name=fields["server_name"],  # type: ignore[arg-type]
        alpn=fields["alpn"],  # type: ignore[arg-type]
        signature_algorithms=fields["signature_algorithms"],  # type: ignore[arg-type]
        cipher_suites=suites,
        groups=fields["groups"],  # type: ignore[arg-type]
        extensions=tuple(types),
        size=size,
    )


# -- the record stream --------------------------------------------------------------------------

RECORD_HEAD, RECORD_BODY = "record header", "record body"


class ClientHelloReader:
    """Feed bytes, get the ClientHello (see the module docstring)."""

    __slots__ = ("max_size", "max_records", "_raw", "_pos", "_state", "_fragment_length",
                 "_handshake", "_records", "_event", "_error")

    def __init__(self, *, max_size: int = MAX_HELLO_SIZE, max_records: int = MAX_RECORDS) -> None:
        self.max_size = max_size
        self.max_records = max_records
        self._raw = bytearray()
        self._pos = 0  # start of the record being read
        self._state = RECORD_HEAD
        self._fragment_length = 0
        self._handshake = bytearray()  # handshake bytes of complete records
        self._records = 0
        self._event: ClientHello | None = None
        self._error: ClientHelloError | None = None

    @property
    def raw(self) -> bytes:
        """Every byte fed so far: what the member must receive first."""
        return bytes(self._raw)

    @property
    def done(self) -> bool:
        return self._event is not None

    def feed(self, data: bytes) -> ClientHello | None:
        """Add bytes; the ClientHello once complete (and on every later call), else None."""
        if self._error is not None:
            raise self._error
        self._raw += data
        if self._event is not None:
            return self._event
        try:
            return self._advance()
        except ClientHelloError as exc:
            self._error = exc
            raise

    def feed_eof(self) -> ClientHello:
        """The stream ended: the ClientHello if it was complete, else ClientHelloError."""
        if self._event is not None:
            return self._event
        if self._error is None:
            what = "before any byte" if not self._raw else "in the middle of the ClientHello"
            self._error = ClientHelloError(f"connection closed {what}")
        raise self._error

    def _advance(self) -> ClientHello | None:
        # The machine: RECORD_HEAD -(5 bytes)-> RECORD_BODY -(fragment)-> RECORD_HEAD ...
        while True:
            available = len(self._raw) - self._pos
            if self._state == RECORD_HEAD:
                self._check_head(self._raw[self._pos:self._pos + RECORD_HEADER])
                if available < RECORD_HEADER:
                    return None
                self._fragment_length = int.from_bytes(self._raw[self._pos + 3:self._pos + 5], "big")
                self._state = RECORD_BODY
                continue
            start = self._pos + RECORD_HEADER
            have = min(available - RECORD_HEADER, self._fragment_length)
            if len(self._handshake) < 4:  # only the message header is checked early
                self._check_handshake(bytes(self._handshake) + bytes(self._raw[start:start + min(have, 4)]))
            if have < self._fragment_length:
                return None
            self._handshake += self._raw[start:start + have]
            self._pos = start + have
            self._records += 1
            self._state = RECORD_HEAD
            length = int.from_bytes(self._handshake[1:4], "big") if len(self._handshake) >= 4 else None
            if length is not None and len(self._handshake) >= 4 + length:
                self._event = parse_client_hello(bytes(self._handshake[4:4 + length]), size=self._pos)
                return self._event
            if self._records >= self.max_records:
                raise ClientHelloError(f"ClientHello spread over more than {self.max_records} records")

    def _check_head(self, head: bytes | bytearray) -> None:
        if len(head) >= 1 and head[0] != CONTENT_HANDSHAKE:
            if head[0] & 0x80 and self._pos == 0:
                raise ClientHelloError("SSLv2-format ClientHello: not supported", ALERT_PROTOCOL_VERSION)
            raise ClientHelloError(
                f"not a TLS handshake record (first byte {head[0]:#04x})", ALERT_UNEXPECTED_MESSAGE
            )
        if len(head) >= 2 and head[1] != 3:
            raise ClientHelloError(f"unknown record version {head[1]}.x", ALERT_PROTOCOL_VERSION)
        if len(head) >= 5:
            length = int.from_bytes(head[3:5], "big")
            if length == 0:
                raise ClientHelloError("empty handshake record", ALERT_UNEXPECTED_MESSAGE)
            if length > MAX_FRAGMENT:
                raise ClientHelloError(f"record of {length} bytes is over 2^14", ALERT_RECORD_OVERFLOW)

    def _check_handshake(self, handshake: bytes | bytearray) -> None:
        if len(handshake) >= 1 and handshake[0] != HANDSHAKE_CLIENT_HELLO:
            raise ClientHelloError(f"expected a ClientHello, got handshake message {handshake[0]}", ALERT_UNEXPECTED_MESSAGE)
        if len(handshake) >= 4:
            length = int.from_bytes(handshake[1:4], "big")
            if length > self.max_size:
                raise ClientHelloError(f"ClientHello of {length} bytes is over the limit ({self.max_size})", ALERT_ILLEGAL_PARAMETER)
