"""Session-ticket keys shared by every worker and every node: the key file and its ring.

A client resumes a TLS session by sending back a ticket the server encrypted
earlier. Each OpenSSL context makes its own random ticket key, so a ticket issued
by one worker (or node) is unreadable by the next: the client pays a full
handshake. With a shared key file every context of every worker and node holds
the same keys, and any of them resumes any ticket.

The file is haproxy's ``tls-ticket-keys`` format: one key per line, base64 of 80
bytes (16 name, 32 HMAC-SHA256 key, 32 AES-256-CBC key) or of 48 bytes (16, 16,
16: AES-128); blank lines and ``#`` comments are skipped. Make a key with
``openssl rand 80 | openssl base64 -A`` (or ``generate_ticket_key()``).

Rotation: append a new key (newest last) and drop the oldest; the newest key
encrypts new tickets, every key in the file still decrypts, and a ticket under an
older key is renewed under the newest. The engine notices the change
(``TicketKeyFile.refresh``) and installs the new ring on its live contexts: no
restart, no dropped connection. Unlike haproxy, which encrypts with the
penultimate key of the last three, the newest key encrypts here; to roll a key
out over several nodes without a window where one node's new tickets are
unknown to another, copy the file to every node and let each pick it up (a
ticket a node cannot read costs one full handshake, nothing more).

Pure except ``load_ticket_keys``/``TicketKeyFile`` (which read the file) and
``install_ticket_keys`` (which calls OpenSSL through ``lbcore._fastpath.sslctx``).
No message ever includes key bytes or a line of the file.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from dataclasses import dataclass, field

from lbcore._fastpath import sslctx
from lbcore.tls.errors import TlsError, TlsIssue

__all__ = [
    "TicketKeyFile",
    "TicketKeys",
    "generate_ticket_key",
    "install_ticket_keys",
    "load_ticket_keys",
    "parse_ticket_keys",
]

KEY_SIZES = (48, 80)  # bytes: AES-128 and AES-256 keys, as haproxy
NAME_SIZE = 16
MAX_KEYS = sslctx.MAX_KEYS
MAX_FILE_BYTES = 64 * 1024  # 64 keys of 80 bytes are ~7 KiB of base64


@dataclass(frozen=True, slots=True)
class TicketKeys:
    """A ring of ticket keys, oldest first; the last one encrypts."""

    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        problem = None
        try:
            sslctx._sslctx_py.check_keys(self.keys)
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            raise TlsError(problem)
        object.__setattr__(self, "keys", tuple(bytes(key) for key in self.keys))

    @property
    def names(self) -> tuple[str, ...]:
        """The key names (first 16 bytes, hex), oldest first: safe to log."""
        return tuple(key[:NAME_SIZE].hex() for key in self.keys)

    def __repr__(self) -> str:
        return f"<TicketKeys {len(self.keys)} key(s), newest {self.names[-1]}>"


def parse_ticket_keys(text: bytes | str, source: str = "ticket key file") -> TicketKeys:
    """The ring in a key file's content; TlsError naming the line of each problem."""
    if isinstance(text, bytes):
        if not text.isascii():
            raise TlsError(f"{source}: not a text file of base64 keys")
        text = text.decode("ascii")
    issues: list[TlsIssue] = []
    keys: list[bytes] = []
    first_line: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = None
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            pass
        if key is None:
            issues.append(TlsIssue("", f"{source} line {number}: not base64"))
            continue
        if len(key) not in KEY_SIZES:
            issues.append(TlsIssue("", f"{source} line {number}: a ticket key is 48 or 80 bytes, this one is {len(key)}"))
            continue
        name = key[:NAME_SIZE]
        if name in first_line:
            issues.append(TlsIssue("", f"{source} line {number}: same key name as line {first_line[name]}"))
            continue
        first_line[name] = number
        keys.append(key)
    if not issues and not keys:
        issues.append(TlsIssue("", f"{source}: no key (one base64 key per line)"))
    if not issues and len(keys) > MAX_KEYS:
        issues.append(TlsIssue("", f"{source}: {len(keys)} keys, at most {MAX_KEYS} (drop the oldest)"))
    if issues:
        raise TlsError(issues)
    return TicketKeys(tuple(keys))


def generate_ticket_key(bits: int = 256) -> str:
    """A new key line: base64 of 80 random bytes (48 for ``bits=128``)."""
    if bits not in (128, 256):
        raise ValueError("ticket keys are AES-128 or AES-256")
    return base64.b64encode(os.urandom(80 if bits == 256 else 48)).decode("ascii")


def _read(path: str) -> tuple[bytes, os.stat_result]:
    problem = None
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problem = f"cannot read ticket key file {path}: {exc.strerror or type(exc).__name__}"
    if problem is not None:
        raise TlsError(problem)
    if len(data) > MAX_FILE_BYTES:
        raise TlsError(f"ticket key file {path} is larger than {MAX_FILE_BYTES} bytes")
    return data, stat


def load_ticket_keys(path: str) -> TicketKeys:
    """The ring in the file at ``path`` (TlsError: unreadable or bad, by line)."""
    return parse_ticket_keys(_read(path)[0], f"ticket key file {path}")


def _stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)


class TicketKeyFile:
    """A key file and its current ring; ``refresh()`` reloads it when the file
    changed (a new inode, size or mtime: a rename into place counts)."""

    __slots__ = ("path", "keys", "_stamp")

    def __init__(self, path: str) -> None:
        self.path = path
        data, stat = _read(path)
        self.keys = parse_ticket_keys(data, f"ticket key file {path}")
        self._stamp = _stamp(stat)

    def refresh(self) -> bool:
        """Reload if the file changed; True when ``keys`` changed. A file that became
        bad raises TlsError and the previous ring stays in ``keys``."""
        try:
            stat = os.stat(self.path)
        except OSError:
            stat = None
        if stat is not None and _stamp(stat) == self._stamp:
            return False
        data, stat = _read(self.path)
        keys = parse_ticket_keys(data, f"ticket key file {self.path}")
        self._stamp = _stamp(stat)
        changed = keys != self.keys
        self.keys = keys
        return changed


def install_ticket_keys(context: ssl.SSLContext, keys: TicketKeys) -> None:
    """Give ``context`` this ring (replacing any before). TlsError when OpenSSL
    cannot be reached from here (see ``lbcore._fastpath.sslctx``)."""
    problem = None
    try:
        sslctx.install_ticket_keys(context, keys.keys)
    except sslctx.OpenSSLUnavailable as exc:
        problem = f"cannot set session ticket keys: {exc}"
    if problem is not None:
        raise TlsError(problem)
