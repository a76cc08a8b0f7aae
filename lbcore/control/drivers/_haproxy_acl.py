"""lbcore ACL conditions -> haproxy ``acl`` lines and ``use_backend`` conditions.

Theory of operation
-------------------
A condition is rendered from its AST (``lbcore.l7.acl``), never from the text the
operator wrote, in two steps:

1. ``translate`` maps each ``Match`` to haproxy *leaves* (one sample expression, a
   match method, ``-i`` or not, and patterns) joined by and/or/not, choosing the
   haproxy expression that has lbcore's meaning (see "Semantics" below). What
   haproxy cannot express raises ``Inexpressible``; the renderer names the field.
2. haproxy conditions are flat: an OR (``||``) of ANDs (juxtaposition) of possibly
   negated ACL names, without parentheses. ``ConditionWriter`` pushes negations to
   the leaves (De Morgan) and multiplies out to that disjunctive normal form. When
   a product would grow past ``MAX_TERMS`` terms (``(a || b) (c || d) ...`` doubles
   at each factor), the largest factor is computed first into a boolean variable
   (``http-request set-var(txn.lb_cN) bool(true) if ...``) and used as a leaf
   (``var(txn.lb_cN) -m bool``), so the output stays linear in the input.

Each distinct leaf becomes one named ``acl`` line (several lines with the same name
when it has many patterns: haproxy ORs them), named after the lbcore ACL that first
uses it: ``api`` when that ACL is one leaf, ``api:1``, ``api:2``... otherwise.

Semantics (lbcore -> haproxy 2.6)
---------------------------------
- host: a transaction variable ``txn.lb_host`` holds lbcore's normalised host,
  computed once per request from the last Host header line:
  ``req.fhdr(host,-1),lower,regsub(...)``: lower case; a bracketed IPv6 literal
  becomes its content (``[::1]:8080`` -> ``::1``); otherwise the text before the
  one colon when there is exactly one (an unbracketed IPv6 address, with several,
  is kept whole, as ``lbcore.l7.facts.split_host`` does); trailing dots dropped.
  An empty result unsets the variable, so every test fails and ``-m found`` is
  false, as lbcore treats an empty host. ``*.example.com`` (one label) becomes the
  anchored regex ``^[^.]+\\.example\\.com$``. Host tests are case-insensitive.
- ssl_sni: ``ssl_fc_sni`` (https terminated by haproxy) or ``req.ssl_sni``
  (tls-passthrough), then ``lower`` and trailing dots dropped. On a plain http
  listener no request has an SNI: the test is ``FALSE``. With stunnel terminating
  TLS haproxy never sees the SNI: inexpressible.
- header: ``req.hdr(N)`` (haproxy splits on commas outside double quotes and trims,
  as lbcore does); fheader: ``req.fhdr(N)``. present: ``-m found``.
- cookie: ``req.cook(N)``; present: ``-m found``.
- query: ``urlp(N),url_dec(1)`` (percent-decoding and ``+`` as a space, as lbcore);
  present: a regex over the raw query string (``urlp`` does not find a parameter
  written without ``=``, which lbcore counts as present with an empty value).
- method: ``method -m str`` (haproxy's default method matching compares known
  methods by identity and ignores ``-i``); ignoring case: ``method,lower -m str``.
- src: ``src -m ip``. haproxy maps an IPv4 client to ``::ffff:a.b.c.d`` when it
  tests IPv6 networks, lbcore never matches an IPv4 client against an IPv6 network:
  an IPv6 network that contains ``::ffff:0:0/96`` is paired with
  ``!{ src ::ffff:0:0/96 }``.
- path, and every string method: ``-m str|beg|end|sub|reg|dom|dir`` with ``-i``
  when the match ignores case (ASCII case folding in haproxy; lbcore folds Unicode).
- always_true / always_false: haproxy's predefined ``TRUE`` / ``FALSE``.

Where the two cannot agree, the renderer refuses (empty patterns, which haproxy
does not match as lbcore does) or ``DIFFERENCES`` in ``haproxy.py`` says so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Union

from lbcore.l7.acl import Always, And, Condition, Match, Not, Or
from lbcore.l7.acl_parse import WORD_DELIMITERS

from ._haproxy_text import arg, word

__all__ = [
    "HOST_VAR",
    "HOST_VAR_RULES",
    "MAX_TERMS",
    "ConditionWriter",
    "HCond",
    "Inexpressible",
    "Leaf",
    "translate",
    "uses",
]

MAX_TERMS = 16  # DNF terms allowed from one product before a factor becomes a variable
MAX_LITERALS = 40  # literals in one AND before a chunk becomes a variable
MAX_WORDS = 60  # haproxy splits a line into at most 64 words (MAX_LINE_ARGS)
MAX_VALUES = 48  # patterns per acl line (the rest go on more lines of the same name)

# haproxy's predefined ACL names (acl.c, default_acl_list): never reused for ours.
PREDEFINED_ACLS = frozenset({
    "FALSE", "HTTP", "HTTP_1.0", "HTTP_1.1", "HTTP_2.0", "HTTP_CONTENT", "HTTP_URL_ABS",
    "HTTP_URL_SLASH", "HTTP_URL_STAR", "LOCALHOST", "METH_CONNECT", "METH_DELETE",
    "METH_GET", "METH_HEAD", "METH_OPTIONS", "METH_POST", "METH_PUT", "METH_TRACE",
    "RDP_COOKIE", "REQ_CONTENT", "TRUE", "WAIT_END",
})

HOST_VAR = "txn.lb_host"
# lbcore.l7.facts.split_host in haproxy converters: see the module docstring.
_HOST_EXPR = (
    "req.fhdr(host,-1),lower,"
    "regsub(" + arg(r"^\[([^]]*).*$|^([^:]*):[^:]*$") + "," + arg(r"\1\2") + "),"
    "regsub(" + arg(r"\.+$") + ",)"
)
HOST_VAR_RULES = (
    ("set-var(" + HOST_VAR + ")", _HOST_EXPR),
    ("unset-var(" + HOST_VAR + ")", None),  # rendered with: if { var(txn.lb_host) -m len 0 }
)
_SNI_TAIL = ",lower,regsub(" + arg(r"\.+$") + ",)"
_MAPPED_V4 = ipaddress.ip_network("::ffff:0:0/96")

_METHODS = {
    "equals": "str",
    "prefix": "beg",
    "suffix": "end",
    "contains": "sub",
    "regex": "reg",
    "domain": "dom",
    "dir": "dir",
    "present": "found",
}


class Inexpressible(ValueError):
    """A condition haproxy cannot express with lbcore's meaning."""


