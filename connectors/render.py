"""Render connector configs from Jinja2 templates and per-environment values.

Values: `values/base.yaml`, deep-merged with `values/<environment>.yaml`, then with any extra
values files in order. String values are themselves rendered (they may use `{{ pipeline.* }}`),
then each enabled entry of `connectors:` renders its template to one JSON config.
Everything renders with `StrictUndefined`: a missing value fails, naming the file and line.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from fresh.errors import ConfigError
from fresh.kafka_connection import KafkaRole
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.yaml_file import read_yaml_mapping

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
VALUES_DIR = PACKAGE_DIR / "values"
DESIRED_STATES = ("RUNNING", "PAUSED", "STOPPED")


class RenderError(ConfigError):
    """A template or values file could not be rendered."""


@dataclass(frozen=True)
class RenderedConnector:
    key: str  # the entry under `connectors:` in the values
    name: str
    template: str
    state: str  # RUNNING, PAUSED or STOPPED
    config: dict[str, str]
    local_secret_file: dict[str, str] | None = None

    @property
    def connector_class(self) -> str:
        return self.config["connector.class"]


@dataclass(frozen=True)
class Rendered:
    environment: str
    managed_prefix: str
    connectors: list[RenderedConnector] = field(default_factory=list)

    def by_name(self) -> dict[str, RenderedConnector]:
        return {c.name: c for c in self.connectors}


def known_environments(values_dir: Path = VALUES_DIR) -> list[str]:
    return sorted(p.stem for p in values_dir.glob("*.yaml") if p.stem != "base")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` wins; mappings merge key by key, everything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        return read_yaml_mapping(path)
    except ConfigError as exc:
        raise RenderError(f"values file {exc}") from None


def load_values(environment: str, extra: Iterable[Path] = (), values_dir: Path = VALUES_DIR) -> dict[str, Any]:
    known = known_environments(values_dir)
    if environment not in known:
        raise RenderError(
            f"unknown environment {environment!r}; known environments: {', '.join(known)} "
            f"(one values file each in {values_dir})"
        )
    values = _load_yaml(values_dir / "base.yaml")
    for path in [values_dir / f"{environment}.yaml", *extra]:
        values = deep_merge(values, _load_yaml(Path(path)))
    return values


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701 - renders JSON, not HTML; values are escaped with tojson
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["regex_escape"] = re.escape
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any) -> str:
    """JSON for a JSON template (no HTML escaping); an undefined value fails like any other use."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError here, with the template line in the traceback
    return json.dumps(value)


