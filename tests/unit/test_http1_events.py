"""The HTTP/1.1 events' twins (``lbcore._fastpath.events``): the compiled extension types
behave as the pure frozen dataclasses do.

The same arguments give, in each twin, an event with the same fields, equality (within
a twin), hash, repr, dataclass metadata (``fields``, ``replace``, ``is_dataclass``,
``__match_args__``), the same ``ValueError`` for a bad version or status, and
``FrozenInstanceError`` on any assignment or deletion. The compiled twin is skipped
when it is not built, except under CI (env CI set), where a missing build fails.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbcore._fastpath import USE_EXTENSIONS, events, heads
from lbcore.l7 import http1

CLASSES = ["Request", "Response", "InformationalResponse", "Data", "EndOfMessage"]


def twin(name: str):
    module = events.IMPLEMENTATIONS.get(name)
    if module is None:
        message = f"the {name} twin lbcore._fastpath._events is not built (or LBCORE_NO_EXTENSIONS=1)"
        if os.environ.get("CI") and USE_EXTENSIONS:
            pytest.fail(message + " (CI must build it: cythonize or pip install .)")
        pytest.skip(message)
    return module


def test_the_classes_that_serve_are_the_selected_twins():
    chosen = events.IMPLEMENTATIONS[events.IMPLEMENTATION]
    for name in CLASSES:
        assert getattr(http1, name) is getattr(chosen, name) is getattr(events, name)


texts = st.text(max_size=8)
headers = st.lists(st.tuples(st.text(alphabet="Hostx-", min_size=1, max_size=6), texts), max_size=3).map(tuple)
lengths = st.none() | st.integers(0, 10**12)
flags = st.booleans()
versions = st.sampled_from(["1.0", "1.1"])


def arguments(name: str) -> st.SearchStrategy[tuple]:
    """Valid constructor arguments for the class ``name``."""
    if name == "Request":
        return st.tuples(st.sampled_from(["GET", "POST", "CONNECT"]), texts, headers, versions, flags, flags,
                         lengths, flags, st.none() | texts)
    if name == "Response":
        return st.tuples(st.just(101) | st.integers(200, 999), texts, headers, versions, flags, flags, lengths)
    if name == "InformationalResponse":
        return st.tuples(st.integers(100, 199).filter(lambda s: s != 101), texts, headers)
    if name == "Data":
        return st.tuples(st.binary(max_size=8))
    return st.tuples(headers) | st.just(())  # EndOfMessage: trailers, or the default


def same_event(compiled, pure) -> None:
    """Field by field, the compiled event holds what the pure one does."""
    names = [f.name for f in dataclasses.fields(pure)]
    assert [f.name for f in dataclasses.fields(compiled)] == names
    assert [getattr(compiled, n) for n in names] == [getattr(pure, n) for n in names]
    assert repr(compiled) == repr(pure)
    assert hash(compiled) == hash(pure)


@pytest.mark.parametrize("name", CLASSES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_twins_build_the_same_events(name, data):
    pure_cls, compiled_cls = getattr(twin("pure"), name), getattr(twin("compiled"), name)
    args = data.draw(arguments(name))
    other = data.draw(arguments(name))
    pure, compiled = pure_cls(*args), compiled_cls(*args)
    same_event(compiled, pure)
    # Equality and hash within a twin, as the dataclass's: field by field, same class only.
    assert compiled == compiled_cls(*args) and hash(compiled) == hash(compiled_cls(*args))
    assert (compiled == compiled_cls(*other)) == (pure == pure_cls(*other))
    assert (compiled != compiled_cls(*other)) == (pure != pure_cls(*other))
    assert compiled != pure_cls(*args)  # another class, as two dataclasses are
    assert compiled_cls.__match_args__ == pure_cls.__match_args__
    assert dataclasses.is_dataclass(compiled) and dataclasses.is_dataclass(compiled_cls)
    # replace() builds through the constructor: the same event as the pure twin's.
    field = dataclasses.fields(pure)[0].name
    new_value = getattr(pure_cls(*other), field)
    same_event(dataclasses.replace(compiled, **{field: new_value}), dataclasses.replace(pure, **{field: new_value}))
    assert type(dataclasses.replace(compiled)) is compiled_cls


@pytest.mark.parametrize("name", CLASSES)
def test_compiled_events_are_frozen_as_the_dataclasses(name):
    for module in (twin("pure"), twin("compiled")):
        cls = getattr(module, name)
        event = cls(*{"Request": ("GET", "/", (), "1.1", True, False, None, False, None),
                      "Response": (200, "OK", (), "1.1", True, False, 0),
                      "InformationalResponse": (100, "Continue", ()),
                      "Data": (b"x",), "EndOfMessage": ()}[name])
        field = dataclasses.fields(event)[0].name
        before = getattr(event, field)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{field}'"):
            setattr(event, field, before)
        # A name that is no field: the compiled twin says FrozenInstanceError; the pure
        # one a TypeError (a slotted frozen dataclass's __setattr__, Python 3.11).
        with pytest.raises((AttributeError, TypeError)):
            event.extra = 1  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{field}'"):
            delattr(event, field)
        assert getattr(event, field) == before


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("Request", ("GET", "/", (), "2.0", True, False, None, False, None), "http_version must be 1.0 or 1.1"),
        ("Response", (200, "OK", (), "0.9", True, False, None), "http_version must be 1.0 or 1.1"),
        ("Response", (199, "?", (), "1.1", True, False, None), "a final response has status 101 or 200-999, not 199"),
        ("Response", (1000, "?", (), "1.1", True, False, None), "a final response has status 101 or 200-999, not 1000"),
        ("InformationalResponse", (101, "Switching", ()), "an informational response has status 1xx but not 101"),
        ("InformationalResponse", (200, "OK", ()), "an informational response has status 1xx but not 101"),
    ],
)
def test_both_twins_refuse_the_same_bad_events(name, args, message):
    for module in (twin("pure"), twin("compiled")):
        with pytest.raises(ValueError, match=message):
            getattr(module, name)(*args)


def test_the_events_keep_keyword_construction_and_defaults():
    for module in (twin("pure"), twin("compiled")):
        request = module.Request(method="GET", target="/", headers=(("Host", "a"),), http_version="1.1",
                                 keep_alive=True, chunked=False, content_length=None, expect_continue=False,
                                 upgrade=None)
        assert request.headers == (("Host", "a"),) and request.keep_alive is True
        assert module.EndOfMessage().trailers == () == module.EndOfMessage(trailers=()).trailers
        assert module.Data(data=b"x").data == b"x"


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_a_response_that_keeps_its_field_lines_is_the_same_event(name):
    # The compiled fast lane's Response holds the field lines as received and makes
    # its headers on first use: it must behave as the constructed event in every way.
    scan = heads.IMPLEMENTATIONS[name].scan_response_event if name in heads.IMPLEMENTATIONS else None
    if scan is None:
        twin(name)  # skips, or fails under CI
    data = b"HTTP/1.0 200 OK\r\nServer: a\r\nX-Pad: \t b c \r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    pure = twin("pure").Response(200, "OK", (("Server", "a"), ("X-Pad", "b c"), ("Connection", "keep-alive"),
                                             ("Content-Length", "2")), "1.0", True, False, 2)
    event, end = scan(data, 0, "GET", 65536, 100)
    assert end == len(data) - 2
    assert repr(event) == repr(pure) and hash(event) == hash(scan(data, 0, "GET", 65536, 100)[0])
    assert event.headers is event.headers  # made once
    same_event(event, pure)
    assert event == scan(data, 0, "GET", 65536, 100)[0]
    changed = dataclasses.replace(event, status=404)
    assert (changed.status, changed.headers) == (404, pure.headers)
    for field in ("headers", "status"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, field, ())
