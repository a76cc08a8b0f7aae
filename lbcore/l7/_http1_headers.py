"""Header field helpers shared by the HTTP/1.1 readers and writers.

The grammar comes from RFC 9110 5 (field names are tokens; values are VCHAR,
obs-text, SP and HTAB) and RFC 9112 (framing). The readers get field bytes
already checked by llhttp; the functions here turn them into ``str`` and decide
the framing, raising ProtocolError where the message is ambiguous.
"""

from __future__ import annotations

import re
from typing import Iterable

from ._http1_events import Headers, ProtocolError

__all__ = [
    "HOP_BY_HOP",
    "connection_tokens",
    "decode_fields",
    "group_fields",
    "connection_options",
    "is_keep_alive",
    "parse_content_length",
    "parse_transfer_encoding",
    "TOKEN_RE",
    "TOKEN_LIST_RE",
    "BAD_VALUE_RE",
    "REASON_RE",
]

# RFC 9110 7.6.1: the connection-specific fields an intermediary removes before
# forwarding (Connection itself and the fields it names, Proxy-Connection,
# Keep-Alive, TE, Transfer-Encoding, Upgrade). "Trailer" is not among them in
# RFC 9110 (it was in RFC 2616 13.5.1): it announces end-to-end trailer fields,
# which the engine forwards with the last chunk.
HOP_BY_HOP: frozenset[str] = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)

# RFC 9110 5.6.2 token; one regex for a single name, one for names joined by "\n".
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN_RE = re.compile(f"{_TCHAR}+")
TOKEN_LIST_RE = re.compile(f"{_TCHAR}+(?:\n{_TCHAR}+)*")
# RFC 9110 5.5: a field value holds no CTL but HTAB (so no CR, LF or NUL).
BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
REASON_RE = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")


def connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-case options of every Connection header (RFC 9110 7.6.1).

    Besides "close", "keep-alive" and "upgrade" they name further hop-by-hop
    fields, which a proxy removes along with HOP_BY_HOP.
    """
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            for token in value.split(","):
                token = token.strip(" \t").lower()
                if token:
                    tokens.add(token)
    return frozenset(tokens)


def decode_fields(names: list[bytes], values: list[bytes]) -> Headers:
    """Field bytes from llhttp as ``str`` pairs.

    llhttp strips the whitespace before a value but keeps the whitespace after
    it; RFC 9112 5 says both are not part of the value.
    """
    return tuple(
        [(n.decode("latin-1"), v.rstrip(b" \t").decode("latin-1")) for n, v in zip(names, values)]
    )


def group_fields(headers: Headers, wanted: frozenset[str]) -> dict[str, list[str]]:
    """The values of the ``wanted`` (lower-case) field names, by lower-case name, in order."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in wanted:
            found.setdefault(lname, []).append(value)
    return found


def connection_options(values: list[str] | None) -> frozenset[str]:
    """The lower-case options in the values of the Connection fields."""
    if not values:
        return frozenset()
    return frozenset(t.strip(" \t").lower() for v in values for t in v.split(","))


def is_keep_alive(version: str, options: frozenset[str]) -> bool:
    """RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"."""
    if "close" in options:
        return False
    return version == "1.1" or "keep-alive" in options


def parse_content_length(values: list[str]) -> int:
    """The message length from the Content-Length header(s) (RFC 9112 6.3 rule 5).

    llhttp already refuses a repeated header and non-digits; this is the check
    that does not depend on it.
    """
    if len(values) != 1:
        raise ProtocolError("repeated Content-Length", 400)
    value = values[0].strip(" \t")
    if not value.isascii() or not value.isdigit():
        raise ProtocolError(f"invalid Content-Length {value!r}", 400)
    return int(value)


def parse_transfer_encoding(values: list[str]) -> None:
    """Accept exactly ``Transfer-Encoding: chunked`` (RFC 9112 6.1, 6.3 rule 4).

    Chunked must be the final coding and be applied once (else 400). lbcore
    implements no other transfer coding, so a chunked body under another coding
    is 501, as RFC 9112 6.1 asks of a coding a server does not understand
    (h11 refuses the same messages).
    """
    codings = [c.strip(" \t").lower() for v in values for c in v.split(",")]
    codings = [c for c in codings if c]
    if codings == ["chunked"]:
        return
    if not codings or codings[-1] != "chunked" or codings.count("chunked") > 1:
        raise ProtocolError(f"Transfer-Encoding {', '.join(values)!r}: chunked is not the final coding", 400)
    raise ProtocolError(f"unsupported transfer coding in {', '.join(values)!r}", 501)
