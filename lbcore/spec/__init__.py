"""The resolved runtime configuration: schema, load, validate, serialise, revision, diff.

A Spec is what one engine runs: listeners, pools and their members, every cascading
value already resolved onto the object that uses it. It is the one contract between
the control plane (which generates it from its model) and the data plane (which
compiles it); ``lbcore serve FILE`` reads one straight from YAML or JSON.

- ``parse_spec(data)`` / ``loads_spec(text)`` / ``load_spec(path)`` read one and
  raise ``SpecError`` listing *every* problem with its path
  (``listeners[0].acls[2].condition: unknown fetch 'hots'``); a bad file is refused whole.
- Every Spec object is a frozen, slotted, hashable dataclass, checked and made
  canonical when created, whether by the reader or by a program.
- ``spec.to_dict()`` is the canonical file form: ``parse_spec(spec.to_dict()) == spec``;
  ``spec.revision`` hashes it. ``diff(old, new)`` and ``format_diff`` say what changed.

Layout: ``_values`` (durations, sizes, addresses), ``_checks`` (validators and the
machinery that runs them), ``_model`` (the dataclasses), ``_accesslog`` (access-log
settings and targets), ``_admin`` (the admin listener and runtime socket), ``_tls``
(certificates and TLS policy), ``_parse`` (file structure and cascading), ``_load``
(YAML/JSON), ``_diff``.

Pure: no I/O except ``load_spec`` reading its file.
"""

from lbcore.spec._accesslog import LOG_FORMATS, SYSLOG_FACILITIES, AccessLogSettings, LogTarget, parse_log_target
from lbcore.spec._admin import AdminSettings
from lbcore.spec._diff import Change, diff, format_diff
from lbcore.spec._errors import SpecError, SpecIssue
from lbcore.spec._load import load_spec, loads_spec
from lbcore.spec._model import (
    ADMIN_STATES,
    PROTOCOLS,
    SHARDS,
    Acl,
    Defaults,
    HealthCheck,
    Limits,
    Listener,
    Member,
    Outlier,
    Persistence,
    Pool,
    Redirect,
    Spec,
    Timeouts,
    TlsCertificate,
    TlsSettings,
)
from lbcore.spec._tls import ALPN_PROTOCOLS, CLIENT_AUTH_MODES, ClientAuth, Hsts, PoolTls, TlsPolicy
from lbcore.spec._parse import parse_spec
from lbcore.spec._values import Address, FrozenDict, format_duration, format_size, parse_duration, parse_size

__all__ = [
    "ADMIN_STATES",
    "ALPN_PROTOCOLS",
    "CLIENT_AUTH_MODES",
    "LOG_FORMATS",
    "PROTOCOLS",
    "SHARDS",
    "SYSLOG_FACILITIES",
    "AccessLogSettings",
    "Acl",
    "AdminSettings",
    "Address",
    "Change",
    "ClientAuth",
    "Defaults",
    "FrozenDict",
    "HealthCheck",
    "Hsts",
    "Limits",
    "Listener",
    "LogTarget",
    "Member",
    "Outlier",
    "Persistence",
    "Pool",
    "PoolTls",
    "Redirect",
    "Spec",
    "SpecError",
    "SpecIssue",
    "Timeouts",
    "TlsCertificate",
    "TlsPolicy",
    "TlsSettings",
    "diff",
    "format_diff",
    "format_duration",
    "format_size",
    "load_spec",
    "loads_spec",
    "parse_duration",
    "parse_log_target",
    "parse_size",
    "parse_spec",
]
