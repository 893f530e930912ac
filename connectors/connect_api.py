"""The one Kafka Connect REST client. No other module builds Connect URLs.

HTTP statuses map to typed errors: a 404 with Connect's own error body (`{"error_code": 404,
"message": ...}`) -> `ConnectNotFoundError`; any other 404, or a success whose body is not
JSON, means the URL is not a Kafka Connect REST API -> `NotConnectError` (never "connector
absent"); a rebalance (409, or a 500
whose message says "a rebalance is expected", which the worker sends right after a connector
change) is retried within a bound and then reported as `ConnectRebalanceError`, other 5xx ->
`ConnectServerError`, no answer at all -> `ConnectUnreachableError` naming the URL and the wait.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import requests

from fresh.errors import FreshError
from fresh.settings import Settings

log = logging.getLogger(__name__)


class ConnectError(FreshError):
    """Kafka Connect answered with an error."""


class ConnectNotFoundError(ConnectError):
    """404: the connector (or plugin) does not exist on the worker."""


class NotConnectError(ConnectError):
    """The server at FRESH_CONNECT_URL answered, but not as Kafka Connect does."""


class ConnectRebalanceError(ConnectError):
    """409: the worker group kept rebalancing past the retry bound."""


class ConnectServerError(ConnectError):
    """5xx: the worker failed while handling the request."""


class ConnectUnreachableError(ConnectError):
    """No answer from the worker (refused, DNS, timeout)."""


def _q(part: str) -> str:
    return quote(part, safe="")


class ConnectApi:
    """A small client over `requests.Session`: one method per Connect endpoint we use."""

    def __init__(
        self,
        base_url: str,
        *,
        user: str = "",
        password: str = "",
        timeout_s: float = 10.0,
        conflict_retries: int = 5,
        conflict_backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.conflict_retries = conflict_retries
        self.conflict_backoff_s = conflict_backoff_s
        self.session = requests.Session()
        if user:
            self.session.auth = (user, password)
        self.session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout_s: float | None = None) -> ConnectApi:
        return cls(
            settings.connect_url,
            user=settings.connect_user,
            password=settings.connect_password.get_secret_value(),
            timeout_s=settings.connect_timeout_s if timeout_s is None else timeout_s,
        )

    # ---- transport ------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, ok_404: bool = False) -> Any:
        """Send one request; retry a rebalance within `conflict_retries`; map errors to typed exceptions."""
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                resp = self.session.request(method, url, json=body, timeout=self.timeout_s)
            except requests.RequestException as exc:
                waited = time.monotonic() - started
                raise ConnectUnreachableError(
                    f"Kafka Connect at {self.base_url} did not answer {method} {path} "
                    f"(waited {waited:.1f}s, timeout {self.timeout_s:.0f}s): {type(exc).__name__}; "
                    "check that the worker runs (freshctl stack status) or set FRESH_CONNECT_URL"
                ) from None
            if _is_rebalance(resp) and attempt < self.conflict_retries:
                attempt += 1
                log.info("connect rebalance method=%s path=%s attempt=%d", method, path, attempt)
                # A rebalance finishes on its own; back off before asking again (bounded by the retry count).
                time.sleep(self.conflict_backoff_s * attempt)
                continue
            return self._result(method, path, resp, attempt, ok_404)

    def _result(self, method: str, path: str, resp: requests.Response, attempts: int, ok_404: bool) -> Any:
        status = resp.status_code
        what = f"{method} {self.base_url}{path}"
        if status < 400:
            if status == 204 or not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                raise self._not_connect(what, status) from None
        message = _error_message(resp)
        if status == 404:
            if not _connect_error_body(resp):
                raise self._not_connect(what, status)
            if ok_404:
                return None
            raise ConnectNotFoundError(f"{what}: not found ({message})")
        if _is_rebalance(resp):
            raise ConnectRebalanceError(
                f"{what}: conflict after {attempts} retries ({message}); the worker group is rebalancing "
                "or the connector is being changed by someone else: try again in a moment"
            )
        if status in (401, 403):
            raise ConnectError(f"{what}: HTTP {status} ({message}); set FRESH_CONNECT_USER / FRESH_CONNECT_PASSWORD")
        if status >= 500:
            raise ConnectServerError(f"{what}: worker error HTTP {status}: {message}")
        raise ConnectError(f"{what}: HTTP {status}: {message}")

    def _not_connect(self, what: str, status: int) -> NotConnectError:
        return NotConnectError(
            f"{what}: HTTP {status} without a Kafka Connect body: the server at {self.base_url} is not the "
            "Kafka Connect REST API; set FRESH_CONNECT_URL to the worker's REST address (freshctl stack status)"
        )

    # ---- endpoints --------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        """`GET /`: the worker's version; raises `NotConnectError` if the answer is not Connect's."""
        info = self.request("GET", "/")
        if not isinstance(info, dict) or "kafka_cluster_id" not in info:
            raise self._not_connect(f"GET {self.base_url}/", 200)
        return info

    def plugins(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/connector-plugins"))

    def list_connectors(self) -> list[str]:
        return sorted(self.request("GET", "/connectors"))

    def list_with_status(self) -> dict[str, Any]:
        """`{name: {"status": ..., "info": ...}}` for every connector, in one request."""
        return dict(self.request("GET", "/connectors?expand=status&expand=info"))

    def get_config(self, name: str) -> dict[str, str] | None:
        """The live config, or None when the connector does not exist."""
        result = self.request("GET", f"/connectors/{_q(name)}/config", ok_404=True)
        return None if result is None else dict(result)

    def get_info(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/connectors/{_q(name)}"))

    def get_status(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/connectors/{_q(name)}/status"))

    def put_config(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        return dict(self.request("PUT", f"/connectors/{_q(name)}/config", config))

    def create(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """POST /connectors: not idempotent (409 if it exists); used only by the naive benchmark baseline."""
        return dict(self.request("POST", "/connectors", {"name": name, "config": config}))

    def validate(self, connector_class: str, config: dict[str, str]) -> dict[str, Any]:
        return dict(self.request("PUT", f"/connector-plugins/{_q(connector_class)}/config/validate", config))

    def delete(self, name: str) -> None:
        self.request("DELETE", f"/connectors/{_q(name)}")

    def pause(self, name: str) -> None:
        self.request("PUT", f"/connectors/{_q(name)}/pause")

    def resume(self, name: str) -> None:
        self.request("PUT", f"/connectors/{_q(name)}/resume")

    def stop(self, name: str) -> None:
        self.request("PUT", f"/connectors/{_q(name)}/stop")

    def restart(self, name: str, *, include_tasks: bool = True, only_failed: bool = True) -> Any:
        flags = f"includeTasks={str(include_tasks).lower()}&onlyFailed={str(only_failed).lower()}"
        return self.request("POST", f"/connectors/{_q(name)}/restart?{flags}")

    def offsets(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/connectors/{_q(name)}/offsets"))


def _is_rebalance(resp: requests.Response) -> bool:
    """409, or the 500 "Request cannot be completed because a rebalance is expected" that a worker
    answers while its group rebalances after a connector change (seen on Kafka Connect 4.1.1)."""
    return resp.status_code == 409 or (resp.status_code >= 500 and "rebalance" in _error_message(resp).lower())


def _connect_error_body(resp: requests.Response) -> bool:
    """Connect answers every error with `{"error_code": <status>, "message": ...}`."""
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error_code") == resp.status_code and "message" in body


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:300]
