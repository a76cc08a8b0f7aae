"""Equivalent configurations for every server under test, rendered from one description.

A ``Frontend`` says what a scenario needs from the server under test: the port it
listens on, the nginx backend it proxies to, worker processes (haproxy threads),
how many routing rules, TLS (which certificate, resumption on or off). Each
renderer turns it into that server's own configuration, kept equivalent:

- the same timeouts (connect 5s, client 30s, server 30s, request head 10s,
  keep-alive 60s), the same connection limit (``MAXCONN``), X-Forwarded-For and
  X-Forwarded-Proto added, no health checks;
- an access log line per request sent to syslog over UDP (over TCP for lbcore and
  haproxy with ``access_log_tcp``) when ``access_log_port``
  is set (haproxy's httplog; lbcore's text format is the same layout; nginx's
  combined), none otherwise;
- the same ACLs in the same order, first match wins, every pool pointing at the
  nginx backend (lbcore and haproxy; the naive proxy and nginx do not route);
- kept-alive, reused backend connections (haproxy ``http-reuse always``; lbcore and
  nginx keep up to ``IDLE_BACKEND`` idle connections, more than any scenario opens);
- TLS without resumption: no session tickets and no session cache, so every
  handshake is a full one whatever the client offers; with resumption: tickets on,
  lbcore's workers sharing a ticket key file (haproxy's threads share one context:
  given ``tls-ticket-keys``, haproxy 2.6 here resumed only half the TLS 1.3
  reconnections, so it keeps its own keys).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

from bench.certs import CertFiles

__all__ = [
    "BIG_PATH",
    "Frontend",
    "MAXCONN",
    "Rule",
    "SMALL_BODY",
    "backend_nginx_conf",
    "haproxy_cfg",
    "lbcore_spec",
    "nginx_proxy_conf",
    "rules",
    "stunnel_conf",
]

HOST = "127.0.0.1"
MAXCONN = 10_200  # concurrent client connections: the 10k idle scenario plus headroom
IDLE_BACKEND = 256  # idle keep-alive backend connections kept (haproxy: unlimited)
SMALL_BODY = "hello from the nginx backend\n"
BIG_PATH = "/big"  # 1 MiB (BIG_SIZE bytes) static file on the backend
BIG_SIZE = 1 << 20
ROUTING_RULES = 50  # the L7 routing scenario's ACL count; bench/lua/acl50.lua sends its mix
# Timeouts, seconds. haproxy calls keepalive "http-keep-alive"; nginx splits them its own way.
TIMEOUTS = {"connect": 5, "client": 30, "server": 30, "http_request": 10, "keepalive": 60}


def _nofile() -> int:
    """The open-files limit every server may raise itself to (the hard limit)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@dataclass(frozen=True, slots=True)
class Frontend:
    port: int
    backend_port: int
    workers: int = 1  # lbcore workers, haproxy threads, nginx worker processes
    acls: int = 3  # 3: demo-like rules the traffic never matches; ROUTING_RULES: the routing scenario
    tls: CertFiles | None = None
    resume: bool = True  # TLS: session tickets and cache on
    ticket_keys: Path | None = None  # TLS with resume: lbcore's ticket key file, shared by its workers
    access_log_port: int | None = None  # syslog over UDP to 127.0.0.1:this port; None: no access log
    access_log_tcp: bool = False  # lbcore and haproxy: syslog over TCP to that port number instead (nginx: UDP)
    admin_port: int | None = None  # lbcore: its admin listener (stats), like haproxy's stats socket

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ACL, in lbcore's compact syntax and as haproxy ``acl`` criteria (several
    criteria lines under one haproxy acl name are ORed, like lbcore's ``||``)."""

    name: str
    pool: str
    lbcore: str
    haproxy: tuple[str, ...]


# The demo's rules (examples/demo.yaml): host, path prefix, client network or cookie.
BASE_RULES = (
    Rule("api", "api", "hdr(host) -i api.example.com", ("hdr(host) -i api.example.com",)),
    Rule("static", "static", "path_beg /static/", ("path_beg /static/",)),
    Rule("beta", "beta", "src 10.0.0.0/8 || req.cook(beta) -m found", ("src 10.0.0.0/8", "req.cook(beta) -m found")),
)


def rules(count: int) -> tuple[Rule, ...]:
    """``BASE_RULES`` for 3; otherwise ``count`` rules alternating a Host match
    (svcK.example.com, K even) and a path prefix (/svcK/, K odd), over 10 pools."""
    if count == len(BASE_RULES):
        return BASE_RULES
    out = []
    for k in range(count):
        if k % 2 == 0:
            cond = f"hdr(host) -i svc{k}.example.com"
        else:
            cond = f"path_beg /svc{k}/"
        out.append(Rule(f"r{k}", f"p{k % 10}", cond, (cond,)))
    return tuple(out)


