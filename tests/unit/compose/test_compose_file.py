"""docker-compose.yml keeps the compose conventions (DESIGN.md section 8, STYLE.md) and agrees with
connectors/values/compose.yaml and fresh.settings. Needs no Docker engine: the file is parsed and
checked against our own rules. Only where a `docker compose` (or standalone `docker-compose` v2) CLI
is on PATH does `test_docker_compose_config_accepts_the_file` validate it against the Compose
specification; the build machines have none, so there it is reported as NOT RUN (a skip at
collection, with the reason), and nothing there proves that Compose accepts the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from connectors.render import render
from fresh.pipeline import load_pipeline_config
from fresh.settings import REPO_ROOT, Settings
from stack.versions import load_versions

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
# `${VAR}` or `${VAR:?message}`; the file itself uses only the second form (a test checks it).
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::\?[^}]*)?\}")
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}")
OWN_IMAGE = "probablyfresh/freshctl:local"  # built from compose/Dockerfile, never pulled
# Environment names that hold credentials or key material: only ever from an env file.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEYRING|CONNECTION_STRING|MONGO_URI|API_KEY|CREDENTIAL", re.I)
URI_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]+:[^/@\s]*@", re.I)
LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
PROVIDER_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
PLACEHOLDER = "change-me"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def versions() -> dict[str, str]:
    return load_versions()


def one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services that run to completion: `restart: "no"` and adopted by a completed-successfully dependency."""
    return {name for name, s in services.items() if str(s.get("restart", "no")) == "no"}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """The service's `environment:` as compose passes it on (`$$` is a literal `$`)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v).replace("$$", "$") for k, v in raw.items()}


def env_files_of(service: dict[str, Any]) -> list[str]:
    raw = service.get("env_file") or []
    items = [raw] if isinstance(raw, str | dict) else raw
    return [item["path"] if isinstance(item, dict) else item for item in items]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: expected KEY=VALUE, got {line!r}"
            values[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    return values


def example_env(service: dict[str, Any]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in env_files_of(service):
        merged.update(read_env_file(REPO_ROOT / f"{name}.example"))
    return merged


def command_text(service: dict[str, Any]) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])}


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [str(node)] if node is not None else []


def kafka_internal_bootstrap(services: dict[str, dict[str, Any]]) -> str:
    kafka = env_of(services["kafka"])
    listeners = dict(item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    return listeners[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]


def settings_from(service: dict[str, Any]) -> Settings:
    """Settings exactly as the service's FRESH_* environment (plus its example env file) gives them."""
    env = {**example_env(service), **env_of(service)}
    fields = {k.removeprefix("FRESH_").lower(): v for k, v in env.items() if k.startswith("FRESH_")}
    return Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})  # type: ignore[arg-type]


# ---- versions ------------------------------------------------------------------------------------


def test_every_image_tag_is_a_versions_env_pin(services: dict[str, dict[str, Any]], versions: dict[str, str]) -> None:
    images = {name: s["image"] for name, s in services.items() if "image" in s and s["image"] != OWN_IMAGE}
    assert images, "no service has an image"
    for name, image in images.items():
        assert re.fullmatch(r"[a-z0-9./_-]+:\$\{[A-Z0-9_]+:\?[^}]+\}", image), (
            f"{name}: image {image!r} must be <repository>:${{VAR}} with VAR pinned in versions.env"
        )
        var = VAR.findall(image)[0]
        assert var in versions, f"{name}: {var} is not in versions.env"
        assert versions[var] != "latest" and not versions[var].startswith("latest"), f"{var} must not be latest"


