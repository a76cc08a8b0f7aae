"""The ACL language: conditions on a request, parsed once, compiled to matchers.

A listener's ACLs say which pool a request goes to. Each condition is written in
one of two spellings that parse to the same AST (``lbcore.l7.acl_parse``):

* compact, close to haproxy's (operators bring rules over)::

      hdr(host) -i api.example.com
      path_beg /static/ || path_end .jpg .png
      src 10.0.0.0/8 ::1 || req.cook(beta) -m found
      { method GET HEAD } !{ path_beg /admin }

* structured, for YAML::

      {host: api.example.com}                    {host: {suffix: .example.com}}
      {path: {prefix: /static/}}                 {src: [10.0.0.0/8, "2001:db8::/32"]}
      {cookie: {name: beta, present: true}}      {header: {name: X-Env, equals: prod, ignore_case: true}}
      {method: [GET, HEAD]}                      {query: {name: v, equals: "2"}}
      {all: [...]}  {any: [...]}  {not: {...}}   # a mapping with several keys = all of them
      {always: true}                             # a list of conditions = all of them;
                                                 # a string anywhere = the compact form

The compact grammar (operators, precedence not > and > or, haproxy's braces,
quoting) is described in ``lbcore.l7.acl_parse``. ``condition_to_dict`` writes
the canonical structured form and ``condition_to_string`` the compact one; both
parse back to an equal AST.

Fetches, with their compact spellings (haproxy's names keep haproxy's meaning):

========  ======================================  =====================================================
fetch     compact                                 what it looks at
========  ======================================  =====================================================
host      host, host_beg/end/sub/reg/dom          lbcore's normalised host (lower case, port and root
                                                  dot dropped, from an absolute-form target first).
                                                  ``host *.example.com`` is a wildcard: exactly one
                                                  label, as TLS certificate wildcards (RFC 6125 6.4.3):
                                                  it matches ``a.example.com``, not ``example.com``
                                                  nor ``a.b.example.com``. Always case-insensitive.
header    hdr(N), req.hdr(N), hdr_beg/end/sub/    header N as haproxy's ``hdr()``: every line, split
          reg/dom/dir(N)                          on commas outside double quotes, each value trimmed
                                                  of blanks; matches when any value matches. So
                                                  ``hdr(host) -i api.example.com`` sees the raw Host
                                                  header and does not match ``api.example.com:8080``
                                                  (use ``host``, or ``hdr_dom(host)``).
fheader   req.fhdr(N), fhdr(N)                    header N's full lines, not split (haproxy's
                                                  ``req.fhdr``); YAML ``{header: {..., full: true}}``
path      path, path_beg/end/sub/reg/dom/dir      the path as sent, no query string
src       src                                     the client address against networks and addresses,
                                                  v4 and v6; v4-mapped clients are matched as IPv4,
                                                  and ``::ffff:a.b.c.d/n`` rules are rewritten to v4.
                                                  No client address (a Unix socket) never matches.
cookie    req.cook(N), cook(N), cook_beg/...(N)   cookie N's value (the first one sent)
query     urlp(N), url_param(N), query(N)         query parameter N, percent-decoded; any occurrence
method    method                                  the request method (case-sensitive unless -i)
ssl_sni   req.ssl_sni, req_ssl_sni, ssl_fc_sni,   the TLS SNI (lower case, from the ClientHello);
          ssl_fc_sni_end/reg, ssl_sni             always case-insensitive. lbcore's ``ssl_sni`` takes
                                                  wildcards like ``host``; haproxy's names do not.
always    always_true, TRUE / always_false, FALSE a constant (haproxy's predefined ACLs)
========  ======================================  =====================================================

Match methods (haproxy 7.1.3, ``-m`` name / structured key):
``str``/equals exact; ``beg``/prefix; ``end``/suffix; ``sub``/contains;
``reg``/regex, Python ``re`` searched anywhere (unanchored, as haproxy's regex
match), compiled once by ``compile_condition``; ``dom``/domain and ``dir``/dir,
haproxy's word matches: the pattern, stripped of delimiters at both ends, must
appear starting at the beginning or just after a delimiter and end at the end or
just before one, with delimiters ``/ ? . :`` for dom and ``/ ?`` for dir
(``hdr_dom(host) example.com`` matches ``www.example.com:80``);
``found``/present: the header, cookie, parameter, host or SNI exists (even empty).
Several values mean any of them. ``-i`` makes string tests case-insensitive
(``str.lower`` on both sides; regexes get ``re.IGNORECASE``); host and SNI are
always case-insensitive, ``-i`` is accepted there and on src (where it does
nothing, as in haproxy).

A fetch that finds nothing (no such header or cookie, no host, no SNI) matches no
value, so ``!hdr(x) foo`` is true when the header is absent, as in haproxy.

``compile_condition`` turns a condition into a ``Matcher`` over ``RequestFacts`` (a
tree of small objects, extension types with C-level ``matches`` calls when built):
value sets are frozensets, prefixes one ``str.startswith`` tuple, networks hashed
by prefix length, regexes compiled here and only here. ``explain_condition`` says
which parts matched and what value each saw; ``implies`` is the (sound, partial)
reasoning that ``Router.shadowed`` uses to find rules an earlier one always beats.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Iterable, Iterator

from .acl_parse import (
    FETCHES,
    WORD_DELIMITERS,
    AclError,
    Always,
    And,
    Condition,
    Match,
    Not,
    Or,
    condition_to_dict,
    condition_to_string,
    parse_condition,
)
from .facts import RequestFacts

__all__ = [
    "AclError",
    "Always",
    "And",
    "Condition",
    "Match",
    "Matcher",
    "Not",
    "Or",
    "compile_condition",
    "condition_to_dict",
    "condition_to_string",
    "describe_match",
    "explain_condition",
    "implies",
    "parse_condition",
    "split_header_list",
    "string_test",
]

StringTest = Callable[[str], bool]


def split_header_list(line: str) -> list[str]:
    """Split a header line into its comma-separated values, as haproxy's ``hdr()``.

    Commas inside a double-quoted string (RFC 9110 5.6.4, with backslash pairs)
    do not split; each value is trimmed of spaces and tabs; empty values are kept.
    """
    if '"' not in line:
        return [part.strip(" \t") for part in line.split(",")]
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif quoted:
            if c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ",":
            parts.append(line[start:i].strip(" \t"))
            start = i + 1
    parts.append(line[start:].strip(" \t"))
    return parts


# -- compiling ------------------------------------------------------------------------
# A compiled condition is a tree of Matcher objects. In the compiled build (acl.pxd)
# they are extension types whose ``matches`` the router and the compound matchers call
# as C methods: no Python call per condition. Each is also callable, ``m(facts)``.


class Matcher:
    """A compiled condition: ``matcher(facts)`` or ``matcher.matches(facts)`` -> bool."""

    __slots__ = ()

    def __call__(self, facts: RequestFacts) -> bool:
        return self.matches(facts)

    def matches(self, facts: RequestFacts) -> bool:
        raise NotImplementedError


class _Constant(Matcher):
    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def matches(self, facts: RequestFacts) -> bool:
        return self.value


class _Not(Matcher):
    __slots__ = ("inner",)

    def __init__(self, inner: Matcher) -> None:
        self.inner = inner

    def matches(self, facts: RequestFacts) -> bool:
        return not self.inner.matches(facts)


class _AllOf(Matcher):
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Matcher, ...]) -> None:
        self.parts = parts

    def matches(self, facts: RequestFacts) -> bool:
        for part in self.parts:
            if not part.matches(facts):
                return False
        return True


class _AnyOf(Matcher):
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Matcher, ...]) -> None:
        self.parts = parts

    def matches(self, facts: RequestFacts) -> bool:
        for part in self.parts:
            if part.matches(facts):
                return True
        return False


# What a _Fetch or _Present looks at.
HOST, SNI, PATH, METHOD, COOKIE, HEADER, FULL_HEADER, QUERY = range(8)
_FETCH_CODES = {"host": HOST, "ssl_sni": SNI, "path": PATH, "method": METHOD, "cookie": COOKIE,
                "header": HEADER, "fheader": FULL_HEADER, "query": QUERY}


class _Fetch(Matcher):
    """A string test on what one fetch finds (any of its values, for headers and
    query parameters; nothing found matches nothing)."""

    __slots__ = ("fetch", "name", "test")

    def __init__(self, fetch: int, name: str | None, test: StringTest) -> None:
        self.fetch = fetch
        self.name = name
        self.test = test

    def matches(self, facts: RequestFacts) -> bool:
        fetch = self.fetch
        test = self.test
        if fetch == PATH:
            return test(facts.fetch_path())
        if fetch == HOST:
            host = facts.fetch_host()
            return bool(host) and test(host)
        if fetch == HEADER:
            for line in facts.header_values(self.name):
                for value in split_header_list(line) if "," in line or '"' in line else (line.strip(" \t"),):
                    if test(value):
                        return True
            return False
        if fetch == COOKIE:
            value = facts.cookie(self.name)
            return value is not None and test(value)
        if fetch == METHOD:
            return test(facts.method)
        if fetch == SNI:
            sni = facts.sni
            return bool(sni) and test(sni)
        if fetch == FULL_HEADER:
            for line in facts.header_values(self.name):
                if test(line.strip(" \t")):
                    return True
            return False
        for value in facts.fetch_params().get(self.name, ()):  # QUERY
            if test(value):
                return True
        return False


class _Present(Matcher):
    """A fetch finds something (an empty header, cookie or parameter included)."""

    __slots__ = ("fetch", "name")

    def __init__(self, fetch: int, name: str | None) -> None:
        self.fetch = fetch
        self.name = name

    def matches(self, facts: RequestFacts) -> bool:
        fetch = self.fetch
        if fetch == COOKIE:
            return facts.cookie(self.name) is not None
        if fetch == HEADER or fetch == FULL_HEADER:
            return len(facts.header_values(self.name)) > 0
        if fetch == HOST:
            return bool(facts.fetch_host())
        if fetch == SNI:
            return bool(facts.sni)
        return self.name in facts.fetch_params()  # QUERY


class _Src(Matcher):
    """The client address in one of the networks: grouped by prefix length, one
    shift and one set lookup per length."""

    __slots__ = ("v4", "v6", "last")

    def __init__(self, values: tuple[str, ...]) -> None:
        by_version: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for value in values:
            net = ipaddress.ip_network(value)
            shift = net.max_prefixlen - net.prefixlen
            by_version[net.version].setdefault(shift, set()).add(int(net.network_address) >> shift)
        self.v4 = tuple((shift, frozenset(nets)) for shift, nets in sorted(by_version[4].items()))
        self.v6 = tuple((shift, frozenset(nets)) for shift, nets in sorted(by_version[6].items()))
        # The last address, its number and table. Address objects are immutable and
        # shared per client (proxy.runtime caches them), so a keep-alive connection's
        # requests, and a returning client's connections, skip ipaddress's two
        # Python-level calls. One tuple, replaced whole: a reader never sees one
        # address's number with another's.
        self.last = (None, 0, self.v4)

    def matches(self, facts: RequestFacts) -> bool:
        ip = facts.client_ip
        if ip is None:
            return False
        last = self.last
        if last[0] is ip:
            n = last[1]
            table = last[2]
        else:
            n = int(ip)
            table = self.v4 if ip.version == 4 else self.v6
            self.last = (ip, n, table)
        for shift, nets in table:
            if n >> shift in nets:
                return True
        return False


_ALWAYS = _Constant(True)


def compile_condition(cond: Condition) -> Matcher:
    """The Matcher of a condition; all set-up work happens here."""
    if isinstance(cond, Match):
        return _compile_match(cond)
    if isinstance(cond, Always):
        return _ALWAYS
    if isinstance(cond, Not):
        return _Not(compile_condition(cond.item))
    if isinstance(cond, (And, Or)):
        parts = tuple(compile_condition(c) for c in cond.items)
        if len(parts) == 1:
            return parts[0]
        return _AllOf(parts) if isinstance(cond, And) else _AnyOf(parts)
    raise TypeError(f"not a condition: {cond!r}")


def string_test(op: str, values: tuple[str, ...], ignore_case: bool) -> StringTest:
    """The test of one sample string against a Match's values (any of them)."""
    fold = str.lower if ignore_case else None
    if op == "regex":
        flags = re.IGNORECASE if ignore_case else 0
        searches = tuple(re.compile(v, flags).search for v in values)
        if len(searches) == 1:
            search = searches[0]
            return lambda s: search(s) is not None
        return lambda s: any(search(s) is not None for search in searches)
    if op == "equals":
        test: StringTest = frozenset(values).__contains__
    elif op == "prefix":
        prefixes = values

        def test(s: str) -> bool:
            return s.startswith(prefixes)

    elif op == "suffix":
        suffixes = values

        def test(s: str) -> bool:
            return s.endswith(suffixes)

    elif op == "contains":
        if len(values) == 1:
            needle = values[0]

            def test(s: str) -> bool:
                return needle in s

        else:

            def test(s: str) -> bool:
                return any(v in s for v in values)

    elif op in WORD_DELIMITERS:
        delims = re.escape(WORD_DELIMITERS[op])
        words = "|".join(re.escape(v.strip(WORD_DELIMITERS[op])) for v in values)
        search = re.compile(rf"(?:^|(?<=[{delims}]))(?:{words})(?=[{delims}]|\Z)").search

        def test(s: str) -> bool:
            return search(s) is not None

    elif op == "wildcard":
        domains = frozenset(v[1:] for v in values)  # "*.example.com" -> ".example.com"

        def test(s: str) -> bool:
            dot = s.find(".")
            return dot > 0 and s[dot:] in domains

    else:
        raise AclError(f"no string test for {op!r}")
    if fold is None:
        return test
    inner = test
    return lambda s: inner(s.lower())


