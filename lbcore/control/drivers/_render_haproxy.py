"""Spec -> haproxy.cfg, crt-lists, certificate files: transform, escape, substitute.

``render_haproxy(spec, material, options)`` decides everything in Python and
builds the configuration as data (sections of lines of words, each word escaped by
``_haproxy_text``); writing it out is a join. Nothing is passed through from the
Spec's text: ACL conditions come from their AST (``_haproxy_acl``), durations from
seconds, addresses from ``Address``.

Mapping (lbcore -> haproxy 2.6):

- listener -> ``frontend NAME``; http/https in ``mode http``, tcp/tls-passthrough in
  ``mode tcp``. https terminated by haproxy: ``bind ... ssl crt-list FILE`` with the
  listener's TLS policy; terminated by stunnel: ``bind unix@RUNTIME/tls-NAME.sock
  accept-proxy`` behind stunnel (``_render_stunnel``).
- pool -> ``backend NAME`` (HTTP); a pool used by a tcp listener also gets
  ``backend POOL:LISTENER`` in ``mode tcp`` whose ``timeout tunnel`` is that
  listener's client timeout (lbcore's one idle deadline for both directions). Extra
  backends of a pool track the first one's health (``track``) and share its stick
  table.
- ACLs -> named ``acl`` lines + ``use_backend`` in Spec order; default_pool ->
  ``default_backend``.
- Per-listener request rewrites (X-Forwarded-*, Forwarded, add_headers, client
  certificate headers) run in the backend, guarded by ``{ fe_name LISTENER }`` when
  listeners differ: lbcore routes on the request as the client sent it, and in
  haproxy ``use_backend`` sees what frontend rules did to it.
- Limits -> ``http-request deny`` rules with lbcore's statuses (414, 431, 413) and
  global ``tune.bufsize`` / ``tune.http.maxhdr`` large enough for the largest.
- drain -> global ``hard-stop-after`` (the longest, as lbcore's supervisor waits for).
- Member admin state: maint -> ``disabled``; drain -> ``weight 0`` (no new sessions,
  persistent ones continue, as lbcore's drain).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lbcore import __version__
from lbcore.spec import Address, HealthCheck, Listener, Member, Pool, Spec, SpecIssue
from lbcore.spec._accesslog import LogTarget, parse_log_target
from lbcore.spec._values import parse_status_ranges
from lbcore.tls import DEFAULT_CIPHERS, CertStore

from ._haproxy_acl import (
    HOST_VAR,
    HOST_VAR_RULES,
    ConditionWriter,
    Context,
    HCond,
    Inexpressible,
    translate,
    uses,
)
from ._haproxy_text import arg, lf_literal, seconds, word
from ._material import Material, RenderError
from ._render_stunnel import TLS_VERSION, render_stunnel

__all__ = ["Layout", "RenderOptions", "RenderedFile", "Rendering", "render_haproxy", "status_regex"]

TLS_TERMINATIONS = ("haproxy", "stunnel")
DEFAULT_BUFSIZE = 16384  # haproxy's tune.bufsize
MAXREWRITE = 1024  # haproxy's tune.maxrewrite default: room kept for header rewrites
REQUEST_LINE_OVERHEAD = 12  # " " + " HTTP/1.1" + CRLF around method and target
UNIX_PATH_MAX = 107  # sun_path, without the terminating NUL
STICK_TABLE_SIZE = "1m"  # lbcore's SourcePersistence keeps at most 1 000 000 entries
ADMIN_FRONTEND = "lb:admin"  # ':' never appears in a Spec name
MAX_LOG_LINE = 8192  # bytes of one log message in a ring, as lbcore's own syslog sinks cut them
LOG_RING_SIZE = 1 << 20  # bytes a log ring buffers while its TCP syslog server is slow or away


@dataclass(frozen=True)
class RenderOptions:
    """``directory``: where the files will live (absolute; configurations name files
    by absolute path). ``runtime_dir``: sockets and the server-state file (default:
    ``directory``). ``tls_termination``: ``haproxy`` (``bind ... ssl``) or
    ``stunnel`` (stunnel terminates TLS and hands connections to haproxy with the
    PROXY protocol)."""

    directory: str
    runtime_dir: str | None = None
    tls_termination: str = "haproxy"

    @property
    def runtime(self) -> str:
        return self.runtime_dir or self.directory


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to the rendering's directory
    content: bytes = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True)
class Layout:
    """Spec names -> haproxy names, for the runtime API and stats. ``backends``: pool
    -> its backends, the primary first; ``frontends``: listener -> frontend."""

    frontends: dict[str, str]
    backends: dict[str, tuple[str, ...]]
    stunnel_listeners: tuple[str, ...] = ()

    def pool_of(self, backend: str) -> str | None:
        for pool, names in self.backends.items():
            if backend in names:
                return pool
        return None


@dataclass(frozen=True)
class Rendering:
    """Everything one revision needs on disk."""

    revision: str
    directory: str
    files: tuple[RenderedFile, ...]
    layout: Layout

    def text(self, path: str) -> str:
        for item in self.files:
            if item.path == path:
                return item.content.decode("utf-8")
        raise KeyError(path)

    def has(self, path: str) -> bool:
        return any(item.path == path for item in self.files)

    def write(self, directory: str | None = None) -> None:
        """Write every file under ``directory`` (default: the one rendered for),
        keys and certificates 0600 from the moment they exist."""
        base = directory or self.directory
        os.makedirs(base, exist_ok=True)
        for item in self.files:
            target = os.path.join(base, item.path)
            _make_dirs(base, os.path.dirname(item.path), 0o700 if item.mode == 0o600 else 0o755)
            temp = f"{target}.tmp{os.getpid()}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, item.mode)
            try:
                os.fchmod(fd, item.mode)
                os.write(fd, item.content)
            finally:
                os.close(fd)
            os.replace(temp, target)


# -- small helpers ----------------------------------------------------------------------


def _make_dirs(base: str, relative: str, mode: int) -> None:
    """Create each missing directory of ``relative`` under ``base`` with ``mode``
    exactly (not filtered by the umask): secrets live in 0700 directories."""
    path = base
    for part in [p for p in relative.split("/") if p]:
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            os.mkdir(path, mode)
            os.chmod(path, mode)


def haproxy_address(address: Address) -> str:
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"


def _two_digits(low: int, high: int) -> list[str]:
    """Regex alternatives for the two-digit numbers low..high (00..99)."""
    if low // 10 == high // 10:
        tens, a, b = low // 10, low % 10, high % 10
        return [f"{tens}{a}" if a == b else f"{tens}[{a}-{b}]"]
    out: list[str] = []
    if low % 10:
        out += _two_digits(low, low // 10 * 10 + 9)
        low = low // 10 * 10 + 10
    top = high if high % 10 == 9 else high // 10 * 10 - 1
    if top >= low:
        a, b = low // 10, top // 10
        out.append(f"{a}[0-9]" if a == b else f"[{a}-{b}][0-9]")
    if high % 10 != 9:
        out += _two_digits(high // 10 * 10, high)
    return out


def status_regex(expect: str) -> str:
    """An anchored regex for lbcore's ``200-299,302`` status list."""
    alternatives: list[str] = []
    for low, high in parse_status_ranges(expect):
        while low <= high:
            top = min(high, low // 100 * 100 + 99)
            alternatives += [f"{low // 100}{tail}" for tail in _two_digits(low % 100, top % 100)]
            low = top + 1
    return "^(" + "|".join(alternatives) + ")$"


class _Section:
    def __init__(self, *head: str, comment: str | None = None) -> None:
        self.head = " ".join(head)
        self.comment = comment
        self.lines: list[str] = []

    def add(self, *parts: str) -> None:
        """A line from words that are already escaped."""
        self.lines.append(" ".join(parts))

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def text(self) -> str:
        out = []
        if self.comment:
            out.append(f"# {self.comment}")
        out.append(self.head)
        out.extend(f"    {line}" for line in self.lines)
        return "\n".join(out) + "\n"


def _unset_fields(obj: Any, path: str, handled: Iterable[str], issues: list[SpecIssue], what: str) -> None:
    """Refuse any field this renderer does not know when it is set (not its
    default): a Spec feature added after this driver must fail loudly, not vanish."""
    known = set(handled)
    for f in dataclasses.fields(obj):
        if f.name.startswith("_") or f.name in known:
            continue
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value != default:
            issues.append(SpecIssue(f"{path}.{f.name}", f"not supported by the haproxy driver ({what})"))


# -- the renderer --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """An action and its condition: an OR of AND-terms (words), none = always."""

    action: list[str]
    terms: list[list[str]] | None = None

    def guarded(self, guard: list[str]) -> _Rule:
        return _Rule(self.action, [guard + term for term in (self.terms or [[]])])

    def words(self) -> list[str]:
        if not self.terms:
            return list(self.action)
        out = list(self.action) + ["if"]
        for index, term in enumerate(self.terms):
            out += (["||"] if index else []) + term
        return out


@dataclass
class _Usage:
    """Which listeners send to a pool, by mode."""

    http: list[Listener] = field(default_factory=list)
    tcp: list[Listener] = field(default_factory=list)


class _Renderer:
    def __init__(self, spec: Spec, material: Material, options: RenderOptions) -> None:
        self.spec = spec
        self.material = material
        self.options = options
        self.stunnel = options.tls_termination == "stunnel"
        self.issues: list[SpecIssue] = []
        self.files: list[RenderedFile] = []
        self.dir = options.directory.rstrip("/") or "/"
        self.runtime = options.runtime.rstrip("/") or "/"
        self.usage: dict[str, _Usage] = {pool.name: _Usage() for pool in spec.pools}
        for listener in spec.listeners:
            for pool in spec.pools_of(listener):
                usage = self.usage[pool.name]
                (usage.http if listener.protocol in ("http", "https") else usage.tcp).append(listener)
        self.log_rings: dict[str, _Section] = {}  # syslog+tcp target -> the ring that forwards to it
        self.backends: dict[str, tuple[str, ...]] = {}
        for pool in spec.pools:
            usage = self.usage[pool.name]
            names = [pool.name] if usage.http or not usage.tcp else []
            names += [f"{pool.name}:{listener.name}" for listener in usage.tcp]
            self.backends[pool.name] = tuple(names)

    # -- reporting -------------------------------------------------------------------------
    def fail(self, path: str, message: str) -> None:
        self.issues.append(SpecIssue(path, message))

    def duration(self, value: float, path: str) -> str:
        text = seconds(value)
        if text is None:
            self.fail(path, f"{value!r}s cannot be expressed in haproxy (millisecond resolution)")
            return "0ms"
        return text

    def file_path(self, relative: str) -> str:
        return f"{self.dir}/{relative}"

    def add_file(self, relative: str, content: str | bytes, mode: int = 0o644) -> str:
        data = content.encode("utf-8") if isinstance(content, str) else content
        self.files.append(RenderedFile(relative, data, mode))
        return self.file_path(relative)

    # -- the whole file ----------------------------------------------------------------------
    def render(self) -> Rendering:
        spec = self.spec
        if self.options.tls_termination not in TLS_TERMINATIONS:
            raise ValueError(f"tls_termination must be one of {TLS_TERMINATIONS}")
        for directory, what in ((self.dir, "directory"), (self.runtime, "runtime directory")):
            if not os.path.isabs(directory) or re.search(r"\s", directory):
                raise ValueError(f"the {what} must be an absolute path without blanks, got {directory!r}")
        _unset_fields(spec.admin, "admin", ("bind", "socket", "stats_page", "metrics"), self.issues, "unknown admin setting")
        sections = [self.global_section(), self.defaults_section()]
        if spec.admin.bind is not None:
            sections.append(self.admin_frontend())
        for listener in spec.listeners:
            sections.append(self.frontend(listener))
        for pool in spec.pools:
            sections.extend(self.pool_backends(pool))
        sections.extend(self.log_rings.values())
        if self.stunnel:
            self.stunnel_files()
        if self.issues:
            raise RenderError(self.issues)
        header = (
            f"# haproxy.cfg for lbcore revision {spec.revision}, rendered by lbcore {__version__}.\n"
            "# Generated: edit the Spec, not this file.\n\n"
        )
        cfg = header + "\n".join(section.text() for section in sections)
        self.files.insert(0, RenderedFile("haproxy.cfg", cfg.encode("utf-8"), 0o644))
        layout = Layout(
            frontends={listener.name: listener.name for listener in spec.listeners},
            backends=dict(self.backends),
            stunnel_listeners=tuple(l.name for l in spec.listeners if l.protocol == "https" and self.stunnel),
        )
        return Rendering(spec.revision, self.dir, tuple(self.files), layout)

    # -- global and defaults ----------------------------------------------------------------
    def global_section(self) -> _Section:
        spec = self.spec
        g = _Section("global")
        g.add("description", word(f"lbcore revision {spec.revision}"))
        # No global maxconn: lbcore limits each listener (frontend maxconn), not the
        # total; haproxy then sizes its own from the file descriptor limit.
        stats_socket = f"{self.runtime}/haproxy.sock"
        if len(stats_socket) > UNIX_PATH_MAX:
            raise ValueError(f"runtime directory too long for a unix socket path: {stats_socket!r}")
        g.add("stats", "socket", word(stats_socket), "mode", "600", "level", "admin", "expose-fd", "listeners")
        if self.spec.admin.socket is not None:
            g.add("stats", "socket", word(self.spec.admin.socket), "mode", "600", "level", "admin")
        g.add("stats", "timeout", "30s")
        g.add("server-state-file", word(f"{self.runtime}/server-state"))
        drains = [l.timeouts.drain for l in spec.listeners]
        if drains:
            longest = max(drains)
            g.add("hard-stop-after", self.duration(longest, "listeners[*].timeouts.drain") if longest > 0 else "1ms")
        self.spread_checks(g)
        http = [l for l in spec.listeners if l.protocol in ("http", "https")]
        if http:
            head = max(l.limits.max_request_line + l.limits.max_header_bytes + 2 for l in http) + MAXREWRITE
            bufsize = max(DEFAULT_BUFSIZE, -(-head // 1024) * 1024)
            if bufsize != DEFAULT_BUFSIZE:
                g.add("tune.bufsize", str(bufsize))
            g.add("tune.http.maxhdr", str(max(l.limits.max_headers for l in http) + 2))
        self.ssl_cache(g)
        return g

    def spread_checks(self, g: _Section) -> None:
        checked = [pool for pool in self.spec.pools if pool.health is not None]
        if not checked:
            return
        first = checked[0]
        jitter = first.health.jitter  # type: ignore[union-attr]
        for pool in checked[1:]:
            if pool.health.jitter != jitter:  # type: ignore[union-attr]
                self.fail(f"pools[{pool.name}].health.jitter",
                          f"haproxy spreads every check alike (spread-checks), but pool {first.name} has jitter {jitter:g}")
        percent = jitter * 100
        if abs(percent - round(percent)) > 1e-9 or percent > 50:
            self.fail(f"pools[{first.name}].health.jitter",
                      f"jitter {jitter:g} cannot be expressed in haproxy (spread-checks takes whole percents up to 50)")
        elif round(percent):
            g.add("spread-checks", str(round(percent)))

    def ssl_cache(self, g: _Section) -> None:
        tls = [l for l in self.spec.listeners if l.protocol == "https" and l.tls is not None and not self.stunnel]
        if not tls:
            return
        size = tls[0].tls.session_cache  # type: ignore[union-attr]
        for listener in tls[1:]:
            if listener.tls.session_cache != size:  # type: ignore[union-attr]
                self.fail(f"listeners[{listener.name}].tls.session_cache",
                          f"haproxy has one session cache for every listener (tune.ssl.cachesize), "
                          f"but listener {tls[0].name} sets {size}")
        g.add("tune.ssl.cachesize", str(size))

    def defaults_section(self) -> _Section:
        d = _Section("defaults")
        d.add("load-server-state-from-file", "global")
        d.add("option", "dontlognull")
        return d

    # -- frontends --------------------------------------------------------------------------
    def frontend(self, listener: Listener) -> _Section:
        path = f"listeners[{listener.name}]"
        _unset_fields(listener, path, (
            # shards: haproxy spreads accepted connections over all its threads itself
            # (tune.listener.multi-queue, on by default), which is what per-worker asks for.
            "name", "bind", "protocol", "acls", "default_pool", "timeouts", "limits", "maxconn", "backlog", "shards",
            "forwarded_headers", "add_headers", "response_headers", "redirect", "tls", "access_log",
        ), self.issues, "unknown listener setting")
        http = listener.protocol in ("http", "https")
        fe = _Section("frontend", listener.name, comment=f"listener {listener.name}: {listener.protocol} on {listener.bind}")
        fe.add("mode", "http" if http else "tcp")
        fe.add(*self.bind_words(listener))
        fe.add("maxconn", str(listener.maxconn))
        self.log_lines(listener, fe)
        t = listener.timeouts
        fe.add("timeout", "client", self.duration(t.client, f"{path}.timeouts.client"))
        if http:
            fe.add("timeout", "http-request", self.duration(t.http_request, f"{path}.timeouts.http_request"))
            fe.add("timeout", "http-keep-alive", self.duration(t.keepalive, f"{path}.timeouts.keepalive"))
            # On a reload, an idle keep-alive connection is closed after its next
            # response (Connection: close), not under a client that may be sending.
            fe.add("option", "idle-close-on-response")
        # Routing: translated first (the host variable is only computed when used).
        writer = ConditionWriter(*(("txn", "http-request") if http else ("sess", "tcp-request content")))
        ctx = Context(listener.protocol, stunnel=self.stunnel and listener.protocol == "https")
        routes: list[tuple[str, HCond]] = []
        if listener.redirect is None:  # a redirecting listener answers every request alike
            for acl in listener.acls:
                try:
                    routes.append((acl.pool, (acl.name, translate(acl.condition, ctx))))
                except Inexpressible as exc:
                    self.fail(f"{path}.acls[{acl.name}].condition", str(exc))
        use: list[list[str]] = []
        for pool, (name, cond) in routes:
            use.extend(writer.condition(name, cond, ["use_backend", word(self.backend_for(pool, listener))]))
        conditions = [cond for _, (_, cond) in routes]
        sni = any(uses(cond, "req.ssl_sni") for cond in conditions)
        if http:
            self.limit_rules(listener, fe)
            if any(uses(cond, f"var({HOST_VAR})") for cond in conditions) or (
                listener.redirect is not None and listener.redirect.host is None
            ):
                fe.note("lbcore's normalised host: lower case, no port, no trailing dot (lbcore.l7.facts.split_host)")
                (set_rule, expr), (unset_rule, _) = HOST_VAR_RULES
                fe.add("http-request", set_rule, word(expr))
                fe.add("http-request", unset_rule, "if", "{", f"var({HOST_VAR})", "-m", "len", "0", "}")
            if listener.redirect is not None:
                self.redirect_rules(listener, fe)
            self.response_rules(listener, fe)
        elif sni:
            fe.add("tcp-request", "inspect-delay", self.duration(t.http_request, f"{path}.timeouts.http_request"))
        for line in writer.acl_lines + writer.var_lines:
            fe.add(*line)
        if sni:
            fe.add("tcp-request", "content", "accept", "if", "{", "req.ssl_hello_type", "1", "}")
        for line in use:
            fe.add(*line)
        if listener.redirect is None and listener.default_pool is not None:
            fe.add("default_backend", word(self.backend_for(listener.default_pool, listener)))
        return fe

    def admin_frontend(self) -> _Section:
        """The admin listener: haproxy's own stats page and Prometheus exporter."""
        admin = self.spec.admin
        assert admin.bind is not None
        fe = _Section("frontend", ADMIN_FRONTEND, comment=f"admin listener on {admin.bind} (haproxy's stats page and metrics)")
        fe.add("mode", "http")
        words = ["bind", haproxy_address(admin.bind)]
        if admin.bind.family == socket.AF_INET6:
            words.append("v6only")
        fe.add(*words)
        fe.add("timeout", "client", "30s")
        fe.add("timeout", "http-request", "10s")
        if admin.metrics:
            fe.add("http-request", "use-service", "prometheus-exporter", "if", "{", "path", "-m", "str", "/metrics", "}")
        if admin.stats_page:
            fe.add("stats", "enable")
            fe.add("stats", "uri", "/stats")
            fe.add("stats", "refresh", "5s")
        fe.add("http-request", "return", "status", "404", "content-type", "text/plain", "string", word("not found"))
        return fe

    def log_lines(self, listener: Listener, fe: _Section) -> None:
        log = listener.access_log
        if log is None or not log.enabled:
            return
        path = f"listeners[{listener.name}].access_log"
        if log.format != "text":
            self.fail(f"{path}.format", "json access logs cannot be expressed in haproxy "
                      "(use format: text, haproxy's own httplog and tcplog layouts)")
            return
        target = parse_log_target(log.target)
        if target.kind == "stdout":
            fe.add("log", "stdout", "format", "raw", "local0", "info")
        elif target.kind == "syslog+udp":
            assert target.address is not None
            fe.add("log", haproxy_address(target.address), "format", "rfc5424", log.facility, "info")
            fe.add("log-tag", word(log.tag))
        elif target.kind == "syslog+unix":
            fe.add("log", word(target.path or ""), "format", "rfc5424", log.facility, "info")
            fe.add("log-tag", word(log.tag))
        elif target.kind == "syslog+tcp":
            fe.add("log", f"ring@{self.log_ring(target)}", "format", "rfc5424", log.facility, "info")
            fe.add("log-tag", word(log.tag))
        else:
            self.fail(f"{path}.target", f"haproxy cannot write a log file ({target}): use stdout or syslog")
            return
        fe.add("option", "httplog" if listener.protocol in ("http", "https") else "tcplog")

    def log_ring(self, target: LogTarget) -> str:
        """The ring that forwards logs to a syslog+tcp target (haproxy's way to log over
        TCP: its own buffer, sent octet-counted by a ring server); one per address."""
        key = str(target)
        if key not in self.log_rings:
            assert target.address is not None
            ring = _Section("ring", f"lbcore-log-{len(self.log_rings) + 1}", comment=f"access log to {key}")
            ring.add("description", word(f"access log to {key}"))
            ring.add("format", "rfc5424")
            ring.add("maxlen", str(MAX_LOG_LINE))
            ring.add("size", str(LOG_RING_SIZE))
            ring.add("timeout", "connect", "5s")
            ring.add("timeout", "server", "10s")
            ring.add("server", "syslog", haproxy_address(target.address), "log-proto", "octet-count")
            self.log_rings[key] = ring
        return self.log_rings[key].head.split()[1]

    def backend_for(self, pool: str, listener: Listener) -> str:
        return pool if listener.protocol in ("http", "https") else f"{pool}:{listener.name}"

    def bind_words(self, listener: Listener) -> list[str]:
        path = f"listeners[{listener.name}]"
        if listener.protocol == "https" and self.stunnel:
            unix = f"{self.runtime}/tls-{listener.name}.sock"
            if len(unix) > UNIX_PATH_MAX:
                self.fail(f"{path}.name", f"the stunnel socket path {unix!r} is too long for a unix socket")
            return ["bind", word(f"unix@{unix}"), "accept-proxy", "mode", "600", "backlog", str(listener.backlog)]
        out = ["bind", haproxy_address(listener.bind)]
        if listener.bind.family == socket.AF_INET6:  # lbcore binds v6 sockets v6-only
            out.append("v6only")
        out += ["backlog", str(listener.backlog)]
        if listener.protocol == "https" and listener.tls is not None:
            out += self.ssl_bind_words(listener)
        return out

    def ssl_bind_words(self, listener: Listener) -> list[str]:
        tls = listener.tls
        assert tls is not None
        path = f"listeners[{listener.name}].tls"
        _unset_fields(tls, path, (
            "certificates", "min_version", "ciphers", "ciphersuites", "curves", "alpn", "hsts", "client_auth",
            "session_tickets", "ticket_keys", "session_cache",
        ), self.issues, "unknown TLS setting")
        crt_list = self.crt_list(listener)
        out = ["ssl", "crt-list", word(crt_list), "ssl-min-ver", TLS_VERSION[tls.min_version]]
        out += ["ciphers", word(tls.ciphers or DEFAULT_CIPHERS)]
        if tls.ciphersuites:
            out += ["ciphersuites", word(tls.ciphersuites)]
        if tls.curves:
            out += ["curves", word(tls.curves)]
        if tls.alpn:
            out += ["alpn", word(",".join(tls.alpn))]
        if not tls.session_tickets:
            out.append("no-tls-tickets")
        elif listener.name in self.material.ticket_keys:
            out += ["tls-ticket-keys", word(self.ticket_file(listener))]
        auth = tls.client_auth
        if auth is not None and auth.mode != "none":
            out += ["verify", auth.mode, "ca-file", word(self.material.path(auth.ca))]  # type: ignore[arg-type]
            if auth.crl is not None:
                out += ["crl-file", word(self.material.path(auth.crl))]
        return out

    def stunnel_files(self) -> None:
        """Every certificate of stunnel's listeners (0600) and stunnel.conf."""
        paths: dict[tuple[str, int], str] = {}
        for listener in self.spec.listeners:
            if listener.protocol != "https" or listener.tls is None:
                continue
            store = self.material.stores.get(listener.name)
            if store is None:
                raise ValueError(f"no certificates loaded for listener {listener.name} (load_material first)")
            for index, cert in enumerate(store.certificates):
                paths[(listener.name, index)] = self.add_file(
                    f"certs/{listener.name}/{index}.pem", cert.chain_pem + cert.key_pem, 0o600
                )
        if not paths:
            return
        text, issues = render_stunnel(self.spec, self.material, paths, self.runtime)
        self.issues.extend(issues)
        self.add_file("stunnel.conf", text)

    def ticket_file(self, listener: Listener) -> str:
        # haproxy encrypts with the second key from the end (of the last three), lbcore
        # with the last: repeating the newest key makes it the one haproxy uses.
        keys = self.material.ticket_keys[listener.name]
        lines = [base64.b64encode(key).decode("ascii") for key in keys + keys[-1:]]
        return self.add_file(f"tickets/{listener.name}.keys", "".join(line + "\n" for line in lines), 0o600)

    def crt_list(self, listener: Listener) -> str:
        store = self.material.stores.get(listener.name)
        if store is None:
            raise ValueError(f"no certificates loaded for listener {listener.name} (load_material first)")
        lines = []
        for index, filters in crt_list_entries(store):
            pem = self.add_file(
                f"certs/{listener.name}/{index}.pem",
                store.certificates[index].chain_pem + store.certificates[index].key_pem,
                0o600,
            )
            lines.append(" ".join([pem] + filters))
        header = f"# listener {listener.name}: the default certificate first, then SNI filters per certificate\n"
        return self.add_file(f"crt-lists/{listener.name}.crtlist", header + "".join(line + "\n" for line in lines))

    def limit_rules(self, listener: Listener, fe: _Section) -> None:
        lim = listener.limits
        fe.note("lbcore's request limits, with lbcore's statuses")
        fe.add("http-request", "set-var(txn.lb_request_line)", "method,length")
        fe.add(*_deny(414, "URI Too Long", ["url,length,add(txn.lb_request_line)", "gt",
                                            str(lim.max_request_line - REQUEST_LINE_OVERHEAD)]))
        fe.add(*_deny(431, "Request Header Fields Too Large", ["req.hdrs,length", "gt", str(lim.max_header_bytes + 2)]))
        fe.add(*_deny(431, "Request Header Fields Too Large", ["req.fhdr_cnt", "gt", str(lim.max_headers)]))
        if lim.max_body is not None:
            fe.add(*_deny(413, "Content Too Large", [arg_expr("req.hdr_val", "content-length"), "gt", str(lim.max_body)]))

    def redirect_rules(self, listener: Listener, fe: _Section) -> None:
        r = listener.redirect
        assert r is not None
        scheme = r.scheme or ("https" if listener.protocol == "https" else "http")
        if r.host is not None:
            host = r.host if r.host.startswith("[") or ":" not in r.host else f"[{r.host}]"
            host_fmt = lf_literal(host)
        else:
            fe.add("http-request", "set-var(txn.lb_redirect_host)", word(f"str({arg(listener.bind.host)})"))
            fe.add("http-request", "set-var(txn.lb_redirect_host)", f"var({HOST_VAR})",
                   "if", "{", f"var({HOST_VAR})", "-m", "found", "}")
            fe.add("http-request", "set-var-fmt(txn.lb_redirect_host)", word("[%[var(txn.lb_redirect_host)]]"),
                   "if", "{", "var(txn.lb_redirect_host)", "-m", "sub", ":", "}")
            host_fmt = "%[var(txn.lb_redirect_host)]"
        default_port = 443 if scheme == "https" else 80
        port = f":{r.port}" if r.port not in (None, default_port) else ""
        location = f"{scheme}://{host_fmt}{port}%[pathq]"
        fe.add("http-request", "redirect", "location", word(location), "code", str(r.code))

    def response_rules(self, listener: Listener, fe: _Section) -> None:
        for name, value in listener.response_headers:
            fe.add("http-response", "add-header", word(name), word(lf_literal(value)))
        tls = listener.tls
        if listener.protocol == "https" and tls is not None and tls.hsts is not None:
            fe.add("http-response", "set-header", "Strict-Transport-Security", word(tls.hsts.header_value))

    # -- request rewrites (run in backends) ---------------------------------------------------
    def rewrites(self, listener: Listener) -> list[_Rule]:
        """The rules that change a request from ``listener`` before it goes to a member."""
        out: list[_Rule] = []
        tls = listener.tls
        auth = tls.client_auth if (listener.protocol == "https" and tls is not None) else None
        used = [["{", "ssl_c_used", "}"]]
        unused = [["!{", "ssl_c_used", "}"]]
        if auth is not None and auth.headers:
            if self.stunnel:
                self.fail(f"listeners[{listener.name}].tls.client_auth",
                          "client certificates cannot be expressed when stunnel terminates TLS (haproxy never sees them)")
            for name in auth.headers:
                out.append(_Rule(["http-request", "del-header", word(name)]))
            if auth.mode != "none":
                if auth.verify_header:
                    out.append(_Rule(["http-request", "set-header", word(auth.verify_header), "SUCCESS"], used))
                    out.append(_Rule(["http-request", "set-header", word(auth.verify_header), "NONE"], unused))
                if auth.subject_header:
                    out.append(_Rule(["http-request", "set-header", word(auth.subject_header),
                                      word("%[ssl_c_s_dn]")], used))
                if auth.fingerprint_header:
                    out.append(_Rule(["http-request", "set-header", word(auth.fingerprint_header),
                                      word("%[ssl_c_der,sha2(256),hex,lower]")], used))
            elif auth.verify_header:
                out.append(_Rule(["http-request", "set-header", word(auth.verify_header), "NONE"]))
        proto = "https" if listener.protocol == "https" else "http"
        forwarded = set(listener.forwarded_headers)
        if "x-forwarded-for" in forwarded:
            out.append(_Rule(["http-request", "add-header", "X-Forwarded-For", word("%[src]")]))
        if "x-forwarded-proto" in forwarded:
            out.append(_Rule(["http-request", "set-header", "X-Forwarded-Proto", proto]))
        if "x-forwarded-port" in forwarded:
            out.append(_Rule(["http-request", "set-header", "X-Forwarded-Port", str(listener.bind.port)]))
        if "forwarded" in forwarded:
            # RFC 7239 6: an IPv6 address is bracketed and quoted; v4-mapped clients are IPv4.
            v6 = [["{", "src", "-m", "ip", "::/0", "}", "!{", "src", "-m", "ip", "::ffff:0:0/96", "}"]]
            v4 = [["!{", "src", "-m", "ip", "::/0", "}"], ["{", "src", "-m", "ip", "::ffff:0:0/96", "}"]]
            out.append(_Rule(["http-request", "add-header", "Forwarded", word(f'for="[%[src]]";proto={proto}')], v6))
            out.append(_Rule(["http-request", "add-header", "Forwarded", word(f"for=%[src];proto={proto}")], v4))
        for name, value in listener.add_headers:
            out.append(_Rule(["http-request", "set-header", word(name), word(lf_literal(value))]))
        return out

    # -- backends ------------------------------------------------------------------------------
    def pool_backends(self, pool: Pool) -> list[_Section]:
        path = f"pools[{pool.name}]"
        _unset_fields(pool, path, (
            "name", "algorithm", "hash_header", "persistence", "health", "members", "timeouts",
            "max_connections_per_member", "idle_connections_per_member", "retries", "outlier", "slow_start", "tls",
        ), self.issues, "unknown pool setting")
        for member in pool.members:
            _unset_fields(member, f"{path}.members[{member.name}]", (
                "name", "address", "weight", "backup", "admin_state", "monitor_address", "monitor_port",
            ), self.issues, "unknown member setting")
        if pool.outlier is not None:
            if pool.health is None:
                self.fail(f"{path}.outlier", "haproxy brings a member marked down by errors back only through an "
                          "active check: outlier detection needs health")
            elif pool.outlier.consecutive_errors and pool.outlier.consecutive_5xx:
                self.fail(f"{path}.outlier", "haproxy observes one layer per server: set consecutive_errors "
                          "or consecutive_5xx, not both")
        names = self.backends[pool.name]
        usage = self.usage[pool.name]
        sections = []
        for name in names:
            tcp_listener = None
            if ":" in name:
                tcp_listener = next(l for l in usage.tcp if name == f"{pool.name}:{l.name}")
            sections.append(self.backend(pool, name, primary=names[0], tcp_listener=tcp_listener))
        return sections

    def backend(self, pool: Pool, name: str, primary: str, tcp_listener: Listener | None) -> _Section:
        path = f"pools[{pool.name}]"
        http = tcp_listener is None
        comment = f"pool {pool.name}" + (f" for tcp listener {tcp_listener.name}" if tcp_listener else "")
        be = _Section("backend", word(name), comment=comment)
        be.add("mode", "http" if http else "tcp")
        be.add(*self.balance_words(pool, http, path))
        if pool.algorithm in ("source", "uri") or (pool.algorithm == "hdr" and http):
            be.add("hash-type", "consistent")
        persistence = pool.persistence
        if persistence is not None and persistence.type == "cookie" and http:
            be.add("cookie", word(persistence.name), "insert", "indirect", "nocache", "httponly")
        if persistence is not None and persistence.type == "source":
            if name == primary:
                be.add("stick-table", "type", "ipv6", "size", STICK_TABLE_SIZE, "expire",
                       self.duration(persistence.timeout, f"{path}.persistence.timeout"))
                be.add("stick", "on", "src")
            else:
                be.add("stick", "on", "src", "table", word(primary))
        if any(m.backup for m in pool.members):
            be.add("option", "allbackups")
        be.add("retries", str(pool.retries))
        be.add("option", "redispatch", "1")
        t = pool.timeouts
        be.add("timeout", "connect", self.duration(t.connect, f"{path}.timeouts.connect"))
        be.add("timeout", "queue", self.duration(t.connect, f"{path}.timeouts.connect"))
        if http:
            be.add("timeout", "server", self.duration(t.server, f"{path}.timeouts.server"))
            be.add("timeout", "tunnel", self.duration(t.tunnel, f"{path}.timeouts.tunnel"))
        else:
            idle = self.duration(tcp_listener.timeouts.client, f"listeners[{tcp_listener.name}].timeouts.client")  # type: ignore[union-attr]
            be.add("timeout", "server", idle)
            be.add("timeout", "tunnel", idle)
        tracked = name != primary and pool.health is not None
        if pool.health is not None and not tracked:
            self.health_lines(pool, be)
        if http:
            self.rewrite_lines(pool, be)
        be.add(*self.default_server_words(pool, tracked))
        for member in pool.members:
            be.add(*self.server_words(pool, member, http, primary if tracked else None))
        return be

    def balance_words(self, pool: Pool, http: bool, path: str) -> list[str]:
        algorithm = pool.algorithm
        if algorithm == "random":
            return ["balance", "random(2)"]
        if algorithm == "hdr":
            if not http:
                return ["balance", "roundrobin"]  # no header on a tcp connection: lbcore falls back alike
            return ["balance", word(f"hdr({arg(pool.hash_header or '')})")]
        if algorithm == "uri" and not http:
            self.fail(f"{path}.algorithm", "uri hashing of tcp connections (an empty path) cannot be expressed in haproxy")
        return ["balance", algorithm]

    def health_lines(self, pool: Pool, be: _Section) -> None:
        hc = pool.health
        assert hc is not None
        path = f"pools[{pool.name}].health"
        be.add("timeout", "check", self.duration(hc.timeout, f"{path}.timeout"))
        if hc.type not in ("http", "https"):
            return
        be.add("option", "httpchk")
        send = ["http-check", "send", "meth", hc.method, "uri", word(hc.path), "ver", "HTTP/1.1", "hdr", "Host"]
        if hc.host is not None:
            send.append(word(lf_literal(hc.host)))
        else:
            send.append(word(f"%[srv_name,map({arg(self.host_map(pool, hc))})]"))
        be.add(*send)
        ranges = parse_status_ranges(hc.expect)
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            be.add("http-check", "expect", "status", str(ranges[0][0]))
        else:
            be.add("http-check", "expect", "rstatus", word(status_regex(hc.expect)))

    def host_map(self, pool: Pool, hc: HealthCheck) -> str:
        """A map from member name to the Host lbcore's check sends it (its address)."""
        default = 443 if hc.type == "https" else 80
        lines = []
        for member in pool.members:
            target = member.check_address
            literal = f"[{target.host}]" if ":" in target.host else target.host
            lines.append(f"{member.name} {literal if target.port == default else f'{literal}:{target.port}'}\n")
        return self.add_file(f"maps/{pool.name}.hosts", "".join(lines))

    def rewrite_lines(self, pool: Pool, be: _Section) -> None:
        per = [(listener, self.rewrites(listener)) for listener in self.usage[pool.name].http]
        if not per:
            return
        if all(rules == per[0][1] for _, rules in per):
            for rule in per[0][1]:
                be.add(*rule.words())
            return
        for listener, rules in per:
            guard = ["{", "fe_name", word(listener.name), "}"]
            for rule in rules:
                be.add(*rule.guarded(guard).words())

    def default_server_words(self, pool: Pool, tracked: bool) -> list[str]:
        path = f"pools[{pool.name}]"
        out = ["default-server"]
        hc = pool.health
        if hc is not None and not tracked:
            out += ["inter", self.duration(hc.interval, f"{path}.health.interval"), "rise", str(hc.rise), "fall", str(hc.fall)]
        if pool.max_connections_per_member:
            out += ["maxconn", str(pool.max_connections_per_member)]
        out += ["pool-max-conn", str(pool.idle_connections_per_member)]
        out += ["pool-purge-delay", self.duration(pool.timeouts.keepalive, f"{path}.timeouts.keepalive")]
        if pool.slow_start:
            out += ["slowstart", self.duration(pool.slow_start, f"{path}.slow_start")]
        if pool.outlier is not None and hc is not None:
            layer, limit = ("layer7", pool.outlier.consecutive_5xx) if pool.outlier.consecutive_5xx else (
                "layer4", pool.outlier.consecutive_errors)
            out += ["observe", layer, "error-limit", str(limit), "on-error", "mark-down"]
        out += self.server_tls_words(pool)
        return out

    def server_tls_words(self, pool: Pool) -> list[str]:
        tls = pool.tls
        hc = pool.health
        out: list[str] = []
        if tls is not None and tls.enabled:
            out += ["ssl", "ssl-min-ver", TLS_VERSION[tls.min_version]]
            if tls.verify == "required":
                out += ["verify", "required", "ca-file", word(self.material.path(tls.ca) if tls.ca else "@system-ca")]
                if tls.sni:
                    out += ["verifyhost", word(tls.sni)]
            else:
                out += ["verify", "none"]
            if tls.sni:
                out += ["sni", word(f"str({arg(tls.sni)})")]
            client = self.material.pool_client.get(pool.name)
            if client is not None:
                out += ["crt", word(self.add_file(f"certs/pools/{pool.name}.pem", client.chain_pem + client.key_pem, 0o600))]
            if hc is not None and hc.type in ("tcp", "http"):
                out.append("no-check-ssl")
        if hc is not None and hc.type in ("https", "tls-hello"):
            out += ["check-ssl", "verify", "none"] if not (tls is not None and tls.enabled) else ["check-ssl"]
            if hc.type == "https":
                out += ["check-alpn", "http/1.1"]
                sni = _check_sni(hc)
                if sni:
                    out += ["check-sni", word(sni)]
        return out

    def server_words(self, pool: Pool, member: Member, http: bool, track: str | None) -> list[str]:
        out = ["server", word(member.name), haproxy_address(member.address)]
        weight = 0 if member.admin_state == "drain" else member.weight
        out += ["weight", str(weight)]
        if member.backup:
            out.append("backup")
        if member.admin_state == "maint":
            out.append("disabled")
        if pool.health is not None:
            if track is not None:
                out += ["track", word(f"{track}/{member.name}")]
            else:
                out.append("check")
                target = member.check_address
                if target != member.address:
                    host = f"[{target.host}]" if ":" in target.host else target.host
                    out += ["addr", host, "port", str(target.port)]
        if pool.persistence is not None and pool.persistence.type == "cookie" and http:
            out += ["cookie", word(member.name)]
        return out


def _check_sni(hc: HealthCheck) -> str | None:
    """lbcore's check SNI: the check host without a port; none for an address literal."""
    if hc.host is None or hc.host.startswith("["):
        return None
    name = hc.host.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


def arg_expr(fetch: str, *args: str) -> str:
    return f"{fetch}({','.join(arg(a) for a in args)})"


def _deny(status: int, reason: str, test: list[str]) -> list[str]:
    return ["http-request", "deny", "deny_status", str(status), "content-type", "text/plain",
            "string", word(f"{status} {reason}"), "if", "{", *test, "}"]


def crt_list_entries(store: CertStore) -> list[tuple[int, list[str]]]:
    """(certificate index, SNI filters) lines of a crt-list with lbcore's selection.

    lbcore gives each name to the first certificate (in Spec order) of each key type
    that carries it; exact names beat one-label wildcards (haproxy's order too), and
    haproxy picks the ECDSA or RSA certificate of a name by what the client supports.
    The default certificate comes first (haproxy's default is the first line); its
    filters are only the names it wins, so moving it first changes no choice. A
    certificate that wins no name is left out, except the default, which then gets a
    negative filter so that haproxy does not give it its own names.
    """
    certs = store.certificates
    owner: dict[tuple[str, str], int] = {}
    for index, cert in enumerate(certs):
        for name in cert.hostnames:
            owner.setdefault((name, cert.key_type), index)
    claims: dict[int, list[str]] = {index: [] for index in range(len(certs))}
    for (name, _key_type), index in owner.items():
        claims[index].append(name)
    entries: list[tuple[int, list[str]]] = []
    default = store.default_index
    order = [default] + [i for i in range(len(certs)) if i != default]
    for index in order:
        names = claims[index]
        if names:
            entries.append((index, names))
        elif index == default:
            hostnames = certs[index].hostnames
            entries.append((index, [f"!{hostnames[0]}"] if hostnames else []))
    return entries


def render_haproxy(spec: Spec, material: Material, options: RenderOptions) -> Rendering:
    """haproxy.cfg, crt-lists, certificate, ticket key and map files for ``spec``.

    Raises RenderError naming every field haproxy cannot express faithfully."""
    return _Renderer(spec, material, options).render()