def test_built_images_take_their_base_from_versions_env(
    services: dict[str, dict[str, Any]], versions: dict[str, str]
) -> None:
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == {"init"}, "the project's image is built once, by init"
    users = {name for name, s in services.items() if s.get("image") == OWN_IMAGE}
    assert users == {"init", "processor"}, "init and the processor run the one project image"
    assert services["processor"].get("pull_policy") == "never", "the project image is built here, never pulled"
    for name, s in built.items():
        assert s.get("image") == OWN_IMAGE
        args = s["build"].get("args") or {}
        for key, value in args.items():
            assert REQUIRED_VAR.fullmatch(value) and VAR.findall(value) == [key] and key in versions, (
                f"{name}: build arg {key}: ${{{key}:?...}} of versions.env")
        dockerfile = REPO_ROOT / s["build"].get("context", ".") / s["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.resolve() == DOCKERFILE.resolve()
        for line in dockerfile.read_text(encoding="utf-8").splitlines():
            if line.upper().startswith("FROM "):
                base = line.split()[1]
                used = VAR.findall(base)
                assert used and set(used) <= set(args), f"{dockerfile.name}: {line!r}: tag must be a build arg"


# ---- health, order, ports ------------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, s in services.items():
        if name in one_shot(services):
            continue
        check = s.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: a long-running service needs a healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must be CMD or CMD-SHELL"


def test_every_dependency_has_a_condition_that_fits(services: dict[str, dict[str, Any]]) -> None:
    shots = one_shot(services)
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must be a mapping with conditions, not a list"
        for dep, spec in deps.items():
            assert dep in services, f"{name}: depends on unknown service {dep}"
            condition = (spec or {}).get("condition")
            if dep in shots:
                assert condition == "service_completed_successfully", f"{name} -> {dep}: one-shot needs completed"
            else:
                assert condition == "service_healthy", f"{name} -> {dep}: use condition service_healthy"
                assert services[dep].get("healthcheck"), f"{name} -> {dep}: {dep} has no healthcheck"


def test_the_init_service_runs_once_and_is_adopted_for_up_wait(services: dict[str, dict[str, Any]]) -> None:
    assert one_shot(services) == {"init"}
    script = command_text(services["init"])
    assert "freshctl clickhouse migrate" in script
    assert re.search(r"freshctl connectors register (-e|--environment) compose\b", script)
    # `up --wait` fails on an exited container unless a long-running service depends on it completing.
    adopters = [n for n, s in services.items() if "init" in (s.get("depends_on") or {}) and n != "init"]
    assert adopters, "no long-running service depends on init (docker compose up --wait would exit 1)"


def test_published_ports_listen_on_localhost_only(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, s in services.items():
        for port in s.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port} must set host_ip 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port!r} must be 127.0.0.1:HOST:CONTAINER"
            published += 1
    assert published >= 4


# ---- secrets -------------------------------------------------------------------------------------