@dataclass(frozen=True, slots=True)
class Leaf:
    """One haproxy ACL test: ``EXPR [-i] -m METHOD [--] VALUES...``. ``expr`` is the
    sample expression with its arguments already quoted for the argument parser."""

    expr: str
    method: str
    icase: bool = False
    values: tuple[str, ...] = ()

    def line_words(self) -> list[str]:
        """The words after ``acl NAME`` (values not yet split over lines)."""
        out = [word(self.expr)]
        if self.icase:
            out.append("-i")
        out += ["-m", self.method]
        if self.values and self.values[0].startswith("-"):
            out.append("--")
        return out


@dataclass(frozen=True, slots=True)
class HAnd:
    items: tuple[HCond, ...]


@dataclass(frozen=True, slots=True)
class HOr:
    items: tuple[HCond, ...]


@dataclass(frozen=True, slots=True)
class HNot:
    item: HCond


HCond = Union[Leaf, HAnd, HOr, HNot, bool]


@dataclass(frozen=True, slots=True)
class Context:
    """What a listener's requests carry: ``protocol`` (http, https, tcp,
    tls-passthrough) and whether stunnel terminates its TLS."""

    protocol: str
    stunnel: bool = False


def uses(cond: HCond, expr: str) -> bool:
    """Whether a leaf of ``cond`` reads a sample expression starting with ``expr``."""
    if isinstance(cond, Leaf):
        return cond.expr.startswith(expr)
    if isinstance(cond, (HAnd, HOr)):
        return any(uses(item, expr) for item in cond.items)
    if isinstance(cond, HNot):
        return uses(cond.item, expr)
    return False


# -- step 1: lbcore Match -> haproxy leaves ----------------------------------------------


def translate(cond: Condition, ctx: Context) -> HCond:
    """The haproxy form of an lbcore condition (raises Inexpressible)."""
    if isinstance(cond, Always):
        return True
    if isinstance(cond, Not):
        return HNot(translate(cond.item, ctx))
    if isinstance(cond, And):
        return HAnd(tuple(translate(item, ctx) for item in cond.items))
    if isinstance(cond, Or):
        return HOr(tuple(translate(item, ctx) for item in cond.items))
    if isinstance(cond, Match):
        return _match(cond, ctx)
    raise TypeError(f"not a condition: {cond!r}")


def _check_values(m: Match) -> None:
    if m.op in ("present", "cidr", "regex"):
        return
    for value in m.values:
        if value == "" or (m.op in WORD_DELIMITERS and not value.strip(WORD_DELIMITERS[m.op])):
            raise Inexpressible(
                f"the empty pattern {value!r} cannot be expressed in haproxy (it does not match empty values)"
            )


