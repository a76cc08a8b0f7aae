"""lbcore.l7.facts: the request facts an ACL reads, against reference definitions."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from lbcore.l7.facts import RequestFacts, split_host


def reference_split(target: str) -> tuple[str, str, str | None]:
    """(path, query, host from an absolute-form target): partition at the first "?",
    then cut the path at its first "#"; the query keeps everything after the "?"."""
    host = None
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        authority, target = (rest, "/") if slash == -1 else (rest[:slash], rest[slash:])
        host = split_host(authority)
    path, sep, query = target.partition("?")
    return path.split("#", 1)[0], query if sep else "", host


@given(st.sampled_from(["", "http://", "https://", "http:/", "ftp://"]), st.text(alphabet="/a?#=&%:.[]", max_size=24))
@example("", "/")
@example("", "/a?b#c")
@example("", "/a#b?c")
@example("http://", "Example.COM:80")
@example("https://", "[::1]:8443/x?y")
def test_path_query_and_host_split_as_the_reference(scheme: str, rest: str) -> None:
    target = scheme + rest
    path, query, host = reference_split(target)
    facts = RequestFacts("GET", target)
    assert (facts.path, facts.query) == (path, query)
    if host is not None:
        assert facts.host == host
    # Either accessor first: the split happens once, whichever asks.
    later = RequestFacts("GET", target)
    assert (later.query, later.path) == (query, path)


def test_a_plain_target_is_its_own_path() -> None:
    target = "/static/app.js"
    facts = RequestFacts("GET", target)
    assert facts.path is target and facts.query == ""


@given(st.lists(st.tuples(st.text(alphabet="aAbBcC-", min_size=1, max_size=4), st.text(max_size=3)), max_size=8))
def test_header_values_by_lower_case_name_as_the_reference(headers: list[tuple[str, str]]) -> None:
    facts = RequestFacts("GET", "/", headers)
    for name in {key.lower() for key, _ in headers} | {"absent"}:
        expected = [value for key, value in headers if key.lower() == name]
        assert facts.header_values(name) == expected
        assert facts.header(name) == (expected[-1] if expected else None)


def test_many_distinct_header_names_are_all_found() -> None:
    # More names than the engine keeps lowered (facts._LOWERED_MAX): the ones past the
    # bound are lowered each time, with the same result.
    headers = [(f"X-Name-{i}", str(i)) for i in range(2000)]
    facts = RequestFacts("GET", "/", headers)
    assert all(facts.header(f"x-name-{i}") == str(i) for i in range(2000))
    assert RequestFacts("GET", "/", headers).header_values("x-name-1999") == ["1999"]


def test_a_cookie_is_none_without_a_cookie_line_and_read_from_every_line_with_one() -> None:
    facts = RequestFacts("GET", "/", [("Host", "a.example")])
    assert facts.cookie("beta") is None
    assert facts.cookies == {}
    facts = RequestFacts("GET", "/", [("Cookie", 'a=1; beta="2"'), ("cookie", "beta=3; c=4")])
    assert facts.cookie("beta") == "2"  # the first of a repeated name
    assert facts.cookie("c") == "4"
    assert facts.cookie("d") is None
    assert facts.cookies == {"a": "1", "beta": "2", "c": "4"}


def test_a_v4_client_stays_v4_and_a_v4_mapped_v6_client_becomes_v4() -> None:
    assert str(RequestFacts(client_ip="192.0.2.7").client_ip) == "192.0.2.7"
    mapped = RequestFacts(client_ip="::ffff:192.0.2.7").client_ip
    assert mapped is not None and mapped.version == 4 and str(mapped) == "192.0.2.7"
    assert str(RequestFacts(client_ip="2001:db8::1").client_ip) == "2001:db8::1"
