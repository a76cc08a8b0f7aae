"""Header rewriting between client and member: what a proxy must change, and only that.

Sans-IO and pure: given a parsed request or response head, produce the bytes of the
head to send on the other side, plus the framing decisions the engine needs.

Rules (RFC 9110 7.6.1, RFC 9112 6 and 9.6):
- Hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding,
  Upgrade) and every header the Connection header names are removed. Framing headers
  (Host, Content-Length, Transfer-Encoding) can never be removed that way: a client
  naming them in Connection must not change how the member frames the body.
- The member side always speaks HTTP/1.1 with persistent connections; the body is
  re-framed by the engine (chunked stays chunked, Content-Length stays).
- X-Forwarded-For is appended to (the client's address after any existing list, as
  nginx's ``$proxy_add_x_forwarded_for``); X-Forwarded-Proto and -Port are replaced,
  since only this hop knows them; ``Forwarded`` (RFC 7239) gets a new element.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from lbcore.l7.http1 import HOP_BY_HOP, Request, Response, connection_tokens, encode_request_head, encode_response_head

__all__ = ["ForwardingPolicy", "request_head_for_member", "response_head_for_client", "ResponseFraming"]

# Headers the Connection header may not remove (see module docstring).
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})


class ForwardingPolicy:
    """Per-listener header insertion settings, built once per revision."""

    __slots__ = ("proto", "port", "xff", "xfp", "xfport", "forwarded", "add_headers", "_replaced")

    def __init__(
        self,
        proto: str,
        port: int,
        *,
        xff: bool = True,
        xfp: bool = True,
        xfport: bool = False,
        forwarded: bool = False,
        add_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.proto = proto
        self.port = str(port)
        self.xff = xff
        self.xfp = xfp
        self.xfport = xfport
        self.forwarded = forwarded
        self.add_headers = tuple(add_headers)
        replaced = {name.lower() for name, _ in self.add_headers}
        if xfp:
            replaced.add("x-forwarded-proto")
        if xfport:
            replaced.add("x-forwarded-port")
        self._replaced = frozenset(replaced)


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


class ResponseFraming:
    """How the engine frames a response body towards the client."""

    __slots__ = ("head", "keep_alive", "chunked", "has_body")

    def __init__(self, head: bytes, keep_alive: bool, chunked: bool, has_body: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.has_body = has_body


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
