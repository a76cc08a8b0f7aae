# The contract of the compiled twin (_logline.pyx); lbcore.proxy.accesslog_format has the
# same one, and both return the same string for every record.
from typing import Any, Callable

from lbcore.proxy.accesslog import AccessRecord

IMPLEMENTATION: str
RECORD_SLOTS: bool  # AccessRecord's slots are read directly (a compiled-twin detail)

def format_text(record: AccessRecord, worker: int = 0) -> str: ...
def format_json(record: AccessRecord, worker: int = 0) -> str: ...
def iso_timestamp(timestamp: float) -> str: ...
def new_record(*values: object) -> AccessRecord: ...

class RecordMaker:
    def make(self, *values: object) -> AccessRecord: ...  # the 24 fields from accepted to termination

def syslog_frame(
    record: AccessRecord, worker: int, prefix: str, middle: str, line_format: Callable[[AccessRecord, int], str]
) -> str: ...

class Formatter:
    json: bool
    worker: int
    prefix: str | None
    middle: str | None
    def __init__(self, json: bool = False, worker: int = 0, prefix: str | None = None,
                 middle: str | None = None) -> None: ...
    def __call__(self, record: AccessRecord) -> str: ...
    def format_many(self, records: list[AccessRecord]) -> tuple[list[str], list[tuple[Any, Exception]]]: ...
