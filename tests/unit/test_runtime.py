"""lbcore.proxy.runtime: member facts and client addresses, as the request path uses them."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from lbcore.proxy import runtime
from lbcore.proxy.runtime import MemberInfo, client_v4, parse_client, parse_client_text


def test_a_member_authority_is_the_host_header_it_gets_when_the_client_sent_none():
    assert MemberInfo("p", "m", "10.0.0.5", 8080).authority == "10.0.0.5:8080"
    assert MemberInfo("p", "m", "::1", 8080).authority == "[::1]:8080"  # RFC 3986 3.2.2
    assert MemberInfo("p", "m", "app.internal", 80).authority == "app.internal:80"


def test_the_authority_does_not_change_member_equality():
    assert MemberInfo("p", "m", "::1", 80) == MemberInfo("p", "m", "::1", 80)
    assert MemberInfo("p", "m", "::1", 80) != MemberInfo("p", "m", "::1", 81)


def test_client_addresses():
    assert parse_client(("192.0.2.7", 51234)) == (ipaddress.ip_address("192.0.2.7"), 51234)
    assert parse_client(("fe80::1%eth0", 1, 0, 2)) == (ipaddress.ip_address("fe80::1"), 1)
    assert parse_client(("not an address", 1)) == (None, 0)
    assert parse_client(None) == (None, 0)
    # one object per distinct client: later connections share it
    assert parse_client(("198.51.100.1", 1))[0] is parse_client(("198.51.100.1", 2))[0]


def test_the_client_address_cache_is_bounded_and_drops_its_oldest(monkeypatch):
    monkeypatch.setattr(runtime, "ADDRESS_CACHE_SIZE", 2)
    first = parse_client_text(("203.0.113.1", 1))[0]
    parse_client_text(("203.0.113.2", 1))
    third = parse_client_text(("203.0.113.3", 1))[0]  # the cache is full: 203.0.113.1 goes
    assert parse_client_text(("203.0.113.3", 2))[0] is third
    again = parse_client_text(("203.0.113.1", 2))[0]
    assert again == first and again is not first


def test_an_ipv4_client_given_as_a_number_is_the_same_address_and_text():
    for text in ("192.0.2.7", "0.0.0.0", "255.255.255.255", "127.0.0.1"):
        number = int(ipaddress.IPv4Address(text))
        assert client_v4(number) == parse_client_text((text, 1))[:2] == (ipaddress.IPv4Address(text), text)
        assert client_v4(number)[0] is client_v4(number)[0]  # shared per client


def test_the_numbered_client_cache_is_bounded_too(monkeypatch):
    monkeypatch.setattr(runtime, "ADDRESS_CACHE_SIZE", 2)
    first = client_v4(0xCB007101)[0]
    client_v4(0xCB007102)
    third = client_v4(0xCB007103)[0]  # the cache is full: the first goes
    assert client_v4(0xCB007103)[0] is third
    again = client_v4(0xCB007101)[0]
    assert again == first and again is not first
    assert str(again) == "203.0.113.1"


def test_a_member_names_itself_with_its_authority():
    assert str(MemberInfo("web", "a1", "::1", 8080)) == "web/a1([::1]:8080)"
    assert str(MemberInfo("web", "a1", "10.0.0.5", 80)) == "web/a1(10.0.0.5:80)"


def test_client_address_text():
    assert parse_client_text(("192.0.2.7", 51234)) == (ipaddress.ip_address("192.0.2.7"), "192.0.2.7", 51234)
    # the address's own text, not the peername's spelling
    assert parse_client_text(("fe80::1%eth0", 1, 0, 2))[1:] == ("fe80::1", 1)
    assert parse_client_text(("2001:DB8:0:0::1", 7))[1] == "2001:db8::1"
    assert parse_client_text(("not an address", 1)) == (None, "", 0)
    assert parse_client_text(None) == (None, "", 0)


def test_a_member_info_is_a_frozen_value():
    info = MemberInfo("p", "m", "::1", 80)
    assert hash(info) == hash(MemberInfo("p", "m", "::1", 80))
    assert repr(info) == "MemberInfo(pool='p', name='m', host='::1', port=80)"
    assert info.key == ("::1", 80)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.host = "10.0.0.1"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del info.port  # type: ignore[misc]
    assert (info.host, info.port, info.authority) == ("::1", 80, "[::1]:80")
