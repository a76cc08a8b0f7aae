"""lbcore._fastpath.logline: the compiled access-log formatters give the pure ones' string,
byte for byte, for every record (and fail the same way for a malformed one)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lbcore._fastpath import USE_EXTENSIONS, logline
from lbcore.proxy import accesslog_format as pure
from lbcore.proxy.accesslog import AccessRecord
from lbcore.spec import AccessLogSettings
from tests.unit.test_accesslog import NASTY, T0, compiled_twin, record, twin

PARITY = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = ["format_text", "format_json"]
ROOT = Path(__file__).resolve().parents[2]


def outcome(fn: Callable[..., str], rec: Any, worker: Any = 0) -> tuple[str, Any]:
    """("ok", the line) or ("error", the exception's type)."""
    try:
        return "ok", fn(rec, worker)
    except Exception as exc:  # noqa: BLE001 - the two twins must fail alike
        return "error", type(exc)


SYSLOG = ("<134>1 ", " lb1 lbcore 4242 access - ")  # make_formatter's two parts of a frame


def framed(twin_module: Any, name: str, frame: tuple[str, str] = SYSLOG) -> Callable[[Any, Any], str]:
    """The twin's syslog_frame around its formatter ``name``, as make_formatter calls it."""
    return lambda rec, worker: twin_module.syslog_frame(rec, worker, *frame, getattr(twin_module, name))


def formatted(twin_module: Any, name: str, frame: tuple[str, str] | None = None) -> Callable[[Any, Any], str]:
    """The twin's Formatter for ``name``'s lines (in ``frame``), as make_formatter makes it."""
    prefix, middle = frame or (None, None)
    return lambda rec, worker: twin_module.Formatter(name == "format_json", worker, prefix, middle)(rec)


def assert_same(rec: Any, worker: Any = 0) -> None:
    compiled = twin("compiled")
    for name in FORMATS:
        expected = outcome(getattr(pure, name), rec, worker)
        assert outcome(getattr(compiled, name), rec, worker) == expected, (name, rec)
        # A log's Formatter gives the function's line, in both twins.
        assert outcome(formatted(pure, name), rec, worker) == expected, ("Formatter", name, rec)
        assert outcome(formatted(compiled, name), rec, worker) == expected, ("Formatter", name, rec)
        # The syslog message: the compiled twin writes a text line into the frame's buffer.
        expected = outcome(framed(pure, name), rec, worker)
        assert outcome(framed(compiled, name), rec, worker) == expected, ("syslog_frame", name, rec)
        assert outcome(formatted(pure, name, SYSLOG), rec, worker) == expected, ("Formatter", name, rec)
        assert outcome(formatted(compiled, name, SYSLOG), rec, worker) == expected, ("Formatter", name, rec)


# -- strategies -----------------------------------------------------------------------------------

# Every escaping class: controls, the delimiters, Latin-1, the BMP (line and paragraph
# separators, lone surrogates as surrogateescape leaves them), astral characters.
SPECIAL = list(
    ' "\\{|}:/[]-<>%\x00\x01\x09\x0a\x0d\x1b\x1f\x7f\x80\x85\x9f\xa0\xe9\xff'
    "\u0100\u2028\u2029\u65e5\ud800\udc80\udfff\ufeff\uffff\U00010000\U0001f600\U0010ffff"
)
CHARS = st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(SPECIAL), st.characters(max_codepoint=0x7f))
TEXT = st.one_of(st.text(), st.text(alphabet=CHARS, max_size=40), st.sampled_from(NASTY + ["", "-", "GET", "HTTP/1.1", "2001:db8::1"]))


class Str(str):
    """A str subclass: the pure twin runs it through its regex, which returns a plain str."""

    def __str__(self) -> str:
        return "sub:" + str.__str__(self)