def _template_location(exc: BaseException, fallback: str) -> str:
    """`file:line` of the innermost template frame in the traceback (Jinja rewrites frames to templates)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2") or frame.filename == "<template>":
            return f"{frame.filename}:{frame.lineno}"
    return fallback


def _render_string(env: jinja2.Environment, text: str, context: Mapping[str, Any], where: str) -> str:
    if "{{" not in text and "{%" not in text:
        return text
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"{where}: {exc}") from None


def _render_values(env: jinja2.Environment, value: Any, context: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return _render_string(env, value, context, where)
    if isinstance(value, Mapping):
        return {k: _render_values(env, v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_values(env, v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _kafka_client(settings: Settings) -> dict[str, str]:
    connect = settings.kafka(KafkaRole.CONNECT)
    # the template takes the environment's `kafka_bootstrap`
    return connect.java_config(password_ref=connect.password_ref() if connect.sasl else None, check=False,
                               bootstrap=False)


def render(
    pipeline: PipelineConfig,
    settings: Settings,
    environment: str,
    *,
    extra_values: Iterable[Path] = (),
    templates_dir: Path = TEMPLATES_DIR,
    values_dir: Path = VALUES_DIR,
    only: Iterable[str] = (),
) -> Rendered:
    """Render every enabled connector of `environment` (or only the names/keys in `only`)."""
    values = load_values(environment, extra_values, values_dir)
    env = _environment(templates_dir)
    base_context: dict[str, Any] = {
        "pipeline": pipeline,
        "settings": {"kafka_bootstrap": settings.kafka_bootstrap},
        # How a connector's own Kafka clients (MirrorHeartbeat's `target.cluster.`) reach the broker:
        # the environment's values (`kafka_client`), or for local the caller's settings as pf-connect,
        # its password a `${dir:...}` reference the worker resolves (the rendered JSON holds no secret).
        "kafka_client": _kafka_client(settings) if environment == "local" else {},
        "stack_home": str(settings.stack_home),
        "environment": environment,
    }
    values = _render_values(env, values, base_context, "values")
    entries = values.get("connectors") or {}
    if not isinstance(entries, Mapping):
        raise RenderError("values: `connectors` must be a mapping of entries")
    cdc_regex = "^" + re.escape(f"{pipeline.kafka.topic_prefix}.{pipeline.mongodb.database}.") + ".*"
    include = ",".join(
        "^" + re.escape(f"{pipeline.mongodb.database}.{e.collection}") + "$" for e in pipeline.entities.values()
    )
    wanted = set(only)
    out: list[RenderedConnector] = []
    for key, entry in entries.items():
        if not isinstance(entry, Mapping) or not entry.get("enabled", True):
            continue
        for required in ("template", "name"):
            if required not in entry:
                raise RenderError(f"values: connectors.{key}.{required} is missing")
        name = str(entry["name"])
        if wanted and key not in wanted and name not in wanted:
            continue
        state = str(entry.get("state", "RUNNING")).upper()
        if state not in DESIRED_STATES:
            raise RenderError(f"values: connectors.{key}.state is {state!r}; use one of {', '.join(DESIRED_STATES)}")
        context = {
            **base_context, "c": entry, "name": name,
            "collection_include_list": include, "cdc_topic_regex": cdc_regex,
            # the environment's own Kafka, as its workers reach it (values, never the caller's FRESH_*)
            **({"kafka_bootstrap": values["kafka_bootstrap"]} if "kafka_bootstrap" in values else {}),
            **({"kafka_client": dict(values["kafka_client"])} if isinstance(values.get("kafka_client"), Mapping)
               else {}),
        }
        config = render_template(env, str(entry["template"]), context, templates_dir)
        config["name"] = name
        secret_file = entry.get("local_secret_file")
        out.append(RenderedConnector(
            key=str(key), name=name, template=str(entry["template"]), state=state, config=config,
            local_secret_file=dict(secret_file) if isinstance(secret_file, Mapping) else None,
        ))
    if wanted and not out:
        raise RenderError(f"no enabled connector named {', '.join(sorted(wanted))} in environment {environment!r}")
    names = [c.name for c in out]
    if len(names) != len(set(names)):
        raise RenderError(f"two connectors render to the same name: {names}")
    return Rendered(environment=environment, managed_prefix=str(values.get("managed_prefix", "")), connectors=out)


def render_template(
    env: jinja2.Environment, template_name: str, context: Mapping[str, Any], templates_dir: Path
) -> dict[str, str]:
    path = templates_dir / template_name
    try:
        text = env.get_template(template_name).render(**context)
    except jinja2.TemplateNotFound:
        known = ", ".join(sorted(p.name for p in templates_dir.glob("*.j2")))
        raise RenderError(f"template {template_name!r} not found in {templates_dir}; known: {known}") from None
    except jinja2.TemplateError as exc:
        where = _template_location(exc, str(path))
        raise RenderError(f"{where}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RenderError(f"{path}: rendered output is not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RenderError(f"{path}: must render to a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def to_json(connector: RenderedConnector) -> str:
    """The rendered config as Connect's `POST /connectors` body, stable key order."""
    return json.dumps({"name": connector.name, "config": connector.config}, indent=2, sort_keys=True) + "\n"


def write_folder(rendered: Rendered, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for connector in rendered.connectors:
        path = folder / f"{connector.name}.json"
        path.write_text(to_json(connector), encoding="utf-8")
        paths.append(path)
    return paths


