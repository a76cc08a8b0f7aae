"""The haproxy driver: serve a Spec with haproxy (and stunnel), reload it seamlessly.

Render::

    rendering = render(spec, "/etc/lbcore/haproxy", spec_dir="/etc/lbcore")
    rendering.write()        # haproxy.cfg, crt-lists/, certs/ (0600), maps/, stunnel.conf

or ``lbcore render --driver haproxy FILE OUTDIR``. See ``_render_haproxy`` for how
each Spec field maps, ``_haproxy_acl`` for ACLs, ``_render_stunnel`` for stunnel.

Run::

    driver = HaproxyDriver("/run/lbcore-haproxy", spec_dir="/etc/lbcore")
    driver.start(spec)              # haproxy -W -S master.sock -f current/haproxy.cfg
    driver.apply(new_spec)          # member weight/state only: runtime API; else reload
    driver.set_member("www", "w1", state="drain")   # runtime state, survives reloads
    driver.stats()                  # lbcore's stats structure, from haproxy's show stat
    driver.stop()

Each revision is rendered into ``STATE/revisions/REV/`` and ``STATE/current`` points
at the running one; haproxy is started on ``STATE/current/haproxy.cfg`` in
master-worker mode with a master socket. Applying a revision: render, validate with
``haproxy -c``, save the servers' runtime state (``show servers state`` into the
``server-state-file``, which the new process loads), switch ``current``, and send
``reload`` to the master: the new worker takes the listening sockets from the old
one (``expose-fd listeners``; the master passes them with ``-x``), so no connection
is refused, and the old worker finishes its requests (up to ``hard-stop-after``,
the longest drain). A revision haproxy rejects, at ``-c`` or at the reload, leaves
``current`` on the old revision, the old worker serving, and raises ``ApplyError``
with haproxy's messages.

Where lbcore and haproxy must differ, ``DIFFERENCES`` says so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from lbcore.spec import Spec

from ._haproxy_runtime import (
    CliError,
    MasterCli,
    parse_show_info,
    parse_show_proc,
    parse_show_stat,
    stats_snapshot,
)
from ._material import RenderError, load_material
from ._render_haproxy import Layout, Rendering, RenderOptions, render_haproxy

__all__ = [
    "DIFFERENCES",
    "ApplyError",
    "ApplyResult",
    "HaproxyDriver",
    "RenderError",
    "RenderOptions",
    "Rendering",
    "check_config",
    "ensure_runtime",
    "render",
]

DIFFERENCES = """\
Where haproxy (2.6) cannot do exactly what lbcore does, and what the driver does:

Routing (ACLs)
- Cookies: lbcore tests the first cookie of a name and strips double quotes around a
  value; haproxy's req.cook tests every cookie of that name, quotes included. Equal
  for requests with one cookie of a name and unquoted values.
- Query parameters: haproxy compares parameter names as sent (lbcore percent-decodes
  names too); values are decoded alike (url_dec, '+' as a space).
- Case: haproxy folds ASCII only (-i, lower); lbcore folds Unicode (str.lower).
  Regexes run on PCRE2 in haproxy and Python's re in lbcore: write the common subset.
- Empty patterns (an ACL value "") are refused: haproxy does not match empty values
  the way lbcore does.
