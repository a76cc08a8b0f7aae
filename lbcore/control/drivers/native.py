"""The native driver: pushes a cluster's Spec to each lbcore node's agent over mutual TLS.

The control plane is the client: it presents its certificate (signed by the
management CA the agents trust) and verifies the node's certificate against the
same CA. Certificates and keys for the cluster's listeners travel inside the push
(``files``), so private keys only ever cross this authenticated channel.

A node that does not answer, or refuses the revision, is reported by id with the
reason; the others are still pushed (one bad node never blocks a cluster). A node
that comes back is brought up to date by pushing again (``apply`` is idempotent:
pushing the revision a node already serves is a no-op there).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from lbcore import spec as S

__all__ = ["NativeDriver", "ManagementTls", "PushFailed"]

PUSH_TIMEOUT = 40.0  # seconds: the agent answers once every worker serves the revision


class PushFailed(Exception):
    pass


@dataclass(frozen=True)
class ManagementTls:
    """The control plane's side of the management channel."""

    cert: str  # client certificate (PEM), signed by the management CA
    key: str
    ca: str  # the management CA: node certificates must chain to it
    check_hostname: bool = False  # nodes are addressed by IP; the CA is private to the deployment

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        context.check_hostname = self.check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
        return context


class NativeDriver:
    """Implements the control plane's Applier for lbcore nodes."""

    def __init__(self, tls: ManagementTls, *, timeout: float = PUSH_TIMEOUT) -> None:
        self.tls = tls
        self.timeout = timeout
        self._context = tls.context()

    def apply(self, cluster_id: str, spec: S.Spec | Mapping[str, Any], files: Mapping[str, bytes], nodes: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
        """Push to every node in parallel; node id -> None (serving it) or the error."""
        body = json.dumps(
            {
                "spec": spec.to_dict() if isinstance(spec, S.Spec) else dict(spec),
                "files": {name: base64.b64encode(content).decode() for name, content in files.items()},
            }
        ).encode()
        if not nodes:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            results = pool.map(lambda node: self._push_one(node, body), nodes)
            return {str(node["id"]): error for node, error in zip(nodes, results)}

    def _push_one(self, node: Mapping[str, Any], body: bytes) -> str | None:
        try:
            status, payload = self._request(str(node["management_address"]), "PUT", "/v1/spec", body)
        except PushFailed as exc:
            return str(exc)
        if status == 200:
            return None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            return "; ".join(f"{e.get('path')}: {e.get('message')}" if e.get("path") else str(e.get("message")) for e in errors)
        return f"node answered {status}"

    def status(self, address: str) -> dict[str, Any]:
        status, payload = self._request(address, "GET", "/v1/status", None)
        if status != 200:
            raise PushFailed(f"{address}: status {status}")
        return payload

    def _request(self, address: str, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        host, port = _split(address)
        conn = http.client.HTTPSConnection(host, port, context=self._context, timeout=self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except ssl.SSLError as exc:
            raise PushFailed(f"{address}: TLS: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise PushFailed(f"{address}: {getattr(exc, 'strerror', None) or exc}") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data) if data else {}
        except ValueError:
            return resp.status, {}


def _split(address: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or NAME:PORT (a node's management address may be a name)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise PushFailed(f"{address}: management address must be HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)