def _pools(fe: Frontend) -> list[str]:
    return ["www"] + sorted({rule.pool for rule in rules(fe.acls)})


def lbcore_spec(fe: Frontend) -> dict:
    """The Spec (as plain data, written out as YAML) for ``lbcore serve``."""
    listener: dict = {
        "name": "bench",
        "bind": f"{HOST}:{fe.port}",
        "protocol": fe.scheme,
        "acls": [{"name": r.name, "condition": r.lbcore, "pool": r.pool} for r in rules(fe.acls)],
        "default_pool": "www",
    }
    if fe.workers > 1:
        # One listening socket per worker, as an operator running several would set:
        # the kernel spreads the connections over the workers, where a shared socket
        # lets the first to wake take them all. haproxy spreads its threads' by itself.
        listener["shards"] = "per-worker"
    if fe.tls is not None:
        tls: dict = {"certificates": [{"cert": str(fe.tls.cert), "key": str(fe.tls.key)}]}
        if not fe.resume:
            # lbcore's full-handshake mode (lbcore/spec/_tls.py): no tickets, no session-ID cache.
            tls.update(session_tickets=False, session_cache=0)
        elif fe.ticket_keys is not None:
            tls["ticket_keys"] = str(fe.ticket_keys)
        listener["tls"] = tls
    defaults: dict = {
        "timeouts": {**{k: f"{v}s" for k, v in TIMEOUTS.items()}, "drain": "1s"},
        "forwarded_headers": ["x-forwarded-for", "x-forwarded-proto"],
        "maxconn": MAXCONN,
    }
    if fe.access_log_port is not None:
        transport = "tcp" if fe.access_log_tcp else "udp"
        defaults["access_log"] = {"format": "text", "target": f"syslog+{transport}://{HOST}:{fe.access_log_port}",
                                  "facility": "local0", "tag": "lbcore"}
    spec: dict = {
        "version": 1,
        "defaults": defaults,
        "listeners": [listener],
        "pools": [
            {
                "name": name,
                "idle_connections_per_member": IDLE_BACKEND,
                "members": [{"name": "nginx", "address": f"{HOST}:{fe.backend_port}"}],
            }
            for name in _pools(fe)
        ],
    }
    if fe.admin_port is not None:
        spec["admin"] = {"bind": f"{HOST}:{fe.admin_port}", "stats_page": True, "metrics": True}
    return spec


def haproxy_cfg(fe: Frontend, stats_socket: Path) -> str:
    t = TIMEOUTS
    tls_global, bind_tls = "", ""
    if fe.tls is not None:
        bind_tls = f" ssl crt {fe.tls.combined}"
        if not fe.resume:
            tls_global = "    tune.ssl.cachesize 0\n"
            bind_tls += " no-tls-tickets"

    acls = "".join(f"    acl {r.name} {criterion}\n" for r in rules(fe.acls) for criterion in r.haproxy)
    uses = "".join(f"    use_backend {r.pool} if {r.name}\n" for r in rules(fe.acls))
    backends = "".join(f"backend {name}\n    server nginx {HOST}:{fe.backend_port}\n" for name in _pools(fe))
    log_global = log_defaults = log_ring = ""
    if fe.access_log_port is not None and fe.access_log_tcp:
        # haproxy's syslog over TCP: a ring its server forwards octet-counted (as
        # lbcore's syslog+tcp, and as lbcore's haproxy driver renders that target).
        log_global = "    log ring@benchlog format rfc5424 local0 info\n"
        log_ring = ("ring benchlog\n    format rfc5424\n    maxlen 8192\n    size 1048576\n"
                    "    timeout connect 5s\n    timeout server 10s\n"
                    f"    server syslog {HOST}:{fe.access_log_port} log-proto octet-count\n")
    elif fe.access_log_port is not None:
        log_global = f"    log {HOST}:{fe.access_log_port} local0 info\n"
    if fe.access_log_port is not None:
        log_defaults = "    log global\n    option httplog\n"
    return (
        "global\n"
        f"    nbthread {fe.workers}\n"
        f"    maxconn {MAXCONN}\n"
        # The fd limit cannot be raised here: haproxy would want 2 per connection, but
        # an idle client connection holds one; run with what there is.
        f"    ulimit-n {_nofile()}\n"
        "    no strict-limits\n"
        f"    stats socket {stats_socket} mode 600 level admin\n"
        f"{tls_global}{log_global}"
        "defaults\n"
        "    mode http\n"
        f"{log_defaults}"
        f"    timeout connect {t['connect']}s\n"
        f"    timeout client {t['client']}s\n"
        f"    timeout server {t['server']}s\n"
        f"    timeout http-request {t['http_request']}s\n"
        f"    timeout http-keep-alive {t['keepalive']}s\n"
        "    option forwardfor\n"
        "    http-reuse always\n"
        "frontend bench\n"
        f"    bind {HOST}:{fe.port}{bind_tls}\n"
        f"    http-request set-header X-Forwarded-Proto {fe.scheme}\n"
        f"{acls}{uses}"
        "    default_backend www\n"
        f"{backends}"
        f"{log_ring}"
    )