def _string_leaf(expr: str, m: Match, *, icase: bool | None = None) -> Leaf:
    _check_values(m)
    if m.op == "present":
        return Leaf(expr, "found")
    values = m.values
    if m.op in WORD_DELIMITERS:
        # haproxy ignores delimiters at both ends of a dom/dir pattern, as lbcore does.
        values = tuple(dict.fromkeys(v.strip(WORD_DELIMITERS[m.op]) for v in values))
    return Leaf(expr, _METHODS[m.op], m.ignore_case if icase is None else icase, values)


def _wildcard_regex(pattern: str) -> str:
    # "*.example.com": exactly one non-empty label before ".example.com".
    return "^[^.]+" + re.escape(pattern[1:]) + "$"


def _match(m: Match, ctx: Context) -> HCond:
    fetch = m.fetch
    if fetch == "host":
        if ctx.protocol not in ("http", "https"):
            raise Inexpressible(f"a {ctx.protocol} listener has no host")
        return _hostlike(f"var({HOST_VAR})", m)
    if fetch == "ssl_sni":
        if ctx.protocol == "http":
            return False  # no TLS, no SNI: lbcore never matches either
        if ctx.protocol == "https" and ctx.stunnel:
            raise Inexpressible(
                "ssl_sni cannot be expressed in haproxy when stunnel terminates TLS (haproxy never sees the SNI)"
            )
        source = "ssl_fc_sni" if ctx.protocol == "https" else "req.ssl_sni"
        return _hostlike(source + _SNI_TAIL, m)
    if fetch == "src":
        return _src(m.values)
    if ctx.protocol not in ("http", "https"):
        raise Inexpressible(f"a {ctx.protocol} listener has no {fetch}")
    if fetch == "path":
        return _string_leaf("path", m)
    if fetch == "method":
        _check_values(m)
        if m.ignore_case:
            return Leaf("method,lower", "str", False, m.values)
        return Leaf("method", "str", False, m.values)
    if fetch == "cookie":
        return _string_leaf(f"req.cook({arg(m.name)})", m)  # type: ignore[arg-type]
    if fetch == "header":
        return _string_leaf(f"req.hdr({arg(m.name)})", m)  # type: ignore[arg-type]
    if fetch == "fheader":
        return _string_leaf(f"req.fhdr({arg(m.name)})", m)  # type: ignore[arg-type]
    if fetch == "query":
        if m.op == "present":
            name = re.escape(m.name)  # type: ignore[arg-type]
            return Leaf("query", "reg", False, (f"(^|&){name}(=|&|$)",))
        return _string_leaf(f"urlp({arg(m.name)}),url_dec(1)", m)  # type: ignore[arg-type]
    raise Inexpressible(f"the {fetch} fetch has no haproxy equivalent")


def _hostlike(expr: str, m: Match) -> HCond:
    """host and ssl_sni: normalised lower case; '*.domain' is one label."""
    if m.op == "wildcard":
        return Leaf(expr, "reg", True, tuple(_wildcard_regex(v) for v in m.values))
    if m.op == "present":
        return Leaf(expr, "found")
    return _string_leaf(expr, m, icase=True)


def _src(values: tuple[str, ...]) -> HCond:
    plain: list[str] = []
    guarded: list[str] = []
    for value in values:
        net = ipaddress.ip_network(value)
        if net.version == 6 and _MAPPED_V4.subnet_of(net):  # type: ignore[arg-type]
            guarded.append(value)
        else:
            plain.append(value)
    parts: list[HCond] = []
    if plain:
        parts.append(Leaf("src", "ip", False, tuple(plain)))
    if guarded:
        parts.append(HAnd((Leaf("src", "ip", False, tuple(guarded)), HNot(Leaf("src", "ip", False, (str(_MAPPED_V4),))))))
    return parts[0] if len(parts) == 1 else HOr(tuple(parts))


# -- step 2: disjunctive normal form, named leaves, lines ---------------------------------

Literal = tuple[Leaf, bool]  # (leaf, negated)
Term = tuple  # of Literal, in order of first appearance; the empty term is "true"


def _product(parts: list[list[Term]]) -> list[Term]:
    terms: list[Term] = [()]
    for part in parts:
        grown: list[Term] = []
        seen: set[frozenset] = set()
        for left in terms:
            for right in part:
                term = left + tuple(lit for lit in right if lit not in left)
                if any((leaf, not neg) in term for leaf, neg in term):
                    continue  # a and !a: never true
                key = frozenset(term)
                if key not in seen:
                    seen.add(key)
                    grown.append(term)
        terms = grown
    return terms


def _union(parts: list[list[Term]]) -> list[Term]:
    out: list[Term] = []
    seen: set[frozenset] = set()
    for part in parts:
        for term in part:
            if not term:
                return [()]  # one always-true term makes the whole OR true
            key = frozenset(term)
            if key not in seen:
                seen.add(key)
                out.append(term)
    return out