def test_no_secret_literal_in_the_compose_file(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, s in services.items():
        for key, value in env_of(s).items():
            assert not SECRET_NAME.search(key), f"{name}: {key} is a credential; give it through env_file, not here"
            assert not value.startswith("${") or value.startswith("${env:"), f"{name}: {key} interpolates a value"
    for text in strings(compose):
        assert not URI_USERINFO.search(text), f"a URI with user:password in docker-compose.yml: {text[:40]!r}"
        for token in LONG_TOKEN.findall(text):
            assert "." in token or "/" in token or token.isupper() or token.islower(), (
                f"a long token that looks like a secret in docker-compose.yml: {token[:8]}..."
            )


def test_env_files_are_git_ignored_with_placeholder_examples(services: dict[str, dict[str, Any]]) -> None:
    ignored = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    files = {f for s in services.values() for f in env_files_of(s)}
    assert files == {".env.secrets", ".env.keyring"}
    for name in files:
        assert name in ignored, f"{name} must be listed in .gitignore"
        example = read_env_file(REPO_ROOT / f"{name}.example")
        assert example, f"{name}.example is empty"
        for key, value in example.items():
            if SECRET_NAME.search(key):
                assert PLACEHOLDER in value, f"{name}.example: {key} must hold a {PLACEHOLDER} placeholder"
    # Only the processor reads the PII keyring.
    readers = {n for n, s in services.items() if ".env.keyring" in env_files_of(s)}
    assert readers == {"processor"}
    assert set(read_env_file(REPO_ROOT / ".env.keyring.example")) == {"FRESH_KEYRING_JSON"}


def test_the_secret_examples_agree_with_each_other(services: dict[str, dict[str, Any]]) -> None:
    env = read_env_file(REPO_ROOT / ".env.secrets.example")
    assert env["FRESH_MONGO_URI"] == env["FRESH_MONGO_CONNECTION_STRING"]
    uri = urlsplit(env["FRESH_MONGO_URI"])
    assert (uri.username, uri.password) == (env["MONGO_INITDB_ROOT_USERNAME"], env["MONGO_INITDB_ROOT_PASSWORD"])
    assert env["FRESH_CLICKHOUSE_PASSWORD"] == env["CLICKHOUSE_PASSWORD"]
    assert env_of(services["init"])["FRESH_CLICKHOUSE_USER"] == env_of(services["clickhouse"])["CLICKHOUSE_USER"]


# ---- agreement with settings and the compose connector config ------------------------------------


def test_fresh_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    worker_only = {"FRESH_MONGO_CONNECTION_STRING"}  # resolved by the Connect worker, not by freshctl
    for name, s in services.items():
        for key in {**env_of(s), **example_env(s)}:
            if key.startswith("FRESH_") and key not in worker_only:
                field = key.removeprefix("FRESH_").lower()
                assert field in Settings.model_fields, f"{name}: {key} is not a fresh.settings.Settings field"


def test_freshctl_services_reach_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    bootstrap = kafka_internal_bootstrap(services)
    host, port = bootstrap.rsplit(":", 1)
    assert host == "kafka" and f"://:{port}" in env_of(services["kafka"])["KAFKA_LISTENERS"]
    assert env_of(services["connect"])["BOOTSTRAP_SERVERS"] == bootstrap
    for name in ("init", "processor"):
        settings = settings_from(services[name])
        assert settings.environment == "compose"
        assert settings.kafka_bootstrap == bootstrap, f"{name}: FRESH_KAFKA_BOOTSTRAP"
    init = settings_from(services["init"])
    connect = urlsplit(init.connect_url)
    assert connect.hostname in services and connect.port in container_ports(services[connect.hostname])
    assert connect.hostname == "connect"
    assert init.clickhouse_backend == "server"
    assert init.clickhouse_host == "clickhouse" and init.clickhouse_port in container_ports(services["clickhouse"])
    mongo = urlsplit(init.mongo_uri.get_secret_value())
    assert mongo.hostname == "mongo" and mongo.port in container_ports(services["mongo"])
    assert "secure run" in command_text(services["processor"])


def test_compose_connector_config_resolves_on_the_compose_worker(services: dict[str, dict[str, Any]]) -> None:
    settings = settings_from(services["init"])
    rendered = render(load_pipeline_config(settings.pipeline_config), settings, "compose").by_name()
    source = next(c for c in rendered.values() if c.key == "mongodb_source")
    ref = PROVIDER_REF.match(source.config["mongodb.connection.string"])
    assert ref, "compose: the Mongo connection string must be an ${env:VAR} reference"
    var = ref.group(1)
    worker = env_of(services["connect"])
    providers = worker["CONNECT_CONFIG_PROVIDERS"].split(",")
    assert "env" in providers
    assert worker["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith(".config.provider.EnvVarConfigProvider")
    assert re.fullmatch(worker["CONNECT_CONFIG_PROVIDERS_ENV_PARAM_ALLOWLIST_PATTERN"], var)
    string = example_env(services["connect"])[var]  # the worker's env file holds it
    uri = urlsplit(string)
    mongo = services["mongo"]
    replica_set = re.search(r"--replSet (\S+)", command_text(mongo))
    assert replica_set and parse_qs(uri.query)["replicaSet"] == [replica_set.group(1)]
    assert uri.hostname == "mongo" and uri.port in container_ports(mongo)
    assert f"host: '{uri.hostname}:{uri.port}'" in json.dumps(mongo["healthcheck"]["test"]).replace('\\"', '"')
    canary = next(c for c in rendered.values() if c.key == "heartbeat_canary")
    assert canary.config["target.cluster.bootstrap.servers"] == env_of(services["connect"])["BOOTSTRAP_SERVERS"]


# ---- docker compose itself -----------------------------------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.startswith("Docker Compose version"):  # v1 says docker-compose
            return ["docker-compose"]
    return None


_COMPOSE_CLI = _compose_cli()


@pytest.mark.skipif(_COMPOSE_CLI is None, reason="NOT RUN: no docker compose v2 CLI on PATH, so nothing here "
                    "validates docker-compose.yml against the Compose specification (docs/compose.md)")
def test_docker_compose_config_accepts_the_file(tmp_path: Path, versions: dict[str, str]) -> None:
    cli = _COMPOSE_CLI
    assert cli is not None
    # A copy with the example env files in place of the user's (env_file paths must exist).
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(REPO_ROOT / "versions.env", tmp_path / "versions.env")
    for name in (".env.secrets", ".env.keyring"):
        shutil.copy(REPO_ROOT / f"{name}.example", tmp_path / name)
    (tmp_path / "compose").mkdir()
    shutil.copy(DOCKERFILE, tmp_path / "compose" / "Dockerfile")
    base = [*cli, "-f", str(tmp_path / "docker-compose.yml"), "--env-file", str(tmp_path / "versions.env")]
    quiet = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    out = subprocess.run([*base, "config", "--format", "json"], capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)["services"]
    assert resolved["kafka"]["image"] == f"apache/kafka:{versions['KAFKA_VERSION']}"
    assert resolved["connect"]["image"] == f"quay.io/debezium/connect:{versions['DEBEZIUM_VERSION']}"
    assert resolved["processor"]["build"]["args"]["PYTHON_IMAGE_VERSION"] == versions["PYTHON_IMAGE_VERSION"]
    # env_file values reach the container environment; the allowlist pattern keeps its literal `$`.
    assert resolved["connect"]["environment"]["FRESH_MONGO_CONNECTION_STRING"].startswith("mongodb://")
    assert resolved["connect"]["environment"]["CONNECT_CONFIG_PROVIDERS_ENV_PARAM_ALLOWLIST_PATTERN"].endswith("$")


# ---- grafana -------------------------------------------------------------------------------------


def test_grafana_is_pinned_provisioned_read_only_and_reads_as_the_dashboards_user(
    services: dict[str, dict[str, Any]], versions: dict[str, str]
) -> None:
    from grafana.render import CLICKHOUSE_HOST, CLICKHOUSE_PORT, DASHBOARDS_MOUNT, PASSWORD_ENV, provider_yaml

    grafana = services["grafana"]
    assert grafana["image"] == "grafana/grafana:${GRAFANA_IMAGE_VERSION:?run docker compose --env-file versions.env}"
    # the ClickHouse plugin installed at a pinned version
    plugins = env_of(grafana)["GF_INSTALL_PLUGINS"]
    assert plugins == ("grafana-clickhouse-datasource "
                       "${GRAFANA_CLICKHOUSE_PLUGIN_VERSION:?run docker compose --env-file versions.env}")
    assert re.fullmatch(r"4\.\d+\.\d+", versions["GRAFANA_CLICKHOUSE_PLUGIN_VERSION"])
    assert re.fullmatch(r"11\.6\.\d+", versions["GRAFANA_IMAGE_VERSION"])
    assert grafana["depends_on"] == {"clickhouse": {"condition": "service_healthy"}}
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])
    # provisioning mounted read-only, where the rendered provider looks for the dashboards
    mounts = {v.split(":")[1]: v for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["/etc/grafana/provisioning/datasources"].startswith("./grafana/provisioning/datasources:")
    assert mounts["/etc/grafana/provisioning/dashboards"].startswith("./grafana/provisioning/dashboards:")
    assert mounts[DASHBOARDS_MOUNT].startswith("./grafana/dashboards:")
    assert all(v.endswith(":ro") for v in mounts.values())
    assert provider_yaml()["providers"][0]["options"]["path"] == DASHBOARDS_MOUNT
    # the datasource reaches the compose ClickHouse; the password comes from the secrets file
    assert CLICKHOUSE_HOST == "clickhouse" and CLICKHOUSE_PORT in container_ports(services["clickhouse"])
    assert ".env.secrets" in env_files_of(grafana)
    secrets = example_env(grafana)
    assert PLACEHOLDER in secrets[PASSWORD_ENV] and PLACEHOLDER in secrets["GF_SECURITY_ADMIN_PASSWORD"]
    assert container_ports(grafana) == {3000}
