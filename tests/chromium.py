"""Headless Chromium driven over the DevTools protocol (CDP), for tests of web pages.

    with Chromium() as browser:
        page = browser.open("http://127.0.0.1:9100/stats")
        stats = StatsPage(page)
        assert stats.member_status("www", "w1") == "UP"
        ...                                   # kill the member, or change a fake snapshot
        stats.wait_member_status("www", "w1", "DOWN", timeout=15)
        assert page.errors() == []            # no script error, no CSP violation

How it works
- Chromium (Debian's ``chromium`` package, /usr/bin/chromium; ``$CHROMIUM`` overrides)
  starts headless with its own temporary profile and ``--remote-debugging-port=0``: it
  picks a free port on 127.0.0.1 and prints ``DevTools listening on ws://...`` on
  stderr; a thread reading stderr hands that line over (no polling for a port file).
- One websocket to that browser endpoint (the ``websockets`` package's sync client)
  carries everything. Each page is a new target attached in flat mode
  (``Target.attachToTarget``, ``flatten``), so its commands carry a ``sessionId``.
  A command waits for the reply with its id; the events read meanwhile are kept, per
  session, for ``wait_event`` and ``errors``.
- ``Page.wait_for(expression)`` never sleeps in Python: it evaluates, in the page, a
  promise that settles when the expression becomes truthy. It checks at once, then on
  every DOM mutation (a MutationObserver) and every 100 ms (for what is not in the
  DOM), and fails after ``timeout`` seconds with the expression's last value.
- ``close`` (or leaving the ``with``) asks the browser to close, kills it if it does
  not, and removes the profile.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from contextlib import ExitStack
from typing import Any

from websockets.sync.client import connect

__all__ = ["CHROMIUM", "Chromium", "ChromiumError", "Page", "StatsPage", "chromium_path"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # containers often have a 64 MiB /dev/shm
    "--mute-audio",
)
START_TIMEOUT = 30.0  # seconds for Chromium to open its DevTools endpoint
COMMAND_TIMEOUT = 30.0  # seconds for the reply to one DevTools command
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class ChromiumError(RuntimeError):
    pass


def chromium_path() -> str | None:
    """The Chromium binary to run, or None when there is none."""
    path = os.environ.get("CHROMIUM") or CHROMIUM
    return path if os.access(path, os.X_OK) else shutil.which("chromium")


class Chromium:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or chromium_path()
        if self.binary is None:
            raise ChromiumError(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
        self.profile: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self._ws: Any = None
        self._stack = ExitStack()  # the websocket connection's context
        self._ids = itertools.count(1)
        self._events: dict[str | None, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()  # one command at a time on the websocket

    # -- lifetime ---------------------------------------------------------------------------
    def start(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="lbcore-chromium-")
        args = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        found: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stderr, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=START_TIMEOUT)
        except queue.Empty:
            url = None
        if url is None:
            self.close()
            raise ChromiumError("Chromium did not open its DevTools endpoint:\n" + "\n".join(self.stderr_tail))
        self._ws = self._stack.enter_context(
            connect(url, proxy=None, compression=None, max_size=None, open_timeout=START_TIMEOUT))
        return self

    def _read_stderr(self, found: "queue.Queue[str | None]") -> None:
        assert self.proc is not None and self.proc.stderr is not None
        announced = False
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())
            match = _LISTENING.search(line)
            if match and not announced:
                announced = True
                found.put(match.group(1))
        if not announced:
            found.put(None)  # it exited first

    def close(self) -> None:
        if self._ws is not None:
            try:
                self.call("Browser.close", timeout=5)
            except Exception:  # already gone, or not answering: killed below
                pass
            self._stack.close()
            self._ws = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the protocol -----------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """Send one command and return its result; events read meanwhile are kept."""
        with self._lock:
            ident = next(self._ids)
            message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
            if session is not None:
                message["sessionId"] = session
            self._ws.send(json.dumps(message))
            while True:
                reply = self._receive(timeout, f"the reply to {method}")
                if reply.get("id") == ident:
                    if "error" in reply:
                        raise ChromiumError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
                    return reply.get("result", {})

    def wait_event(self, method: str, *, session: str | None = None, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """The first event ``method`` of ``session`` not taken yet (waiting for it)."""
        with self._lock:
            while True:
                kept = self._events.get(session, [])
                for index, event in enumerate(kept):
                    if event["method"] == method:
                        del kept[index]
                        return event.get("params", {})
                self._receive(timeout, f"event {method}")

    def events(self, session: str | None) -> list[dict[str, Any]]:
        return list(self._events.get(session, []))

    def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            message = json.loads(self._ws.recv(timeout=timeout))
        except TimeoutError:
            raise ChromiumError(f"no {what} from Chromium within {timeout:g}s") from None
        if "method" in message:  # an event
            self._events.setdefault(message.get("sessionId"), []).append(message)
        return message

    # -- pages ------------------------------------------------------------------------------
    def open(self, url: str, *, timeout: float = COMMAND_TIMEOUT) -> "Page":
        """A new tab showing ``url``, once its load event has fired."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        page.navigate(url, timeout=timeout)
        return page


