# The contract of the compiled twin (_heads.pyx); _heads_py has the same one.
# A tuple is returned only for a complete head of the simple subset described in
# _heads_py, and then equals what the llhttp path of the readers builds; else None.
# ``pos`` is an index into ``data`` (>= 0); ``end`` is the index just after the
# CRLF CRLF that ends the head.
from lbcore.l7._http1_events import Data, Request, Response

IMPLEMENTATION: str

def scan_request(
    data: bytes, pos: int, max_request_line: int, max_header_bytes: int, max_headers: int
) -> tuple[str, str, tuple[tuple[str, str], ...], str, bool, int | None, int] | None: ...
def scan_response(
    data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int
) -> tuple[int, str, tuple[tuple[str, str], ...], str, bool, int | None, int] | None: ...
def scan_response_event(
    data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int
) -> tuple[Response, int] | None: ...
def make_request(
    method: str, target: str, headers: tuple[tuple[str, str], ...], version: str, keep_alive: bool,
    content_length: int | None,
) -> Request: ...
def make_data(data: bytes) -> Data: ...
def make_response(
    status: int, reason: str, headers: tuple[tuple[str, str], ...], version: str, keep_alive: bool,
    content_length: int | None,
) -> Response: ...

class HeadScanner:
    def scan_request(
        self, data: bytes, pos: int, max_request_line: int, max_header_bytes: int, max_headers: int
    ) -> tuple[str, str, tuple[tuple[str, str], ...], str, bool, int | None, int] | None: ...
    def scan_response_event(
        self, data: bytes, pos: int, method: str, max_header_bytes: int, max_headers: int
    ) -> tuple[Response, int] | None: ...
    def make_request(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], version: str, keep_alive: bool,
        content_length: int | None,
    ) -> Request: ...
    def make_data(self, data: bytes) -> Data: ...
