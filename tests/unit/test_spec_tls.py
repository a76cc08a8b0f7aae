"""The TLS part of the Spec: fields, checks with paths, the defaults cascade, round
trips, diffs (with passphrases kept out)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.spec import (
    Address,
    ClientAuth,
    Hsts,
    Listener,
    Pool,
    PoolTls,
    Spec,
    SpecError,
    TlsCertificate,
    TlsPolicy,
    TlsSettings,
    diff,
    format_diff,
    loads_spec,
    parse_spec,
)


def base() -> dict[str, Any]:
    return {
        "listeners": [{"name": "web-tls", "bind": "127.0.0.1:8443", "protocol": "https", "default_pool": "www",
                       "tls": {"certificates": [{"cert": "certs/www.pem", "key": "certs/www.key", "default": True},
                                                {"cert": "certs/api.pem", "key": "certs/api.key", "passphrase": "s3cret"}]}}],
        "pools": [{"name": "www", "members": [{"name": "w1", "address": "127.0.0.1:9001"}]}],
    }


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return [str(issue) for issue in caught.value.errors]


def tls_of(data: dict[str, Any]) -> TlsSettings:
    tls = parse_spec(data).listener("web-tls").tls
    assert tls is not None
    return tls


def test_defaults() -> None:
    tls = tls_of(base())
    assert tls.min_version == "1.2" and tls.alpn == ("http/1.1",)
    assert tls.ciphers is tls.ciphersuites is tls.curves is tls.hsts is tls.client_auth is tls.ticket_keys is None
    assert tls.session_tickets is True and tls.session_cache == 20480
    assert tls.default_index == 0 and tls.certificates[1].key == "certs/api.key"
    assert tls.policy == TlsPolicy()


def test_every_field() -> None:
    data = base()
    data["listeners"][0]["tls"].update({
        "min_version": 1.3, "ciphers": "ECDHE+AESGCM:!aNULL", "ciphersuites": "TLS_AES_256_GCM_SHA384",
        "curves": "X25519:P-256", "alpn": ["http/1.1", "http/1.0"],
        "hsts": {"max_age": "180d", "include_subdomains": True},
        "client_auth": {"mode": "optional", "ca": "certs/clients.pem", "crl": "certs/clients.crl",
                        "subject_header": "X-Client-Subject", "fingerprint_header": None},
        "session_tickets": True, "ticket_keys": "/etc/lbcore/tickets.keys", "session_cache": 0,
    })
    data["listeners"][0]["tls"]["certificates"].append({"cert": "certs/combined.pem"})
    tls = tls_of(data)
    assert tls.min_version == "1.3" and tls.curves == "X25519:P-256" and tls.alpn == ("http/1.1", "http/1.0")
    assert tls.hsts == Hsts(180 * 86400, True, False) and tls.hsts.header_value == "max-age=15552000; includeSubDomains"
    assert tls.client_auth == ClientAuth("optional", "certs/clients.pem", "certs/clients.crl", "X-Client-Subject", None)
    assert tls.client_auth.headers == ("X-Client-Subject", "X-SSL-Client-Verify")
    assert tls.certificates[2].key is None and tls.session_cache == 0
    spec = parse_spec(data)
    assert parse_spec(spec.to_dict()) == spec
    assert parse_spec(json.loads(json.dumps(spec.to_dict()))) == spec


def test_yaml_file_form() -> None:
    spec = loads_spec("""
version: 1
defaults:
  tls: {min_version: 1.3, ticket_keys: keys/tickets.keys, hsts: {max_age: 365d, include_subdomains: true, preload: true}}
listeners:
  - name: web-tls
    bind: 127.0.0.1:8443
    protocol: https
    default_pool: www
    tls:
      certificates:
        - {cert: certs/www.pem, key: certs/www.key}
  - name: api-tls
    bind: 127.0.0.1:8444
    protocol: https
    default_pool: www
    tls:
      certificates: [{cert: certs/api.pem, key: certs/api.key}]
      min_version: "1.2"
      hsts: null
      session_tickets: false
  - name: pass
    bind: 127.0.0.1:8445
    protocol: tls-passthrough
    acls: [{name: api, condition: "req.ssl_sni -i api.example.com", pool: secure}]
    default_pool: www