class Page:
    """One tab. ``evaluate`` runs JavaScript in it; ``wait_for`` waits on it."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def navigate(self, url: str, *, timeout: float = COMMAND_TIMEOUT) -> None:
        result = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise ChromiumError(f"cannot load {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", session=self.session, timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float = COMMAND_TIMEOUT, label: str | None = None) -> Any:
        """The value of a JavaScript expression (a promise is awaited), as JSON data;
        ChromiumError, naming ``label`` (default: the expression), if it throws."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ChromiumError(f"{label or repr(expression)}: {text.splitlines()[0] if text else 'threw'}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 10.0, show: str | None = None) -> Any:
        """Wait until ``expression`` is truthy in the page (see the module docstring);
        its value. ChromiumError if it is not after ``timeout`` seconds, with the last
        value of ``show`` (an expression; by default ``expression`` itself)."""
        script = """
new Promise((resolve, reject) => {
  let value, shown;
  const probe = () => {
    try { value = (%s); } catch (error) { value = undefined; shown = "threw " + error; return false; }
    return value;
  };
  const describe = () => { try { shown = (%s); } catch (error) { shown = "threw " + error; } };
  const stop = () => { observer.disconnect(); clearInterval(ticker); clearTimeout(deadline); };
  const check = () => { if (probe()) { stop(); resolve(value); } };
  const observer = new MutationObserver(check);
  observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  const ticker = setInterval(check, 100);
  const deadline = setTimeout(() => {
    stop(); describe();
    reject(new Error("still " + JSON.stringify(shown === undefined ? null : shown) + " after %d ms"));
  }, %d);
  check();
})""" % (expression, show or expression, int(timeout * 1000), int(timeout * 1000))
        return self.evaluate(script, timeout=timeout + COMMAND_TIMEOUT, label=f"waiting for {expression}")

    def errors(self) -> list[str]:
        """Script exceptions and console/log errors (CSP violations among them) so far."""
        out = []
        for event in self.browser.events(self.session):
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])))
        return out

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


class StatsPage:
    """The lbcore stats page (/stats) in a Page: rows are found by their stable ids."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @staticmethod
    def member_id(pool: str, member: str) -> str:
        return f"member-{pool}-{member}"

    def _row(self, row_id: str) -> str:
        return f"document.getElementById({json.dumps(row_id)})"

    def member_status(self, pool: str, member: str) -> str | None:
        """The row's data-status (UP, DOWN, DRAIN, MAINT, NO_CHECK), None if no row."""
        row = self._row(self.member_id(pool, member))
        return self.page.evaluate(f"{row} ? {row}.dataset.status : null")

    def wait_member_status(self, pool: str, member: str, status: str, *, timeout: float = 15.0) -> None:
        row = self._row(self.member_id(pool, member))
        self.page.wait_for(f"{row} !== null && {row}.dataset.status === {json.dumps(status)}",
                           show=f"{row} ? {row}.dataset.status : 'no row'", timeout=timeout)

    def cells(self, row_id: str) -> dict[str, str]:
        """The row's cells' text by field (name, status, requests, check, ...)."""
        return self.page.evaluate(
            f"Object.fromEntries(Array.from({self._row(row_id)}.cells, c => [c.dataset.field, c.textContent]))")

    def background(self, row_id: str) -> str:
        """The computed background colour of the row's first cell, like ``rgb(192, 240, 192)``."""
        return self.page.evaluate(f"getComputedStyle({self._row(row_id)}.cells[0]).backgroundColor")

    def updates(self) -> int:
        """How many snapshots the page has rendered (the first one included)."""
        return int(self.page.evaluate("Number(document.body.dataset.updates || 0)"))

    def wait_updates(self, count: int, *, timeout: float = 15.0) -> None:
        self.page.wait_for(f"Number(document.body.dataset.updates || 0) >= {int(count)}", timeout=timeout)
