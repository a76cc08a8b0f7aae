import re
import socket, sys, time
n = int(sys.argv[1]); close = sys.argv[2] == "close"
req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:19510\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n"
def read_response(s):
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?i)content-length: *(\d+)", buf[:end])
            if len(buf) >= end + 4 + int(m.group(1)):
                return
        d = s.recv(65536)
        if not d: raise SystemExit(f"closed early: {buf!r}")
        buf += d
s = None
for i in range(n):
    if s is None:
        s = socket.create_connection(("127.0.0.1", 19510))
    s.sendall(req); read_response(s)
    if close:
        s.close(); s = None
print("done", n)
