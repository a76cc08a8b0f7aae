"""Header rewriting between client and member: the pure-Python twin (the reference).

The rules are in the docstring of ``lbcore.l7.rewrite``. This twin builds the new
field list from the parsed head and hands it to ``encode_request_head`` /
``encode_response_head``, which check every field and encode latin-1. The compiled
twin (``_rewrite.pyx``) does the same rewrite, checks and encoding in one pass and
must give the same bytes, the same ``ResponseFraming`` values and the same
exceptions.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from lbcore.l7._forwarding import ForwardingPolicy, ResponseFraming
from lbcore.l7.http1 import (
    HOP_BY_HOP,
    Request,
    Response,
    connection_tokens,
    encode_request_head,
    encode_response_head,
)

__all__ = ["IMPLEMENTATION", "HeadWriter", "request_head_for_member", "response_head_for_client"]

IMPLEMENTATION = "pure"

# Headers the Connection header may not remove (see lbcore.l7.rewrite).
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})


def _forwarded_for(client_ip: str) -> str:
    # RFC 7239 6: IPv6 addresses are quoted and bracketed.
    return f'for="[{client_ip}]"' if ":" in client_ip else f"for={client_ip}"


def request_head_for_member(
    request: Request,
    policy: ForwardingPolicy,
    client_ip: str,
    *,
    default_host: str = "",
    strip_cookie: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
    connection_headers: Sequence[tuple[str, str]] = (),
    connection_header_names: frozenset[str] = frozenset(),
) -> bytes:
    """The request head to send to a member.

    ``connection_headers`` are set by this hop for the whole connection (the verified
    client certificate); any header the client sent under one of
    ``connection_header_names`` is removed first, so a client cannot forge them.
    """
    headers = request.headers
    tokens = connection_tokens(headers)
    if tokens:
        tokens = tokens - _FRAMING
    replaced = policy._replaced
    out: list[tuple[str, str]] = []
    xff_prior: list[str] = []
    forwarded_prior: list[str] = []
    has_host = False
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in tokens or lname in replaced or lname in connection_header_names:
            continue
        if lname == "host":
            has_host = True
        elif lname == "x-forwarded-for" and policy.xff:
            xff_prior.append(value)
            continue
        elif lname == "forwarded" and policy.forwarded:
            forwarded_prior.append(value)
            continue
        out.append((name, value))
    if not has_host and default_host:
        # An HTTP/1.0 request may lack Host; the member gets HTTP/1.1, which needs one.
        out.append(("Host", default_host))
    if strip_cookie is not None:
        out = strip_cookie(out)
    if policy.xff:
        xff_prior.append(client_ip)
        out.append(("X-Forwarded-For", ", ".join(xff_prior)))
    if policy.xfp:
        out.append(("X-Forwarded-Proto", policy.proto))
    if policy.xfport:
        out.append(("X-Forwarded-Port", policy.port))
    if policy.forwarded:
        forwarded_prior.append(f"{_forwarded_for(client_ip)};proto={policy.proto}")
        out.append(("Forwarded", ", ".join(forwarded_prior)))
    out.extend(policy.add_headers)
    out.extend(connection_headers)
    if request.upgrade:
        out.append(("Connection", "upgrade"))
        out.append(("Upgrade", request.upgrade))
    if request.chunked:
        out.append(("Transfer-Encoding", "chunked"))
    return encode_request_head(request.method, request.target, out, "1.1")


def response_head_for_client(
    response: Response,
    *,
    request_method: str,
    client_version: str,
    client_keep_alive: bool,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> ResponseFraming:
    """The response head to send to the client, and how to frame what follows."""
    status = response.status
    tokens = connection_tokens(response.headers)
    if tokens:
        tokens = tokens - _FRAMING
    out = [(n, v) for n, v in response.headers if (l := n.lower()) not in HOP_BY_HOP and l not in tokens]
    out.extend(extra_headers)
    has_body = not (request_method == "HEAD" or status < 200 or status in (204, 304))
    keep_alive = client_keep_alive and response.keep_alive
    chunked = False
    if status == 101:
        upgrade = next((v for n, v in response.headers if n.lower() == "upgrade"), "")
        out.append(("Connection", "upgrade"))
        out.append(("Upgrade", upgrade))
        return ResponseFraming(encode_response_head(status, response.reason, out), False, False, False)
    if response.chunked:
        if client_version == "1.1":
            out.append(("Transfer-Encoding", "chunked"))
            chunked = has_body
        elif has_body:
            # HTTP/1.0 clients cannot read chunked: send the body raw, end with close.
            keep_alive = False
    elif response.content_length is None and has_body:
        keep_alive = False  # close-delimited
    if not keep_alive:
        out.append(("Connection", "close"))
    elif client_version == "1.0":
        out.append(("Connection", "keep-alive"))
    return ResponseFraming(encode_response_head(status, response.reason, out), keep_alive, chunked, has_body)


class HeadWriter:
    """The two functions with positional arguments, for the compiled exchange (the
    compiled twin's are C methods): ``for_client`` returns the head and leaves its
    framing in ``keep_alive`` and ``chunked``, read before the next call."""

    __slots__ = ("keep_alive", "chunked")

    def __init__(self) -> None:
        self.keep_alive = False
        self.chunked = False

    def for_member(
        self,
        request: Request,
        policy: ForwardingPolicy,
        client_ip: str,
        default_host: str,
        strip_cookie: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None,
        connection_headers: Sequence[tuple[str, str]],
        connection_header_names: frozenset[str],
    ) -> bytes:
        return request_head_for_member(
            request,
            policy,
            client_ip,
            default_host=default_host,
            strip_cookie=strip_cookie,
            connection_headers=connection_headers,
            connection_header_names=connection_header_names,
        )

    def for_client(
        self,
        response: Response,
        request_method: str,
        client_version: str,
        client_keep_alive: bool,
        extra_headers: Iterable[tuple[str, str]],
    ) -> bytes:
        framing = response_head_for_client(
            response,
            request_method=request_method,
            client_version=client_version,
            client_keep_alive=client_keep_alive,
            extra_headers=extra_headers,
        )
        self.keep_alive = bool(framing.keep_alive)
        self.chunked = bool(framing.chunked)
        return framing.head