def nginx_proxy_conf(fe: Frontend, workdir: Path) -> str:
    t = TIMEOUTS
    ssl = ""
    if fe.tls is not None:
        cache = "shared:bench:10m" if fe.resume else "off"
        ssl = (
            f"        ssl_certificate {fe.tls.cert};\n"
            f"        ssl_certificate_key {fe.tls.key};\n"
            # Debian's nginx 1.22 defaults to TLSv1-1.2: without this it negotiates TLS 1.2
            # with wrk, whose resumption skips the key exchange that TLS 1.3's does.
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            f"        ssl_session_cache {cache};\n"
            f"        ssl_session_tickets {'on' if fe.resume else 'off'};\n"
        )
    access_log = "off"
    if fe.access_log_port is not None:
        access_log = f"syslog:server={HOST}:{fe.access_log_port},facility=local0,tag=nginx,severity=info combined"
    return (
        f"worker_processes {fe.workers};\n"
        f"worker_rlimit_nofile {_nofile()};\n"
        f"pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\n"
        f"events {{ worker_connections {MAXCONN + 2 * IDLE_BACKEND}; }}\n"
        "http {\n"
        f"    access_log {access_log};\n"
        f"    client_body_temp_path {workdir}/body;\n"
        f"    proxy_temp_path {workdir}/proxy;\n"
        "    proxy_max_temp_file_size 0;\n"  # stream big responses through memory buffers, as the others do
        f"    client_header_timeout {t['http_request']}s;\n"
        f"    keepalive_timeout {t['keepalive']}s;\n"
        "    keepalive_requests 1000000;\n"
        f"    send_timeout {t['client']}s;\n"
        f"    proxy_connect_timeout {t['connect']}s;\n"
        f"    proxy_read_timeout {t['server']}s;\n"
        "    upstream www {\n"
        f"        server {HOST}:{fe.backend_port};\n"
        f"        keepalive {IDLE_BACKEND};\n"
        "        keepalive_requests 1000000;\n"
        f"        keepalive_timeout {t['keepalive']}s;\n"
        "    }\n"
        "    server {\n"
        f"        listen {HOST}:{fe.port} backlog=4096{' ssl' if fe.tls else ''};\n"
        f"{ssl}"
        "        location / {\n"
        "            proxy_pass http://www;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def stunnel_conf(fe: Frontend, workdir: Path) -> str:
    """stunnel terminates TLS and relays bytes to the backend: one backend connection
    per client connection (it knows nothing of HTTP)."""
    assert fe.tls is not None
    return (
        "foreground = yes\n"
        "pid =\n"
        "syslog = no\n"
        "debug = 3\n"  # errors only: the default logs every connection
        "[bench]\n"
        f"accept = {HOST}:{fe.port}\n"
        f"connect = {HOST}:{fe.backend_port}\n"
        f"cert = {fe.tls.cert}\n"
        f"key = {fe.tls.key}\n"
        f"sessionResume = {'yes' if fe.resume else 'no'}\n"
        + ("" if fe.resume else "options = NO_TICKET\n")
        + f"TIMEOUTidle = {TIMEOUTS['keepalive']}\n"
    )


def backend_nginx_conf(port: int, workdir: Path) -> str:
    """The backend every proxy forwards to: a small fixed answer on every path, and
    a 1 MiB static file on ``BIG_PATH``."""
    big = workdir / "big.bin"
    if not big.exists() or big.stat().st_size != BIG_SIZE:
        big.write_bytes(bytes(range(256)) * (BIG_SIZE // 256))
    return (
        "worker_processes 1;\n"
        f"worker_rlimit_nofile {_nofile()};\n"
        f"pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\n"
        f"events {{ worker_connections {MAXCONN + 2 * IDLE_BACKEND}; }}\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {workdir}/body;\n"
        f"    proxy_temp_path {workdir}/proxy;\n"
        "    default_type text/plain;\n"
        "    sendfile on;\n"
        "    keepalive_requests 1000000;\n"
        "    keepalive_timeout 120s;\n"
        "    server {\n"
        f"        listen {HOST}:{port} backlog=4096;\n"
        f"        location = {BIG_PATH} {{ default_type application/octet-stream; alias {big}; }}\n"
        f'        location / {{ return 200 "{SMALL_BODY.strip()}\\n"; }}\n'
        "    }\n"
        "}\n"
    )
