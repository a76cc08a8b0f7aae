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

The two functions have a pure twin (``lbcore._fastpath._rewrite_py``, the reference)
and a compiled one (``_rewrite.pyx``) chosen by ``lbcore._fastpath.rewrite``; the
value types live in ``lbcore.l7._forwarding``.
"""

from __future__ import annotations

from lbcore._fastpath.rewrite import request_head_for_member, response_head_for_client
from lbcore.l7._forwarding import ForwardingPolicy, ResponseFraming

__all__ = ["ForwardingPolicy", "request_head_for_member", "response_head_for_client", "ResponseFraming"]
