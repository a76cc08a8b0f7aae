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
