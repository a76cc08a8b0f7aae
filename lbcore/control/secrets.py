"""Secrets at rest: private keys and passphrases, encrypted with AES-256-GCM.

The key file holds one or more base64 keys of 32 bytes, one per line, newest first:
the first encrypts, every one decrypts (add a new key at the top to rotate, re-save
what matters, then drop the old line). The operator supplies the file, or
``Secrets.load(path, create=True)`` makes one with mode 0600. A key file that group
or others may read is refused: it would make encryption at rest pointless.

A sealed value is ``v1:<key id>:<base64 nonce|ciphertext>`` where the key id is the
first 8 hex digits of the key's SHA-256, so the right key is found without trying
each. The associated data binds a ciphertext to where it is stored (``table.column:id``):
a value copied into another row does not decrypt.

Nothing here puts a key, a plaintext or a ciphertext in a repr, a log line or an
exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SecretError", "Secrets"]

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce (NIST SP 800-38D)
_PREFIX = "v1"


class SecretError(ValueError):
    """A key file that cannot be used, or a sealed value that does not open."""


class Secrets:
    """Seal and open secrets with the keys of one key file."""

    def __init__(self, keys: list[bytes], *, source: str = "<memory>") -> None:
        if not keys:
            raise SecretError("no encryption key")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise SecretError(f"an encryption key must be {KEY_BYTES} bytes")
        self._keys = {_key_id(key): AESGCM(key) for key in keys}
        self._current = _key_id(keys[0])
        self.source = source

    def __repr__(self) -> str:
        return f"<Secrets {self.source} ({len(self._keys)} key{'s' if len(self._keys) != 1 else ''})>"

    @classmethod
    def generate(cls) -> "Secrets":
        """Secrets with a fresh random key held in memory only (tests, dry tools)."""
        return cls([AESGCM.generate_key(bit_length=KEY_BYTES * 8)])

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, create: bool = False) -> "Secrets":
        """The keys of ``path``; with ``create``, a missing file is made (0600, one new key)."""
        path = Path(path)
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first: read theirs
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.b64encode(key) + b"\n")
        try:
            info = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise SecretError(f"cannot read the key file {path}: {exc.strerror or type(exc).__name__}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"the key file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it")
        keys = []
        for number, line in enumerate(raw.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                key = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise SecretError(f"the key file {path}: line {number} is not base64") from None
            if len(key) != KEY_BYTES:
                raise SecretError(f"the key file {path}: line {number} is not a {KEY_BYTES}-byte key")
            keys.append(key)
        if not keys:
            raise SecretError(f"the key file {path} holds no key")
        return cls(keys, source=str(path))

    def seal(self, plaintext: bytes | str, context: str) -> str:
        """Encrypt ``plaintext`` for storage at ``context`` (like ``tls_certificates.private_key:<id>``)."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, data, context.encode("utf-8"))
        return f"{_PREFIX}:{self._current}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: str, context: str) -> bytes:
        """The plaintext of a sealed value stored at ``context``; SecretError otherwise."""
        try:
            prefix, key_id, body = token.split(":", 2)
            blob = base64.b64decode(body, validate=True)
        except (ValueError, AttributeError, binascii.Error):
            raise SecretError(f"{context}: not a sealed value") from None
        cipher = self._keys.get(key_id)
        if prefix != _PREFIX or cipher is None:
            raise SecretError(f"{context}: sealed with a key this key file does not hold")
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            pass
        raise SecretError(f"{context}: does not decrypt (tampered, or stored elsewhere)")

    def open_text(self, token: str, context: str) -> str:
        return self.open(token, context).decode("utf-8")


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]
