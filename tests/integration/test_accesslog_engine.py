"""Access logs written by the running engine: JSON to a file, text, syslog over UDP, rotation."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from tests.integration.harness import free_port, http_get, raw_exchange


def read_lines(path, count, timeout=10.0):
    """The first ``count`` lines of a log file, waiting (bounded) for the engine's flush."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)  # bounded poll for a file another process appends to


def spec(port, member, access_log, **listener):
    return {
        "version": 1,
        "defaults": {"access_log": access_log},
        "listeners": [{"name": "web", "bind": f"127.0.0.1:{port}", "protocol": "http", "default_pool": "p",
                       "acls": [{"name": "api", "condition": "path_beg /api", "pool": "p"}], **listener}],
        "pools": [{"name": "p", "members": [{"name": member.name, "address": member.address}]}],
    }


def test_json_access_log_to_file_and_rotation(members, engine, tmp_path):
    m = members("m1")
    port = free_port()
    log = tmp_path / "access.log"
    eng = engine(spec(port, m, {"enabled": True, "format": "json", "target": f"file:{log}"}))
    assert http_get(port, "/api/x?q=1", headers={"User-Agent": "test-agent"})[0] == 200
    assert http_get(port, "/static")[0] == 200
    assert raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 400")
    lines = read_lines(log, 3)
    records = [json.loads(l) for l in lines]
    first = next(r for r in records if r["target"] == "/api/x?q=1")
    assert first["acl"] == "api" and first["pool"] == "p" and first["member"] == "m1"
    assert first["status"] == 200 and first["termination"] == "--" and first["user_agent"] == "test-agent"
    assert first["client_ip"] == "127.0.0.1" and first["t_total"] >= first["t_first_byte"] >= 0
    assert first["bytes_out"] > 0
    bad = next(r for r in records if r["status"] == 400)
    assert bad["termination"] == "PR"
    # rotation: move the file, signal the supervisor, new lines go to a new file
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    eng.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait for the worker to reopen (it creates the new file)
    assert http_get(port, "/after-rotation")[0] == 200
    lines = read_lines(log, 1)
    assert any('"/after-rotation"' in l for l in lines)
    assert any('"/api/x?q=1"' in l for l in rotated.read_text().splitlines())  # old lines stay in the rotated file


def test_text_access_log_over_syslog_udp(members, engine):
    m = members("m1")
    port = free_port()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(10)
    try:
        eng = engine(spec(port, m, {"enabled": True, "format": "text", "target": f"syslog+udp://127.0.0.1:{sink.getsockname()[1]}", "facility": "local3", "tag": "lbweb"}))
        assert http_get(port, "/api/hello")[0] == 200
        datagram = sink.recv(65536).decode()
    finally:
        sink.close()
    pri = int(datagram[1:datagram.index(">")])
    assert pri == 19 * 8 + 6  # local3.info
    assert datagram[datagram.index(">") + 1:].startswith("1 ")
    assert " lbweb " in datagram
    assert " web p/m1 " in datagram and " 200 " in datagram and '"GET /api/hello HTTP/1.1"' in datagram


def test_text_access_log_over_syslog_tcp(members, engine):
    m = members("m1")
    port = free_port()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)
    try:
        target = f"syslog+tcp://127.0.0.1:{server.getsockname()[1]}"
        engine(spec(port, m, {"enabled": True, "format": "text", "target": target, "facility": "local3", "tag": "lbweb"}))
        for path in ("/one", "/two"):
            assert http_get(port, path)[0] == 200
        conn, _ = server.accept()  # the worker connects with its first batch
        with conn:
            conn.settimeout(10)
            data = b""
            while data.count(b'HTTP/1.1"') < 2:
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
    finally:
        server.close()
    messages = []
    while data:  # RFC 6587 octet counting: LEN SP MSG, back to back
        length, _, rest = data.partition(b" ")
        messages.append(rest[:int(length)].decode())
        data = rest[int(length):]
    assert len(messages) == 2
    for message, path in zip(messages, ("/one", "/two")):
        assert message.startswith(f"<{19 * 8 + 6}>1 ") and " lbweb " in message
        assert " web p/m1 " in message and f'"GET {path} HTTP/1.1"' in message
