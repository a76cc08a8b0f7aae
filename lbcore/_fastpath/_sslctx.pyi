# The contract of the compiled twin (_sslctx.pyx); _sslctx_py has the same one.
import ssl
from typing import Sequence

IMPLEMENTATION: str
MAX_KEYS: int

def check_keys(keys: Sequence[bytes]) -> None: ...
def install_ticket_keys(context: ssl.SSLContext, keys: Sequence[bytes]) -> None: ...
def ticket_key_names(context: ssl.SSLContext) -> tuple[bytes, ...]: ...