def _compile_match(m: Match) -> Matcher:
    fetch = m.fetch
    if fetch == "src":
        return _Src(m.values)
    code = _FETCH_CODES.get(fetch)
    if code is None:
        raise AclError(f"cannot compile fetch {fetch!r}")  # pragma: no cover - Match validates
    if m.op == "present":
        if code in (PATH, METHOD):
            raise AclError(f"{fetch} has no 'present' test")  # pragma: no cover - Match validates
        return _Present(code, m.name)
    return _Fetch(code, m.name, string_test(m.op, m.values, m.ignore_case))


# -- explaining ------------------------------------------------------------------------

_OP_WORDS = {
    "equals": "==",
    "prefix": "starts with",
    "suffix": "ends with",
    "contains": "contains",
    "regex": "=~",
    "domain": "has domain part",
    "dir": "has path part",
    "wildcard": "matches",
    "cidr": "in",
}


def _label(m: Match) -> str:
    if m.fetch == "fheader":
        return f"header {m.name} (full)"
    return f"{m.fetch} {m.name}" if m.name is not None else m.fetch


def _seen(m: Match, facts: RequestFacts) -> str:
    fetch, name = m.fetch, m.name
    if fetch == "src":
        return str(facts.client_ip) if facts.client_ip is not None else "(no address)"
    if fetch == "host":
        return repr(facts.host) if facts.host else "(no host)"
    if fetch == "ssl_sni":
        return repr(facts.sni) if facts.sni else "(no sni)"
    if fetch == "path":
        return repr(facts.path)
    if fetch == "method":
        return repr(facts.method)
    if fetch == "cookie":
        value = facts.cookie(name)  # type: ignore[arg-type]
        return repr(value) if value is not None else "(absent)"
    if fetch == "query":
        seen: list[str] = list(facts.params.get(name, ()))  # type: ignore[arg-type]
    elif fetch == "header":
        seen = [v for line in facts.header_values(name) for v in split_header_list(line)]  # type: ignore[arg-type]
    else:
        seen = [line.strip(" \t") for line in facts.header_values(name)]  # type: ignore[arg-type]
    if not seen:
        return "(absent)"
    return repr(seen[0]) if len(seen) == 1 else repr(seen)


