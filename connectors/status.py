"""Read-only views of live connectors for `get`, `status`, `describe` and `offsets`.
Configs are shown through `mask_config`: provider references as they are, secrets masked."""

from __future__ import annotations

import json
from typing import Any

from connectors.connect_api import ConnectApi
from connectors.secrets import mask_config, mask_text


def _task_summary(status: dict[str, Any]) -> str:
    return ",".join(f"{t.get('id')}:{t.get('state')}" for t in status.get("tasks", [])) or "-"


def list_rows(api: ConnectApi, prefix: str = "") -> list[dict[str, Any]]:
    rows = []
    for name, entry in sorted(api.list_with_status().items()):
        if prefix and not name.startswith(prefix):
            continue
        status = entry.get("status", {})
        info = entry.get("info", {})
        rows.append({
            "name": name,
            "class": str(info.get("config", {}).get("connector.class", "")).rsplit(".", 1)[-1],
            "type": info.get("type", status.get("type", "")),
            "state": status.get("connector", {}).get("state", ""),
            "tasks": _task_summary(status),
        })
    return rows


def status_rows(api: ConnectApi, name: str) -> list[dict[str, Any]]:
    """One row for the connector, one per task; a failed one carries the first line of its trace."""
    status = api.get_status(name)
    connector = status.get("connector", {})
    rows = [{"name": name, "part": "connector", "state": connector.get("state"),
             "worker": connector.get("worker_id"), "trace": _first_line(connector.get("trace"))}]
    for task in status.get("tasks", []):
        rows.append({"name": name, "part": f"task {task.get('id')}", "state": task.get("state"),
                     "worker": task.get("worker_id"), "trace": _first_line(task.get("trace"))})
    return rows


def describe(api: ConnectApi, name: str) -> dict[str, Any]:
    info = api.get_info(name)
    status = api.get_status(name)
    tasks = [
        {"id": t.get("id"), "state": t.get("state"), "worker": t.get("worker_id"),
         "trace": mask_text(str(t.get("trace"))) if t.get("trace") else None}
        for t in status.get("tasks", [])
    ]
    connector = status.get("connector", {})
    return {
        "name": name,
        "type": info.get("type"),
        "state": connector.get("state"),
        "worker": connector.get("worker_id"),
        "trace": mask_text(str(connector.get("trace"))) if connector.get("trace") else None,
        "tasks": tasks,
        "config": mask_config(info.get("config", {})),
    }


def offset_rows(api: ConnectApi, name: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "partition": json.dumps(o.get("partition"), sort_keys=True),
         "offset": json.dumps(o.get("offset"), sort_keys=True)}
        for o in api.offsets(name).get("offsets", [])
    ]


def _first_line(trace: Any) -> str:
    return mask_text(str(trace).strip().splitlines()[0]) if trace else ""
