# The contract of the compiled twin (_sockio.pyx); _sockio_py has the same one.
import socket
from typing import Sequence

IMPLEMENTATION: str
BATCH: int

def send_datagrams(sock: socket.socket, datagrams: Sequence[bytes], start: int = 0) -> int: ...
def cork(sock: socket.socket) -> None: ...
