"""pymongo through the one URI builder against a real TLS endpoint in this process (a TLS socket
with a certificate of a throwaway CA; no MongoDB): an untrusted certificate is one line naming
FRESH_MONGO_TLS_CA_FILE, and the password never appears."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo.errors import PyMongoError

from fresh.settings import Settings
from generator.mongo import connect, describe
from stack.compose_secrets import ensure


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    ca = tmp_path_factory.mktemp("ca")
    ensure(ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca / "mongo.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                context.wrap_socket(conn, server_side=True).close()  # the handshake is all it does
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=10)
    listener.close()


def test_an_untrusted_certificate_names_the_ca_file(tls_port: int, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ensure(other)  # a different CA than the server's
    settings = Settings(mongo_uri=f"mongodb://seed:pa55word-x@127.0.0.1:{tls_port}/?directConnection=true",  # type: ignore[arg-type]
                        mongo_tls=True, mongo_tls_ca_file=str(other / "ca.crt"))  # type: ignore[arg-type]
    client = connect(settings, timeout_s=2.0)
    try:
        with pytest.raises(PyMongoError) as err:
            client.admin.command("ping")
    finally:
        client.close()
    line = describe(err.value)
    assert "set FRESH_MONGO_TLS_CA_FILE" in line and "certificate verify failed" in line
    assert "\n" not in line and "pa55word-x" not in line
