"""Escaping for haproxy's configuration language: every string that reaches a file.

haproxy reads a configuration line in layers, and each layer has its own specials:

1. The line (``parse_line`` in haproxy's tools.c) splits words on blanks; ``#``
   starts a comment anywhere outside quotes; ``'...'`` is literal; in ``"..."``
   backslash escapes (``\\\\ \\" \\$ \\r \\n \\t \\xHH``) are resolved and ``$VAR``
   is expanded. ``word()`` writes any string as one word that reads back as itself:
   bare when it is made only of inert characters, in single quotes when it holds no
   single quote, else in double quotes with every special escaped.
2. Inside a sample fetch or converter (``req.hdr(NAME)``, ``regsub(RE,SUB)``) the
   arguments are split on ``,`` and end at ``)``; quotes protect them there too.
   ``arg()`` quotes one argument for that layer; the whole expression is then a
   ``word()``.
3. A log-format string (``set-header`` values, redirect locations) gives ``%`` its
   meaning: ``lf_literal()`` doubles it.

``seconds()`` writes a duration with haproxy's units, refusing what haproxy's
millisecond clock cannot hold.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["arg", "lf_literal", "milliseconds", "seconds", "word", "words"]

# Characters with no meaning to the line parser (and none that a human reader
# would mistake for one): a word made only of these is written bare.
_BARE_WORD = re.compile(r"[A-Za-z0-9_.:/@%+=,*^~!?()\[\]<>|&;{}-]+\Z")
# Inside fetch/converter arguments, ',' separates, '(' and ')' nest, quotes quote.
_BARE_ARG = re.compile(r"[A-Za-z0-9_.:/@+=*^~!?\[\]<>|&;{}%-]+\Z")
_DOUBLE_QUOTED = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _double_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in _DOUBLE_QUOTED:
            out.append(_DOUBLE_QUOTED[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def word(text: str) -> str:
    """``text`` as one configuration word that haproxy reads back unchanged."""
    if _BARE_WORD.match(text):
        return text
    if "'" not in text and not _has_control(text):
        return f"'{text}'"
    return _double_quote(text)


def words(items: list[str] | tuple[str, ...]) -> str:
    return " ".join(word(item) for item in items)


def arg(text: str) -> str:
    """One argument of a sample fetch or converter, quoted for the argument parser."""
    if _BARE_ARG.match(text):
        return text
    if "'" not in text and not _has_control(text):
        return f"'{text}'"
    return _double_quote(text)


def lf_literal(text: str) -> str:
    """Literal text inside a log-format string (``%`` doubled)."""
    return text.replace("%", "%%")


def milliseconds(value: float) -> int | None:
    """``value`` seconds as whole milliseconds, or None when it has a finer part."""
    exact = Fraction(value).limit_denominator(1_000_000) * 1000
    if exact.denominator != 1:
        return None
    return int(exact)


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def seconds(value: float) -> str | None:
    """A duration in haproxy's units (``30s``, ``1500ms``, ``2m``); None when haproxy's
    millisecond resolution cannot hold it (the caller reports that)."""
    ms = milliseconds(value)
    if ms is None:
        return None
    if ms == 0:
        return "0ms"
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
