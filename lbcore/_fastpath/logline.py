"""Access-log line formatters: ``format_text`` (haproxy's httplog/tcplog) and
``format_json``, one line per ``AccessRecord``, and ``iso_timestamp`` (the RFC 5424
timestamp of a syslog frame).

Two twins with one interface and the same output for every record:
``lbcore.proxy.accesslog_format`` (pure Python, regex escaping: the reference) and
``_logline`` (Cython: C escaping loops, one join per line); the compiled one is used
when built unless ``LBCORE_NO_EXTENSIONS=1``. ``make_formatter`` in
``accesslog_format`` formats with the twin chosen here.

Layering: this module imports ``lbcore.proxy.accesslog_format`` (so does ``_logline``);
that module imports this one only inside ``make_formatter``, never at import time.
"""

from __future__ import annotations

from types import ModuleType

from lbcore._fastpath import USE_EXTENSIONS
from lbcore.proxy import accesslog_format as _pure

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "format_json", "format_text", "iso_timestamp"]

compiled: ModuleType | None = None
if USE_EXTENSIONS:
    try:
        from lbcore._fastpath import _logline as compiled  # type: ignore[no-redef]
    except ImportError:  # not built: the pure twin serves
        compiled = None

IMPLEMENTATIONS: dict[str, ModuleType] = {"pure": _pure}
if compiled is not None:
    IMPLEMENTATIONS["compiled"] = compiled
_impl = compiled or _pure
IMPLEMENTATION: str = _impl.IMPLEMENTATION
format_text = _impl.format_text
format_json = _impl.format_json
iso_timestamp = _impl.iso_timestamp
