"""The Connect client's error mapping, against a tiny HTTP server (not Kafka Connect)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors.connect_api import (
    ConnectApi,
    ConnectNotFoundError,
    ConnectRebalanceError,
    ConnectServerError,
    ConnectUnreachableError,
    NotConnectError,
)


class _Handler(BaseHTTPRequestHandler):
    conflicts_left = 0
    rebalance_500s_left = 0
    calls = 0

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        type(self).calls += 1
        if self.path.startswith("/not-connect/"):  # a web server that is not Kafka Connect
            data = b"<html>Not Found</html>" if "404" in self.path else b"<html>hello</html>"
            self.send_response(404 if "404" in self.path else 200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path.startswith("/json-404/"):  # JSON, but not Connect's error body
            self._send(404, {"detail": "no route"})
        elif self.path.startswith("/connectors/missing"):
            self._send(404, {"error_code": 404, "message": "Connector missing not found"})
        elif self.path.startswith("/boom"):
            self._send(500, {"error_code": 500, "message": "worker exploded"})
        elif type(self).rebalance_500s_left > 0:
            type(self).rebalance_500s_left -= 1
            self._send(500, {"error_code": 500,
                             "message": "Request cannot be completed because a rebalance is expected"})
        elif type(self).conflicts_left > 0:
            type(self).conflicts_left -= 1
            self._send(409, {"error_code": 409, "message": "Cannot complete request while rebalancing"})
        else:
            self._send(200, ["a"])


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.calls = _Handler.conflicts_left = _Handler.rebalance_500s_left = 0
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_404_is_not_found_or_none(server: str) -> None:
    api = ConnectApi(server)
    with pytest.raises(ConnectNotFoundError, match="not found"):
        api.get_status("missing")
    assert api.get_config("missing") is None


@pytest.mark.parametrize("prefix", ["/not-connect/404", "/json-404", "/not-connect/200"])
def test_a_server_that_is_not_connect_is_an_error_not_an_absent_connector(server: str, prefix: str) -> None:
    api = ConnectApi(server + prefix)
    with pytest.raises(NotConnectError, match="not the Kafka Connect REST API; set FRESH_CONNECT_URL"):
        api.get_config("probablyfresh-mongodb-source")  # ok_404: would be "absent" if any 404 counted
    with pytest.raises(NotConnectError):
        api.get_status("probablyfresh-mongodb-source")


def test_5xx_is_server_error(server: str) -> None:
    with pytest.raises(ConnectServerError, match="worker exploded"):
        ConnectApi(server).request("GET", "/boom")


def test_409_is_retried_within_the_bound(server: str) -> None:
    _Handler.conflicts_left = 2
    assert ConnectApi(server, conflict_retries=3, conflict_backoff_s=0.01).list_connectors() == ["a"]
    assert _Handler.calls == 3


def test_500_rebalance_expected_is_retried_like_409(server: str) -> None:
    _Handler.rebalance_500s_left = 2
    assert ConnectApi(server, conflict_retries=3, conflict_backoff_s=0.01).list_connectors() == ["a"]
    assert _Handler.calls == 3
    _Handler.rebalance_500s_left, _Handler.calls = 10, 0
    with pytest.raises(ConnectRebalanceError, match="after 1 retries"):
        ConnectApi(server, conflict_retries=1, conflict_backoff_s=0.01).list_connectors()
    assert _Handler.calls == 2


def test_409_past_the_bound_is_reported(server: str) -> None:
    _Handler.conflicts_left = 10
    with pytest.raises(ConnectRebalanceError, match="after 2 retries"):
        ConnectApi(server, conflict_retries=2, conflict_backoff_s=0.01).list_connectors()
    assert _Handler.calls == 3


def test_unreachable_names_url_and_wait() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ConnectUnreachableError) as info:
        ConnectApi(url, timeout_s=2).list_connectors()
    message = str(info.value)
    assert url in message and "waited" in message and "timeout 2s" in message
