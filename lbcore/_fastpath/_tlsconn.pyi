# The contract of the compiled twin (_tlsconn.pyx); _tlsconn_py has the same one.
import asyncio
import ssl
from typing import Any, Callable, Sequence

IMPLEMENTATION: str
READ_BATCH: int
SHUTDOWN_TIMEOUT: float

class TlsServer:
    contexts: tuple[ssl.SSLContext, ...]
    lookup: Callable[[str | None], int]
    default: ssl.SSLContext
    handshake_timeout: float
    loop: asyncio.AbstractEventLoop
    on_failed: Callable[[], None] | None
    direct_socket: Callable[[Any], Any] | None
    def __init__(self, contexts: Sequence[ssl.SSLContext], lookup: Callable[[str | None], int], default_index: int,
                 handshake_timeout: float, loop: asyncio.AbstractEventLoop,
                 on_failed: Callable[[], None] | None = ..., direct_socket: Callable[[Any], Any] | None = ...) -> None: ...
    def connection(self, app: Any) -> TlsConnection: ...

class TlsConnection(asyncio.Protocol, asyncio.Transport):  # both sides
    server: TlsServer
    app: Any
    lbcore_sni: str | None
    context: ssl.SSLContext
    @property
    def session_reused(self) -> bool: ...
    def version(self) -> str | None: ...
    def cipher(self) -> tuple[str, str, int] | None: ...
    def selected_alpn_protocol(self) -> str | None: ...
    def getpeercert(self, binary_form: bool = ...) -> bytes | None: ...
    def write_last(self, data: bytes) -> None: ...
