"""The runtime socket: a unix stream socket serving the runtime API (``runtime_api``).

    echo "show stat" | socat stdio /run/lbcore/lbcore.sock
    lbcore ctl --socket /run/lbcore/lbcore.sock set server www/w1 state drain

Each connection is a ``runtime_api.Session``: the client sends one or more command
lines, each reply ends with an empty line, and the connection closes at the client's
end of stream or ``quit`` (``prompt`` keeps an interactive one open with a "> ").

The socket file is created the way haproxy creates its own: bound under a temporary
name beside the final path, given its mode, then renamed over the path, so clients
never see it with the umask's permissions and a stale file from a dead process is
replaced atomically. A path some live process still answers on is refused instead.
Closing removes the file, if it is still ours.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from pathlib import Path

from lbcore.proxy.runtime_api import Controller, Session

__all__ = ["RuntimeSocketServer", "IDLE_TIMEOUT", "MAX_PATH"]

log = logging.getLogger("lbcore.runtime")

# A client that sends nothing for this long is disconnected. haproxy's "stats timeout"
# defaults to 10s; an interactive (prompt) operator gets longer here.
IDLE_TIMEOUT = 300.0  # seconds
READ_SIZE = 65536  # bytes per read
# sizeof(sockaddr_un.sun_path) on Linux is 108, with the terminating NUL.
MAX_PATH = 107


class RuntimeSocketServer:
    def __init__(self) -> None:
        self.path: Path | None = None
        self._controller: Controller | None = None
        self._server: asyncio.base_events.Server | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, path: str | os.PathLike[str], controller: Controller, mode: int = 0o600) -> None:
        """Listen on ``path`` (its directory is created if missing); ``mode`` is the
        socket file's permission bits (who may connect)."""
        if self._server is not None:
            raise RuntimeError("the runtime socket is already started")
        target = Path(path)
        if len(os.fsencode(target)) > MAX_PATH:
            raise OSError(errno.ENAMETOOLONG, f"runtime socket path is longer than {MAX_PATH} bytes: {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _refuse_if_live(target)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        if len(os.fsencode(temporary)) > MAX_PATH:
            temporary = target.parent / f".lbcore.{os.getpid()}.tmp"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            temporary.unlink(missing_ok=True)
            sock.bind(os.fspath(temporary))
            os.chmod(temporary, mode)
            sock.listen(64)
            os.replace(temporary, target)
            st = os.stat(target)
        except OSError:
            sock.close()
            temporary.unlink(missing_ok=True)
            raise
        sock.setblocking(False)
        self.path, self._controller, self._identity = target, controller, (st.st_dev, st.st_ino)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=READ_SIZE)
        log.info("runtime socket listening on %s (mode %o)", target, mode)

    def close(self) -> None:
        """Stop listening, close every connection, remove the socket file if ours."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._server = None
        if self.path is not None and self._identity is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return
            if (st.st_dev, st.st_ino) == self._identity:
                self.path.unlink(missing_ok=True)

    async def wait_closed(self) -> None:
        """Wait for the connections ``close`` closed to finish closing."""
        for writer in list(self._writers):
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._controller is not None
        session = Session(self._controller)
        self._writers.add(writer)
        try:
            while not session.closed:
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
                except TimeoutError:
                    break
                reply = session.receive_data(data)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("runtime socket client went away: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()


def _refuse_if_live(path: Path) -> None:
    """Raise if ``path`` is a socket some process answers on (another engine), or is
    not a socket at all (a file the operator may want); a stale socket may be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a live server with a full backlog says EAGAIN, not wait
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return  # nobody listens: stale, from a process that died
    except BlockingIOError:
        pass
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use by another running process")
