"""The Spec's access_log: validation with paths, cascade defaults -> listener, round trip, diff."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore.spec import (
    AccessLogSettings,
    Address,
    Defaults,
    Listener,
    LogTarget,
    Pool,
    Spec,
    SpecError,
    diff,
    format_diff,
    loads_spec,
    parse_log_target,
    parse_spec,
)


def base() -> dict[str, Any]:
    return {
        "version": 1,
        "listeners": [
            {"name": "web", "bind": "127.0.0.1:8080", "default_pool": "www"},
            {"name": "db", "bind": "127.0.0.1:5432", "protocol": "tcp", "default_pool": "www"},
        ],
        "pools": [{"name": "www", "members": [{"name": "w1", "address": "127.0.0.1:9001"}]}],
    }


def errors(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(issue) for issue in info.value.errors]


def with_logs(defaults: Any = "absent", web: Any = "absent", db: Any = "absent") -> dict[str, Any]:
    data = base()
    if defaults != "absent":
        data["defaults"] = {"access_log": defaults}
    for index, value in enumerate((web, db)):
        if value != "absent":
            data["listeners"][index]["access_log"] = value
    return data


# -- targets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "target", "canonical"), [
    ("stdout", LogTarget("stdout"), "stdout"),
    (" stdout ", LogTarget("stdout"), "stdout"),
    ("file:/var/log/lbcore/access.log", LogTarget("file", path="/var/log/lbcore/access.log"), "file:/var/log/lbcore/access.log"),
    ("file:///var/log/a.log", LogTarget("file", path="/var/log/a.log"), "file:/var/log/a.log"),
    ("syslog+udp://127.0.0.1:514", LogTarget("syslog+udp", address=Address("127.0.0.1", 514)), "syslog+udp://127.0.0.1:514"),
    ("syslog+udp://10.0.0.5", LogTarget("syslog+udp", address=Address("10.0.0.5", 514)), "syslog+udp://10.0.0.5:514"),
    ("syslog+udp://[::1]:1514", LogTarget("syslog+udp", address=Address("::1", 1514)), "syslog+udp://[::1]:1514"),
    ("syslog+udp://[::1]", LogTarget("syslog+udp", address=Address("::1", 514)), "syslog+udp://[::1]:514"),
    ("syslog+tcp://127.0.0.1", LogTarget("syslog+tcp", address=Address("127.0.0.1", 514)), "syslog+tcp://127.0.0.1:514"),
    ("syslog+tcp://[::1]:6601", LogTarget("syslog+tcp", address=Address("::1", 6601)), "syslog+tcp://[::1]:6601"),
    ("syslog+unix:///dev/log", LogTarget("syslog+unix", path="/dev/log"), "syslog+unix:///dev/log"),
])
def test_targets(text: str, target: LogTarget, canonical: str) -> None:
    assert parse_log_target(text) == target
    assert str(target) == canonical == AccessLogSettings(target=text).target
    assert parse_log_target(canonical) == target
    assert target.is_syslog == canonical.startswith("syslog")


def _set(path: str, value: Any) -> dict[str, Any]:
    """base() with ``value`` at a dotted path (list indexes as numbers)."""
    data = copy.deepcopy(base())
    keys = path.split(".")
    node: Any = data
    for key in keys[:-1]:
        key_: Any = int(key) if key.isdigit() else key
        if isinstance(node, dict) and key_ not in node:
            node[key_] = {}
        node = node[key_]
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("listeners.0.access_log", ["stdout"], "listeners[0].access_log: expected a mapping, got a list"),
    ("listeners.0.access_log", "stdout", "listeners[0].access_log: expected a mapping, got string 'stdout'"),
    ("defaults.access_log", 1, "defaults.access_log: expected a mapping, got number 1"),
    ("listeners.0.access_log.fromat", "json", "listeners[0].access_log.fromat: unknown key (did you mean 'format'?)"),
    ("listeners.0.access_log.format", "xml", "listeners[0].access_log.format: 'xml' is not one of json, text"),
    ("listeners.0.access_log.format", "txt", "listeners[0].access_log.format: 'txt' is not one of json, text (did you mean 'text'?)"),
    ("defaults.access_log.enabled", "yes", "defaults.access_log.enabled: expected true or false, got string 'yes'"),
    ("listeners.1.access_log.target", 514, "listeners[1].access_log.target: expected a log target (stdout, file:/PATH, syslog+udp://IP[:PORT], syslog+tcp://IP[:PORT] or syslog+unix:///PATH), got number 514"),
    ("listeners.0.access_log.target", "stdot", "listeners[0].access_log.target: invalid target 'stdot' (stdout, file:/PATH, syslog+udp://IP[:PORT], syslog+tcp://IP[:PORT] or syslog+unix:///PATH) (did you mean 'stdout'?)"),
    ("listeners.0.access_log.target", "syslog://127.0.0.1", "listeners[0].access_log.target: invalid target 'syslog://127.0.0.1' (stdout, file:/PATH, syslog+udp://IP[:PORT], syslog+tcp://IP[:PORT] or syslog+unix:///PATH) (did you mean 'syslog+udp'?)"),
    ("listeners.0.access_log.target", "file:access.log", "listeners[0].access_log.target: invalid target 'file:access.log': the path must be absolute"),
    ("listeners.0.access_log.target", "file:", "listeners[0].access_log.target: invalid target 'file:': the path must be absolute"),
    ("listeners.0.access_log.target", "file:/var/log/", "listeners[0].access_log.target: invalid target 'file:/var/log/': the path names a directory"),
    ("listeners.0.access_log.target", "file:/var/log/a\nb", "listeners[0].access_log.target: invalid target 'file:/var/log/a\\nb': control characters in the path"),
    ("listeners.0.access_log.target", "syslog+udp://logs.example.com:514", "listeners[0].access_log.target: invalid target 'syslog+udp://logs.example.com:514': 'logs.example.com' is not an IP address (names are not resolved)"),
    ("listeners.0.access_log.target", "syslog+udp://127.0.0.1:70000", "listeners[0].access_log.target: invalid target 'syslog+udp://127.0.0.1:70000': invalid port 70000 (1..65535)"),
    ("listeners.0.access_log.target", "syslog+udp://", "listeners[0].access_log.target: invalid target 'syslog+udp://': no address"),
    ("listeners.0.access_log.target", "syslog+tcp://logs.example.com", "listeners[0].access_log.target: invalid target 'syslog+tcp://logs.example.com': 'logs.example.com' is not an IP address (names are not resolved)"),
    ("listeners.0.access_log.target", "syslog+udp:127.0.0.1", "listeners[0].access_log.target: invalid target 'syslog+udp:127.0.0.1' (expected syslog+udp://...)"),
    ("listeners.0.access_log.target", "syslog+unix://dev/log", "listeners[0].access_log.target: invalid target 'syslog+unix://dev/log': the path must be absolute"),
    ("listeners.0.access_log.target", "syslog+unix:///" + "x" * 107, "listeners[0].access_log.target: invalid target 'syslog+unix:///" + "x" * 107 + "': a unix socket path is at most 107 bytes"),
    ("defaults.access_log.facility", "local8", "defaults.access_log.facility: 'local8' is not one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, cron2, local0, local1, local2, local3, local4, local5, local6, local7 (did you mean 'local7'?)"),
    ("defaults.access_log.tag", "my app", "defaults.access_log.tag: invalid tag 'my app' (1 to 48 printable ASCII characters, no spaces: RFC 5424 APP-NAME)"),
    ("defaults.access_log.tag", "", "defaults.access_log.tag: invalid tag '' (1 to 48 printable ASCII characters, no spaces: RFC 5424 APP-NAME)"),
    ("defaults.access_log.tag", "x" * 49, "defaults.access_log.tag: invalid tag '" + "x" * 49 + "' (1 to 48 printable ASCII characters, no spaces: RFC 5424 APP-NAME)"),
    ("defaults.access_log.tag", 7, "defaults.access_log.tag: invalid tag number 7 (1 to 48 printable ASCII characters, no spaces: RFC 5424 APP-NAME)"),
    ("listeners.0.access_log.facility", "local3", "listeners[0].access_log.facility: only syslog targets take facility (this one is stdout)"),
    ("defaults.access_log.tag", "lb", "defaults.access_log.tag: only syslog targets take tag (this one is stdout)"),
])
def test_error_path_and_message(path: str, value: Any, expected: str) -> None:
    assert errors(_set(path, value)) == [expected]


def test_every_problem_at_once_and_inherited_target() -> None:
    data = with_logs(
        defaults={"target": "syslog+udp://127.0.0.1", "facility": "local9"},
        web={"format": "csv", "facility": "local1", "target": "file:/var/log/web.log"},
        db={"tag": "db", "colour": "red"},
    )
    assert errors(data) == [
        "defaults.access_log.facility: 'local9' is not one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, cron2, local0, local1, local2, local3, local4, local5, local6, local7 (did you mean 'local7'?)",
        "listeners[0].access_log.format: 'csv' is not one of json, text",
        "listeners[0].access_log.facility: only syslog targets take facility (this one is file)",
        "listeners[1].access_log.colour: unknown key",
    ]
    # A listener naming a syslog key over a syslog target inherited from defaults is fine.
    spec = parse_spec(with_logs(defaults={"target": "syslog+udp://127.0.0.1"}, db={"tag": "db"}))
    assert spec.listener("db").access_log == AccessLogSettings(target="syslog+udp://127.0.0.1:514", tag="db")


# -- cascade ------------------------------------------------------------------------------------------


def test_off_by_default() -> None:
    spec = parse_spec(base())
    assert spec.defaults.access_log is None
    assert all(listener.access_log is None for listener in spec.listeners)
    assert Listener("x", Address("127.0.0.1", 1), default_pool="p").access_log is None


def test_cascade_key_by_key() -> None:
    spec = parse_spec(with_logs(
        defaults={"format": "text", "target": "syslog+unix:///dev/log", "facility": "local2", "tag": "edge"},
        web={"tag": "web"},
    ))
    logged = AccessLogSettings(format="text", target="syslog+unix:///dev/log", facility="local2", tag="edge")
    assert spec.defaults.access_log == logged
    assert spec.listener("db").access_log == logged
    assert spec.listener("web").access_log == AccessLogSettings(
        format="text", target="syslog+unix:///dev/log", facility="local2", tag="web")


def test_listener_turns_off_with_null_or_enabled_false() -> None:
    on = {"target": "file:/var/log/lb.log"}
    for off in (None, {"enabled": False}, {"enabled": False, "format": "text"}):
        spec = parse_spec(with_logs(defaults=on, web=off))
        assert spec.listener("web").access_log is None
        assert spec.listener("db").access_log == AccessLogSettings(target="file:/var/log/lb.log")
    assert parse_spec(with_logs(defaults=on, web=None)) == parse_spec(with_logs(defaults=on, web={"enabled": False}))


def test_defaults_disabled_and_listeners_opt_in() -> None:
    spec = parse_spec(with_logs(defaults={"enabled": False, "target": "syslog+udp://127.0.0.1:1514", "tag": "lb"},
                                web={}, db={"format": "text"}))
    assert spec.defaults.access_log == AccessLogSettings(enabled=False, target="syslog+udp://127.0.0.1:1514", tag="lb")
    assert spec.listener("web").access_log == AccessLogSettings(target="syslog+udp://127.0.0.1:1514", tag="lb")
    assert spec.listener("db").access_log == AccessLogSettings(format="text", target="syslog+udp://127.0.0.1:1514", tag="lb")
    # Without a listener section, a disabled defaults log stays off.
    spec = parse_spec(with_logs(defaults={"enabled": False}, web={}))
    assert spec.listener("db").access_log is None and spec.listener("web").access_log == AccessLogSettings()
    # No defaults at all: a listener's {} is stdout, JSON.
    assert parse_spec(with_logs(web={})).listener("web").access_log == AccessLogSettings()


def test_defaults_null_is_off() -> None:
    spec = parse_spec(with_logs(defaults=None))
    assert spec.defaults.access_log is None and spec.listener("web").access_log is None


def test_syslog_keys_canonical_without_syslog() -> None:
    file_log = AccessLogSettings(target="file:/var/log/x.log", facility="local5", tag="other")
    assert (file_log.facility, file_log.tag) == ("local0", "lbcore")
    assert file_log == AccessLogSettings(target="file:/var/log/x.log")
    assert file_log.to_dict() == {"enabled": True, "format": "json", "target": "file:/var/log/x.log"}
    syslog = AccessLogSettings(target="syslog+udp://127.0.0.1", facility="local5", tag="other")
    assert syslog.to_dict() == {"enabled": True, "format": "json", "target": "syslog+udp://127.0.0.1:514",
                                "facility": "local5", "tag": "other"}
    assert syslog.priority_facility == 21
    # defaults' syslog keys do not follow a listener to another target.
    spec = parse_spec(with_logs(defaults={"target": "syslog+udp://127.0.0.1", "facility": "local5"},
                                web={"target": "stdout"}))
    assert spec.listener("web").access_log == AccessLogSettings()


def test_programmatic_settings_are_checked() -> None:
    with pytest.raises(SpecError) as info:
        AccessLogSettings(format="xml", target="udp://x", tag="")
    assert [str(issue) for issue in info.value.errors] == [
        "format: 'xml' is not one of json, text",
        "target: invalid target 'udp://x' (stdout, file:/PATH, syslog+udp://IP[:PORT], syslog+tcp://IP[:PORT] or syslog+unix:///PATH)",
        "tag: invalid tag '' (1 to 48 printable ASCII characters, no spaces: RFC 5424 APP-NAME)",
    ]
    with pytest.raises(SpecError, match="access_log: expected AccessLogSettings, got string 'stdout'"):
        Listener("x", Address("127.0.0.1", 1), default_pool="p", access_log="stdout")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="access_log: expected AccessLogSettings, got a mapping"):
        Defaults(access_log={"format": "json"})  # type: ignore[arg-type]
    off = Listener("x", Address("127.0.0.1", 1), default_pool="p", access_log=AccessLogSettings(enabled=False))
    assert off.access_log is None
    assert hash(AccessLogSettings()) == hash(AccessLogSettings(target=" stdout"))


# -- round trip and diff ------------------------------------------------------------------------------

log_settings = st.fixed_dictionaries({}, optional={
    "enabled": st.booleans(),
    "format": st.sampled_from(["json", "text"]),
    "target": st.sampled_from(["stdout", "file:/var/log/a.log", "syslog+udp://127.0.0.1", "syslog+unix:///dev/log"]),
})
syslog_keys = st.fixed_dictionaries({}, optional={
    "facility": st.sampled_from(["local0", "local7", "daemon"]),
    "tag": st.sampled_from(["lbcore", "edge"]),
})
section = st.one_of(st.just("absent"), st.none(), st.tuples(log_settings, syslog_keys))


def _section(value: Any) -> Any:
    if not isinstance(value, tuple):
        return value
    settings_, syslog = value
    return {**settings_, **syslog, "target": "syslog+udp://127.0.0.1"} if syslog else settings_


@settings(max_examples=80, deadline=None)
@given(section, section, section)
def test_round_trip(defaults: Any, web: Any, db: Any) -> None:
    spec = parse_spec(with_logs(_section(defaults), _section(web), _section(db)))
    assert parse_spec(spec.to_dict()) == spec
    assert loads_spec(yaml.safe_dump(spec.to_dict())).revision == spec.revision
    assert diff(spec, parse_spec(spec.to_dict())) == []


def test_programmatic_round_trip() -> None:
    log = AccessLogSettings(format="text", target="syslog+unix:///dev/log", facility="daemon", tag="edge")
    spec = Spec(
        defaults=Defaults(access_log=AccessLogSettings(enabled=False, target="file:/var/log/lb.log")),
        listeners=(Listener("web", Address("127.0.0.1", 80), default_pool="p", access_log=log),
                   Listener("quiet", Address("127.0.0.1", 81), default_pool="p")),
        pools=(Pool("p"),),
    )
    assert parse_spec(spec.to_dict()) == spec
    assert spec.to_dict()["listeners"][0]["access_log"] is None  # quiet sorts first
    assert spec.to_dict()["defaults"]["access_log"] == {"enabled": False, "format": "json", "target": "file:/var/log/lb.log"}


def test_revision_changes_with_the_log() -> None:
    plain = parse_spec(base())
    logged = parse_spec(with_logs(web={}))
    assert plain.revision != logged.revision
    assert parse_spec(with_logs(web={"format": "text"})).revision != logged.revision
    # The same log written two ways is one Spec.
    assert parse_spec(with_logs(web={"target": "syslog+udp://127.0.0.1"})) == parse_spec(
        with_logs(web={"target": "syslog+udp://127.0.0.1:514", "facility": "local0"}))


def test_diff() -> None:
    old = parse_spec(with_logs(defaults={"target": "file:/var/log/lb.log"}, db=None))
    new = parse_spec(with_logs(defaults={"target": "file:/var/log/lb.log"}, web={"format": "text"},
                               db={"target": "syslog+udp://127.0.0.1"}))
    assert format_diff(diff(old, new)) == "\n".join([
        "+ listeners[db].access_log",
        "~ listeners[web].access_log.format: json -> text",
    ])
    moved = parse_spec(with_logs(defaults={"target": "file:/var/log/lb2.log"}, db=None))
    assert format_diff(diff(old, moved)) == "\n".join([
        "~ defaults.access_log.target: file:/var/log/lb.log -> file:/var/log/lb2.log",
        "~ listeners[web].access_log.target: file:/var/log/lb.log -> file:/var/log/lb2.log",
    ])
    assert format_diff(diff(new, parse_spec(base()))) == "\n".join([
        "- defaults.access_log",
        "- listeners[db].access_log",
        "- listeners[web].access_log",
    ])
