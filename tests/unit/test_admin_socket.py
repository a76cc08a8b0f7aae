"""lbcore.proxy.runtime_socket and lbcore ctl, over a real unix socket in a temporary
directory, with a fake Controller."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lbcore import cli
from lbcore.ctl import send_command
from lbcore.proxy.runtime_api import execute
from lbcore.proxy.runtime_socket import RuntimeSocketServer
from tests.integration.harness import ROOT, LoopThread
from tests.unit.test_runtime_api import FakeController


@pytest.fixture(scope="module")
def loops():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def short_dir():
    """A short directory: a unix socket path has at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="lbrt", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture
def serve(loops, short_dir):
    """Factory: serve(controller, path=None, mode=0o600) -> started server; closed after the test."""
    started: list[RuntimeSocketServer] = []

    def start(controller: FakeController, path: Path | None = None, mode: int = 0o600) -> RuntimeSocketServer:
        server = RuntimeSocketServer()
        loops.run(server.start(path or short_dir / "lb.sock", controller, mode))
        started.append(server)
        return server

    yield start
    for server in started:
        loops.run(stop(server))


async def stop(server: RuntimeSocketServer) -> None:
    server.close()  # on the server's loop, like every asyncio call
    await server.wait_closed()


def exchange(path: Path, data: bytes) -> bytes:
    """What socat does: send, end the stream, read until the engine closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


# -- the server -----------------------------------------------------------------------------------


def test_one_command_like_socat(serve):
    fake = FakeController()
    server = serve(fake)
    assert exchange(server.path, b"show stat\n").decode() == execute("show stat", fake) + "\n"


def test_several_commands_on_one_connection(serve):
    fake = FakeController()
    server = serve(fake)
    reply = exchange(server.path, b"set server www/w1 weight 4\nget weight www/w1; show servers state api\nnope").decode()
    assert reply == ("www/w1: weight 4\n\n"
                     "4 (initial 10)\n\n"
                     + execute("show servers state api", fake) + "\n"
                     + "error: unknown command 'nope'; 'help' lists the commands\n\n")
    assert fake.calls == [("weight", "www", "w1", 4)]


def test_interactive_prompt_mode(serve):
    server = serve(FakeController())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(server.path))
        sock.sendall(b"prompt\n")
        assert read_until(sock, b"> ") == b"> "
        sock.sendall(b"get weight www/w2\n")
        assert read_until(sock, b"> ") == b"10 (initial 10)\n\n> "
        sock.sendall(b"set server www/w2 state maint\n")
        assert read_until(sock, b"> ") == b"www/w2: state maint\n\n> "
        sock.sendall(b"quit\n")
        assert sock.recv(100) == b""


def test_socket_file_mode(serve, short_dir):
    server = serve(FakeController())
    assert stat.S_ISSOCK(os.stat(server.path).st_mode)
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    group = serve(FakeController(), path=short_dir / "group.sock", mode=0o660)
    assert stat.S_IMODE(os.stat(group.path).st_mode) == 0o660
    assert sorted(p.name for p in short_dir.iterdir()) == ["group.sock", "lb.sock"]  # no temporary left behind


def test_creates_the_directory(serve, short_dir):
    server = serve(FakeController(), path=short_dir / "run" / "lbcore" / "lb.sock")
    assert exchange(server.path, b"get weight www/w1\n") == b"10 (initial 10)\n\n"


def test_replaces_a_stale_socket(serve, short_dir):
    path = short_dir / "lb.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens: what a crashed engine leaves
    server = serve(FakeController(), path=path)
    assert exchange(server.path, b"get weight www/w1\n") == b"10 (initial 10)\n\n"


def test_refuses_a_path_in_use(serve, loops, short_dir):
    first = serve(FakeController())
    second = RuntimeSocketServer()
    with pytest.raises(OSError) as caught:
        loops.run(second.start(first.path, FakeController()))
    assert caught.value.errno == errno.EADDRINUSE
    assert exchange(first.path, b"get weight www/w1\n") == b"10 (initial 10)\n\n"  # the first is untouched


def test_refuses_to_replace_a_file(loops, short_dir):
    path = short_dir / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(OSError) as caught:
        loops.run(RuntimeSocketServer().start(path, FakeController()))
    assert caught.value.errno == errno.EEXIST and path.read_text() == "keep me"


def test_refuses_a_path_too_long(loops, short_dir):
    with pytest.raises(OSError) as caught:
        loops.run(RuntimeSocketServer().start(short_dir / ("x" * 120), FakeController()))
    assert caught.value.errno == errno.ENAMETOOLONG


def test_close_removes_its_socket_and_ends_connections(loops, short_dir):
    server = RuntimeSocketServer()
    loops.run(server.start(short_dir / "lb.sock", FakeController()))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(str(server.path))
    client.sendall(b"prompt\n")
    assert read_until(client, b"> ") == b"> "
    loops.run(stop(server))
    assert client.recv(100) == b""  # the open interactive connection was closed
    client.close()
    assert not server.path.exists()


def test_close_leaves_a_socket_that_is_not_its_own(loops, short_dir):
    server = RuntimeSocketServer()
    path = short_dir / "lb.sock"
    loops.run(server.start(path, FakeController()))
    path.unlink()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))  # another engine took the path meanwhile
    try:
        loops.run(stop(server))
        assert path.exists()
    finally:
        other.close()


# -- lbcore ctl -------------------------------------------------------------------------------------


def test_send_command_strips_the_reply_terminator(serve):
    server = serve(FakeController())
    assert send_command(str(server.path), "get weight www/w1") == "10 (initial 10)\n"


def test_ctl_prints_the_reply(serve, capsys):
    fake = FakeController()
    server = serve(fake)
    assert cli.main(["ctl", "--socket", str(server.path), "show", "servers", "state", "www"]) == 0
    out, err = capsys.readouterr()
    assert out == execute("show servers state www", fake) and err == ""
    assert cli.main(["ctl", "--socket", str(server.path), "set", "server", "www/w1", "state", "drain"]) == 0
    assert capsys.readouterr().out == "www/w1: state drain\n"
    assert fake.calls == [("admin", "www", "w1", "drain")]


def test_ctl_error_reply_exits_1_on_stderr(serve, capsys):
    server = serve(FakeController())
    assert cli.main(["ctl", "--socket", str(server.path), "set", "server", "www/zz", "state", "drain"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "error: no member 'zz' in pool 'www' (members: w1, w2, w3)\n"


def test_ctl_socket_from_the_environment(serve, capsys, monkeypatch):
    server = serve(FakeController())
    monkeypatch.setenv("LBCORE_SOCKET", str(server.path))
    assert cli.main(["ctl", "get", "weight", "api/a1"]) == 0
    assert capsys.readouterr().out == "1 (initial 1)\n"


def test_ctl_unreachable_socket_exits_2(short_dir, capsys):
    assert cli.main(["ctl", "--socket", str(short_dir / "none.sock"), "show", "info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lbcore ctl: cannot reach the runtime socket {short_dir / 'none.sock'}: ")


def test_ctl_command_line(serve):
    """The installed entry point, as an operator runs it."""
    server = serve(FakeController())
    done = subprocess.run([sys.executable, "-m", "lbcore.cli", "ctl", "--socket", str(server.path), "get", "weight",
                           "www/w3"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "5 (initial 5)\n", "")
    done = subprocess.run([sys.executable, "-m", "lbcore.cli", "ctl", "--socket", str(server.path), "bogus"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 1 and done.stderr.startswith("error: unknown command 'bogus'")
