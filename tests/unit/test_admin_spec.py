"""The Spec's admin block: reading, checking with paths, defaults, round trip, diff."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lbcore.spec import AdminSettings, Address, Spec, SpecError, diff, format_diff, loads_spec, parse_spec


def base(admin: Any = "absent") -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "default_pool": "www"}],
        "pools": [{"name": "www", "members": [{"name": "w1", "address": "127.0.0.1:9001"}]}],
    }
    if admin != "absent":
        data["admin"] = admin
    return data


def errors(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(issue) for issue in info.value.errors]


def test_off_unless_the_file_says_so():
    for data in (base(), base(None), base({})):
        admin = parse_spec(data).admin
        assert admin == AdminSettings() and admin.bind is None and admin.socket is None
        assert admin.stats_page and admin.metrics
    assert parse_spec(base()).to_dict()["admin"] == {"bind": None, "socket": None, "stats_page": True, "metrics": True}


def test_a_whole_block_from_yaml():
    spec = loads_spec(yaml.safe_dump(base({"bind": "127.0.0.1:9100", "socket": "/run/lbcore/lbcore.sock",
                                           "stats_page": True, "metrics": False})))
    assert spec.admin == AdminSettings(bind=Address("127.0.0.1", 9100), socket="/run/lbcore/lbcore.sock",
                                       stats_page=True, metrics=False)
    assert parse_spec(spec.to_dict()) == spec
    assert spec.to_dict()["admin"] == {"bind": "127.0.0.1:9100", "socket": "/run/lbcore/lbcore.sock",
                                       "stats_page": True, "metrics": False}


def test_canonical_when_built_by_a_program():
    admin = AdminSettings(bind="[::1]:9100", socket="/tmp/lb.sock")
    assert admin.bind == Address("::1", 9100) and str(admin.bind) == "[::1]:9100"
    spec = Spec(admin=admin)
    assert parse_spec(spec.to_dict()) == spec
    with pytest.raises(SpecError) as info:
        AdminSettings(socket="run/lb.sock")
    assert str(info.value) == "socket: invalid socket path 'run/lb.sock': the path must be absolute"


def test_the_revision_follows_the_admin_block():
    off = parse_spec(base())
    on = parse_spec(base({"bind": "127.0.0.1:9100"}))
    assert off.revision != on.revision
    assert parse_spec(base({"bind": "127.0.0.1:9100"})).revision == on.revision


@pytest.mark.parametrize(("admin", "problems"), [
    ({"bind": "localhost:9100"}, ["admin.bind: 'localhost' is not an IP address (names are not resolved)"]),
    ({"bind": 9100}, ["admin.bind: expected an address like 127.0.0.1:8080, got number 9100"]),
    ({"socket": "lbcore.sock"}, ["admin.socket: invalid socket path 'lbcore.sock': the path must be absolute"]),
    ({"socket": "/run/lbcore/"}, ["admin.socket: invalid socket path '/run/lbcore/': the path names a directory"]),
    ({"socket": "/run/" + "x" * 103}, [f"admin.socket: invalid socket path '/run/{'x' * 103}': "
                                       "a unix socket path is at most 107 bytes"]),
    ({"socket": "/run/a\nb"}, ["admin.socket: invalid socket path '/run/a\\nb': control characters in the path"]),
    ({"socket": 5}, ["admin.socket: expected an absolute path for the runtime socket, got number 5"]),
    ({"stats_page": "yes"}, ["admin.stats_page: expected true or false, got string 'yes'"]),
    ({"stat_page": True}, ["admin.stat_page: unknown key (did you mean 'stats_page'?)"]),
    ({"bind": "127.0.0.1:9100", "stats_page": False, "metrics": False},
     ["admin.bind: an admin listener with stats_page and metrics both off serves nothing: "
      "turn one on, or set bind to null"]),
    ({"bind": "127.0.0.1:8080"}, ["admin.bind: 127.0.0.1:8080 is already bound by listener 'web'"]),
    ({"bind": "0.0.0.0:8080"}, ["admin.bind: 0.0.0.0:8080 overlaps 127.0.0.1:8080 of listener 'web'"]),
    ("127.0.0.1:9100", ["admin: expected a mapping, got string '127.0.0.1:9100'"]),
])
def test_problems_are_reported_with_their_path(admin, problems):
    assert errors(base(admin)) == problems


def test_every_problem_at_once():
    data = base({"bind": "nope", "socket": "relative", "metrics": 1})
    data["pools"][0]["members"][0]["weight"] = 999
    assert errors(data) == [
        "pools[0].members[0].weight: 999 is out of range (0..256)",
        "admin.bind: invalid address 'nope' (expected HOST:PORT, e.g. 127.0.0.1:8080)",
        "admin.socket: invalid socket path 'relative': the path must be absolute",
        "admin.metrics: expected true or false, got number 1",
    ]


def test_flags_without_a_bind_are_fine():
    spec = parse_spec(base({"socket": "/tmp/lb.sock", "stats_page": False, "metrics": False}))
    assert spec.admin.bind is None and spec.admin.socket == "/tmp/lb.sock"


def test_diff_names_admin_changes():
    old = parse_spec(base())
    new = parse_spec(base({"bind": "127.0.0.1:9100", "socket": "/tmp/lb.sock", "metrics": False}))
    assert format_diff(diff(old, new)) == (
        "+ admin.bind: 127.0.0.1:9100\n"
        "+ admin.socket: /tmp/lb.sock\n"
        "~ admin.metrics: true -> false"
    )
    assert format_diff(diff(new, old)).splitlines()[0] == "- admin.bind: 127.0.0.1:9100"
