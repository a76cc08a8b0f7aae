"""Access-log line formatters: ``format_text`` (haproxy's httplog/tcplog) and
``format_json``, one line per ``AccessRecord``, ``iso_timestamp`` (the RFC 5424
timestamp of a syslog frame), ``syslog_frame`` (a whole syslog message: the frame
and the line, written into one buffer by the compiled twin), and ``new_record`` (``AccessRecord(*values)``: the
compiled twin fills the new record's slots instead of running the dataclass's
interpreted ``__init__``; ``RecordMaker().make(...)`` the same for an HTTP request's 24
values, a C method the compiled engine calls directly), and ``Formatter`` (a log's
records to messages: the compiled twin formats a whole batch in C).

Two twins with one interface and the same output for every record:
``lbcore.proxy.accesslog_format`` (pure Python, regex escaping: the reference) and
``_logline`` (Cython: C escaping loops, a text line written into one buffer); the compiled one is used
when built unless ``LBCORE_NO_EXTENSIONS=1``. ``make_formatter`` in
``accesslog_format`` formats with the twin chosen here.

Layering: this module imports ``lbcore.proxy.accesslog_format`` (so does ``_logline``);
that module imports this one only inside ``make_formatter``, never at import time.
"""

from __future__ import annotations

from lbcore._fastpath import twins
from lbcore.proxy import accesslog_format as _pure

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "Formatter", "RecordMaker", "format_json", "format_text", "iso_timestamp", "new_record",
           "syslog_frame"]

IMPLEMENTATIONS, _impl = twins(_pure, "_logline")
IMPLEMENTATION: str = _impl.IMPLEMENTATION
format_text = _impl.format_text
format_json = _impl.format_json
iso_timestamp = _impl.iso_timestamp
new_record = _impl.new_record
RecordMaker = _impl.RecordMaker
syslog_frame = _impl.syslog_frame
Formatter = _impl.Formatter
