"""The node agent: the engine's management listener, over mutual TLS.

The control plane pushes a Spec revision here (the native driver); the agent checks
it whole, installs it and reloads, exactly as ``kill -HUP`` would after an operator
edited the file, and answers once every worker serves it (or with the errors, the
running revision untouched, and the files on disk as they were, unless the revision
only waits for a restart). The pushed Spec becomes the node's file, so a node keeps
serving its last Spec when the control plane is away, across restarts too.

Both sides authenticate: the agent presents its node certificate and requires a
client certificate signed by the management CA (the seed's answer to shipping
private keys to nodes: they only travel over this channel).

    PUT /v1/spec    {"spec": {...}, "files": {"certs/web.pem": "<base64>", ...}}
                    200 {"revision": ..., "message": ...} | 422 {"errors": [...]} | 409 (busy)
    GET /v1/status  200 {"revision": ..., "workers": N, "pid": ...}

``files`` are written under the Spec file's directory (relative paths only, no
``..``), mode 0600: certificates and keys the Spec names.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import shutil
import ssl
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import h11
import yaml

from lbcore import spec as S
from lbcore.tls import TlsError
from lbcore.tls.revision import compile_tls

if TYPE_CHECKING:  # pragma: no cover
    from lbcore.proxy.supervisor import Supervisor

__all__ = ["NodeAgent", "agent_context", "MAX_PUSH"]

log = logging.getLogger("lbcore.agent")

MAX_PUSH = 64 * 1024 * 1024  # bytes: a Spec with its certificates
APPLY_TIMEOUT = 30.0  # seconds to wait for every worker to serve a pushed revision


def agent_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """Server side of the management channel: our certificate, clients must present one of ``ca``'s."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class PushError(Exception):
    def __init__(self, status: int, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = errors


class NodeAgent:
    def __init__(self, supervisor: "Supervisor", host: str, port: int, context: ssl.SSLContext) -> None:
        self.supervisor = supervisor
        self.host = host
        self.port = port
        self.context = context
        self.server: asyncio.base_events.Server | None = None
        self.lock = asyncio.Lock()  # one push at a time

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.context)
        log.info("node agent on %s:%d (mutual TLS)", self.host, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    # -- HTTP over the management channel -------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), 60)
                    conn.receive_data(data)
                    if not data:
                        break
                    continue
                if not isinstance(event, h11.Request):
                    break
                body = bytearray()
                while True:
                    part = conn.next_event()
                    if part is h11.NEED_DATA:
                        conn.receive_data(await asyncio.wait_for(reader.read(65536), 60))
                    elif isinstance(part, h11.Data):
                        body += part.data
                        if len(body) > MAX_PUSH:
                            raise PushError(413, [{"path": "", "message": "push too large"}])
                    else:
                        break
                status, payload = await self._route(event.method.decode(), event.target.decode(), bytes(body))
                data = json.dumps(payload).encode()
                writer.write(conn.send(h11.Response(status_code=status, headers=[
                    ("Content-Type", "application/json"), ("Content-Length", str(len(data)))])))
                writer.write(conn.send(h11.Data(data=data)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, asyncio.TimeoutError, ssl.SSLError, PushError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if target == "/v1/status" and method == "GET":
            return 200, self.status()
        if target == "/v1/spec" and method == "PUT":
            try:
                return 200, await self.push(body)
            except PushError as exc:
                return exc.status, {"errors": exc.errors}
        return 404, {"errors": [{"path": "", "message": f"no route {method} {target}"}]}

    def status(self) -> dict[str, Any]:
        sup = self.supervisor
        return {
            "revision": sup.spec.revision if sup.spec else None,
            "serving": sup._announced,
            "workers": len(sup.workers),
            "pid": os.getpid(),
        }

    # -- a pushed revision ------------------------------------------------------------------
    async def push(self, body: bytes) -> dict[str, Any]:
        if self.lock.locked():
            raise PushError(409, [{"path": "", "message": "another revision is being applied"}])
        async with self.lock:
            try:
                message = json.loads(body)
                spec_data = message["spec"]
                files = message.get("files", {}) or {}
            except (ValueError, KeyError, TypeError):
                raise PushError(400, [{"path": "", "message": "expected JSON {spec, files}"}]) from None
            base = Path(self.supervisor.base_dir)
            decoded = self._decode_files(files)
            # Check it whole in a staging directory before touching what serves now.
            staging = Path(tempfile.mkdtemp(prefix=".lbcore-push-", dir=base))
            try:
                os.chmod(staging, 0o700)
                self._write_files(staging, decoded)
                try:
                    spec = S.parse_spec(spec_data)
                    compile_tls(spec, staging)
                except S.SpecError as exc:
                    raise PushError(422, [{"path": i.path, "message": i.message} for i in exc.errors]) from None
                except TlsError as exc:
                    raise PushError(422, [{"path": i.path, "message": i.message} for i in exc.issues]) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            # Install: files first, then the Spec file (atomically), then reload. The
            # engine may still refuse it (an address it cannot bind): then what was on
            # disk goes back, so that a restart, or a worker started again, serves the
            # revision that is running and not the refused one. A revision refused only
            # because it takes a restart (a serving address's shards changed) stays:
            # the node serves it from its next start, as it would an edited file.
            spec_path = self.supervisor.spec_path
            files_before = self._read_files(base, list(decoded))
            spec_before = spec_path.read_bytes()  # the supervisor started from it
            try:
                self._write_files(base, decoded)
                self._replace(spec_path, yaml.safe_dump(spec.to_dict(), sort_keys=False).encode())
                ok, text = self.supervisor.reload()
            except Exception as exc:  # a full disk, a directory in a file's place
                log.exception("node agent: installing revision %s failed", spec.revision)
                self._put_back(base, files_before, spec_path, spec_before)
                raise PushError(500, [{"path": "", "message": f"installing the revision failed: {exc}"}]) from None
            if not ok:
                if self.supervisor.needs_restart == spec.revision:
                    raise PushError(422, [{"path": "", "message": f"{text}; the node keeps revision {spec.revision} "
                                                                  "on disk and serves it from its next start"}])
                self._put_back(base, files_before, spec_path, spec_before)
                raise PushError(422, [{"path": "", "message": text}])
            if not await self.supervisor.wait_serving(spec.revision, APPLY_TIMEOUT):
                raise PushError(504, [{"path": "", "message": f"revision {spec.revision} not serving on every worker in time"}])
            log.info("node agent: revision %s pushed and serving", spec.revision)
            return {"revision": spec.revision, "message": text}

    @staticmethod
    def _decode_files(files: Any) -> dict[str, bytes]:
        if not isinstance(files, dict):
            raise PushError(400, [{"path": "files", "message": "expected a mapping of relative path to base64"}])
        out: dict[str, bytes] = {}
        errors = []
        for name, content in files.items():
            pure = PurePosixPath(str(name))
            if pure.is_absolute() or ".." in pure.parts or not pure.parts:
                errors.append({"path": f"files[{name}]", "message": "must be a relative path inside the node's directory"})
                continue
            try:
                out[str(pure)] = base64.b64decode(str(content), validate=True)
            except (binascii.Error, ValueError):
                errors.append({"path": f"files[{name}]", "message": "not base64"})
        if errors:
            raise PushError(400, errors)
        return out

    @staticmethod
    def _read_files(base: Path, names: list[str]) -> dict[str, bytes | None]:
        """What each of ``names`` holds now (None: no such file), to put it back."""
        out: dict[str, bytes | None] = {}
        for name in names:
            try:
                out[name] = (base / name).read_bytes()
            except FileNotFoundError:
                out[name] = None
        return out

    @classmethod
    def _put_back(cls, base: Path, before: dict[str, bytes | None], spec_path: Path, spec_before: bytes) -> None:
        """The files and the Spec file as they were before a push; a failure is logged
        (the running revision serves on from memory either way)."""
        try:
            cls._write_files(base, {name: content for name, content in before.items() if content is not None})
            for name, content in before.items():
                if content is None:
                    (base / name).unlink(missing_ok=True)
            cls._replace(spec_path, spec_before)
        except OSError:
            log.exception("node agent: putting back the files a refused push replaced failed")

    @classmethod
    def _write_files(cls, base: Path, files: dict[str, bytes]) -> None:
        for name, content in files.items():
            target = base / name
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            cls._replace(target, content)

    @staticmethod
    def _replace(target: Path, content: bytes) -> None:
        """``target`` holds ``content``, mode 0600, or is unchanged: never half written."""
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(tmp, 0o600)  # an old temporary file keeps its mode through O_CREAT
        os.replace(tmp, target)
