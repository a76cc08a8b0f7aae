"""The ACL language, part one: the AST and its two spellings (sans-IO).

Theory of operation
-------------------
A condition is a tree of four node types - ``Match`` (one test of one fetch),
``And``, ``Or``, ``Not`` - plus ``Always`` (haproxy's ``always_true``). Nodes are
frozen, slotted dataclasses: hashable, comparable with ``==``, and valid by
construction. ``Match.__post_init__`` validates *and normalises* (header names and
case-insensitive values lower-cased, networks written canonically, duplicate
values dropped), so two spellings of the same rule build equal nodes.

Two spellings parse to that one AST:

* the structured form (a YAML mapping), read by ``_parse_structured``; it is also
  the canonical form ``condition_to_dict`` writes, so
  ``parse_condition(condition_to_dict(c)) == c`` for every condition;
* the compact form (a string close to haproxy's ACL syntax), read in two steps:
  ``_scan`` splits it into words (quotes and escapes resolved, remembering which
  characters were quoted), ``_lex`` turns words into tokens with a three-state
  machine (operand -> flags -> values -> operand), and ``_Parser`` is a
  recursive-descent parser over the tokens. ``condition_to_string`` writes the
  compact form back.

Compact grammar::

    condition := or
    or        := and (("||" | "or") and)*
    and       := unary (("&&" | "and")? unary)*     # juxtaposition = and, as haproxy's
    unary     := ("!" | "not") unary | primary       #   `if { a } { b }` or `if a !b`
    primary   := "(" condition ")" | "{" condition "}" | term
    term      := FETCH ["(" NAME ")"] flag* value*
    flag      := "-i" | "-m" METHOD | "--"

Flags come before values (``-i`` or ``-m`` after a value is an error; ``--`` ends the
flags, so ``urlp(v) -- -1`` works). A term's values run until a word that is exactly
an operator (``||`` ``or`` ``&&`` ``and`` ``!`` ``not``), a bracket (``(`` ``)`` ``{``
``}`` ``!{`` ``!(``) or the end: ``path /a ! method GET`` is path and not method,
while in ``path /a !method`` the word ``!method`` is a second path value.
``(``, ``!`` and ``{`` may be glued to the front of a fetch (``!(src 10.0.0.0/8)``),
and ``)`` to the end of a value when the value then holds more ``)`` than ``(``:
``path_reg ^/(a|b))`` is the regex ``^/(a|b)`` then a closing parenthesis. Braces
must stand alone, as in haproxy. Quoting: ``'...'`` is literal; in ``"..."`` the
escapes ``\\"`` and ``\\\\`` are resolved and any other backslash is kept, so
``"^/v\\d+"`` is the regex ``^/v\\d+``; outside quotes a backslash before a blank,
a quote or a backslash escapes it. A quoted word is never an operator.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

__all__ = [
    "AclError",
    "Always",
    "And",
    "Condition",
    "FETCHES",
    "Match",
    "Not",
    "Or",
    "condition_to_dict",
    "condition_to_string",
    "parse_condition",
]


class AclError(ValueError):
    """A condition that cannot be parsed: the message says what is wrong, briefly.

    The spec loader prefixes it with where the condition came from.
    """


# -- fetches and the operations each one allows ----------------------------------

#: Word delimiters of haproxy's ``-m dom`` and ``-m dir`` (pattern.c, ``pat_match_dom``
#: and ``pat_match_dir``: ``make_4delim('/', '?', '.', ':')`` and ``('/', '?')``).
WORD_DELIMITERS = {"domain": "/?.:", "dir": "/?"}

_STRING_OPS = frozenset({"equals", "prefix", "suffix", "contains", "regex", "domain", "dir"})
_HOST_OPS = (_STRING_OPS - {"dir"}) | {"wildcard", "present"}


@dataclass(frozen=True, slots=True)
class _FetchInfo:
    named: bool  # takes a name: cookie NAME, header NAME, query NAME
    ops: frozenset[str]
    case: str  # "always" (always case-insensitive), "optional" (-i), "never"


FETCHES: dict[str, _FetchInfo] = {
    "host": _FetchInfo(False, _HOST_OPS, "always"),
    "ssl_sni": _FetchInfo(False, _HOST_OPS, "always"),
    "path": _FetchInfo(False, _STRING_OPS, "optional"),
    "src": _FetchInfo(False, frozenset({"cidr"}), "never"),
    "cookie": _FetchInfo(True, _STRING_OPS | {"present"}, "optional"),
    "header": _FetchInfo(True, _STRING_OPS | {"present"}, "optional"),
    "fheader": _FetchInfo(True, _STRING_OPS | {"present"}, "optional"),
    "query": _FetchInfo(True, _STRING_OPS | {"present"}, "optional"),
    "method": _FetchInfo(False, frozenset({"equals"}), "optional"),
}

_NAME_RE = re.compile(r"[^\s(),\"']+")


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=2, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def _norm_network(text: str) -> str:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise AclError(f"bad network {text!r}") from None
    # The engine unwraps v4-mapped clients (::ffff:a.b.c.d) to IPv4, so a rule
    # written in the mapped form is rewritten to the v4 network it means.
    if net.version == 6 and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    return str(net)


def _norm_value(fetch: str, op: str, value: object, ignore_case: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AclError(f"{fetch}: value {value!r} is not a string")
    value = str(value)
    if op == "cidr":
        return _norm_network(value)
    if op == "regex":
        try:
            re.compile(value, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise AclError(f"invalid regex {value!r}: {exc}") from None
        return value
    if ignore_case:
        value = value.lower()
    if op == "wildcard":
        rest = value.rstrip(".")[2:]
        if not value.startswith("*.") or not rest or "*" in rest or ".." in rest or rest.startswith("."):
            raise AclError(f"bad wildcard {value!r} (expected '*.' then a domain, e.g. '*.example.com')")
        return value.rstrip(".")
    if op == "equals" and fetch in ("host", "ssl_sni"):
        return value.rstrip(".")  # the facts drop the root dot too
    if op in WORD_DELIMITERS and not value.strip(WORD_DELIMITERS[op]):
        raise AclError(f"empty {op} pattern {value!r}")
    return value


# -- the AST ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """One test: does ``fetch`` (with ``name``) match any of ``values`` under ``op``?

    fetch: host, ssl_sni, path, src, cookie, header, fheader (a header's full lines,
    not split on commas), query, method. op: equals, prefix, suffix, contains,
    regex, domain, dir, wildcard (host and ssl_sni), present (no values), cidr (src).
    """

    fetch: str
    name: str | None
    op: str
    values: tuple[str, ...] = ()
    ignore_case: bool = False

    def __post_init__(self) -> None:
        info = FETCHES.get(self.fetch)
        if info is None:
            raise AclError(f"unknown fetch {self.fetch!r}{_suggest(str(self.fetch), FETCHES)}")
        if self.op not in info.ops:
            raise AclError(f"bad match method {self.op!r} for {self.fetch}")
        name = self.name
        if info.named:
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise AclError(f"{self.fetch} needs a name" if not name else f"bad {self.fetch} name {name!r}")
            if self.fetch in ("header", "fheader"):
                name = name.lower()  # field names are case-insensitive (RFC 9110 5.1)
        elif name is not None:
            raise AclError(f"{self.fetch} takes no name")
        ignore_case = bool(self.ignore_case)
        if info.case == "always":
            ignore_case = True
        elif info.case == "never" or self.op == "present":
            ignore_case = False
        raw = self.values
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise AclError(f"{self.fetch}: values must be a list of strings")
        raw = tuple(raw)
        if self.op == "present":
            if raw:
                raise AclError(f"{self.fetch}: 'present' takes no values")
        elif not raw:
            raise AclError(f"missing value for {self.fetch}")
        values: list[str] = []
        for item in raw:
            norm = _norm_value(self.fetch, self.op, item, ignore_case)
            if norm not in values:
                values.append(norm)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "ignore_case", ignore_case)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple["Condition", ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items("all", self.items))


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple["Condition", ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items("any", self.items))


@dataclass(frozen=True, slots=True)
class Not:
    item: "Condition"

    def __post_init__(self) -> None:
        if not isinstance(self.item, _NODES):
            raise AclError(f"not: {self.item!r} is not a condition")


@dataclass(frozen=True, slots=True)
class Always:
    """Matches every request (haproxy's ``always_true``); ``Not(Always())`` none."""


Condition = Union[Match, And, Or, Not, Always]
_NODES = (Match, And, Or, Not, Always)


def _check_items(what: str, items: object) -> tuple:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise AclError(f"'{what}' needs a list of conditions")
    items = tuple(items)
    if not items:
        raise AclError(f"'{what}' needs at least one condition")
    for item in items:
        if not isinstance(item, _NODES):
            raise AclError(f"{what}: {item!r} is not a condition")
    return items


# -- entry point --------------------------------------------------------------------


def parse_condition(source: str | Mapping[str, Any] | list | Condition) -> Condition:
    """Parse a compact string or a structured mapping (a list: all of its items).

    A Condition passes through unchanged. Raises AclError.
    """
    if isinstance(source, _NODES):
        return source
    if isinstance(source, str):
        return _parse_compact(source)
    if isinstance(source, (Mapping, list, tuple)):
        return _parse_structured(source)
    raise AclError(f"a condition is a string or a mapping, not {type(source).__name__}")


# -- the structured (YAML) form -------------------------------------------------------

_STRUCT_OPS = ("equals", "prefix", "suffix", "contains", "regex", "domain", "dir", "wildcard", "present")
_LOGIC_KEYS = ("all", "any", "not", "always")


def _parse_structured(node: object) -> Condition:
    if isinstance(node, str):
        return _parse_compact(node)
    if isinstance(node, (list, tuple)):
        if not node:
            raise AclError("empty condition")
        items = tuple(_parse_structured(item) for item in node)
        return items[0] if len(items) == 1 else And(items)
    if isinstance(node, Mapping):
        if not node:
            raise AclError("empty condition")
        parts = [_parse_key(key, value) for key, value in node.items()]
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    raise AclError(f"expected a condition, got {type(node).__name__} {node!r}")


def _parse_key(key: object, value: object) -> Condition:
    if not isinstance(key, str):
        raise AclError(f"unknown key {key!r}")
    if key in ("all", "any"):
        if not isinstance(value, (list, tuple)):
            raise AclError(f"'{key}' needs a list of conditions")
        if not value:
            raise AclError(f"'{key}' needs at least one condition")
        items = tuple(_parse_structured(item) for item in value)
        return And(items) if key == "all" else Or(items)
    if key == "not":
        return Not(_parse_structured(value))
    if key == "always":
        if not isinstance(value, bool):
            raise AclError("'always' takes true or false")
        return Always() if value else Not(Always())
    fetch = key
    if fetch not in FETCHES or fetch == "fheader":
        raise AclError(f"unknown key {key!r}{_suggest(key, [*_LOGIC_KEYS, *FETCHES.keys() - {'fheader'}])}")
    info = FETCHES[fetch]
    if isinstance(value, Mapping):
        if fetch == "src":
            raise AclError("src takes an address, a network or a list of them")
        return _parse_op_mapping(fetch, value)
    if info.named:
        raise AclError(f"{fetch} needs a mapping with 'name', e.g. {{name: x, present: true}}")
    values = _values(fetch, "equals", value)
    if fetch == "src":
        return Match("src", None, "cidr", values)
    if fetch in ("host", "ssl_sni"):
        return _host_values(fetch, values)
    return Match(fetch, None, "equals", values)


def _values(fetch: str, op: str, value: object) -> tuple:
    if isinstance(value, (list, tuple)):
        if not value:
            raise AclError(f"missing value for {fetch} {op}")
        return tuple(value)
    if value is None:
        raise AclError(f"missing value for {fetch} {op}")
    return (value,)


def _host_values(fetch: str, values: tuple) -> Condition:
    """host/ssl_sni values: plain names are exact, ``*.domain`` ones wildcards."""
    wild = tuple(v for v in values if isinstance(v, str) and v.startswith("*."))
    plain = tuple(v for v in values if not (isinstance(v, str) and v.startswith("*.")))
    if wild and plain:
        return Or((Match(fetch, None, "equals", plain), Match(fetch, None, "wildcard", wild)))
    return Match(fetch, None, "wildcard" if wild else "equals", values)


def _parse_op_mapping(fetch: str, body: Mapping) -> Condition:
    info = FETCHES[fetch]
    ops = [op for op in _STRUCT_OPS if op in info.ops]
    allowed = set(ops) | {"ignore_case"}
    if info.named:
        allowed.add("name")
    if fetch == "header":
        allowed.add("full")
    for key in body:
        if key not in allowed:
            raise AclError(f"unknown key {key!r} in {fetch}{_suggest(str(key), allowed)}")
    given = [op for op in ops if op in body]
    if len(given) != 1:
        choice = ", ".join(ops)
        if given:
            raise AclError(f"{fetch}: give only one of {choice} (got {' and '.join(given)})")
        raise AclError(f"{fetch}: give one of {choice}")
    op = given[0]
    name = body.get("name")
    if info.named and (not isinstance(name, str) or not name):
        raise AclError(f"{fetch} needs a 'name'")
    ignore_case = body.get("ignore_case", info.case == "always")
    if not isinstance(ignore_case, bool):
        raise AclError(f"{fetch}: ignore_case takes true or false")
    if info.case == "always" and not ignore_case:
        raise AclError(f"{fetch} is always case-insensitive")
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise AclError(f"{fetch}: full takes true or false")
    if full:
        fetch = "fheader"
    if op == "present":
        if not isinstance(body["present"], bool):
            raise AclError(f"{fetch}: present takes true or false")
        match = Match(fetch, name, "present")
        return match if body["present"] else Not(match)
    return Match(fetch, name, op, _values(fetch, op, body[op]), ignore_case)


# -- the compact (haproxy-like) form: words ------------------------------------------

_ESCAPABLE = " \t\\\"'"


@dataclass(slots=True)
class _Word:
    text: str
    raw: list[bool]  # per character: neither quoted nor escaped
    quoted: bool

    def bare(self) -> str | None:
        """The text when no part of the word was quoted, else None."""
        return None if self.quoted else self.text


def _scan(source: str) -> list[_Word]:
    words: list[_Word] = []
    i, n = 0, len(source)
    while i < n:
        if source[i].isspace():
            i += 1
            continue
        chars: list[str] = []
        raw: list[bool] = []
        quoted = False
        while i < n and not source[i].isspace():
            c = source[i]
            if c == "'":
                end = source.find("'", i + 1)
                if end == -1:
                    raise AclError("unterminated quote")
                chars.extend(source[i + 1 : end])
                raw.extend([False] * (end - i - 1))
                quoted, i = True, end + 1
            elif c == '"':
                quoted, i = True, i + 1
                while True:
                    if i >= n:
                        raise AclError("unterminated quote")
                    c = source[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n and source[i + 1] in '"\\':
                        c, i = source[i + 1], i + 1
                    chars.append(c)
                    raw.append(False)
                    i += 1
            elif c == "\\" and i + 1 < n and source[i + 1] in _ESCAPABLE:
                chars.append(source[i + 1])
                raw.append(False)
                quoted, i = True, i + 2
            else:
                chars.append(c)
                raw.append(True)
                i += 1
        words.append(_Word("".join(chars), raw, quoted))
    return words


# -- tokens -------------------------------------------------------------------------

_OR, _AND, _NOT, _LP, _RP, _LB, _RB = ("or",), ("and",), ("not",), ("(",), (")",), ("{",), ("}",)
_OPERATOR_WORDS = {"||": _OR, "or": _OR, "&&": _AND, "and": _AND, "!": _NOT, "not": _NOT}
_PUNCT = {"!": _NOT, "(": _LP, ")": _RP, "{": _LB, "}": _RB}
_VALUE_STOP = frozenset(_OPERATOR_WORDS) | {"(", ")", "{", "}", "!{", "!("}
_FETCH_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)(?:\(([^()]*)\))?")


def _peel_closing(word: _Word) -> tuple[str, int]:
    """Split trailing unquoted ')' off a value when it has more ')' than '('."""
    text, raw = word.text, word.raw
    opens = sum(1 for c, r in zip(text, raw) if r and c == "(")
    closes = sum(1 for c, r in zip(text, raw) if r and c == ")")
    trailing = 0
    while trailing < len(text) and raw[-1 - trailing] and text[-1 - trailing] == ")":
        trailing += 1
    peel = min(trailing, max(0, closes - opens))
    return text[: len(text) - peel], peel


def _lex(words: list[_Word]) -> list[tuple]:
    tokens: list[tuple] = []
    state = "operand"  # operand -> flags (after a fetch) -> values -> operand
    after_dashes = False  # values after "--" may look like flags
    k = 0
    while k < len(words):
        word = words[k]
        bare = word.bare()
        if state == "flags":
            if bare is not None and bare.startswith("-") and len(bare) > 1:
                if bare == "-i":
                    tokens.append(("flag", "-i"))
                elif bare == "-m":
                    if k + 1 >= len(words) or words[k + 1].bare() is None:
                        raise AclError("missing match method after '-m'")
                    k += 1
                    method, closes = _peel_closing(words[k])
                    tokens.append(("flag", "-m", method))
                    if closes:  # "(hdr(x) -m found)"
                        tokens.extend([_RP] * closes)
                        state = "operand"
                elif bare == "--":
                    state, after_dashes = "values", True
                else:
                    raise AclError(f"unknown flag {bare!r}")
                k += 1
                continue
            state = "values"
        if state == "values":
            if bare is None or bare not in _VALUE_STOP:
                if bare in ("-i", "-m") and not after_dashes:
                    raise AclError(f"flag {bare!r} after a value: flags go first")
                text, closes = _peel_closing(word)
                tokens.append(("value", text))
                tokens.extend([_RP] * closes)
                if closes:
                    state = "operand"
                k += 1
                continue
            state = "operand"
        # operand position
        after_dashes = False
        if bare in _OPERATOR_WORDS:
            tokens.append(_OPERATOR_WORDS[bare])
            k += 1
            continue
        text, raw = word.text, word.raw
        p = 0
        while p < len(text) and raw[p] and text[p] in _PUNCT:
            tokens.append(_PUNCT[text[p]])
            p += 1
        rest = text[p:]
        if rest:
            match = _FETCH_RE.match(rest) if all(raw[p:]) else None
            tail = rest[match.end() :] if match else ""
            if match is None or tail.strip(")"):
                if "(" in rest and rest.count("(") > rest.count(")"):
                    raise AclError(f"unbalanced parenthesis in {rest!r}")
                raise AclError(f"expected a fetch, got {rest!r}")
            tokens.append(("fetch", match[1], match[2]))
            tokens.extend([_RP] * len(tail))
            state = "operand" if tail else "flags"
        elif word.quoted:
            raise AclError("expected a fetch, got ''")
        k += 1
    return tokens


# -- fetch spellings of the compact form -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spelling:
    fetch: str
    op: str
    derived: bool = False  # the name implies the match method: no -m
    wildcards: bool = False  # lbcore's host/ssl_sni: '*.domain' values are wildcards


_SUFFIX_OPS = {"beg": "prefix", "end": "suffix", "sub": "contains", "reg": "regex", "dom": "domain", "dir": "dir"}
_METHODS = {"found": "present", "str": "equals", "ip": "cidr", **_SUFFIX_OPS}
_METHOD_OF = {op: m for m, op in _METHODS.items()}


def _spellings() -> dict[str, _Spelling]:
    table: dict[str, _Spelling] = {}

    def family(bases: Iterable[str], fetch: str, derived: Iterable[str], suffixes: Iterable[str]) -> None:
        for base in bases:
            table[base] = _Spelling(fetch, "equals")
        for base in derived:
            for suffix in suffixes:
                table[f"{base}_{suffix}"] = _Spelling(fetch, _SUFFIX_OPS[suffix], derived=True)

    family(["hdr", "req.hdr"], "header", ["hdr"], _SUFFIX_OPS)
    family(["fhdr", "req.fhdr"], "fheader", [], ())
    family(["path"], "path", ["path"], _SUFFIX_OPS)
    family(["cook", "req.cook"], "cookie", ["cook"], _SUFFIX_OPS)
    family(["urlp", "url_param", "query"], "query", [], ())
    family(["method"], "method", [], ())
    family(["req.ssl_sni", "req_ssl_sni", "ssl_fc_sni"], "ssl_sni", ["ssl_fc_sni"], ["end", "reg"])
    family([], "host", ["host"], ["beg", "end", "sub", "reg", "dom"])
    table["host"] = _Spelling("host", "equals", wildcards=True)
    table["ssl_sni"] = _Spelling("ssl_sni", "equals", wildcards=True)
    table["src"] = _Spelling("src", "cidr")
    return table


_COMPACT = _spellings()
_ALWAYS = {"always_true": True, "TRUE": True, "always_false": False, "FALSE": False}


def _build_term(word: str, arg: str | None, ignore_case: bool, method: str | None, values: list[str]) -> Condition:
    if word in _ALWAYS:
        if arg is not None or values or ignore_case or method:
            raise AclError(f"{word} takes no argument, flag or value")
        return Always() if _ALWAYS[word] else Not(Always())
    spelling = _COMPACT.get(word) or _COMPACT.get(word.lower())
    if spelling is None:
        raise AclError(f"unknown fetch {word!r}{_suggest(word, [*_COMPACT, *_ALWAYS])}")
    fetch, op, wildcards = spelling.fetch, spelling.op, spelling.wildcards
    if FETCHES[fetch].named:
        if arg is None or not arg.strip():
            raise AclError(f"{word} needs a name: {word}(NAME)")
        if "," in arg:
            raise AclError(f"{word}({arg}): occurrence arguments are not supported")
        arg = arg.strip()
    elif arg is not None:
        raise AclError(f"{word} takes no argument")
    if method is not None:
        if spelling.derived:
            raise AclError(f"{word} already implies a match method; use '-m {method}' without the suffix")
        if method not in _METHODS:
            raise AclError(f"unknown match method '-m {method}'{_suggest(method, _METHODS)}")
        op, wildcards = _METHODS[method], False
        if op not in FETCHES[fetch].ops:
            raise AclError(f"bad match method '-m {method}' for {word}")
    if op == "present":
        if values:
            raise AclError(f"{word} -m found takes no values")
        return Match(fetch, arg, "present")
    if not values:
        raise AclError(f"missing value for {word!r}")
    if wildcards and op == "equals":
        return _host_values(fetch, tuple(values))
    return Match(fetch, arg, op, tuple(values), ignore_case and FETCHES[fetch].case != "never")


# -- the compact form: parser ------------------------------------------------------------


def _show(token: tuple) -> str:
    if token[0] in ("fetch", "value", "flag"):
        return repr(token[1])
    return repr({"or": "||", "and": "&&", "not": "!"}.get(token[0], token[0]))


class _Parser:
    def __init__(self, tokens: list[tuple]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end",)

    def parse(self) -> Condition:
        if not self.tokens:
            raise AclError("empty condition")
        node = self.or_(None)
        kind = self.peek()[0]
        if kind == ")":
            raise AclError("unbalanced parenthesis")
        if kind == "}":
            raise AclError("unbalanced brace")
        if kind != "end":  # pragma: no cover - every other token is consumed by or_()
            raise AclError(f"unexpected {_show(self.peek())}")
        return node

    def or_(self, after: str | None) -> Condition:
        items = [self.and_(after)]
        while self.peek()[0] == "or":
            self.i += 1
            items.append(self.and_("||"))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, after: str | None) -> Condition:
        items = [self.unary(after)]
        while True:
            kind = self.peek()[0]
            if kind == "and":
                self.i += 1
                items.append(self.unary("&&"))
            elif kind in ("not", "(", "{", "fetch"):
                items.append(self.unary(None))
            else:
                break
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, after: str | None) -> Condition:
        if self.peek()[0] == "not":
            self.i += 1
            return Not(self.unary("!"))
        return self.primary(after)

    def primary(self, after: str | None) -> Condition:
        token = self.peek()
        kind = token[0]
        for opener, closer, what in (("(", ")", "parenthesis"), ("{", "}", "brace")):
            if kind == opener:
                self.i += 1
                nxt = self.peek()[0]
                if nxt == closer:
                    raise AclError("empty parentheses" if opener == "(" else "empty braces")
                if nxt == "end":
                    raise AclError(f"unbalanced {what}")
                node = self.or_(opener)
                if self.peek()[0] != closer:
                    raise AclError(f"unbalanced {what}")
                self.i += 1
                return node
        if kind == "fetch":
            return self.term()
        if kind == "end":
            raise AclError(f"expected a condition after {after!r}" if after else "empty condition")
        if kind == ")":
            raise AclError("unbalanced parenthesis")
        if kind == "}":
            raise AclError("unbalanced brace")
        raise AclError(f"expected a condition, got {_show(token)}")

    def term(self) -> Condition:
        _, word, arg = self.tokens[self.i]
        self.i += 1
        ignore_case, method = False, None
        while self.peek()[0] == "flag":
            flag = self.tokens[self.i]
            self.i += 1
            if flag[1] == "-i":
                ignore_case = True
            else:
                if method is not None:
                    raise AclError("duplicate flag '-m'")
                method = flag[2]
        values: list[str] = []
        while self.peek()[0] == "value":
            values.append(self.tokens[self.i][1])
            self.i += 1
        return _build_term(word, arg, ignore_case, method, values)


