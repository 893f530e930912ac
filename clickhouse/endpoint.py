"""The embedded engine's query endpoint: the process that owns a chdb data folder answers
queries for the others.

chdb allows one process per data folder, and its Kafka tables consume only while that process
holds the session. So the ingest process owns the folder and serves a tiny HTTP endpoint on
127.0.0.1 (a free port); it writes `<chdb folder>.owner.json` (mode 0600: pid, port and a random
token every request must carry) and removes it on exit. `open_backend` finds that file and sends
queries there instead of opening the folder, so nothing waits for or retries around chdb's lock.

Protocol: `POST /query` with `Authorization: Bearer <token>` and a JSON body
`{"sql": "...", "format": "JSONEachRow"}`; 200 with the output, 400 with the error message, 401
without the token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from clickhouse.backend import ChdbBackend, Row
from clickhouse.errors import ClickHouseError

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Owner:
    pid: int
    port: int
    token: str
    path: Path  # the chdb data folder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/query"


def owner_file(chdb_path: Path) -> Path:
    return chdb_path.parent / f"{chdb_path.name}.owner.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_owner(chdb_path: Path) -> Owner | None:
    """The live owner of `chdb_path`, or None. A file left by a dead process is removed."""
    path = owner_file(chdb_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        owner = Owner(int(data["pid"]), int(data["port"]), str(data["token"]), chdb_path)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise ClickHouseError(f"{path}: unreadable owner file of the embedded engine; delete it if no "
                              "`freshctl clickhouse ingest` runs") from None
    if owner.pid == os.getpid():
        return None  # this process owns the folder: it queries its own session
    if not _pid_alive(owner.pid):
        path.unlink(missing_ok=True)
        return None
    return owner


class ChdbEndpointBackend:
    """The Backend interface over the owner's endpoint."""

    kind = "chdb"
    supports_access_control = False

    def __init__(self, owner: Owner, timeout_s: float = 300.0):
        self.owner = owner
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def _post(self, sql: str, fmt: str) -> str:
        try:
            resp = self._http.post(self.owner.url, json={"sql": sql, "format": fmt}, timeout=self.timeout_s,
                                   headers={"Authorization": f"Bearer {self.owner.token}"})
        except requests.RequestException as exc:
            raise ClickHouseError(
                f"the process owning the embedded ClickHouse at {self.owner.path} (pid {self.owner.pid}) does not "
                f"answer on 127.0.0.1:{self.owner.port}: {type(exc).__name__}; check it with `freshctl status`"
            ) from None
        if resp.status_code != 200:
            raise ClickHouseError(resp.text.strip() or f"endpoint answered HTTP {resp.status_code}")
        return resp.text

    def execute(self, sql: str) -> None:
        self._post(sql, "CSV")

    def query(self, sql: str) -> list[Row]:
        out = self._post(sql, "JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        self._http.close()


class QueryEndpoint:
    """Serve `backend` to other processes until `close()`; the owner file says where."""

    def __init__(self, backend: ChdbBackend, chdb_path: Path):
        self.backend = backend
        self.path = owner_file(chdb_path)
        self.token = secrets.token_urlsafe(32)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                log.debug("endpoint " + format, *args)

            def _answer(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                auth = self.headers.get("Authorization", "")
                if self.path != "/query" or not hmac.compare_digest(auth, f"Bearer {endpoint.token}"):
                    self._answer(401, "unauthorized")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_SQL_BYTES:
                    self._answer(400, f"statement larger than {MAX_SQL_BYTES} bytes")
                    return
                try:
                    req = json.loads(self.rfile.read(length))
                    out = endpoint.backend.run(str(req["sql"]), str(req.get("format", "JSONEachRow")))
                except ClickHouseError as exc:
                    self._answer(400, str(exc))
                    return
                except (ValueError, KeyError, TypeError):
                    self._answer(400, "expected a JSON body {\"sql\": ..., \"format\": ...}")
                    return
                self._answer(200, out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="chdb-endpoint", daemon=True)
        self._thread.start()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "port": port, "token": self.token}, f)
        tmp.replace(self.path)
        log.info("query endpoint serving chdb=%s port=%d", self.backend.path, port)
        return port

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            if json.loads(self.path.read_text(encoding="utf-8"))["pid"] == os.getpid():
                self.path.unlink()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
