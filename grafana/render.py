"""Render Grafana's provisioning files from the code and pipeline.yaml, write them, or check them.

The files are committed (Grafana and compose load them as files), like a lock file: `check`
compares the committed ones with a fresh render and names the first differing line.

- `provisioning/datasources/clickhouse.yaml`: the ClickHouse datasource over HTTPS (the server's
  certificate verified against the compose CA), read through the read-only dashboards user of
  migration 007; its password and the CA only as `secureJsonData` `$__file{...}` references to
  compose secrets that Grafana expands at load time, never a literal.
- `provisioning/dashboards/probablyfresh.yaml`: a file provider for the ProbablyFresh folder,
  UI edits off.
- `dashboards/<name>.json`: one file per dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model

from clickhouse.render import dashboard_user
from fresh.pipeline import PipelineConfig
from grafana import catalog, clickhouse_query
from grafana.errors import GrafanaError, ProvisioningDriftError
from grafana.panels import DashboardSpec, build_dashboard

GRAFANA_DIR = Path(__file__).parent
DATASOURCE_UID = "probablyfresh-clickhouse"
DATASOURCE_NAME = "ProbablyFresh ClickHouse"
FOLDER = "ProbablyFresh"
FOLDER_UID = "probablyfresh"
# Where compose mounts grafana/dashboards (docker-compose.yml, read-only).
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards/probablyfresh"
# The ClickHouse server as the compose network names it (docker-compose.yml `clickhouse`), over HTTPS:
# its certificate verified against the compose CA (docs/security.md "## Compose").
CLICKHOUSE_HOST = "clickhouse"
CLICKHOUSE_PORT = 8443
# Grafana expands $__file{PATH} in provisioning files at load time: compose mounts these secrets
# (docker-compose.yml `secrets:`), so neither the password nor the CA is written into the file.
PASSWORD_FILE = "/run/secrets/clickhouse-dashboard.password"  # noqa: S105 -- a path, not a password
CA_FILE = "/run/secrets/ca.crt"


def dashboard_file(spec: DashboardSpec) -> str:
    return f"dashboards/{spec.uid.removeprefix('probablyfresh-')}.json"


def dashboard_json(spec: DashboardSpec) -> dict[str, Any]:
    model = build_dashboard(spec, DATASOURCE_UID)
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return data


def load_dashboard(data: dict[str, Any]) -> dashboard_model.Dashboard:
    """A dashboard JSON read back into the SDK's model, its queries as `ClickHouseQuery`."""
    clickhouse_query.register()
    return dashboard_model.Dashboard.from_json(data)


def datasource_yaml(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": clickhouse_query.PLUGIN_ID,
            "isDefault": True,
            "editable": False,
            "jsonData": {
                "host": CLICKHOUSE_HOST,
                "port": CLICKHOUSE_PORT,
                "protocol": "http",
                "secure": True,
                "tlsSkipVerify": False,
                "tlsAuthWithCACert": True,
                "username": dashboard_user(cfg),
                "defaultDatabase": cfg.clickhouse.mart_database,
            },
            "secureJsonData": {"password": f"$__file{{{PASSWORD_FILE}}}", "tlsCACert": f"$__file{{{CA_FILE}}}"},
        }],
    }


def provider_yaml() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "probablyfresh",
            "orgId": 1,
            "folder": FOLDER,
            "folderUid": FOLDER_UID,
            "type": "file",
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": DASHBOARDS_MOUNT, "foldersFromFilesStructure": False},
        }],
    }


_HEADER = "# Rendered by `freshctl grafana render` from grafana/ and pipeline.yaml: do not edit by hand.\n"


def rendered_files(cfg: PipelineConfig) -> dict[str, str]:
    """Every provisioning file: path relative to grafana/ -> its text."""
    files = {
        "provisioning/datasources/clickhouse.yaml":
            _HEADER + yaml.safe_dump(datasource_yaml(cfg), sort_keys=False),
        "provisioning/dashboards/probablyfresh.yaml": _HEADER + yaml.safe_dump(provider_yaml(), sort_keys=False),
    }
    for spec in catalog.dashboards(cfg):
        files[dashboard_file(spec)] = json.dumps(dashboard_json(spec), indent=2, sort_keys=True) + "\n"
    return files


def _managed(root: Path) -> set[str]:
    patterns = ["provisioning/datasources/*.yaml", "provisioning/dashboards/*.yaml", "dashboards/*.json"]
    return {str(p.relative_to(root)) for pattern in patterns for p in root.glob(pattern)}


def write(cfg: PipelineConfig, root: Path = GRAFANA_DIR, *, dry_run: bool = False) -> list[tuple[str, str]]:
    """Write the rendered files (and delete stale ones); returns (path, action) for each change."""
    files = rendered_files(cfg)
    changes: list[tuple[str, str]] = []
    for rel, text in files.items():
        path = root / rel
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            continue
        changes.append((rel, "created" if old is None else "updated"))
        if not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for rel in sorted(_managed(root) - set(files)):
        changes.append((rel, "deleted"))
        if not dry_run:
            (root / rel).unlink()
    return changes


def drift(cfg: PipelineConfig, root: Path = GRAFANA_DIR) -> list[str]:
    """One line per file whose committed text differs from the render (empty: no drift)."""
    files = rendered_files(cfg)
    out = []
    for rel, text in files.items():
        path = root / rel
        if not path.exists():
            out.append(f"grafana/{rel}: missing (rendered, not committed)")
            continue
        committed = path.read_text(encoding="utf-8").splitlines()
        rendered = text.splitlines()
        if committed == rendered:
            continue
        for n, (a, b) in enumerate(zip(committed, rendered, strict=False), start=1):
            if a != b:
                out.append(f"grafana/{rel}:{n}: committed {a.strip()!r}, rendered {b.strip()!r}")
                break
        else:
            n = min(len(committed), len(rendered)) + 1
            side = "committed" if len(committed) > len(rendered) else "rendered"
            out.append(f"grafana/{rel}:{n}: only the {side} file goes on")
    out += [f"grafana/{rel}: committed, no longer rendered" for rel in sorted(_managed(root) - set(files))]
    return out


def check(cfg: PipelineConfig, root: Path = GRAFANA_DIR) -> int:
    """Raise `ProvisioningDriftError` (exit 3) naming the first difference; else the file count."""
    lines = drift(cfg, root)
    if lines:
        more = f" (and {len(lines) - 1} more file(s))" if len(lines) > 1 else ""
        raise ProvisioningDriftError(f"{lines[0]}{more}; run `freshctl grafana render` and commit")
    return len(rendered_files(cfg))


def committed_dashboards(root: Path = GRAFANA_DIR) -> dict[str, dict[str, Any]]:
    """The committed dashboard JSON files by path (what Grafana loads)."""
    out = {}
    for path in sorted((root / "dashboards").glob("*.json")):
        try:
            out[str(path.relative_to(root))] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise GrafanaError(f"{path}: not JSON: {exc}") from None
    return out