def _parse_compact(source: str) -> Condition:
    return _Parser(_lex(_scan(source))).parse()


# -- writing conditions back ---------------------------------------------------------------


def _one_or_list(values: tuple[str, ...]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def condition_to_dict(cond: Condition) -> dict[str, Any]:
    """The canonical structured (YAML) form; ``parse_condition`` reads it back equal."""
    if isinstance(cond, And):
        return {"all": [condition_to_dict(c) for c in cond.items]}
    if isinstance(cond, Or):
        return {"any": [condition_to_dict(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": condition_to_dict(cond.item)}
    if isinstance(cond, Always):
        return {"always": True}
    if not isinstance(cond, Match):
        raise TypeError(f"not a condition: {cond!r}")
    fetch, op, values = cond.fetch, cond.op, cond.values
    info = FETCHES[fetch]
    key = "header" if fetch == "fheader" else fetch
    if fetch == "src":
        return {"src": _one_or_list(values)}
    if op == "equals" and not cond.ignore_case and fetch in ("path", "method"):
        return {key: _one_or_list(values)}
    if fetch in ("host", "ssl_sni"):
        if op == "equals" and not any(v.startswith("*.") for v in values):
            return {key: _one_or_list(values)}
        return {key: {op: True if op == "present" else _one_or_list(values)}}
    body: dict[str, Any] = {}
    if info.named:
        body["name"] = cond.name
    body[op] = True if op == "present" else _one_or_list(values)
    if cond.ignore_case:
        body["ignore_case"] = True
    if fetch == "fheader":
        body["full"] = True
    return {key: body}


_QUOTE_NEEDED = re.compile(r"[\s\"'\\]")


def _quote(value: str) -> str:
    if (
        not value
        or _QUOTE_NEEDED.search(value)
        or value in _VALUE_STOP
        or value.startswith("-")
        or value.count(")") != value.count("(")
    ):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


_SPELL = {
    "host": "host",
    "ssl_sni": "ssl_sni",
    "path": "path",
    "src": "src",
    "method": "method",
    "cookie": "req.cook({})",
    "header": "hdr({})",
    "fheader": "req.fhdr({})",
    "query": "urlp({})",
}


# haproxy's derived keywords read best where they exist (path_beg /x, hdr_dom(host) y)
_DERIVED = {
    (sp.fetch, sp.op): name + ("({})" if FETCHES[sp.fetch].named else "")
    for name, sp in _COMPACT.items()
    if sp.derived and sp.fetch in ("path", "header", "host")
}


def condition_to_string(cond: Condition) -> str:
    """The compact form; ``parse_condition`` reads it back equal.

    (An ``And``/``Or`` of a single item has no compact spelling: it is written as
    its item.)
    """
    if isinstance(cond, (And, Or)):
        parts = [_wrap(c) for c in cond.items]
        return (" && " if isinstance(cond, And) else " || ").join(parts)
    if isinstance(cond, Not):
        return "!" + _wrap(cond.item)
    if isinstance(cond, Always):
        return "always_true"
    if not isinstance(cond, Match):
        raise TypeError(f"not a condition: {cond!r}")
    op = cond.op
    derived = _DERIVED.get((cond.fetch, op))
    words = [derived.format(cond.name) if derived else _SPELL[cond.fetch].format(cond.name)]
    if cond.ignore_case and FETCHES[cond.fetch].case == "optional":
        words.append("-i")
    literal_star = op == "equals" and cond.fetch in ("host", "ssl_sni") and any(v.startswith("*.") for v in cond.values)
    if not derived and (op not in ("equals", "cidr", "wildcard") or literal_star):
        words += ["-m", _METHOD_OF[op]]
    words += [_quote(v) for v in cond.values]
    return " ".join(words)


def _wrap(cond: Condition) -> str:
    text = condition_to_string(cond)
    return f"({text})" if isinstance(cond, (And, Or)) and len(cond.items) > 1 else text
