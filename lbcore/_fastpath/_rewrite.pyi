# The contract of the compiled twin (_rewrite.pyx); _rewrite_py has the same one.
from typing import Callable, Iterable, Sequence

from lbcore.l7._forwarding import ForwardingPolicy, ResponseFraming
from lbcore.l7.http1 import Request, Response

IMPLEMENTATION: str

def request_head_for_member(
    request: Request,
    policy: ForwardingPolicy,
    client_ip: str,
    *,
    default_host: str = "",
    strip_cookie: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
    connection_headers: Sequence[tuple[str, str]] = (),
    connection_header_names: frozenset[str] = frozenset(),
) -> bytes: ...
def response_head_for_client(
    response: Response,
    *,
    request_method: str,
    client_version: str,
    client_keep_alive: bool,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> ResponseFraming: ...

class HeadWriter:
    keep_alive: bool  # of the last for_client
    chunked: bool
    def for_member(
        self,
        request: Request,
        policy: ForwardingPolicy,
        client_ip: str,
        default_host: str,
        strip_cookie: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None,
        connection_headers: Sequence[tuple[str, str]],
        connection_header_names: frozenset[str],
    ) -> bytes: ...
    def for_client(
        self,
        response: Response,
        request_method: str,
        client_version: str,
        client_keep_alive: bool,
        extra_headers: Iterable[tuple[str, str]],
    ) -> bytes: ...