class ConditionWriter:
    """Writes one frontend's ACL lines, variables and conditions.

    ``scope`` is the variable scope (``txn`` in http frontends, ``sess`` in tcp
    ones) and ``rule`` the rule keyword that sets variables (``http-request`` or
    ``tcp-request content``).
    """

    def __init__(self, scope: str, rule: str) -> None:
        self.scope = scope
        self.rule = rule
        self.names: dict[Leaf, str] = {}
        self.acl_lines: list[list[str]] = []
        self.var_lines: list[list[str]] = []
        self._vars = 0
        self._owner = ""
        self._owner_count = 0
        self._owner_single = False

    # -- naming ---------------------------------------------------------------------
    def _name(self, leaf: Leaf) -> str:
        name = self.names.get(leaf)
        if name is not None:
            return name
        if self._owner_single and self._owner not in PREDEFINED_ACLS and self._owner not in self.names.values():
            name = self._owner
        else:
            self._owner_count += 1
            name = f"{self._owner}:{self._owner_count}"
        self.names[leaf] = name
        head = ["acl", name] + leaf.line_words()
        if not leaf.values:
            self.acl_lines.append(head)
        for start in range(0, len(leaf.values), MAX_VALUES):
            self.acl_lines.append(head + [word(v) for v in leaf.values[start : start + MAX_VALUES]])
        return name

    def _variable(self, terms: list[Term]) -> Leaf:
        self._vars += 1
        var = f"{self.scope}.lb_c{self._vars}"
        for line in self._condition_lines([self.rule, f"set-var({var})", "bool(true)"], terms):
            self.var_lines.append(line)
        return Leaf(f"var({var})", "bool")

    # -- normal form ------------------------------------------------------------------
    def _dnf(self, cond: HCond, negated: bool) -> list[Term]:
        if isinstance(cond, bool):
            return [()] if cond != negated else []
        if isinstance(cond, Leaf):
            return [((cond, negated),)]
        if isinstance(cond, HNot):
            return self._dnf(cond.item, not negated)
        parts = [self._dnf(item, negated) for item in cond.items]
        conjunction = isinstance(cond, HAnd) != negated
        if not conjunction:
            return _union(parts)
        while True:
            size = 1
            for part in parts:
                size *= max(len(part), 1)
            if size <= MAX_TERMS:
                break
            widest = max(range(len(parts)), key=lambda i: len(parts[i]))
            parts[widest] = [((self._variable(parts[widest]), False),)]
        return _product(parts)

    # -- output -------------------------------------------------------------------------
    def _literal(self, lit: Literal) -> str:
        leaf, negated = lit
        return ("!" if negated else "") + self._name(leaf)

    def _term_words(self, term: Term) -> list[str]:
        lits = list(term)
        while len(lits) > MAX_LITERALS:
            head, lits = lits[:MAX_LITERALS], lits[MAX_LITERALS:]
            lits.insert(0, (self._variable([tuple(head)]), False))
        return [self._literal(lit) for lit in lits] or ["TRUE"]

    def _condition_lines(self, prefix: list[str], terms: list[Term]) -> list[list[str]]:
        if not terms:
            return [prefix + ["if", "FALSE"]]
        lines: list[list[str]] = []
        current: list[str] = []
        for term in terms:
            words_ = self._term_words(term)
            if current and len(prefix) + 1 + len(current) + 1 + len(words_) > MAX_WORDS:
                lines.append(prefix + ["if"] + current)
                current = []
            current = current + ["||"] + words_ if current else words_
        lines.append(prefix + ["if"] + current)
        return lines

    def condition(self, owner: str, cond: HCond, prefix: list[str]) -> list[list[str]]:
        """Lines ``PREFIX if ...`` that together hold when ``cond`` does (several
        lines are alternatives: they suit actions where the first match wins or that
        are idempotent, like use_backend and set-var). ``owner`` names new leaves."""
        self._owner = owner
        self._owner_count = 0
        leaves = _leaves(cond)
        self._owner_single = len(leaves) == 1
        for leaf in leaves:  # name (and write) the leaves in the order the condition reads
            self._name(leaf)
        terms = self._dnf(cond, False)
        return self._condition_lines(prefix, terms)


def _leaves(cond: HCond) -> list[Leaf]:
    """The distinct leaves of a condition, in reading order."""
    seen: dict[Leaf, None] = {}

    def walk(node: HCond) -> None:
        if isinstance(node, Leaf):
            seen.setdefault(node, None)
        elif isinstance(node, (HAnd, HOr)):
            for item in node.items:
                walk(item)
        elif isinstance(node, HNot):
            walk(node.item)

    walk(cond)
    return list(seen)
