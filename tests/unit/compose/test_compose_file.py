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
# Environment names that hold credentials or key material: only ever compose secrets (/run/secrets).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEYRING|CONNECTION_STRING|MONGO_URI|API_KEY|CREDENTIAL", re.I)
URI_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]+:[^/@\s]*@", re.I)
LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


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
    """The broker's address inside the network: its inter-broker listener as advertised in server.properties."""
    props = {}
    for line in (REPO_ROOT / "compose" / "kafka" / "server.properties").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key] = value
    listeners = dict(item.split("://", 1) for item in props["advertised.listeners"].split(","))
    return listeners[props["inter.broker.listener.name"]]


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
    assert one_shot(services) == {"init", "kafka-init"}
    script = command_text(services["init"])
    assert "freshctl clickhouse migrate" in script
    assert re.search(r"freshctl connectors register (-e|--environment) compose\b", script)
    # `up --wait` fails on an exited container unless a long-running service depends on it completing.
    for shot in one_shot(services):
        adopters = [n for n, s in services.items()
                    if shot in (s.get("depends_on") or {}) and n not in one_shot(services)]
        assert adopters, f"no long-running service depends on {shot} (docker compose up --wait would exit 1)"


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


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """The service's compose secrets: target file name under /run/secrets -> secret name."""
    out = {}
    for item in service.get("secrets") or []:
        if isinstance(item, dict):
            out[str(item.get("target", item["source"]))] = str(item["source"])
        else:
            out[str(item)] = str(item)
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `python -m stack.compose_secrets` writes, in a throwaway folder."""
    from stack.compose_secrets import ensure

    folder = tmp_path_factory.mktemp("compose-secrets")
    ensure(folder)
    return folder


def test_no_secret_literal_in_the_compose_file(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, s in services.items():
        for key, value in env_of(s).items():
            if (SECRET_NAME.search(key) or "JAAS" in key) and value != "/run/secrets":  # not FRESH_SECRETS_DIR
                # only a path to a mounted secret, or a provider reference to one
                assert (key.endswith("_FILE") and value.startswith("/run/secrets/")) or re.fullmatch(
                    r"\$\{dir:/run/secrets:[a-z0-9.-]+\}", value), (
                    f"{name}: {key} is a credential; give it as a compose secret (/run/secrets), not here")
            assert not value.startswith("${") or value.startswith("${dir:/run/secrets:"), (
                f"{name}: {key} interpolates a value")
    for text in strings(compose):
        assert not URI_USERINFO.search(text), f"a URI with user:password in docker-compose.yml: {text[:40]!r}"
        for token in LONG_TOKEN.findall(text):
            flag = token.startswith("--")  # a command-line option such as --tlsAllowConnectionsWithoutCertificates
            assert flag or "." in token or "/" in token or token.isupper() or token.islower(), (
                f"a long token that looks like a secret in docker-compose.yml: {token[:8]}..."
            )


def test_credentials_are_compose_secrets_made_by_the_generator_and_git_ignored(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], generated: Path
) -> None:
    declared = compose["secrets"]
    for name, spec in declared.items():
        assert spec == {"file": f"./compose/secrets/{name}"}, f"secret {name}: a file in compose/secrets/"
    used = {source for s in services.values() for source in secret_targets(s).values()}
    assert used == set(declared), f"declared but unused: {set(declared) - used}; unknown: {used - set(declared)}"
    made = {p.name for p in generated.iterdir()}
    assert set(declared) <= made, f"stack.compose_secrets does not make {set(declared) - made}"
    assert "ca.key" not in declared, "the CA key stays on the host"
    assert generated.stat().st_mode & 0o077 == 0, "the secrets folder is the owner's only"
    assert (generated / "ca.key").stat().st_mode & 0o077 == 0
    for name in declared:  # Kafka's DirectoryConfigProvider and Grafana's $__file{} read every byte
        assert not (generated / name).read_bytes().endswith(b"\n") or name.endswith((".crt", ".pem", ".key"))
    ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", "compose/secrets/ca.key"], check=False)
    assert ignored.returncode == 0, "compose/secrets/* must be git-ignored"
    kept = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", "compose/secrets/README.md"],
                          check=False)
    assert kept.returncode == 1, "compose/secrets/README.md stays tracked"
    # Only the processor reads the PII keyring, still an env file.
    assert {f for s in services.values() for f in env_files_of(s)} == {".env.keyring"}
    assert ".env.keyring" in (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    readers = {n for n, s in services.items() if ".env.keyring" in env_files_of(s)}
    assert readers == {"processor"}
    assert set(read_env_file(REPO_ROOT / ".env.keyring.example")) == {"FRESH_KEYRING_JSON"}


def test_the_generator_never_overwrites_a_secret(tmp_path: Path) -> None:
    from stack.compose_secrets import ensure

    first = ensure(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ensure(tmp_path) == [] and ensure(tmp_path, dry_run=True) == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "mongo-seed.password").unlink()
    (tmp_path / "mongo-seed.uri").unlink()
    assert ensure(tmp_path, dry_run=True) == ["mongo-seed.password", "mongo-seed.uri"]
    assert len(first) == len(before)


def test_server_certificates_verify_against_the_ca_for_the_compose_names(generated: Path) -> None:
    import ssl

    for stem, host in (("kafka", "kafka"), ("clickhouse", "clickhouse"), ("mongo", "mongo")):
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(generated / f"{stem}.crt", generated / f"{stem}.key")
        server.load_cert_chain(generated / f"{stem}.pem")  # the combined file mongod and Kafka read
        client = ssl.create_default_context(cafile=str(generated / "ca.crt"))
        a, b = __import__("socket").socketpair()
        with a, b:
            c = client.wrap_socket(a, server_hostname=host, do_handshake_on_connect=False)
            srv = server.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
            import threading

            t = threading.Thread(target=srv.do_handshake)
            t.start()
            c.do_handshake()  # raises if the certificate does not verify for `host`
            t.join(timeout=30)
            assert c.version() in ("TLSv1.2", "TLSv1.3")


def test_mongo_users_are_least_privilege_and_agree_with_the_uris(
    services: dict[str, dict[str, Any]], generated: Path
) -> None:
    from stack.compose_secrets import MONGO_URIS

    script = (REPO_ROOT / "compose" / "mongo" / "init-users.js").read_text(encoding="utf-8")
    mongo = services["mongo"]
    database = load_pipeline_config(Settings().pipeline_config).mongodb.database
    assert env_of(mongo)["PF_MONGO_DATABASE"] == database
    assert "./compose/mongo/init-users.js:/docker-entrypoint-initdb.d/init-users.js:ro" in mongo["volumes"]
    # Debezium: find/changeStream on the pipeline's database only, listDatabases, read on admin; nothing writable
    debezium_role = script[script.index('role: "probablyfreshDebezium"'):script.index('createUser({ user: "debezium"')]
    assert '{ db: database, collection: "" }, actions: ["find", "changeStream", "listCollections"]' in debezium_role
    assert '{ cluster: true }, actions: ["listDatabases"]' in debezium_role
    assert 'db: ""' not in debezium_role and "readWrite" not in debezium_role and "root" not in debezium_role
    assert ('createUser({ user: "debezium", pwd: secret("mongo-debezium.password"), '
            'roles: ["probablyfreshDebezium"] })') in script
    assert ('createUser({ user: "seed", pwd: secret("mongo-seed.password"), '
            'roles: [{ role: "readWrite", db: database }] })') in script
    assert len(re.findall(r"createUser\(", script)) == 2
    for name, (user, password_file) in MONGO_URIS.items():
        uri = urlsplit((generated / name).read_text(encoding="ascii"))
        assert (uri.username, uri.password) == (user, (generated / password_file).read_text(encoding="ascii"))
        assert f"user: \"{user}\"" in script and f'secret("{password_file}")' in script
        options = parse_qs(uri.query)
        assert options["tls"] == ["true"] and options["authSource"] == ["admin"]
        replica_set = re.search(r"--replSet (\S+)", command_text(mongo))
        assert replica_set and options["replicaSet"] == [replica_set.group(1)]
        assert uri.hostname == "mongo" and uri.port in container_ports(mongo)
    # The root user is mongo's own: no other service gets its password
    for name, s in services.items():
        if name != "mongo":
            assert "mongo-root.password" not in secret_targets(s).values(), name
    assert secret_targets(services["connect"]).get("mongo-debezium.uri") == "mongo-debezium.uri"
    assert secret_targets(services["init"])["FRESH_MONGO_URI"] == "mongo-seed.uri"


# ---- agreement with settings and the compose connector config ------------------------------------

def settings_with_secrets(service: dict[str, Any], generated: Path) -> Settings:
    """Settings as the service gets them: its FRESH_* environment plus its secrets (FRESH_SECRETS_DIR)."""
    env = env_of(service)
    fields: dict[str, Any] = {k.removeprefix("FRESH_").lower(): v for k, v in env.items() if k.startswith("FRESH_")}
    for target, source in secret_targets(service).items():
        if target.startswith("FRESH_"):
            fields[target.removeprefix("FRESH_").lower()] = (generated / source).read_text(encoding="ascii")
    # the CA is mounted at /run/secrets/ca.crt; here the generated one stands in for it
    for key in ("clickhouse_ca_file", "mongo_tls_ca_file"):
        if fields.get(key) == "/run/secrets/ca.crt":
            fields[key] = str(generated / "ca.crt")
    return Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})


def test_fresh_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, s in services.items():
        names = {k for k in env_of(s) if k.startswith("FRESH_")} | {
            t for t in secret_targets(s) if t.startswith("FRESH_")}
        for key in names - {"FRESH_SECRETS_DIR"}:  # SECRETS_DIR: read by load_settings
            assert key.removeprefix("FRESH_").lower() in Settings.model_fields, (
                f"{name}: {key} is not a fresh.settings.Settings field")
        if any(t.startswith("FRESH_") for t in secret_targets(s)):
            assert env_of(s).get("FRESH_SECRETS_DIR") == "/run/secrets", f"{name}: FRESH_SECRETS_DIR=/run/secrets"


def test_freshctl_services_reach_the_compose_services_over_tls(
    services: dict[str, dict[str, Any]], generated: Path
) -> None:
    from clickhouse.backend import ServerConnection
    from fresh.clients import mongo_connection_uri

    bootstrap = kafka_internal_bootstrap(services)
    assert bootstrap == "kafka:19092"
    assert env_of(services["connect"])["BOOTSTRAP_SERVERS"] == bootstrap
    for name in ("init", "processor"):
        env = env_of(services[name])
        assert env["FRESH_ENVIRONMENT"] == "compose" and env["FRESH_KAFKA_BOOTSTRAP"] == bootstrap
        assert env["FRESH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", f"{name}: Kafka over SASL_SSL"
        assert env["FRESH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["FRESH_KAFKA_CA_FILE"] == "/run/secrets/ca.crt" and "ca.crt" in secret_targets(services[name])
    # each freshctl service gets only its own Kafka user's password
    assert secret_targets(services["processor"])["FRESH_KAFKA_PROCESSOR_PASSWORD"] == "kafka-pf-processor.password"
    assert {t for t in secret_targets(services["processor"]) if t.startswith("FRESH_")} == {
        "FRESH_KAFKA_PROCESSOR_PASSWORD"}
    init = settings_with_secrets(services["init"], generated)
    connect = urlsplit(init.connect_url)
    assert connect.hostname == "connect" and connect.port in container_ports(services["connect"])
    assert init.clickhouse_backend == "server"
    conn = ServerConnection.from_settings(init).client_kwargs()
    assert conn["host"] == "clickhouse" and conn["port"] == 8443 and conn["secure"] is True and conn["verify"] is True
    assert conn["ca_cert"] == str(generated / "ca.crt")
    assert conn["password"] == (generated / "clickhouse-admin.password").read_text(encoding="ascii")
    assert init.clickhouse_user == env_of(services["clickhouse"])["CLICKHOUSE_USER"]
    mongo = urlsplit(mongo_connection_uri(init).get_secret_value())
    assert mongo.hostname == "mongo" and mongo.port in container_ports(services["mongo"])
    assert mongo.username == "seed" and parse_qs(mongo.query)["tls"] == ["true"]
    assert parse_qs(mongo.query)["tlsCAFile"] == [str(generated / "ca.crt")]
    assert "secure run" in command_text(services["processor"])


def test_compose_connector_config_resolves_on_the_compose_worker(services: dict[str, dict[str, Any]]) -> None:
    rendered = render(load_pipeline_config(Settings().pipeline_config), Settings(), "compose").by_name()
    worker = env_of(services["connect"])
    assert worker["CONNECT_CONFIG_PROVIDERS"].split(",") == ["dir"]
    assert worker["CONNECT_CONFIG_PROVIDERS_DIR_CLASS"].endswith(".config.provider.DirectoryConfigProvider")
    assert worker["CONNECT_CONFIG_PROVIDERS_DIR_PARAM_ALLOWED_PATHS"] == "/run/secrets"
    mounted = secret_targets(services["connect"])
    refs = [v for c in rendered.values() for v in c.config.values() if "${" in v]
    assert refs, "the compose connectors reference their secrets"
    for value in refs:
        ref = re.fullmatch(r"\$\{dir:/run/secrets:([a-z0-9.-]+)\}", value)
        assert ref and ref.group(1) in mounted, f"{value}: a ${{dir:/run/secrets:NAME}} of a secret connect mounts"
    source = next(c for c in rendered.values() if c.key == "mongodb_source")
    assert source.config["mongodb.connection.string"] == "${dir:/run/secrets:mongo-debezium.uri}"
    assert source.config["capture.scope"] == "database"
    assert source.config["capture.target"] == load_pipeline_config(Settings().pipeline_config).mongodb.database
    canary = next(c for c in rendered.values() if c.key == "heartbeat_canary")
    assert canary.config["target.cluster.bootstrap.servers"] == worker["BOOTSTRAP_SERVERS"]
    assert canary.config["target.cluster.security.protocol"] == "SASL_SSL"
    assert canary.config["target.cluster.ssl.truststore.location"] == "/run/secrets/ca.crt"


def test_prod_connector_values_use_sasl_ssl_and_tls() -> None:
    rendered = render(load_pipeline_config(Settings().pipeline_config), Settings(), "prod").by_name()
    canary = next(c for c in rendered.values() if c.key == "heartbeat_canary")
    assert canary.config["target.cluster.security.protocol"] == "SASL_SSL"
    assert canary.config["target.cluster.sasl.mechanism"] == "SCRAM-SHA-512"
    assert canary.config["target.cluster.sasl.jaas.config"].startswith("${file:")
    source = next(c for c in rendered.values() if c.key == "mongodb_source")
    assert source.config["mongodb.connection.string"].startswith("${file:")
    assert source.config["capture.scope"] == "database"


# ---- TLS and SASL on every hop (docs/security.md "## Compose") -----------------------------------


def properties(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_no_kafka_listener_is_plaintext_without_a_documented_reason(services: dict[str, dict[str, Any]]) -> None:
    path = REPO_ROOT / "compose" / "kafka" / "server.properties"
    text = path.read_text(encoding="utf-8")
    props = properties(path)
    protocols = dict(item.split(":", 1) for item in props["listener.security.protocol.map"].split(","))
    listeners = dict(item.split("://", 1) for item in props["listeners"].split(","))
    security_md = (REPO_ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert set(listeners) == set(protocols)
    for name, address in listeners.items():
        if protocols[name] == "SASL_SSL":
            continue
        # a plaintext listener: bound to loopback, and its reason written next to it and in the docs
        assert address.startswith("127.0.0.1:"), f"{name} is {protocols[name]} and not bound to 127.0.0.1"
        assert re.search(rf"^# {name}: {protocols[name]}, documented reason: ", text, re.M), (
            f"{name} is {protocols[name]}: write '# {name}: {protocols[name]}, documented reason: ...' above it")
        assert f"`{name}`" in security_md, f"docs/security.md does not explain the {name} listener"
        assert name == props["controller.listener.names"], f"{name}: only the controller may be plaintext"
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    advertised = dict(item.split("://", 1) for item in props["advertised.listeners"].split(","))
    assert all(protocols[name] == "SASL_SSL" for name in advertised), "only SASL_SSL listeners are advertised"
    kafka = services["kafka"]
    assert "./compose/kafka:/etc/probablyfresh/kafka:ro" in kafka["volumes"]
    assert "environment" not in kafka, "the broker's config is compose/kafka/server.properties only"


def test_every_kafka_client_uses_sasl_ssl(services: dict[str, dict[str, Any]]) -> None:
    worker = env_of(services["connect"])
    for prefix in ("CONNECT_", "CONNECT_PRODUCER_", "CONNECT_CONSUMER_", "CONNECT_ADMIN_"):
        assert worker[f"{prefix}SECURITY_PROTOCOL"] == "SASL_SSL", prefix
        assert worker[f"{prefix}SASL_MECHANISM"] == "SCRAM-SHA-512", prefix
        assert worker[f"{prefix}SSL_TRUSTSTORE_LOCATION"] == "/run/secrets/ca.crt", prefix
        assert worker[f"{prefix}SASL_JAAS_CONFIG"] == "${dir:/run/secrets:kafka-pf-connect.jaas}", prefix
    admin = properties(REPO_ROOT / "compose" / "kafka" / "client.properties")
    assert admin["security.protocol"] == "SASL_SSL" and admin["sasl.mechanism"] == "SCRAM-SHA-512"
    # the ClickHouse Kafka engine: server-side settings, its password from the environment, never in DDL
    kafka_xml = (REPO_ROOT / "compose" / "clickhouse" / "config.d" / "kafka.xml").read_text(encoding="utf-8")
    assert "<security_protocol>sasl_ssl</security_protocol>" in kafka_xml
    assert "<sasl_username>pf-clickhouse</sasl_username>" in kafka_xml
    assert '<sasl_password from_env="PF_KAFKA_CLICKHOUSE_PASSWORD"/>' in kafka_xml
    assert "PF_KAFKA_CLICKHOUSE_PASSWORD=\"$(cat /run/secrets/kafka-pf-clickhouse.password)\"" in command_text(
        services["clickhouse"]).replace("$$", "$")
    for migration in (REPO_ROOT / "clickhouse" / "migrations").glob("*.sql.j2"):
        assert "sasl_password" not in migration.read_text(encoding="utf-8"), migration.name


def test_clickhouse_and_mongo_speak_tls_only(services: dict[str, dict[str, Any]]) -> None:
    tls_xml = (REPO_ROOT / "compose" / "clickhouse" / "config.d" / "tls.xml").read_text(encoding="utf-8")
    for port in ("http_port", "tcp_port", "mysql_port", "postgresql_port", "interserver_http_port"):
        assert f'<{port} remove="1"/>' in tls_xml, f"ClickHouse's plaintext {port} must be removed"
    assert "<https_port>8443</https_port>" in tls_xml
    assert container_ports(services["clickhouse"]) == {8443}
    assert "https://localhost:8443/ping" in " ".join(services["clickhouse"]["healthcheck"]["test"])
    mongo = command_text(services["mongo"])
    assert "--tlsMode requireTLS" in mongo and "--tlsCAFile /run/secrets/ca.crt" in mongo
    assert "--tls --tlsCAFile /run/secrets/ca.crt" in " ".join(services["mongo"]["healthcheck"]["test"])
    for name in ("init",):
        env = env_of(services[name])
        assert env["FRESH_CLICKHOUSE_SECURE"] == "true" and env["FRESH_MONGO_TLS"] == "true"
    assert "-Djavax.net.ssl.trustStore=" in env_of(services["connect"])["KAFKA_OPTS"]


def test_kafka_acls_follow_the_pipeline_and_keep_plaintext_pii_from_clickhouse() -> None:
    cfg = load_pipeline_config(Settings().pipeline_config)
    grants: dict[tuple[str, str, str], set[str]] = {}
    for line in (REPO_ROOT / "compose" / "kafka" / "acls.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            user, ops, kind, name, pattern = line.split()
            assert pattern in ("literal", "prefixed") and kind in ("topic", "group", "transactional-id", "cluster")
            grants.setdefault((user, kind, name if pattern == "literal" else name + "*"), set()).update(ops.split(","))
    users = {u for u, _, _ in grants}
    assert users == {"pf-connect", "pf-processor", "pf-clickhouse"}  # pf-admin: super user, no ACLs needed

    def readers(topic: str) -> set[str]:
        return {u for (u, k, n), ops in grants.items() if k == "topic" and ops & {"Read", "All"} and (
            n == topic or (n.endswith("*") and topic.startswith(n[:-1])))}

    def writers(topic: str) -> set[str]:
        return {u for (u, k, n), ops in grants.items() if k == "topic" and ops & {"Write", "All"} and (
            n == topic or (n.endswith("*") and topic.startswith(n[:-1])))}

    for topic in cfg.cdc_topics:
        assert readers(topic) == {"pf-processor"}, f"{topic} (plaintext PII) is read by the processor only"
        assert writers(topic) == {"pf-connect"}
    for topic in cfg.secure_topics:
        assert readers(topic) == {"pf-clickhouse"}, topic
        assert writers(topic) == {"pf-processor"}, topic
    assert writers(cfg.kafka.dlq_topic) == {"pf-processor"} and readers(cfg.kafka.dlq_topic) == set()
    assert ("pf-processor", "group", cfg.pii_processor.consumer_group) in grants
    assert ("pf-clickhouse", "group", cfg.clickhouse.consumer_group + "*") in grants
    assert ("pf-processor", "transactional-id", f"pii-{cfg.pii_processor.consumer_group}*") in grants


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
    shutil.copy(REPO_ROOT / ".env.keyring.example", tmp_path / ".env.keyring")
    shutil.copytree(REPO_ROOT / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("secrets", "validate"))
    from stack.compose_secrets import ensure

    ensure(tmp_path / "compose" / "secrets")
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
    # provider references keep their literal `$`
    assert resolved["connect"]["environment"]["CONNECT_SASL_JAAS_CONFIG"] == "${dir:/run/secrets:kafka-pf-connect.jaas}"


# ---- grafana -------------------------------------------------------------------------------------


def test_grafana_is_pinned_provisioned_read_only_and_reads_as_the_dashboards_user(
    services: dict[str, dict[str, Any]], versions: dict[str, str]
) -> None:
    from grafana.render import CA_FILE, CLICKHOUSE_HOST, CLICKHOUSE_PORT, DASHBOARDS_MOUNT, PASSWORD_FILE, provider_yaml

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
    # the datasource reaches the compose ClickHouse over HTTPS; password and CA are mounted secrets
    assert CLICKHOUSE_HOST == "clickhouse" and CLICKHOUSE_PORT in container_ports(services["clickhouse"])
    mounted = secret_targets(grafana)
    assert mounted[PASSWORD_FILE.removeprefix("/run/secrets/")] == "clickhouse-dashboard.password"
    assert CA_FILE.removeprefix("/run/secrets/") in mounted
    assert env_of(grafana)["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin.password"
    assert container_ports(grafana) == {3000}


# ---- kafka-init: the script run with stub Kafka tools --------------------------------------------


def test_kafka_init_sets_every_user_and_adds_exactly_the_acls_of_the_table(tmp_path: Path, generated: Path) -> None:
    """compose/kafka/init.sh with kafka-configs.sh / kafka-acls.sh stubs that record their arguments
    (and the admin client config they were given): what the kafka-init service would run."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for tool in ("kafka-configs.sh", "kafka-acls.sh"):
        stub = stubs / tool
        stub.write_text(
            "#!/usr/bin/env bash\n"
            f'{{ echo "{tool}"; for a in "$@"; do echo "$a"; done; '
            'while [ $# -gt 0 ]; do if [ "$1" = --command-config ]; then cat "$2"; fi; shift; done; '
            f'echo "--end--"; }} >> {calls}\n', encoding="utf-8")
        stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PF_KAFKA_BIN": str(stubs), "PF_KAFKA_CONF": str(REPO_ROOT / "compose" / "kafka"),
           "PF_SECRETS": str(generated)}
    run = subprocess.run(["bash", str(REPO_ROOT / "compose" / "kafka" / "init.sh")], env=env, capture_output=True,
                         text=True, check=False, timeout=60)
    assert run.returncode == 0, run.stderr
    invocations = [block.strip().splitlines() for block in calls.read_text(encoding="utf-8").split("--end--")
                   if block.strip()]
    admin_password = (generated / "kafka-pf-admin.password").read_text(encoding="ascii")
    users = {}
    acls = set()
    for lines in invocations:
        tool, args, config = lines[0], lines[1:], "\n".join(lines)
        assert "security.protocol=SASL_SSL" in config and f'username="pf-admin" password="{admin_password}"' in config
        assert args[args.index("--bootstrap-server") + 1] == kafka_internal_bootstrap({})
        if tool == "kafka-configs.sh":
            users[args[args.index("--entity-name") + 1]] = args[args.index("--add-config") + 1]
        else:
            assert "--add" in args and "--remove" not in args
            ops = ",".join(args[i + 1] for i, a in enumerate(args) if a == "--operation")
            kind = next(a.removeprefix("--") for a in args if a in ("--topic", "--group", "--transactional-id",
                                                                      "--cluster"))
            name = args[args.index(f"--{kind}") + 1] if kind != "cluster" else "kafka-cluster"
            principal = args[args.index("--allow-principal") + 1].removeprefix("User:")
            acls.add(f"{principal} {ops} {kind} {name} {args[args.index('--resource-pattern-type') + 1]}")
    assert users == {u: f"SCRAM-SHA-512=[password={(generated / f'kafka-{u}.password').read_text(encoding='ascii')}]"
                     for u in ("pf-connect", "pf-processor", "pf-clickhouse")}
    table = {line for line in (REPO_ROOT / "compose" / "kafka" / "acls.txt").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")}
    assert acls == table
    assert admin_password not in run.stdout + run.stderr, "kafka-init prints no password"
