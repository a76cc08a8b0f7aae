# The contract of the compiled twin (_logline.pyx); lbcore.proxy.accesslog_format has the
# same one, and both return the same string for every record.
from lbcore.proxy.accesslog import AccessRecord

IMPLEMENTATION: str
RECORD_SLOTS: bool  # AccessRecord's slots are read directly (a compiled-twin detail)

def format_text(record: AccessRecord, worker: int = 0) -> str: ...
def format_json(record: AccessRecord, worker: int = 0) -> str: ...
def iso_timestamp(timestamp: float) -> str: ...
