"""The scenarios of issue 7, in the order a run measures them.

Each compares servers with equivalent configurations (``bench.configs``) under the
same load. ``kind``: ``wrk`` runs measure requests (or handshakes, or MiB) per
server CPU-second; ``idle`` measures memory per idle keep-alive connection;
``speed`` is ``openssl speed`` on the server CPU, the ceiling for handshakes.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.configs import BIG_PATH, ROUTING_RULES

__all__ = ["SCENARIOS", "Scenario", "by_name"]

PROXIES = ("haproxy", "lbcore", "naive", "nginx")
TLS_SERVERS = ("haproxy", "lbcore", "stunnel", "nginx", "naive")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    kind: str  # wrk | idle | speed
    servers: tuple[str, ...] = ()
    script: str = "report.lua"
    path: str = "/"
    connections: int = 50
    unit: str = "requests"  # what is counted per server CPU-second: requests, handshakes, MiB
    tls: str | None = None  # certificate key type, see bench.certs.KEY_TYPES
    resume: bool = True  # TLS: may the server resume sessions
    acls: int = 3
    fixed_workers: bool = False  # server labels carry their worker counts (scaling)
    idle_count: int = 10_000
    access_log: bool = True  # when the run has access logs on (the default)

    @property
    def new_connection_per_request(self) -> bool:
        return self.script == "close.lua"


SCENARIOS = (
    Scenario("keepalive", "HTTP keep-alive, small response", "wrk", PROXIES),
    Scenario("keepalive-nolog", "HTTP keep-alive, small response, access logs off", "wrk", ("haproxy", "lbcore"),
             access_log=False),
    Scenario("keepalive-paced", "HTTP keep-alive at a fixed pace (~10k requests/s offered): cost at equal load",
             "wrk", PROXIES, script="paced.lua"),
    Scenario("close", "HTTP, new connection per request", "wrk", PROXIES, script="close.lua"),
    Scenario(f"acl{ROUTING_RULES}", f"L7 routing, {ROUTING_RULES} ACLs (host and path), keep-alive", "wrk",
             ("haproxy", "lbcore"), script=f"acl{ROUTING_RULES}.lua", acls=ROUTING_RULES),
    Scenario("big", "1 MiB responses, keep-alive (throughput)", "wrk", PROXIES, path=BIG_PATH, connections=8,
             unit="MiB"),
    Scenario("scaling", "HTTP keep-alive, 1 vs 2 workers (haproxy: threads), all on the server CPU", "wrk",
             ("haproxy", "haproxy-2t", "lbcore", "lbcore-2w"), fixed_workers=True),
    Scenario("tls-full-rsa", "TLS full handshake per request, RSA-2048", "wrk", TLS_SERVERS, script="close.lua",
             unit="handshakes", tls="rsa2048", resume=False),
    Scenario("tls-full-ecdsa", "TLS full handshake per request, ECDSA P-256", "wrk", TLS_SERVERS,
             script="close.lua", unit="handshakes", tls="ecdsa-p256", resume=False),
    Scenario("tls-resumed", "TLS resumed handshake per request (session tickets), RSA-2048", "wrk", TLS_SERVERS,
             script="close.lua", unit="handshakes", tls="rsa2048", resume=True),
    Scenario("https-keepalive", "HTTPS keep-alive, small response, RSA-2048", "wrk", TLS_SERVERS, tls="rsa2048"),
    Scenario("idle-http", "10k idle HTTP keep-alive connections: memory each", "idle", PROXIES),
    Scenario("idle-https", "10k idle HTTPS keep-alive connections: memory each (ECDSA P-256)", "idle",
             TLS_SERVERS, tls="ecdsa-p256"),
    Scenario("openssl-speed", "openssl speed on one core: signatures/s, the full-handshake ceiling", "speed"),
)


def by_name(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"unknown scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")