class Named:
    """Not a str: both twins take its str()."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Named({self.text!r})"


ODD_TEXT = st.one_of(st.integers(), TEXT.map(Str), TEXT.map(Named), st.booleans())
OPT_TEXT = st.one_of(st.none(), TEXT, TEXT, ODD_TEXT)
REQ_TEXT = st.one_of(TEXT, TEXT, ODD_TEXT)
INTS = st.one_of(st.integers(min_value=0, max_value=10**6), st.integers(), st.booleans())
DURATIONS = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=100),
    st.floats(),  # nan, +-inf, negative, huge (overflows to an error in both)
    st.sampled_from([0.0, -0.0, 0.0005, 0.0015, 0.0025, 1e-7, -0.0004, 2.5e-3, 9.2e15, 1e300, math.nan, math.inf]),
    st.integers(min_value=-(10**6), max_value=10**6),
)
TIMESTAMPS = st.one_of(
    st.floats(min_value=0, max_value=4_102_444_800),  # 1970..2100
    st.sampled_from([T0, 0.0, 0.0005, 0.0015, 1714564800.0005, 1714564800.9995, 1714564799.9999, -1.5, -0.0005]),
    st.floats(min_value=-1e10, max_value=1e13),
    st.integers(min_value=0, max_value=4_102_444_800),
)


@st.composite
def records(draw: st.DrawFn) -> AccessRecord:
    return AccessRecord(
        accepted=draw(TIMESTAMPS),
        started=draw(st.floats()),
        client_ip=draw(st.one_of(st.sampled_from(["192.0.2.7", "::1", "2001:db8::1", "", "fe80::1%eth0"]), REQ_TEXT)),
        client_port=draw(st.one_of(INTS, st.none())),
        listener=draw(REQ_TEXT),
        acl=draw(OPT_TEXT),
        pool=draw(OPT_TEXT),
        member=draw(OPT_TEXT),
        method=draw(st.one_of(st.sampled_from(["", "GET", "POST"]), REQ_TEXT, st.none())),
        target=draw(st.one_of(st.just(""), REQ_TEXT, st.none())),
        http_version=draw(st.one_of(st.sampled_from(["1.1", "1.0", "HTTP/1.1", "HTTP/2", "", "HTTP"]), REQ_TEXT, st.none())),
        host=draw(OPT_TEXT),
        user_agent=draw(OPT_TEXT),
        status=draw(st.one_of(st.none(), st.integers(min_value=100, max_value=599), INTS)),
        bytes_in=draw(INTS),
        bytes_out=draw(INTS),
        t_tls=draw(DURATIONS),
        t_request=draw(DURATIONS),
        t_queue=draw(DURATIONS),
        t_connect=draw(DURATIONS),
        t_first_byte=draw(DURATIONS),
        t_total=draw(DURATIONS),
        retries=draw(INTS),
        termination=draw(st.one_of(st.sampled_from(["--", "SC", "cR"]), REQ_TEXT, st.none())),
        tls_version=draw(OPT_TEXT),
        tls_resumed=draw(st.one_of(st.none(), st.booleans())),
        sni=draw(OPT_TEXT),
        mode=draw(st.one_of(st.just("http"), st.just("tcp"), REQ_TEXT)),
    )


# -- parity ---------------------------------------------------------------------------------------


@PARITY
@given(records(), st.integers(min_value=0, max_value=64))
@example(record(), 0)
@example(record(mode="tcp"), 1)
@example(record(method="", target="", http_version=""), 0)
@example(record(client_ip="2001:db8::1", pool=None, member=None, status=None, t_total=math.nan), 0)
def test_twins_agree_on_any_record(rec: AccessRecord, worker: int) -> None:
    assert_same(rec, worker)


@PARITY
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=4e9),
                 st.integers(min_value=-10**12, max_value=10**12)))
@example(1714564800.1235)  # rounds half to even, as round()
@example(1714564800.9996)  # rounds up into the next second
@example(-0.0005)
def test_twins_agree_on_syslog_timestamps(timestamp: Any) -> None:
    compiled = twin("compiled")
    expected = outcome(lambda t, _worker: pure.iso_timestamp(t), timestamp)
    assert outcome(lambda t, _worker: compiled.iso_timestamp(t), timestamp) == expected
    if isinstance(timestamp, float) and 0 <= timestamp < 4e9:
        assert expected[0] == "ok" and expected[1].endswith("Z")


@PARITY
@given(TEXT, TEXT, TEXT, TEXT)
def test_twins_agree_on_any_text(target: str, host: str, user_agent: str, other: str) -> None:
    # Every string field at once, in both modes: the escaping of each context.
    for mode in ("http", "tcp"):
        rec = record(target=target, host=host, user_agent=user_agent, method=other or "GET", acl=other,
                     listener=other, pool=other, member=other, termination=other, client_ip=other,
                     http_version=other, sni=other, tls_version=other, mode=mode)
        assert_same(rec)


@pytest.mark.parametrize("nasty", NASTY)
def test_twins_agree_on_nasty_strings(nasty: str) -> None:
    assert_same(record(target=nasty, host=nasty, user_agent=nasty, method=nasty, acl=nasty, client_ip=nasty,
                       listener=nasty, termination=nasty, http_version=nasty, sni=nasty))


@pytest.mark.parametrize("changes", [
    {"bytes_out": "lots"},  # ValueError in int()
    {"bytes_out": "12"},  # int("12"): fine in both
    {"retries": None},  # TypeError in int()
    {"status": 3.7},
    {"accepted": math.nan},
    {"accepted": math.inf},
    {"accepted": 1e300},
    {"accepted": 1e17},  # a year gmtime cannot write
    {"accepted": "soon"},
    {"t_total": 1e307},  # text: round(inf) overflows; JSON: a long decimal
    {"t_total": "slow"},
    {"t_total": 7},
    {"client_port": Named("x")},
    {"listener": Str("we b")},
    {"listener": Named("")},
    {"host": Named("a|b")},
    {"mode": Named("tcp")},
    {"tls_resumed": 0},
])
def test_twins_agree_on_odd_values(changes: dict[str, Any]) -> None:
    assert_same(record(**changes))
    assert_same(record(**{"mode": "tcp", **changes}))


def test_worker_is_an_int_in_json() -> None:
    for worker in (0, 7, True, 2.9, "3"):
        assert_same(record(), worker)


def test_compiled_passes_clean_strings_through() -> None:
    compiled = twin("compiled")
    line = compiled.format_text(record())
    assert line == pure.format_text(record())
    assert compiled.format_json(record(), 5) == pure.format_json(record(), 5)


@pytest.mark.parametrize("frame", [SYSLOG, ("<14>1 ", " - t\u00e9g 1 access - "), ("", "")])
@pytest.mark.parametrize("rec", [record(), record(mode="tcp"), record(target="/" + "x" * 3000, host="h" * 700)])
def test_twins_agree_on_syslog_messages(frame: tuple[str, str], rec: AccessRecord) -> None:
    # A frame that is not ASCII (the compiled buffer takes ASCII only, and falls back to
    # the joined line), and lines longer than the buffer's first allocation.
    compiled = twin("compiled")
    for name in FORMATS:
        expected = framed(pure, name, frame)(rec, 3)
        assert framed(compiled, name, frame)(rec, 3) == expected
        assert expected == f"{frame[0]}{pure.iso_timestamp(rec.accepted)}{frame[1]}{getattr(pure, name)(rec, 3)}"


# Records as the engine makes them: the compiled text line's one-pass writer takes these.
PLAIN = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters='"\\'), max_size=30)
PLAIN_SPACED = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters='"\\{|}'),
                       max_size=60)
PLAIN_DURATIONS = st.one_of(st.none(), st.floats(min_value=0, max_value=1e5), st.sampled_from([0.0, -0.0, 0.0005, 0.0025]),
                            st.floats(min_value=-10, max_value=0))


@st.composite
def engine_records(draw: st.DrawFn) -> AccessRecord:
    method = draw(st.one_of(st.sampled_from(["GET", "POST", ""]), PLAIN))
    return record(
        accepted=draw(st.floats(min_value=0, max_value=4_102_444_800)),
        client_ip=draw(st.one_of(st.sampled_from(["192.0.2.7", "::1", "2001:db8::1", "fe80::1%eth0"]), PLAIN.filter(bool))),
        client_port=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        listener=draw(st.one_of(st.none(), PLAIN)),
        acl=draw(st.one_of(st.none(), PLAIN)),
        pool=draw(st.one_of(st.none(), PLAIN)),
        member=draw(st.one_of(st.none(), PLAIN)),
        method=method,
        target=draw(st.one_of(PLAIN_SPACED, st.just(""))),
        http_version=draw(st.one_of(st.sampled_from(["1.1", "1.0", "HTTP/1.1", "HTTP/", "HTTP", ""]), st.none(), PLAIN)),
        host=draw(st.one_of(st.none(), PLAIN_SPACED)),
        user_agent=draw(st.one_of(st.none(), PLAIN_SPACED)),
        status=draw(st.one_of(st.none(), st.integers(min_value=100, max_value=599),
                                 st.integers(min_value=-(2**63), max_value=2**63 - 1))),
        bytes_out=draw(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        retries=draw(st.integers(min_value=0, max_value=10)),
        termination=draw(st.one_of(st.sampled_from(["--", "SC", "cR"]), st.none(), PLAIN)),
        t_request=draw(PLAIN_DURATIONS), t_queue=draw(PLAIN_DURATIONS), t_connect=draw(PLAIN_DURATIONS),
        t_first_byte=draw(PLAIN_DURATIONS), t_total=draw(PLAIN_DURATIONS),
    )


@PARITY
@given(engine_records(), st.integers(min_value=0, max_value=64))
@example(record(), 0)
@example(record(method="", target="\x00", http_version=None), 0)
@example(record(http_version=None, host=None, user_agent=None, acl=None, pool=None, member=None, listener=""), 0)
def test_one_pass_writer_takes_engine_records_and_agrees(rec: AccessRecord, worker: int) -> None:
    """The engine's records (ASCII with nothing to escape, int numbers, float or None
    durations) go through the compiled text line's one-pass writer, and give the pure
    line byte for byte (alone and in a syslog frame)."""
    compiled = twin("compiled")
    assert compiled._plain_text_line(rec) == pure.format_text(rec, worker)
    assert_same(rec, worker)


@pytest.mark.parametrize("changes", [
    {"client_ip": ""}, {"client_ip": "a b"}, {"client_ip": Str("x")}, {"client_ip": "caf\u00e9"},
    {"client_port": 2**63}, {"client_port": True}, {"client_port": "80"},
    {"accepted": 5}, {"accepted": math.nan}, {"accepted": 1e17},
    {"listener": "we b"}, {"pool": ""}, {"pool": 0}, {"member": Named("m")},
    {"mode": "tcp"}, {"mode": Named("http")},
    {"method": 'G"T'}, {"method": None}, {"target": None}, {"target": "/\n"}, {"http_version": 1.1},
    {"status": 200.0}, {"status": False}, {"t_total": 1e300}, {"t_queue": 0}, {"t_request": math.inf},
    {"bytes_out": 2**64}, {"retries": None}, {"termination": "a b"}, {"acl": "x\\y"},
    {"host": "a|b"}, {"user_agent": "{x}"}, {"host": 7},
])
def test_one_pass_writer_leaves_any_other_record_to_the_general_one(changes: dict[str, Any]) -> None:
    """One piece off the engine's shape: the one-pass writer gives the record up (or,
    for a piece both write alike, writes it), and the compiled line is the pure one or
    fails as it does."""
    rec = record(**changes)
    compiled = twin("compiled")
    plain = compiled._plain_text_line(rec)
    if plain is not None:
        assert plain == pure.format_text(rec)
    assert_same(rec)


def test_one_pass_writer_gives_up_on_a_record_it_does_not_know() -> None:
    class Sub(AccessRecord):
        __slots__ = ()

    compiled = twin("compiled")
    assert compiled._plain_text_line(Sub(**{name: getattr(record(), name) for name in AccessRecord.__dataclass_fields__})) is None
    unset = record()
    del unset.sni  # not in the text line, but a slot the writer does not read past
    assert compiled._plain_text_line(unset) is None
    assert compiled.format_text(unset) == pure.format_text(record())
    assert compiled._plain_text_line(record(host="h" * 3000, target="/" + "t" * 5000)) == pure.format_text(
        record(host="h" * 3000, target="/" + "t" * 5000))


def test_compiled_reads_an_access_records_slots_directly() -> None:
    # AccessRecord's fields are slots: the compiled twin reads them without the generic
    # attribute lookup. Were a field not a slot any more, the fast read would turn off.
    assert twin("compiled").RECORD_SLOTS
    code = "import lbcore._fastpath._logline as l; print(l.RECORD_SLOTS)"  # imported first of all
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    assert out.split() == ["True"]


def test_twins_agree_on_records_the_slot_read_does_not_take() -> None:
    class Sub(AccessRecord):  # another type: read by getattr
        __slots__ = ()

    assert_same(Sub(**{name: getattr(record(), name) for name in AccessRecord.__dataclass_fields__}))
    unset = record(host="h", user_agent="ua")
    del unset.user_agent  # an empty slot: AttributeError from both
    assert outcome(twin("compiled").format_text, unset)[0] == "error"
    assert_same(unset)


# -- making a record ------------------------------------------------------------------------------


@PARITY
@given(records(), st.integers(min_value=0, max_value=28))
def test_twins_make_the_record_the_constructor_makes(rec: AccessRecord, dropped: int) -> None:
    """new_record(*values) is AccessRecord(*values), the trailing fields left to their
    defaults; the compiled twin fills the slots itself."""
    fields = list(AccessRecord.__dataclass_fields__)
    values = [getattr(rec, name) for name in fields][: len(fields) - dropped]
    expected = outcome(lambda v, _: AccessRecord(*v), values)
    for name in ("pure", "compiled"):
        made = outcome(lambda v, _: twin(name).new_record(*v), values)
        if expected[0] == "error":
            assert made == expected  # too few values: the constructor's own TypeError
            continue
        assert made[0] == "ok" and type(made[1]) is AccessRecord and made[1] == expected[1]
        # every slot holds the very object given (or the default), none left empty
        assert all(getattr(made[1], f) is getattr(expected[1], f) for f in fields[: len(values)])


@PARITY
@given(records())
def test_twins_record_makers_make_the_record_the_constructor_makes(rec: AccessRecord) -> None:
    """RecordMaker().make(24 values) is AccessRecord(*values): the request's fields, the
    TLS and mode fields left to their defaults."""
    fields = list(AccessRecord.__dataclass_fields__)[:24]
    values = [getattr(rec, name) for name in fields]
    expected = AccessRecord(*values)
    for name in ("pure", "compiled"):
        made = twin(name).RecordMaker().make(*values)
        assert type(made) is AccessRecord and made == expected
        assert all(getattr(made, f) is getattr(expected, f) for f in fields)


def test_record_maker_takes_exactly_the_request_fields() -> None:
    for name in ("pure", "compiled"):
        maker = twin(name).RecordMaker()
        with pytest.raises(TypeError):
            maker.make(*range(23))
        with pytest.raises(TypeError):
            maker.make(*range(25))


def test_record_maker_holds_its_values_and_lets_them_go() -> None:
    text = "client-" + str(id(object()))
    values = [T0, 1.0, text, 1, "web"] + [None] * 19
    before = sys.getrefcount(text)
    made = [twin("compiled").RecordMaker().make(*values) for _ in range(100)]
    assert sys.getrefcount(text) == before + 100
    del made
    assert sys.getrefcount(text) == before


def test_new_record_refuses_what_the_constructor_refuses() -> None:
    for values in ((), (T0,), tuple(range(40))):
        with pytest.raises(TypeError):
            AccessRecord(*values)
        for name in ("pure", "compiled"):
            with pytest.raises(TypeError):
                twin(name).new_record(*values)


def test_new_record_holds_its_values_and_lets_them_go() -> None:
    # The compiled twin stores references itself: each record holds one per value and
    # gives it back when freed or overwritten (a leak or an early free would show here).
    text = "client-" + str(id(object()))
    before = sys.getrefcount(text)
    made = [twin("compiled").new_record(T0, 1.0, text, 1, "web") for _ in range(100)]
    assert sys.getrefcount(text) == before + 100
    made[0].client_ip = "other"
    assert sys.getrefcount(text) == before + 99
    del made
    assert sys.getrefcount(text) == before


# -- the selector ---------------------------------------------------------------------------------


def test_selector_picks_the_compiled_twin_when_built() -> None:
    assert logline.IMPLEMENTATIONS["pure"] is pure and pure.IMPLEMENTATION == "pure"
    assert logline.IMPLEMENTATION in logline.IMPLEMENTATIONS
    chosen = logline.IMPLEMENTATIONS[logline.IMPLEMENTATION]
    assert (logline.format_text, logline.format_json) == (chosen.format_text, chosen.format_json)
    if USE_EXTENSIONS:
        twin("compiled")  # skips (outside CI) or fails (in CI) when not built
        assert logline.IMPLEMENTATION == "compiled" and logline.IMPLEMENTATIONS["compiled"] is compiled_twin()
    else:
        assert logline.IMPLEMENTATION == "pure" and "compiled" not in logline.IMPLEMENTATIONS


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("target", ["stdout", "syslog+udp://127.0.0.1:5514"])
def test_make_formatter_uses_the_selected_twin(fmt: str, target: str) -> None:
    settings = AccessLogSettings(format=fmt, target=target)
    formatter = pure.make_formatter(settings, worker=3)
    assert type(formatter) is logline.Formatter
    line = getattr(pure, f"format_{fmt}")(record(), 3)
    if settings.sink.is_syslog:
        assert formatter.prefix == f"<{settings.priority_facility * 8 + pure.SYSLOG_SEVERITY_INFO}>1 "
        assert formatter.middle == f" {pure.syslog_hostname()} {settings.tag} {os.getpid()} {pure.SYSLOG_MSGID} - "
        assert formatter(record()) == f"{formatter.prefix}{pure.iso_timestamp(T0)}{formatter.middle}{line}"
    else:
        assert formatter.prefix is None and formatter(record()) == line


@pytest.mark.parametrize("name", ["pure", "compiled"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("frame", [None, SYSLOG])
def test_format_many_leaves_out_only_the_records_that_fail(name: str, fmt: str, frame: tuple[str, str] | None) -> None:
    module = twin(name)
    prefix, middle = frame or (None, None)
    formatter = module.Formatter(fmt == "format_json", 2, prefix, middle)
    bad = record(bytes_out="lots")  # ValueError in int(), in both formats and twins
    good = [record(), record(target="/a"), record(mode="tcp"), record(target="/" + "x" * 3000)]
    batch = [good[0], bad, good[1], good[2], bad, good[3]]
    messages, failures = formatter.format_many(batch)
    assert messages == [formatter(rec) for rec in good]
    assert messages == [formatted(pure, fmt, frame)(rec, 2) for rec in good]
    assert [rec for rec, _ in failures] == [bad, bad]
    assert all(isinstance(exc, ValueError) for _, exc in failures)
    assert formatter.format_many([]) == ([], [])


@pytest.mark.parametrize("name", ["pure", "compiled"])
def test_formatter_refuses_half_a_syslog_frame(name: str) -> None:
    module = twin(name)
    with pytest.raises(ValueError, match="prefix and its middle"):
        module.Formatter(False, 0, "<134>1 ", None)
    with pytest.raises(ValueError, match="prefix and its middle"):
        module.Formatter(True, 0, None, " - ")


@pytest.mark.parametrize("module", ["lbcore._fastpath.logline", "lbcore.proxy.worker", "lbcore._fastpath._logline"])
def test_imports_in_any_order_without_a_cycle(module: str) -> None:
    if module.endswith("._logline"):
        twin("compiled")
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)


def test_no_extensions_selects_the_pure_twin() -> None:
    env = dict(os.environ, LBCORE_NO_EXTENSIONS="1")
    code = "from lbcore._fastpath import logline; print(logline.IMPLEMENTATION, sorted(logline.IMPLEMENTATIONS))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    assert out.split() == ["pure", "['pure']"]
