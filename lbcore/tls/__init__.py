"""TLS building blocks: certificates, SNI selection, ClientHello reading, context
policy, shared session tickets.

- ``certs``: PEM chain + key -> a checked ``Certificate`` (key match, ordered chain,
  expiry, host names, key type). Sans-IO, plus one file-reading helper.
- ``store``: a listener's certificates loaded together (``load_listener_certificates``),
  every bad one reported with its Spec path.
- ``sni``: the per-revision selection table: exact name, one-label wildcard, default;
  RSA or ECDSA by what the client offers.
- ``clienthello``: a sans-IO ClientHello reader for tls-passthrough routing.
- ``tickets``: the shared ticket key file (haproxy's tls-ticket-keys format) and its ring.
- ``policy``: ``ssl.SSLContext``s for listeners and for members, client-certificate
  headers, HSTS.
- ``revision``: ``compile_tls(spec, base_dir)``, everything above for one revision.

``certs``, ``sni``, ``clienthello`` and the file parsing in ``tickets`` do no I/O;
``policy`` builds OpenSSL contexts (and reaches OpenSSL through
``lbcore._fastpath.sslctx`` for what Python's ``ssl`` cannot set).
"""

from lbcore.tls.certs import Certificate, load_certificate_files, normalize_hostname, parse_certificate
from lbcore.tls.clienthello import ClientHello, ClientHelloError, ClientHelloReader, parse_client_hello
from lbcore.tls.errors import TlsError, TlsIssue
from lbcore.tls.policy import (
    DEFAULT_CIPHERS,
    MemberTls,
    PeerCertificate,
    ServerContexts,
    build_member_tls,
    build_server_contexts,
    client_cert_headers,
    hsts_header,
    load_certificate_into,
    peer_certificate,
)
from lbcore.tls.revision import SpecTls, compile_tls
from lbcore.tls.sni import SniEntry, SniMatch, SniTable
from lbcore.tls.store import CertStore, build_cert_store, load_listener_certificates, resolve_path
from lbcore.tls.tickets import (
    TicketKeyFile,
    TicketKeys,
    generate_ticket_key,
    install_ticket_keys,
    load_ticket_keys,
    parse_ticket_keys,
)

__all__ = [
    "DEFAULT_CIPHERS",
    "CertStore",
    "Certificate",
    "ClientHello",
    "ClientHelloError",
    "ClientHelloReader",
    "MemberTls",
    "PeerCertificate",
    "ServerContexts",
    "SniEntry",
    "SniMatch",
    "SniTable",
    "SpecTls",
    "TicketKeyFile",
    "TicketKeys",
    "TlsError",
    "TlsIssue",
    "build_cert_store",
    "build_member_tls",
    "build_server_contexts",
    "client_cert_headers",
    "compile_tls",
    "generate_ticket_key",
    "hsts_header",
    "install_ticket_keys",
    "load_certificate_files",
    "load_certificate_into",
    "load_listener_certificates",
    "load_ticket_keys",
    "normalize_hostname",
    "parse_certificate",
    "parse_client_hello",
    "parse_ticket_keys",
    "peer_certificate",
    "resolve_path",
]