- An absolute-form request (GET http://host/ HTTP/1.1) whose authority differs from
  its Host header is answered 400 by haproxy; lbcore routes it by the authority.
- With stunnel terminating TLS, haproxy sees neither the SNI nor client
  certificates: ssl_sni ACLs and client_auth are refused in that mode.

Balancing and persistence
- The same algorithm family, not the same picks: haproxy's roundrobin is its own
  weighted round robin, its consistent hashing (hash-type consistent) is a hash
  ring, lbcore's is weighted rendezvous hashing; a key maps to a member in each,
  not necessarily the same one. random is power-of-two choices in both.
- Cookie persistence: haproxy's nocache sends Cache-Control: private where lbcore
  sends no-cache="set-cookie".
- Source persistence: one stick table (1m entries) per pool, shared by workers;
  lbcore's tables are per worker.

Requests
- Methods: lbcore answers 400 to a method that is not upper case; haproxy accepts
  any token (and a method ACL then compares it as sent, as lbcore would).
- X-Forwarded-For and Forwarded: haproxy adds a header line; lbcore appends to the
  existing list in one line (the same list, RFC 9110 5.3).
- max_body: haproxy checks Content-Length; a chunked body over the limit is not cut.
- More than max_headers + 1 header fields: haproxy answers 400 (its tune.http.maxhdr),
  lbcore 431; up to that, both 431.
- Health checks verify no certificate in lbcore; in haproxy a pool with
  tls.verify: required also verifies on its https checks.

TLS (haproxy terminating)
- The default certificate is one certificate: a client without SNI gets it even when
  an ECDSA/RSA twin would suit it better (lbcore serves the twin pair).
- Ticket keys: haproxy decrypts with the last three keys of the file (lbcore: all);
  the driver repeats the newest key so that haproxy, which encrypts with the
  second-to-last, encrypts with the newest, as lbcore does.
- tune.ssl.cachesize is global: every https listener must set the same session_cache.
- Subject header of client certificates: haproxy 2.6 writes OpenSSL's one-line form
  (/O=Example/CN=client); lbcore writes RFC 4514 (CN=client,O=Example).

Operations
- stunnel reloads (SIGHUP) by closing and re-binding its listening sockets: a
  revision that changes stunnel.conf or its certificates refuses connections to the
  stunnel listeners for a moment. A revision that changes only haproxy's part does
  not touch stunnel.
- A revision that cannot bind (a port in use) is refused, but while the new process
  retries its binds haproxy pauses the old worker's listeners: connections in that
  short window are refused. (A revision that binds serves without a refused
  connection.) The driver returns once every paused listener has resumed.
- Stats: haproxy's counters restart with each new worker (each reload); lbcore keeps
  totals across reloads. No latency histogram, no TLS handshake counts, no per-pool
  no_member or queue_timeouts (None); "workers" is haproxy's thread count.
- Check jitter and drain: haproxy has one spread-checks and one hard-stop-after for
  everything: pools must agree on jitter (whole percents up to 50); the longest drain
  applies to all listeners (as lbcore's supervisor does).
- Passive checks (outlier) need an active check in haproxy to bring a member back,
  and one of consecutive_errors (observe layer4) or consecutive_5xx (observe layer7).
- Access logs: text format only (haproxy's httplog/tcplog, which lbcore's text format
  copies), to stdout or syslog (over TCP through a ring haproxy forwards from); haproxy
  writes no log files.
- The admin listener is haproxy's stats page (/stats) and Prometheus exporter
  (/metrics, haproxy's metric names); the admin socket is haproxy's runtime API.
"""

READY_TIMEOUT = 20.0  # seconds for haproxy or stunnel to start or reload
STOP_TIMEOUT = 20.0
SERVER_STATE_VERSION = 1  # the format version haproxy writes first in show servers state
KEEP_REVISIONS = 3  # rendered revision directories kept on disk (current included)
_LOADED = re.compile(r"Loading (success|failure)")
_RESUMED = re.compile(r"Resumed frontend")
_STUNNEL_LOADED = re.compile(r"Configuration (successful|failed)")
_STUNNEL_BOUND = re.compile(r"Service \[[^]]+\] \(FD=\d+\) bound to")


class ApplyError(RuntimeError):
    """A revision was refused; the running one stays. ``details`` is haproxy's (or the
    renderer's) explanation."""

    def __init__(self, message: str, details: str = "") -> None:
        self.details = details
        super().__init__(f"{message}\n{details}" if details else message)


@dataclass(frozen=True)
class ApplyResult:
    """What applying a revision did: ``action`` is ``unchanged``, ``runtime`` (member
    weights and states through the runtime API) or ``reload``."""

    revision: str
    action: str
    commands: tuple[str, ...] = ()


def render(
    spec: Spec,
    directory: str,
    *,
    spec_dir: str = ".",
    runtime_dir: str | None = None,
    tls_termination: str = "haproxy",
) -> Rendering:
    """Every file for ``spec`` (certificates read from paths relative to ``spec_dir``).
    Raises RenderError naming each field that cannot be expressed."""
    options = RenderOptions(os.path.abspath(directory), os.path.abspath(runtime_dir) if runtime_dir else None,
                            tls_termination)
    return render_haproxy(spec, load_material(spec, spec_dir), options)


def ensure_runtime(runtime_dir: str) -> None:
    """Create the runtime directory and a server-state file holding no server if there
    is none (haproxy warns when the file it should load is missing or empty)."""
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    state = os.path.join(runtime_dir, "server-state")
    if not os.path.exists(state):
        with open(state, "w") as handle:
            handle.write(f"{SERVER_STATE_VERSION}\n")


def check_config(path: str, haproxy: str = "haproxy") -> tuple[bool, str]:
    """``haproxy -c -f PATH``: (valid, haproxy's messages)."""
    proc = subprocess.run([haproxy, "-c", "-f", path], capture_output=True, text=True, timeout=60)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


class _Process:
    """A child process whose stderr lines are collected (and copied to a log file)
    by a thread; ``wait_for`` blocks on a condition variable until a line matches."""

    def __init__(self, argv: list[str], log_path: str) -> None:
        self.log = open(log_path, "a", buffering=1)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<<exited>>")
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        with self.cond:
            return self.lines[mark:]

    def wait_for(self, pattern: re.Pattern[str], since: int, timeout: float) -> str | None:
        """The first line after ``since`` matching ``pattern``; None if the process
        exited first; raises TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    if pattern.search(line):
                        return line
                    if line == "<<exited>>":
                        return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern.pattern!r} within {timeout:g}s")
                self.cond.wait(left)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        self.log.close()
        return self.proc.returncode


def _member_fields_only(old: Spec, new: Spec) -> bool:
    """Whether two revisions differ at most in member weights and admin states."""

    def strip(spec: Spec) -> Spec:
        pools = tuple(
            replace(pool, members=tuple(replace(m, weight=1, admin_state="enabled") for m in pool.members))
            for pool in spec.pools
        )
        return replace(spec, pools=pools)

    return strip(old) == strip(new)


_STATE_COMMAND = {"enabled": "ready", "drain": "drain", "maint": "maint"}


class HaproxyDriver:
    """haproxy (and stunnel) serving Specs from ``state_dir``: see the module docstring."""

    def __init__(
        self,
        state_dir: str,
        *,
        spec_dir: str = ".",
        tls_termination: str = "haproxy",
        haproxy: str = "haproxy",
        stunnel: str | None = None,
    ) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.spec_dir = os.path.abspath(spec_dir)
        self.tls_termination = tls_termination
        self.haproxy = haproxy
        self.stunnel_bin = stunnel or shutil.which("stunnel4") or shutil.which("stunnel") or "stunnel4"
        self.master_socket = os.path.join(self.state_dir, "master.sock")
        self.cli = MasterCli(self.master_socket)
        self.spec: Spec | None = None
        self.rendering: Rendering | None = None
        self.haproxy_proc: _Process | None = None
        self.stunnel_proc: _Process | None = None
        self.worker_pid = 0
        self.lock = threading.Lock()

    # -- paths ---------------------------------------------------------------------------
    @property
    def current(self) -> str:
        return os.path.join(self.state_dir, "current")

    def revision_dir(self, revision: str) -> str:
        return os.path.join(self.state_dir, "revisions", revision)

    @property
    def layout(self) -> Layout:
        if self.rendering is None:
            raise RuntimeError("haproxy is not running")
        return self.rendering.layout

    @property
    def revision(self) -> str | None:
        return self.spec.revision if self.spec else None

    # -- rendering ------------------------------------------------------------------------
    def _prepare(self, spec: Spec) -> Rendering:
        """Render ``spec`` into its revision directory and validate it with haproxy -c."""
        directory = self.revision_dir(spec.revision)
        try:
            rendering = render_haproxy(
                spec, load_material(spec, self.spec_dir),
                RenderOptions(directory, self.state_dir, self.tls_termination),
            )
        except RenderError as exc:
            raise ApplyError(f"revision {spec.revision} cannot be rendered for haproxy", str(exc)) from None
        shutil.rmtree(directory, ignore_errors=True)
        rendering.write()
        ensure_runtime(self.state_dir)
        valid, messages = check_config(os.path.join(directory, "haproxy.cfg"), self.haproxy)
        if not valid:
            shutil.rmtree(directory, ignore_errors=True)
            raise ApplyError(f"haproxy -c refused revision {spec.revision}", messages)
        return rendering

    def _point_current(self, revision: str) -> None:
        link = f"{self.current}.new"
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join("revisions", revision), link)
        os.replace(link, self.current)

    def _prune(self) -> None:
        root = os.path.join(self.state_dir, "revisions")
        keep = {os.path.basename(os.path.realpath(self.current))}
        entries = sorted(
            (entry for entry in os.scandir(root) if entry.is_dir() and entry.name not in keep),
            key=lambda entry: entry.stat().st_mtime,
            reverse=True,
        )
        for entry in entries[KEEP_REVISIONS - 1 :]:
            shutil.rmtree(entry.path, ignore_errors=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, spec: Spec) -> None:
        """Render, validate and start haproxy (and stunnel) on ``spec``."""
        with self.lock:
            if self.haproxy_proc is not None:
                raise RuntimeError("already started")
            os.makedirs(os.path.join(self.state_dir, "revisions"), mode=0o700, exist_ok=True)
            rendering = self._prepare(spec)
            self._point_current(spec.revision)
            if os.path.exists(self.master_socket):
                os.unlink(self.master_socket)
            argv = [self.haproxy, "-W", "-S", f"{self.master_socket},mode,600",
                    "-f", os.path.join(self.current, "haproxy.cfg")]
            self.haproxy_proc = _Process(argv, os.path.join(self.state_dir, "haproxy.log"))
            try:
                self._wait_loaded(0, spec.revision)
            except ApplyError:
                self.haproxy_proc.stop()
                self.haproxy_proc = None
                raise
            self.spec, self.rendering = spec, rendering
            try:
                self._sync_stunnel(None, rendering)
            except ApplyError:
                self.haproxy_proc.stop()
                self.haproxy_proc = None
                self.spec = self.rendering = None
                raise

    def _wait_loaded(self, mark: int, revision: str) -> None:
        """Wait for the master's verdict on a (re)load; raise ApplyError on failure."""
        proc = self.haproxy_proc
        assert proc is not None
        try:
            line = proc.wait_for(_LOADED, mark, READY_TIMEOUT)
        except TimeoutError:
            raise ApplyError(f"haproxy did not load revision {revision} in {READY_TIMEOUT:g}s",
                             "\n".join(proc.since(mark)[-30:])) from None
        if line is None or "failure" in line:
            self._wait_resumed(mark)
            alerts = [l for l in proc.since(mark) if "ALERT" in l or "exited" in l] or proc.since(mark)[-30:]
            raise ApplyError(f"haproxy refused revision {revision}", "\n".join(alerts))
        info = parse_show_proc(self.cli.command("show proc", READY_TIMEOUT))
        if not info.workers:
            raise ApplyError(f"haproxy has no worker after loading revision {revision}")
        self.worker_pid = info.workers[0]
        described = parse_show_info(self.cli.worker(self.worker_pid, "show info")).get("description", "")
        if revision not in described:
            raise ApplyError(f"haproxy's worker runs {described!r}, not revision {revision}")

    def _wait_resumed(self, mark: int) -> None:
        """After a failed reload: the new process paused the old worker's listeners to
        retry its binds; wait until the old worker has resumed every one of them."""
        proc = self.haproxy_proc
        assert proc is not None
        paused = sum(1 for line in proc.since(mark) if "Paused frontend" in line)
        deadline = time.monotonic() + READY_TIMEOUT
        seen = mark
        resumed = 0
        while resumed < paused and time.monotonic() < deadline:
            try:
                proc.wait_for(_RESUMED, seen, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            lines = proc.since(seen)
            resumed += sum(1 for line in lines if "Resumed frontend" in line)
            seen += len(lines)

    def apply(self, spec: Spec) -> ApplyResult:
        """Make ``spec`` the running revision (see the module docstring)."""
        with self.lock:
            if self.spec is None or self.haproxy_proc is None:
                raise RuntimeError("haproxy is not running: start() first")
            old = self.spec
            if spec.revision == old.revision:
                return ApplyResult(spec.revision, "unchanged")
            rendering = self._prepare(spec)
            if _member_fields_only(old, spec):
                commands = self._runtime_changes(old, spec)
                self._point_current(spec.revision)
                self.spec, self.rendering = spec, rendering
                self._prune()
                return ApplyResult(spec.revision, "runtime", tuple(commands))
            mark = self.haproxy_proc.mark()
            try:
                self._save_server_state()
                self._point_current(spec.revision)
                self._send_reload()
                self._wait_loaded(mark, spec.revision)
            except (ApplyError, CliError) as exc:
                self._point_current(old.revision)
                if isinstance(exc, ApplyError):
                    raise
                raise ApplyError(f"reload of revision {spec.revision} failed", str(exc)) from None
            previous = self.rendering
            self.spec, self.rendering = spec, rendering
            self._sync_stunnel(previous, rendering)
            self._prune()
            return ApplyResult(spec.revision, "reload")

    def _send_reload(self) -> None:
        self.cli.send_once("reload", READY_TIMEOUT)

    def _save_server_state(self) -> None:
        """``show servers state`` into the server-state-file the new worker loads."""
        text = self.cli.worker(self.worker_pid, "show servers state")
        path = os.path.join(self.state_dir, "server-state")
        temp = f"{path}.tmp"
        with open(temp, "w") as handle:
            handle.write(text)
        os.replace(temp, path)

    def _runtime_changes(self, old: Spec, new: Spec) -> list[str]:
        commands = []
        for pool in new.pools:
            before = {m.name: m for m in old.pool(pool.name).members}
            for member in pool.members:
                prior = before[member.name]
                state = member.admin_state if member.admin_state != prior.admin_state else None
                # A drained member's configured weight is 0: leaving drain restores it.
                restore = prior.admin_state == "drain" and member.admin_state != "drain"
                weight = member.weight if member.weight != prior.weight or restore else None
                if state is not None or weight is not None:
                    commands += self._member_commands(pool.name, member.name, state, weight)
        return commands

    def _member_commands(self, pool: str, member: str, state: str | None, weight: int | None) -> list[str]:
        sent = []
        for backend in self.layout.backends.get(pool, ()):
            if state is not None:
                sent.append(f"set server {backend}/{member} state {_STATE_COMMAND[state]}")
            if weight is not None:
                sent.append(f"set server {backend}/{member} weight {weight}")
        for command in sent:
            answer = self.cli.worker(self.worker_pid, command).strip()
            if answer and not answer.lower().startswith(("done", "no need")):
                raise ApplyError(f"haproxy refused {command!r}", answer)
        return sent

    def set_member(self, pool: str, member: str, *, state: str | None = None, weight: int | None = None) -> list[str]:
        """Change a member at runtime: ``state`` enabled, drain or maint; ``weight``
        0..256. Runtime state (not config): it survives reloads through the
        server-state-file until a revision changes that member's field."""
        with self.lock:
            if self.spec is None:
                raise RuntimeError("haproxy is not running")
            if state is not None and state not in _STATE_COMMAND:
                raise ValueError(f"state must be one of {tuple(_STATE_COMMAND)}")
            if weight is not None and not 0 <= weight <= 256:
                raise ValueError("weight must be 0..256")
            self.spec.pool(pool).member(member)  # KeyError for an unknown name
            return self._member_commands(pool, member, state, weight)

    def stats(self) -> dict[str, Any]:
        """lbcore's stats structure from haproxy's ``show stat`` and ``show info``."""
        with self.lock:
            if self.spec is None:
                raise RuntimeError("haproxy is not running")
            rows = parse_show_stat(self.cli.worker(self.worker_pid, "show stat"))
            info = parse_show_info(self.cli.worker(self.worker_pid, "show info"))
            return stats_snapshot(self.spec, self.layout, rows, info)

    def show(self, command: str) -> str:
        """A runtime API command for the current worker (``show servers state``...)."""
        with self.lock:
            return self.cli.worker(self.worker_pid, command)

    def log_mark(self) -> int:
        """A position in haproxy's log, for ``wait_for_log``."""
        assert self.haproxy_proc is not None
        return self.haproxy_proc.mark()

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = READY_TIMEOUT) -> str:
        """Block until haproxy logs a line matching ``pattern`` after ``since``
        (``Server www/w1 is DOWN``...); raises TimeoutError or RuntimeError (exited)."""
        assert self.haproxy_proc is not None
        line = self.haproxy_proc.wait_for(re.compile(pattern), since, timeout)
        if line is None:
            raise RuntimeError(f"haproxy exited before logging {pattern!r}")
        return line

    def log_text(self) -> str:
        parts = []
        for proc in (self.haproxy_proc, self.stunnel_proc):
            if proc is not None:
                parts.append("\n".join(proc.since(0)))
        return "\n".join(parts)

    # -- stunnel --------------------------------------------------------------------------
    def _sync_stunnel(self, before: Rendering | None, after: Rendering) -> None:
        wanted = after.has("stunnel.conf")
        if not wanted:
            if self.stunnel_proc is not None:
                self.stunnel_proc.stop()
                self.stunnel_proc = None
            return
        if self.stunnel_proc is not None and before is not None and before.has("stunnel.conf") and _same_stunnel(before, after):
            return
        # stunnel remembers the real path of its configuration file: give it a fixed
        # regular file (not the ``current`` link) and rewrite that file on a change.
        conf = os.path.join(self.state_dir, "stunnel.conf")
        temp = f"{conf}.tmp"
        with open(temp, "w") as handle:
            handle.write(after.text("stunnel.conf"))
        os.replace(temp, conf)
        if self.stunnel_proc is None:
            self.stunnel_proc = _Process([self.stunnel_bin, conf], os.path.join(self.state_dir, "stunnel.log"))
            self._wait_stunnel(0)
            return
        mark = self.stunnel_proc.mark()
        self.stunnel_proc.proc.send_signal(signal.SIGHUP)
        self._wait_stunnel(mark)

    def _wait_stunnel(self, mark: int) -> None:
        """Wait for stunnel to read its configuration and bind every listener (it
        logs "Configuration successful" before it re-binds on a reload)."""
        proc = self.stunnel_proc
        assert proc is not None and self.rendering is not None
        try:
            line = proc.wait_for(_STUNNEL_LOADED, mark, READY_TIMEOUT)
            if line is None or "successful" not in line:
                raise ApplyError("stunnel refused its configuration", "\n".join(proc.since(mark)[-30:]))
            wanted = len(self.rendering.layout.stunnel_listeners)
            seen = mark
            bound = 0
            while bound < wanted:
                if proc.wait_for(_STUNNEL_BOUND, seen, READY_TIMEOUT) is None:
                    raise ApplyError("stunnel exited", "\n".join(proc.since(mark)[-30:]))
                lines = proc.since(seen)
                bound += sum(1 for item in lines if _STUNNEL_BOUND.search(item))
                seen += len(lines)
        except TimeoutError:
            raise ApplyError("stunnel did not start", "\n".join(proc.since(mark)[-30:])) from None

    def stop(self) -> None:
        """Stop stunnel and haproxy (hard stop: open connections are closed)."""
        with self.lock:
            if self.stunnel_proc is not None:
                self.stunnel_proc.stop()
                self.stunnel_proc = None
            if self.haproxy_proc is not None:
                self.haproxy_proc.stop(signal.SIGTERM)
                self.haproxy_proc = None
            self.spec = None

    def __enter__(self) -> HaproxyDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _same_stunnel(a: Rendering, b: Rendering) -> bool:
    """Whether two renderings give stunnel the same configuration and certificates."""
    def certs(r: Rendering) -> dict[str, bytes]:
        return {f.path: f.content for f in r.files if f.path.startswith("certs/")}

    strip = re.compile(r"^; stunnel.conf for lbcore revision .*$", re.MULTILINE)
    text_a = strip.sub("", a.text("stunnel.conf")).replace(a.directory, "")
    text_b = strip.sub("", b.text("stunnel.conf")).replace(b.directory, "")
    return text_a == text_b and certs(a) == certs(b)
