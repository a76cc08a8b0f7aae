"""The runtime API: haproxy-style operator commands, without the socket (sans-IO).

Theory of operation
- ``execute(line, controller)`` runs one command against a ``Controller`` (the
  supervisor) and returns its reply: text whose lines each end in "\\n" (a command
  with nothing to say still confirms in one line). A failure is exactly one line that
  starts with ``error: `` (``is_error``); nothing the operator types makes it raise.
- A command is found in ``GRAMMAR``, a table of word patterns: literal words, ``<ARG>``
  (one word) and ``[ARG]`` (an optional last word). A line that matches no pattern is
  told the usage of the patterns that share most of its leading words.
- ``Session`` is one socket connection as bytes in -> bytes out: lines, several
  commands per line separated by ";", the ``prompt`` (interactive) mode and ``quit``,
  a line-length limit. Every reply ends with an empty line, as on haproxy's socket,
  so a client reading several replies from one stream knows where each ends.
  ``runtime_socket`` only moves its bytes.
- Every surface renders the one snapshot defined in ``lbcore.proxy.stats``.
  ``stat_rows`` turns it into haproxy's ``show stat`` rows (one FRONTEND row per
  listener; per pool, one row per member, then one BACKEND row), the rows that
  ``show stat`` prints as CSV or JSON and the admin listener serves as /stats.csv.

Commands (``help`` lists them) use haproxy's names where haproxy has the command:
``show info``, ``show stat``, ``show servers state``, ``get weight``,
``set server P/M state|weight``, ``enable/disable server``, ``enable/disable health``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, Callable, Iterable, Protocol

__all__ = [
    "Controller",
    "CommandError",
    "GRAMMAR",
    "HEALTHY",
    "MAX_LINE",
    "RESPONSE_CLASSES",
    "STAT_FIELDS",
    "SERVERS_STATE_FIELDS",
    "Session",
    "Syntax",
    "USABLE",
    "execute",
    "find_command",
    "format_csv",
    "info_fields",
    "is_error",
    "servers_state_values",
    "stat_rows",
]

log = logging.getLogger("lbcore.runtime")

ERROR_PREFIX = "error: "
# A command line longer than this is refused and the connection closed: haproxy's
# default tune.bufsize (16 KiB) is the most it reads for one CLI request.
MAX_LINE = 16384
MAX_WEIGHT = 256  # as the Spec and haproxy (weights 0..256)
# Member statuses that take new traffic (DRAIN is up but takes none, MAINT and DOWN none).
USABLE = ("UP", "NO_CHECK")
HEALTHY = ("UP", "DRAIN", "NO_CHECK")  # up, whether taking new traffic or not
# Admin states by their haproxy name ("ready") and the Spec's ("enabled").
ADMIN_WORDS = {"ready": "enabled", "enabled": "enabled", "drain": "drain", "maint": "maint"}


class Controller(Protocol):
    """What the runtime API and the admin listener need from the engine (the
    supervisor implements it)."""

    def snapshot(self) -> dict[str, Any]: ...

    def set_member_admin(self, pool: str, member: str, state: str) -> None: ...

    def set_member_weight(self, pool: str, member: str, weight: int) -> None: ...

    def set_health_enabled(self, pool: str, member: str, enabled: bool) -> None: ...

    def servers_state(self) -> list[dict[str, Any]]: ...


class CommandError(Exception):
    """The operator's command is wrong or names what does not exist: the reply is
    ``error: <message>``."""


# -- the grammar ---------------------------------------------------------------------------


Handler = Callable[["Controller", list[str]], str]


@dataclass(frozen=True, slots=True)
class Syntax:
    """One command: its words (literal, ``<ARG>``, or a final ``[ARG]``), what runs it,
    and one line of help."""

    words: tuple[str, ...]
    run: Handler
    help: str

    def __post_init__(self) -> None:
        for index, word in enumerate(self.words):
            if word.startswith("[") and index != len(self.words) - 1:
                raise ValueError(f"optional argument {word} must be last in {self.usage!r}")

    @property
    def usage(self) -> str:
        return " ".join(self.words)

    @property
    def literal_prefix(self) -> tuple[str, ...]:
        """The words before the first argument."""
        out = []
        for word in self.words:
            if word[0] in "<[":
                break
            out.append(word)
        return tuple(out)

    def match(self, tokens: list[str]) -> list[str] | None:
        """The arguments, if ``tokens`` is this command (an absent optional one is "")."""
        args: list[str] = []
        for index, word in enumerate(self.words):
            have = index < len(tokens)
            if word.startswith("["):
                args.append(tokens[index] if have else "")
            elif word.startswith("<"):
                if not have:
                    return None
                args.append(tokens[index])
            elif not have or tokens[index].lower() != word:
                return None
        return args if len(tokens) <= len(self.words) else None


def _leading_words(syntax: Syntax, tokens: list[str]) -> int:
    count = 0
    for word, token in zip(syntax.literal_prefix, tokens):
        if token.lower() != word:
            break
        count += 1
    return count


def find_command(tokens: list[str]) -> tuple[Syntax, list[str]]:
    """The command ``tokens`` spell and its arguments, or CommandError saying the usage."""
    for syntax in GRAMMAR:
        args = syntax.match(tokens)
        if args is not None:
            return syntax, args
    best = max(_leading_words(syntax, tokens) for syntax in GRAMMAR)
    typed = " ".join(tokens)
    if best == 0:
        firsts = sorted({syntax.words[0] for syntax in GRAMMAR})
        close = get_close_matches(tokens[0].lower(), firsts, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CommandError(f"unknown command {typed!r}{hint}; 'help' lists the commands")
    usages = " | ".join(s.usage for s in GRAMMAR if _leading_words(s, tokens) == best)
    raise CommandError(f"cannot read {typed!r}; usage: {usages}")


def execute(line: str, controller: Controller) -> str:
    """Run one command line; the reply (an ``error: `` line when it failed)."""
    tokens = line.split()
    if not tokens:
        return _error("empty command; 'help' lists the commands")
    try:
        syntax, args = find_command(tokens)
        reply = syntax.run(controller, args)
    except CommandError as exc:
        return _error(str(exc))
    except Exception as exc:  # the controller failed: say so in one line, log the rest
        log.exception("runtime command %r failed", line)
        return _error(f"internal error running {' '.join(tokens)!r}: {type(exc).__name__}: {exc}")
    return reply if reply.endswith("\n") or not reply else reply + "\n"


def is_error(reply: str) -> bool:
    return reply.startswith(ERROR_PREFIX)


def _error(message: str) -> str:
    return ERROR_PREFIX + " ".join(message.split()) + "\n"


# -- commands: help and session ---------------------------------------------------------------


def _help(controller: Controller, args: list[str]) -> str:
    width = max(len(syntax.usage) for syntax in GRAMMAR)
    lines = ["The following commands are valid:"]
    lines += [f"  {syntax.usage:<{width}} : {syntax.help}" for syntax in GRAMMAR]
    return "\n".join(lines) + "\n"


def _socket_only(controller: Controller, args: list[str]) -> str:
    raise CommandError("prompt and quit only mean something on a runtime socket connection")


# -- commands: show -------------------------------------------------------------------------


def _show_info(controller: Controller, args: list[str]) -> str:
    fmt = _format_word(args[0], ("text", "json"), "show info")
    info = info_fields(controller.snapshot())
    if fmt == "json":
        return json.dumps(info, indent=2) + "\n"
    return "".join(f"{key}: {_cell(value)}\n" for key, value in info.items())


def _show_stat(controller: Controller, args: list[str]) -> str:
    fmt = _format_word(args[0], ("csv", "json"), "show stat")
    rows = stat_rows(controller.snapshot(), now=time.time())
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    return format_csv(rows)


def _show_servers_state(controller: Controller, args: list[str]) -> str:
    rows = controller.servers_state()
    if args[0]:
        pools = {row["pool"] for row in rows}
        if args[0] not in pools:
            raise CommandError(_no_pool(args[0], pools))
        rows = [row for row in rows if row["pool"] == args[0]]
    lines = ["1", "# " + " ".join(SERVERS_STATE_FIELDS)]
    for row in rows:
        values = servers_state_values(row)
        lines.append(" ".join(_word(values[field]) for field in SERVERS_STATE_FIELDS))
    return "\n".join(lines) + "\n"


def _format_word(word: str, choices: tuple[str, ...], command: str) -> str:
    if not word:
        return choices[0]
    if word.lower() not in choices:
        raise CommandError(f"{command}: unknown format {word!r} (one of {', '.join(choices)})")
    return word.lower()


# -- commands: change a member ----------------------------------------------------------------


def _set_state(controller: Controller, args: list[str]) -> str:
    pool, member = _pool_member(args[0])
    state = ADMIN_WORDS.get(args[1].lower())
    if state is None:
        raise CommandError(f"set server: unknown state {args[1]!r} (ready, drain or maint)")
    return _change(controller, pool, member, lambda: controller.set_member_admin(pool, member, state), f"state {state}")


def _enable_server(controller: Controller, args: list[str]) -> str:
    return _set_state(controller, [args[0], "ready"])


def _disable_server(controller: Controller, args: list[str]) -> str:
    return _set_state(controller, [args[0], "maint"])


_WEIGHT_RE = re.compile(r"(\d{1,9})(%?)\Z")


def _set_weight(controller: Controller, args: list[str]) -> str:
    pool, member = _pool_member(args[0])
    match = _WEIGHT_RE.match(args[1])
    if match is None:
        raise CommandError(f"set server: invalid weight {args[1]!r} (0..{MAX_WEIGHT}, or N% of the configured weight)")
    number, percent = int(match.group(1)), bool(match.group(2))
    if percent:
        # haproxy: "relative to the initially configured weight", rounded down.
        configured = int(_state_row(controller, pool, member)["configured_weight"])
        weight = configured * number // 100
        if weight > MAX_WEIGHT:
            raise CommandError(
                f"set server: {number}% of the configured weight {configured} is {weight}, above {MAX_WEIGHT}")
        what = f"weight {weight} ({number}% of {configured})"
    else:
        weight = number
        if weight > MAX_WEIGHT:
            raise CommandError(f"set server: weight {weight} is out of range (0..{MAX_WEIGHT})")
        what = f"weight {weight}"
    return _change(controller, pool, member, lambda: controller.set_member_weight(pool, member, weight), what)


def _get_weight(controller: Controller, args: list[str]) -> str:
    pool, member = _pool_member(args[0])
    row = _state_row(controller, pool, member)
    return f"{row['weight']} (initial {row['configured_weight']})\n"


def _enable_health(controller: Controller, args: list[str]) -> str:
    pool, member = _pool_member(args[0])
    return _change(controller, pool, member, lambda: controller.set_health_enabled(pool, member, True),
                   "health checks enabled")


def _disable_health(controller: Controller, args: list[str]) -> str:
    pool, member = _pool_member(args[0])
    return _change(controller, pool, member, lambda: controller.set_health_enabled(pool, member, False),
                   "health checks disabled")


def _change(controller: Controller, pool: str, member: str, apply: Callable[[], None], what: str) -> str:
    try:
        apply()
    except KeyError:
        raise CommandError(_unknown_member(controller, pool, member)) from None
    except ValueError as exc:
        raise CommandError(f"{pool}/{member}: {exc}") from None
    log.info("runtime: %s/%s %s", pool, member, what)
    return f"{pool}/{member}: {what}\n"


def _pool_member(word: str) -> tuple[str, str]:
    pool, sep, member = word.partition("/")
    if not sep or not pool or not member or "/" in member:
        raise CommandError(f"expected POOL/MEMBER, got {word!r}")
    return pool, member


def _state_row(controller: Controller, pool: str, member: str) -> dict[str, Any]:
    for row in controller.servers_state():
        if row["pool"] == pool and row["member"] == member:
            return row
    raise CommandError(_unknown_member(controller, pool, member))


def _unknown_member(controller: Controller, pool: str, member: str) -> str:
    """Which of pool and member does not exist, and what does."""
    pools = {p["name"]: [m["name"] for m in p.get("members", ())] for p in controller.snapshot().get("pools", ())}
    if pool not in pools:
        return _no_pool(pool, pools)
    names = pools[pool]
    return f"no member {member!r} in pool {pool!r} (members: {', '.join(names) or 'none'})"


def _no_pool(pool: str, pools: Iterable[str]) -> str:
    return f"no pool {pool!r} (pools: {', '.join(sorted(pools)) or 'none'})"


GRAMMAR: tuple[Syntax, ...] = (
    Syntax(("help",), _help, "this list"),
    Syntax(("prompt",), _socket_only, "toggle interactive mode: a '> ' prompt after each reply"),
    Syntax(("quit",), _socket_only, "close the connection"),
    Syntax(("show", "info", "[json]"), _show_info, "engine version, revision, pid, uptime, totals"),
    Syntax(("show", "stat", "[csv|json]"), _show_stat, "counters per listener, member and pool (haproxy columns)"),
    Syntax(("show", "servers", "state", "[POOL]"), _show_servers_state,
           "admin state, weight, health per member; which are runtime overrides"),
    Syntax(("get", "weight", "<POOL/MEMBER>"), _get_weight, "a member's weight and its configured weight"),
    Syntax(("set", "server", "<POOL/MEMBER>", "state", "<ready|drain|maint>"), _set_state,
           "admin state: ready takes traffic, drain no new sessions, maint none"),
    Syntax(("set", "server", "<POOL/MEMBER>", "weight", "<N|N%>"), _set_weight,
           f"weight 0..{MAX_WEIGHT}, or N% of the configured weight"),
    Syntax(("enable", "server", "<POOL/MEMBER>"), _enable_server, "same as: set server POOL/MEMBER state ready"),
    Syntax(("disable", "server", "<POOL/MEMBER>"), _disable_server, "same as: set server POOL/MEMBER state maint"),
    Syntax(("enable", "health", "<POOL/MEMBER>"), _enable_health, "resume the member's health checks"),
    Syntax(("disable", "health", "<POOL/MEMBER>"), _disable_health, "stop the member's health checks"),
)


# -- rendering the snapshot ---------------------------------------------------------------------

RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# haproxy's "show stat" columns that the snapshot fills, in haproxy's order, then lbcore's
# own (admin, operating_status). type: 0 frontend, 1 backend, 2 server, as haproxy.
STAT_FIELDS: tuple[str, ...] = (
    "pxname", "svname", "scur", "smax", "stot", "bin", "bout", "dreq", "ereq", "econ", "eresp",
    "wretr", "wredis", "status", "weight", "act", "bck", "chkfail", "lastchg", "type",
    "check_status", "check_code", "check_duration",
    *(f"hrsp_{klass}" for klass in RESPONSE_CLASSES),
    "req_tot", "last_chk", "check_rise", "check_fall", "addr", "mode", "algo", "uweight",
    "admin", "operating_status",
)
SERVERS_STATE_FIELDS = (
    "pool", "member", "address", "status", "admin", "configured_admin", "weight", "configured_weight",
    "health", "source", "overrides",
)


def stat_rows(snapshot: dict[str, Any], *, now: float) -> list[dict[str, Any]]:
    """haproxy's "show stat" rows from a snapshot: every STAT_FIELDS key in each row,
    None where the column does not apply (an empty CSV cell)."""
    rows = [_frontend_row(listener) for listener in snapshot.get("listeners", ())]
    for pool in snapshot.get("pools", ()):
        members = pool.get("members", ())
        rows.extend(_member_row(pool, member, now) for member in members)
        rows.append(_backend_row(pool, members))
    return rows


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(STAT_FIELDS)
    row.update(values)
    return row


def _responses(item: dict[str, Any]) -> dict[str, Any]:
    responses = item.get("responses") or {}
    return {f"hrsp_{klass}": responses.get(klass, 0) for klass in RESPONSE_CLASSES}


def _frontend_row(listener: dict[str, Any]) -> dict[str, Any]:
    return _row(
        pxname=listener["name"], svname="FRONTEND", type=0,
        scur=listener.get("conns_cur", 0), smax=listener.get("conns_max", 0), stot=listener.get("conns_total", 0),
        bin=listener.get("bytes_in", 0), bout=listener.get("bytes_out", 0),
        dreq=listener.get("denied", 0), ereq=listener.get("errors", 0),
        status=listener.get("status"), req_tot=listener.get("requests", 0), mode=listener.get("protocol"),
        operating_status=listener.get("operating_status"),
        **_responses(listener),
    )


def _member_row(pool: dict[str, Any], member: dict[str, Any], now: float) -> dict[str, Any]:
    check = member.get("check") or {}
    last_change = member.get("last_change")
    backup = bool(member.get("backup"))
    weight = member.get("weight", 0)
    return _row(
        pxname=pool["name"], svname=member["name"], type=2,
        scur=member.get("active", 0), stot=member.get("conns_total", 0),
        bin=member.get("bytes_in", 0), bout=member.get("bytes_out", 0),
        econ=member.get("connect_errors", 0), eresp=member.get("response_errors", 0),
        status=member.get("status"), weight=member.get("effective_weight", weight), uweight=weight,
        act=0 if backup else 1, bck=1 if backup else 0,
        chkfail=member.get("check_failures"),
        lastchg=None if last_change is None else max(0, int(now - last_change)),
        check_status=check.get("code"), check_code=check.get("status"), check_duration=check.get("duration_ms"),
        last_chk=check.get("detail"), check_rise=check.get("rise"), check_fall=check.get("fall"),
        req_tot=member.get("requests", 0), addr=member.get("address"),
        admin=member.get("admin"), operating_status=member.get("operating_status"),
        **_responses(member),
    )


def _backend_row(pool: dict[str, Any], members: Iterable[dict[str, Any]]) -> dict[str, Any]:
    members = list(members)
    usable = [m for m in members if m.get("status") in USABLE]
    return _row(
        pxname=pool["name"], svname="BACKEND", type=1,
        scur=pool.get("active", 0), stot=sum(m.get("conns_total", 0) for m in members),
        bin=sum(m.get("bytes_in", 0) for m in members), bout=sum(m.get("bytes_out", 0) for m in members),
        econ=pool.get("connect_errors", 0), eresp=pool.get("response_errors", 0),
        wretr=pool.get("retries", 0), wredis=pool.get("redispatches", 0),
        status=pool.get("status"),
        # haproxy: a backend's weight is the total effective weight of its usable servers
        weight=sum(m.get("effective_weight", m.get("weight", 0)) for m in usable if not m.get("backup")),
        act=sum(1 for m in usable if not m.get("backup")), bck=sum(1 for m in usable if m.get("backup")),
        req_tot=pool.get("requests", 0), algo=pool.get("algorithm"),
        operating_status=pool.get("operating_status"),
        **_responses(pool),
    )


def format_csv(rows: list[dict[str, Any]]) -> str:
    """haproxy's CSV: a "# " header line of the field names, then one line per row."""
    out = io.StringIO()
    out.write("# " + ",".join(STAT_FIELDS) + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(row[field]) for field in STAT_FIELDS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def _word(value: Any) -> str:
    """A space-separated field: never empty, never containing a space."""
    text = _cell(value)
    return "-" if not text else text.replace(" ", "_")


def info_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``show info``: haproxy's field names where it has them."""
    info = snapshot.get("info", {})
    listeners = snapshot.get("listeners", ())
    members = [m for pool in snapshot.get("pools", ()) for m in pool.get("members", ())]
    uptime = int(info.get("uptime_s", 0))
    started = info.get("started_at")
    return {
        "Name": "lbcore",
        "Version": info.get("version"),
        "Revision": info.get("revision"),
        "Pid": info.get("pid"),
        "Workers": info.get("workers"),
        "Start_time_sec": None if started is None else int(started),
        "Uptime": f"{uptime // 86400}d {uptime // 3600 % 24}h{uptime // 60 % 60:02d}m{uptime % 60:02d}s",
        "Uptime_sec": uptime,
        "Listeners": len(listeners),
        "Pools": len(snapshot.get("pools", ())),
        "Members": len(members),
        "Members_up": sum(1 for m in members if m.get("status") in HEALTHY),
        "CurrConns": sum(l.get("conns_cur", 0) for l in listeners),
        "CumConns": sum(l.get("conns_total", 0) for l in listeners),
        "CumReq": sum(l.get("requests", 0) for l in listeners),
    }


_OVERRIDE_NAMES = {"health_disabled": "health"}  # a controller's field name -> the word shown


def servers_state_values(row: dict[str, Any]) -> dict[str, Any]:
    """One ``show servers state`` line's values from a Controller.servers_state() row.
    ``overrides`` names what the runtime socket set over the Spec (the row's own
    ``overrides`` list when the controller gives one)."""
    overrides = row.get("overrides")
    if overrides is not None:
        overrides = [_OVERRIDE_NAMES.get(name, name) for name in overrides]
    else:
        overrides = [name for name, now, configured in (
            ("admin", row.get("admin"), row.get("configured_admin")),
            ("weight", row.get("weight"), row.get("configured_weight")),
        ) if now != configured]
        configured_health = row.get("configured_health")
        if configured_health is not None:
            if bool(configured_health) != bool(row.get("health_enabled")):
                overrides.append("health")
        elif not row.get("health_enabled") and row.get("source") == "runtime":
            overrides.append("health")
    return {
        "pool": row["pool"],
        "member": row["member"],
        "address": row.get("address"),
        "status": row.get("status"),
        "admin": row.get("admin"),
        "configured_admin": row.get("configured_admin"),
        "weight": row.get("weight"),
        "configured_weight": row.get("configured_weight"),
        "health": "enabled" if row.get("health_enabled") else "disabled",
        "source": row.get("source"),
        "overrides": ",".join(overrides),
    }


# -- one socket connection ----------------------------------------------------------------------


class Session:
    """One runtime-socket connection as a byte stream in and out (no I/O here).

    ``receive_data(data)`` takes what the client sent (b"" for end of stream) and
    returns what to send back; once ``closed`` is true the caller sends that and
    closes. Lines end in LF (CR LF too); ";" separates commands on one line. Each
    reply is followed by an empty line; in ``prompt`` mode, by a "> " prompt too.
    """

    def __init__(self, controller: Controller, *, max_line: int = MAX_LINE) -> None:
        self.controller = controller
        self.max_line = max_line
        self.interactive = False
        self.closed = False
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> bytes:
        if self.closed:
            return b""
        out: list[str] = []
        if not data:  # end of stream: a last line without its newline still runs
            if self._buffer.strip():
                out.append(self._line(bytes(self._buffer)))
            self._buffer.clear()
            self.closed = True
            return "".join(out).encode()
        self._buffer += data
        while not self.closed:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    out.append(self._too_long())
                break
            if end > self.max_line:
                out.append(self._too_long())
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            out.append(self._line(line))
        return "".join(out).encode()

    def _too_long(self) -> str:
        self.closed = True
        self._buffer.clear()
        return _error(f"command line longer than {self.max_line} bytes; closing") + "\n"

    def _line(self, raw: bytes) -> str:
        out: list[str] = []
        for part in raw.decode("utf-8", "replace").split(";"):
            command = part.strip()
            word = command.lower()
            if not command:
                continue
            if word == "quit":
                self.closed = True
                return "".join(out)
            if word == "prompt":
                self.interactive = not self.interactive
                continue
            out.append(execute(command, self.controller) + "\n")
        if self.interactive:
            out.append("> ")
        return "".join(out)