pools:
  - {name: www, members: [{name: w1, address: 127.0.0.1:9001}]}
  - name: secure
    tls: {verify: required, ca: certs/ca.pem, sni: App.Internal, cert: certs/lb.pem, key: certs/lb.key, passphrase: pw}
    members: [{name: s1, address: 127.0.0.1:9101}]
""")
    web, api = spec.listener("web-tls").tls, spec.listener("api-tls").tls
    assert web is not None and api is not None
    # Cascade: web inherits everything; api overrides, turns HSTS off, and with
    # tickets off drops the inherited key file.
    assert web.min_version == "1.3" and web.ticket_keys == "keys/tickets.keys" and web.hsts is not None
    assert web.hsts.preload and web.policy == spec.defaults.tls
    assert api.min_version == "1.2" and api.hsts is None and api.session_tickets is False and api.ticket_keys is None
    secure = spec.pool("secure").tls
    assert secure == PoolTls(True, "required", "certs/ca.pem", "app.internal", "certs/lb.pem", "certs/lb.key", "pw")
    assert "pw" not in repr(secure) and "'pw'" not in repr(spec)
    assert spec.listener("pass").tls is None
    assert parse_spec(spec.to_dict()) == spec


@pytest.mark.parametrize("change, message", [
    ({"min_version": "1.1"}, "listeners[0].tls.min_version: '1.1' is not one of 1.2, 1.3 (did you mean '1.3'?)"),
    ({"min_version": 1.0}, "listeners[0].tls.min_version: '1.0' is not one of 1.2, 1.3 (did you mean '1.3'?)"),
    ({"alpn": ["h2"]}, "listeners[0].tls.alpn[0]: 'h2' is not a protocol lbcore speaks (ALPN may offer http/1.1, http/1.0)"),
    ({"alpn": ["http/1.1", "http/1.1"]}, "listeners[0].tls.alpn[1]: http/1.1 is listed twice"),
    ({"alpn": [""]}, "listeners[0].tls.alpn[0]: invalid ALPN protocol id ''"),
    ({"ciphers": "ECDHE RSA"}, "listeners[0].tls.ciphers: invalid cipher list 'ECDHE RSA' (OpenSSL syntax: NAME:NAME:...)"),
    ({"curves": ""}, "listeners[0].tls.curves: expected a non-empty string, got string ''"),
    ({"ciphersuites": 5}, "listeners[0].tls.ciphersuites: expected a non-empty string, got number 5"),
    ({"session_cache": -1}, "listeners[0].tls.session_cache: -1 is out of range (0..10000000)"),
    ({"session_tickets": "no"}, "listeners[0].tls.session_tickets: expected true or false, got string 'no'"),
    ({"session_tickets": False, "ticket_keys": "t.keys"},
     "listeners[0].tls.ticket_keys: ticket keys are only used with session_tickets: true"),
    ({"ticket_keys": ""}, "listeners[0].tls.ticket_keys: expected a non-empty string, got string ''"),
    ({"hsts": {"max_age": "1.5s"}}, "listeners[0].tls.hsts.max_age: must be whole seconds, got '1.5s'"),
    ({"hsts": {"preload": True, "max_age": "30d"}}, "listeners[0].tls.hsts.preload: preload needs include_subdomains: true"),
    ({"hsts": {"maxage": 5}}, "listeners[0].tls.hsts.maxage: unknown key (did you mean 'max_age'?)"),
    ({"client_auth": {"ca": "ca.pem"}}, "listeners[0].tls.client_auth.mode: required key missing"),
    ({"client_auth": {"mode": "required"}},
     "listeners[0].tls.client_auth.ca: client_auth required needs a ca (the bundle client certificates must chain to)"),
    ({"client_auth": {"mode": "none", "crl": "x.crl"}},
     "listeners[0].tls.client_auth.crl: client_auth none checks no certificate: it takes no ca or crl"),
    ({"client_auth": {"mode": "optional", "ca": "ca.pem", "verify_header": "X-SSL-Client-DN"}},
     "listeners[0].tls.client_auth.verify_header: X-SSL-Client-DN is also the subject_header"),
    ({"client_auth": {"mode": "optional", "ca": "ca.pem", "subject_header": "Connection"}},
     "listeners[0].tls.client_auth.subject_header: Connection is a hop-by-hop or framing header: the engine sets it"),
    ({"client_auth": {"mode": "sometimes", "ca": "ca.pem"}},
     "listeners[0].tls.client_auth.mode: 'sometimes' is not one of none, optional, required"),
    ({"certificats": []}, "listeners[0].tls.certificats: unknown key (did you mean 'certificates'?)"),
])
def test_field_errors(change: dict[str, Any], message: str) -> None:
    data = base()
    data["listeners"][0]["tls"].update(change)
    assert message in errors(data)


def test_preload_rules_and_max_age() -> None:
    assert Hsts(max_age=0).header_value == "max-age=0"
    with pytest.raises(SpecError) as caught:
        Hsts(max_age=86400, preload=True)
    assert [str(e) for e in caught.value.errors] == [
        "preload: preload needs include_subdomains: true",
        "preload: preload needs max_age of at least one year (31536000s)",
    ]


def test_certificate_rules() -> None:
    data = base()
    data["listeners"][0]["tls"]["certificates"] = [{"key": "a.key"}, {"cert": "a.pem", "key": 5}, {"cert": "a.pem", "default": 1}]
    assert errors(data) == [
        "listeners[0].tls.certificates[0].cert: required key missing",
        "listeners[0].tls.certificates[1].key: expected a non-empty string, got number 5",
        "listeners[0].tls.certificates[2].default: expected true or false, got number 1",
        "listeners[0].tls.certificates[2].cert: duplicate certificate 'a.pem' (first at certificates[1])",
    ]
    data["listeners"][0]["tls"]["certificates"] = [{"cert": "a.pem"}, {"cert": "b.pem"}]
    assert errors(data) == ["listeners[0].tls.certificates: exactly one certificate must be the default when there are several (found 0)"]


def test_listener_protocol_rules() -> None:
    data = base()
    data["listeners"][0]["protocol"] = "tls-passthrough"
    assert errors(data) == ["listeners[0].tls: only an https listener takes tls (this one is tls-passthrough)"]
    del data["listeners"][0]["tls"]
    data["listeners"][0]["acls"] = [{"name": "api", "condition": "req.ssl_sni -i api.example.com", "pool": "www"},
                                    {"name": "host", "condition": "hdr(host) -i api.example.com", "pool": "www"}]
    assert errors(data) == [
        "listeners[0].acls[1].condition: a tls-passthrough listener can only match on src and ssl_sni (found header)"]
    data["listeners"][0]["acls"].pop()
    assert parse_spec(data).listener("web-tls").protocol == "tls-passthrough"
    data = base()
    del data["listeners"][0]["tls"]
    assert errors(data) == ["listeners[0].tls: an https listener needs tls (its certificates)"]


def test_defaults_tls_rules() -> None:
    data = base()
    data["defaults"] = {"tls": {"certificates": [{"cert": "a.pem"}], "min_version": "1.0"}}
    assert errors(data) == [
        "defaults.tls.certificates: unknown key",
        "defaults.tls.min_version: '1.0' is not one of 1.2, 1.3 (did you mean '1.3'?)",
    ]
    data["defaults"] = {"tls": None}
    assert parse_spec(data).defaults.tls == TlsPolicy()
    # A bad defaults.tls is reported once; listeners fall back to the built-in policy.
    data["defaults"] = {"tls": {"alpn": ["h3"]}}
    assert errors(data) == ["defaults.tls.alpn[0]: 'h3' is not a protocol lbcore speaks (ALPN may offer http/1.1, http/1.0)"]


def test_pool_tls_rules() -> None:
    data = base()
    data["pools"][0]["tls"] = {"verify": "none", "ca": "ca.pem", "key": "k.pem", "passphrase": "x", "sni": "[::1]",
                               "min_version": "1.3", "enabled": "yes"}
    assert errors(data) == [
        "pools[0].tls.enabled: expected true or false, got string 'yes'",
        "pools[0].tls.sni: a server name is a DNS name, not an address",
        "pools[0].tls.ca: verify none checks no certificate: set verify: required to use a ca",
        "pools[0].tls.key: key without cert (the client certificate)",
        "pools[0].tls.passphrase: passphrase without cert (the client certificate)",
    ]
    data["pools"][0]["tls"] = {"verify": "maybe", "sni": "not a host"}
    assert errors(data) == [
        "pools[0].tls.verify: 'maybe' is not one of none, required",
        "pools[0].tls.sni: invalid host name 'not a host'",
    ]
    data["pools"][0]["tls"] = {}
    assert parse_spec(data).pool("www").tls == PoolTls()


def test_program_built_objects_are_checked() -> None:
    certs = (TlsCertificate("a.pem"),)
    settings = TlsSettings(certs, hsts=Hsts(), client_auth=ClientAuth("required", ca="ca.pem"), ticket_keys="t.keys")
    listener = Listener("s", Address("::1", 443), protocol="https", default_pool="p", tls=settings)
    spec = Spec(listeners=(listener,), pools=(Pool("p", tls=PoolTls(verify="none")),))
    assert parse_spec(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="ticket keys are only used"):
        TlsSettings(certs, session_tickets=False, ticket_keys="t.keys")
    with pytest.raises(SpecError, match="alpn"):
        TlsPolicy(alpn=("spdy/3",))


def test_diff_of_tls_fields_hides_passphrases() -> None:
    old = parse_spec(base())
    data = base()
    tls = data["listeners"][0]["tls"]
    tls["certificates"][1]["passphrase"] = "n3w-s3cret"
    tls["certificates"].append({"cert": "certs/new.pem", "key": "certs/new.key", "passphrase": "added-secret"})
    tls["hsts"] = {"max_age": "1d"}
    tls["ticket_keys"] = "tickets.keys"
    data["pools"][0]["tls"] = {"verify": "none", "cert": "lb.pem", "passphrase": "pool-secret"}
    changes = diff(old, parse_spec(data))
    text = format_diff(changes)
    assert text.splitlines() == [
        "~ listeners[web-tls].tls.certificates[certs/api.pem].passphrase: (secret) -> (secret)",
        "+ listeners[web-tls].tls.certificates[certs/new.pem]",
        "+ listeners[web-tls].tls.hsts",
        "+ listeners[web-tls].tls.ticket_keys: tickets.keys",
        "+ pools[www].tls",
    ]
    dumped = json.dumps([change.to_dict() for change in changes])
    for secret in ("s3cret", "n3w-s3cret", "added-secret", "pool-secret"):
        assert secret not in text and secret not in dumped
    assert '"passphrase": "(secret)"' in dumped


# -- round trips ------------------------------------------------------------------------------------------

names = st.sampled_from(["a.pem", "b.pem", "c/d.pem", "/abs/e.pem"])
policies = st.fixed_dictionaries({}, optional={
    "min_version": st.sampled_from(["1.2", "1.3", 1.2, 1.3]),
    "ciphers": st.none() | st.sampled_from(["ECDHE+AESGCM", "HIGH:!aNULL"]),
    "ciphersuites": st.none() | st.just("TLS_AES_128_GCM_SHA256"),
    "curves": st.none() | st.just("X25519:P-256"),
    "alpn": st.lists(st.sampled_from(["http/1.1", "http/1.0"]), unique=True),
    "hsts": st.none() | st.fixed_dictionaries({"max_age": st.integers(0, 10**8), "include_subdomains": st.booleans()}),
    "client_auth": st.none() | st.fixed_dictionaries({"mode": st.sampled_from(["optional", "required"]), "ca": names}),
    "session_tickets": st.just(True),
    "ticket_keys": st.none() | names,
    "session_cache": st.integers(0, 100000),
})


@settings(max_examples=80, deadline=None)
@given(policies, policies, st.lists(names, min_size=1, max_size=3, unique=True), st.data())
def test_round_trip_and_cascade(defaults: dict[str, Any], own: dict[str, Any], certs: list[str], data: st.DataObject) -> None:
    spec_data = base()
    default_index = data.draw(st.integers(0, len(certs) - 1))
    spec_data["defaults"] = {"tls": defaults}
    spec_data["listeners"][0]["tls"] = {
        "certificates": [{"cert": c, "key": None if i % 2 else c + ".key", "default": i == default_index} for i, c in enumerate(certs)],
        **own,
    }
    spec = parse_spec(spec_data)
    assert parse_spec(spec.to_dict()) == spec
    assert diff(spec, parse_spec(copy.deepcopy(spec.to_dict()))) == []
    tls = spec.listener("web-tls").tls
    assert tls is not None
    for key, value in own.items():  # what the listener says wins...
        got = getattr(tls, key)
        assert got == value or (key == "min_version" and got == f"{float(value):.1f}") or key in ("alpn", "hsts", "client_auth")
    for key in set(defaults) - set(own):  # ...and the rest comes from defaults
        assert getattr(tls, key) == getattr(spec.defaults.tls, key)
