"""clickhouse-connect through `ServerBackend.connect` against a real TLS endpoint in this process
(an HTTPS server with a certificate of a throwaway CA from stack.compose_secrets; no ClickHouse):
the certificate is verified, and each failure is one line naming the setting to fix."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickhouse.backend import ServerBackend
from clickhouse.errors import ClickHouseError
from fresh.settings import Settings
from stack.compose_secrets import ensure


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request as ClickHouse answers a wrong password."""

    def _answer(self) -> None:
        body = b"Code: 516. DB::Exception: probablyfresh: Authentication failed. (AUTHENTICATION_FAILED)\n"
        self.send_response(401)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The server's CA folder, and another CA's folder."""
    ours, other = tmp_path_factory.mktemp("ca-ours"), tmp_path_factory.mktemp("ca-other")
    ensure(ours)
    ensure(other)
    return ours, other


def _serve(context: ssl.SSLContext | None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def https_port(cas: tuple[Path, Path]) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cas[0] / "clickhouse.crt", cas[0] / "clickhouse.key")
    yield from _serve(context)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve(None)


def connect(port: int, **fields: object) -> str:
    settings = Settings(clickhouse_backend="server", clickhouse_host="localhost", clickhouse_port=port,
                        clickhouse_user="probablyfresh", clickhouse_password="not-the-password",  # type: ignore[arg-type]
                        **fields)  # type: ignore[arg-type]
    with pytest.raises(ClickHouseError) as err:
        ServerBackend.connect(settings)
    message = str(err.value)
    assert "\n" not in message and "not-the-password" not in message
    return message


def test_the_right_ca_gets_through_tls_to_the_login(https_port: int, cas: tuple[Path, Path]) -> None:
    message = connect(https_port, clickhouse_secure=True, clickhouse_ca_file=str(cas[0] / "ca.crt"))
    assert "set FRESH_CLICKHOUSE_USER / FRESH_CLICKHOUSE_PASSWORD" in message
    assert f"https://localhost:{https_port}" in message


def test_another_ca_is_refused_naming_the_ca_file(https_port: int, cas: tuple[Path, Path]) -> None:
    message = connect(https_port, clickhouse_secure=True, clickhouse_ca_file=str(cas[1] / "ca.crt"))
    assert "FRESH_CLICKHOUSE_CA_FILE" in message and "did not sign the server's certificate" in message
    assert "(TLS: certificate verify failed" in message


def test_the_system_cas_do_not_trust_a_private_ca(https_port: int) -> None:
    message = connect(https_port, clickhouse_secure=True)
    assert "set FRESH_CLICKHOUSE_CA_FILE to the CA that signed the server's certificate" in message


def test_tls_to_a_plaintext_port_names_the_port(http_port: int, cas: tuple[Path, Path]) -> None:
    message = connect(http_port, clickhouse_secure=True, clickhouse_ca_file=str(cas[0] / "ca.crt"))
    assert "FRESH_CLICKHOUSE_PORT" in message and "FRESH_CLICKHOUSE_SECURE" in message
    assert "(TLS: " in message