def describe_match(m: Match, facts: RequestFacts) -> str:
    """``host 'www.example.com' == 'api.example.com'``: the test and the value seen."""
    head = f"{_label(m)} {_seen(m, facts)}"
    if m.op == "present":
        return f"{head} present"
    if m.op == "cidr":
        pattern = ", ".join(m.values)
    elif len(m.values) == 1:
        pattern = repr(m.values[0])
    else:
        pattern = "any of " + repr(list(m.values))
    case = " (ignoring case)" if m.ignore_case and FETCHES[m.fetch].case == "optional" else ""
    return f"{head} {_OP_WORDS[m.op]} {pattern}{case}"


def explain_condition(cond: Condition, facts: RequestFacts) -> list[str]:
    """Human lines: each part of the condition, what it saw, and whether it matched.

    Compound parts give a line of their own followed by their parts, indented by two
    spaces; every part is evaluated (no short circuit) so the explanation is whole.
    """
    lines: list[str] = []
    _explain(cond, facts, 0, lines)
    return lines


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _explain(cond: Condition, facts: RequestFacts, depth: int, out: list[str]) -> bool:
    pad = "  " * depth
    if isinstance(cond, Match):
        ok = compile_condition(cond)(facts)
        out.append(f"{pad}{describe_match(cond, facts)}: {_yes(ok)}")
        return ok
    if isinstance(cond, Always):
        out.append(f"{pad}always: yes")
        return True
    slot = len(out)
    out.append("")
    if isinstance(cond, Not):
        ok = not _explain(cond.item, facts, depth + 1, out)
        out[slot] = f"{pad}not: {_yes(ok)}"
        return ok
    if isinstance(cond, (And, Or)):
        results = [_explain(item, facts, depth + 1, out) for item in cond.items]
        if isinstance(cond, And):
            ok = all(results)
            out[slot] = f"{pad}all of {len(results)}: {_yes(ok)}"
        else:
            ok = any(results)
            out[slot] = f"{pad}any of {len(results)}: {_yes(ok)}"
        return ok
    raise TypeError(f"not a condition: {cond!r}")


