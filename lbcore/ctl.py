"""``lbcore ctl``: one runtime-API command to a running engine's socket, its reply printed.

    lbcore ctl show stat
    lbcore ctl --socket /tmp/lb.sock set server www/w1 state drain

The socket is ``--socket``, else ``$LBCORE_SOCKET``, else /run/lbcore/lbcore.sock.
Exit status: 0 with the reply on stdout; 1 when the engine answered ``error: ...``
(printed on stderr); 2 when the socket could not be reached.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Sequence

from lbcore.proxy.runtime_api import is_error

__all__ = ["DEFAULT_SOCKET", "SOCKET_ENV", "default_socket", "send_command", "run_ctl"]

DEFAULT_SOCKET = "/run/lbcore/lbcore.sock"
SOCKET_ENV = "LBCORE_SOCKET"
TIMEOUT = 10.0  # seconds to connect, and between two reads of the reply


def default_socket() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def send_command(path: str, command: str, timeout: float = TIMEOUT) -> str:
    """The engine's reply to ``command``, without the empty line that ends a reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)  # end of stream: the engine answers, then closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", "replace")
    return text[:-1] if text.endswith("\n\n") else text


def run_ctl(path: str | None, words: Sequence[str]) -> int:
    path = path or default_socket()
    command = " ".join(words)
    if "\n" in command:
        print("lbcore ctl: one command per call (no newlines)", file=sys.stderr)
        return 2
    try:
        reply = send_command(path, command)
    except OSError as exc:
        print(f"lbcore ctl: cannot reach the runtime socket {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if is_error(reply):
        sys.stderr.write(reply)
        return 1
    sys.stdout.write(reply)
    return 0