# -- reasoning about conditions ----------------------------------------------------------


def implies(a: Condition, b: Condition) -> bool:
    """True when every request that matches ``a`` is proven to match ``b``.

    Sound but not complete: False means "not proven". Used to find shadowed rules
    (a later rule whose condition implies an earlier one's can never be chosen).
    """
    if a == b or isinstance(b, Always):
        return True
    if isinstance(a, Or):
        return all(implies(item, b) for item in a.items)
    if isinstance(b, And):
        return all(implies(a, item) for item in b.items)
    if isinstance(a, And) and any(implies(item, b) for item in a.items):
        return True
    if isinstance(b, Or) and any(implies(a, item) for item in b.items):
        return True
    if isinstance(a, Not) and isinstance(b, Not):
        return implies(b.item, a.item)
    if isinstance(a, Match) and isinstance(b, Match):
        return _match_implies(a, b)
    return False


def _networks(values: Iterable[str]) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return (ipaddress.ip_network(v) for v in values)


def _match_implies(a: Match, b: Match) -> bool:
    if a.fetch != b.fetch or a.name != b.name:
        return False
    if b.op == "present":
        return True  # any other test of the same fetch needs the value to exist
    if a.op == "present":
        return False
    if a.fetch == "src":
        nets_b = list(_networks(b.values))
        return all(
            any(na.version == nb.version and na.subnet_of(nb) for nb in nets_b)  # type: ignore[arg-type]
            for na in _networks(a.values)
        )
    if a.ignore_case != b.ignore_case:
        return False  # str.lower is not a per-character map (final sigma): stay sound
    b_test = None
    if a.op == "equals" and not (b.op == "regex" and b.ignore_case):
        # The sample is exactly one of a's values (after the same folding as b's).
        b_test = string_test(b.op, b.values, b.ignore_case)
    return all(_value_implies(a.op, va, b, b_test) for va in a.values)


def _value_implies(op: str, va: str, b: Match, b_test: StringTest | None) -> bool:
    if b_test is not None:
        return b_test(va)
    if op == b.op and va in b.values:
        return True
    if op == "wildcard":  # the sample is one label + va[1:]
        op, va = "suffix", va[1:]
    if op == "prefix":
        if b.op == "prefix":
            return any(va.startswith(vb) for vb in b.values)
    elif op == "suffix":
        if b.op == "suffix":
            return any(va.endswith(vb) for vb in b.values)
    elif op != "contains":
        return False
    if b.op == "contains":
        return any(vb in va for vb in b.values)
    return False
