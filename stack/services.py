"""Start, watch and stop the native local stack's processes.

Each service is a JVM started in its own session with a marker system property
(`-Dprobablyfresh.stack=<home>#<service>`), its PID written to `<home>/run/<service>.pid` and its
output to `<home>/logs/<service>.log`. Kafka Connect may run as several workers of one distributed
group (`connect`, `connect-2`, ...: FRESH_CONNECT_WORKERS), each a service of its own. A PID counts
as ours only while its command line still carries the marker, so `down` never signals a process
this stack did not start, and a second `up` reuses what already runs instead of starting twins.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from clickhouse.endpoint import owner_file
from fresh.clients import kafka_admin, mongo_client
from fresh.errors import PortInUseError, StackError, WaitTimeoutError
from fresh.kafka_connection import KafkaRole
from fresh.settings import Settings
from fresh.wait import wait_until
from stack import MAX_CONNECT_WORKERS, connect_service_names, jars
from stack.kafka_security import CONNECT_GROUP, CONNECT_TOPIC_PREFIX, ensure_passwords, ensure_tls, grant_pipeline_acls
from stack.supervisor import read_state, supervised_services
from stack.versions import load_versions

log = logging.getLogger(__name__)

JAVA_DIR = Path(__file__).parent / "java"
DEBEZIUM_CONNECTOR_CLASS = "io.debezium.connector.mongodb.MongoDbConnector"
MIN_JAVA = 17
# How long the Connect group keeps a departed worker's connectors and tasks unassigned, waiting for it
# to come back, before it gives them to the other workers (Kafka's default: 5 minutes).
CONNECT_REBALANCE_DELAY_MS = 10_000


class ServiceDied(StackError):
    """A service process exited while we waited for it to become ready."""


@dataclass
class Service:
    name: str
    ports: dict[str, int]  # setting name -> port, for the "port in use" message
    address: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    ready_timeout_s: float
    prepare: Callable[[], None] = field(default=lambda: None)
    env: Callable[[], dict[str, str]] | None = None  # None: this process's environment


@dataclass
class UpReport:
    started: list[str]
    reused: list[str]
    seconds: float


class LocalStack:
    """The local stack rooted at `settings.stack_home`, listening on the settings' ports."""

    def __init__(self, settings: Settings, jars_root: Path | None = None):
        self.settings = settings
        self.home = settings.stack_home
        self.jars_root = jars_root or Path(os.environ.get("FRESH_STACK_JARS", self.home / "jars"))
        self.run_dir = self.home / "run"
        self.log_dir = self.home / "logs"
        self.conf_dir = self.home / "conf"
        self.data_dir = self.home / "data"
        self.plugin_dir = self.home / "plugins"
        # The Connect workers: as many as the settings ask for, or as run now (so `down`, `status`
        # and `logs` see a second worker that `stack up --connect-workers 2` started).
        self.connect_workers = max(settings.connect_workers, self._running_connect_workers())
        if self.connect_workers > MAX_CONNECT_WORKERS:
            raise StackError(f"FRESH_CONNECT_WORKERS={settings.connect_workers}: the local stack runs at most "
                             f"{MAX_CONNECT_WORKERS} Connect workers")
        self.services = self._define_services()
        # The pipeline's own services (ClickHouse ingest, PII processor, change mode), supervised:
        # started by `freshctl up`, stopped by `down` like the JVMs (stack/supervisor.py).
        self.supervised = supervised_services(self)

    # ---- service definitions -------------------------------------------------------------

    def _define_services(self) -> dict[str, Service]:
        s = self.settings
        services = {
            "mongo": Service(
                name="mongo",
                ports={"FRESH_MONGO_PORT": s.mongo_port},
                address=f"mongodb://127.0.0.1:{s.mongo_port}",
                command=self._mongo_command,
                ready=self._mongo_ready,
                ready_timeout_s=60,
            ),
            "kafka": Service(
                name="kafka",
                ports={"FRESH_KAFKA_PORT": s.kafka_port, "FRESH_KAFKA_CONTROLLER_PORT": s.kafka_controller_port,
                       **({"FRESH_KAFKA_PLAINTEXT_PORT": s.kafka_plaintext_port} if s.kafka_plaintext_port else {})},
                address=f"127.0.0.1:{s.kafka_port}",
                command=self._kafka_command,
                ready=self._kafka_ready,
                ready_timeout_s=90,
                prepare=self._format_kafka_storage,
            ),
        }
        for i, name in enumerate(connect_service_names(self.connect_workers)):
            port = s.connect_port + i
            services[name] = Service(
                name=name,
                ports={"FRESH_CONNECT_PORT": port},  # worker i + 1 listens on FRESH_CONNECT_PORT + i
                address=f"http://127.0.0.1:{port}",
                command=partial(self._connect_command, name, port),
                ready=partial(self._connect_ready, port),
                ready_timeout_s=120,
                prepare=self._install_debezium_plugin,
            )
        return services

    def _running_connect_workers(self) -> int:
        """The highest worker number with a PID file (a stale one is dropped by `pid_of` later)."""
        numbers = [int(p.stem.rsplit("-", 1)[1]) for p in self.run_dir.glob("connect-*.pid")
                   if p.stem.rsplit("-", 1)[1].isdigit()]
        return max(numbers, default=1)

    def wanted(self, names: list[str] | None) -> list[str]:
        """The services `names` selects (None: all); "connect" means every Connect worker."""
        return [n for n in self.services
                if names is None or n in names or ("connect" in names and n in self.connect_names)]

    @property
    def connect_names(self) -> list[str]:
        return connect_service_names(self.connect_workers)

    def _marker(self, name: str) -> str:
        return f"-Dprobablyfresh.stack={self.home}#{name}"

    def marker(self, name: str) -> str:
        """The argument that marks `name`'s process as this stack's (checked before any signal)."""
        return self._marker(name)

    def _java(self, name: str, heap: str, classpath: str, main: str, *args: str) -> list[str]:
        return [
            "java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true", self._marker(name),
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
            "-cp", classpath, main, *args,
        ]

    def _mongo_command(self) -> list[str]:
        return self._java(
            "mongo", "4g", str(self.jars_root / "mongo" / "*"), str(JAVA_DIR / "FreshMongoServer.java"),
            "127.0.0.1", str(self.settings.mongo_port),
        )

    def _kafka_command(self) -> list[str]:
        return self._java(
            "kafka", "1g", str(self.jars_root / "kafka" / "*"), "kafka.Kafka", str(self._kafka_properties())
        )

    def _connect_command(self, name: str, port: int) -> list[str]:
        return self._java(
            name, "1g", str(self.jars_root / "kafka" / "*"),
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self._connect_properties(name, port)),
        )

    # ---- config files --------------------------------------------------------------------

    def _write_conf(self, name: str, lines: list[str]) -> Path:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        path = self.conf_dir / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def _write_log4j(self) -> None:
        self._write_conf("log4j2.properties", [
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = out",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = out",
            "logger.kafka.name = kafka", "logger.kafka.level = WARN",
            "logger.kafkaorg.name = org.apache.kafka", "logger.kafkaorg.level = WARN",
            "logger.connect.name = org.apache.kafka.connect.runtime", "logger.connect.level = INFO",
            "logger.reflections.name = org.reflections", "logger.reflections.level = ERROR",
        ])

    @property
    def kafka_dir(self) -> Path:
        """The Kafka security material: `tls/` (CA, broker key and certificate) and `users/` (passwords)."""
        return self.home / "kafka"


    def _kafka_properties(self) -> Path:
        s = self.settings
        tls = ensure_tls(self.kafka_dir / "tls")
        admin, ch = s.kafka(KafkaRole.ADMIN), s.kafka(KafkaRole.CLICKHOUSE)
        # Benchmarks only: a plaintext listener (its clients are ANONYMOUS, a super user) to compare against.
        plain = f",PLAINTEXT://127.0.0.1:{s.kafka_plaintext_port}" if s.kafka_plaintext_port else ""
        return self._write_conf("kafka.properties", [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{s.kafka_controller_port}",
            # Clients and the broker itself: SASL_SSL only. The controller listener stays PLAINTEXT on
            # 127.0.0.1: KRaft cannot use SCRAM there (docs/security.md says why and what prod does).
            f"listeners=SASL_SSL://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}{plain}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{s.kafka_port}{plain}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            + (",PLAINTEXT:PLAINTEXT" if plain else ""),
            "inter.broker.listener.name=SASL_SSL",
            # PLAIN (inside TLS) only for the ClickHouse engine: chdb's librdkafka has no SCRAM.
            "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="{admin.username}" password="{admin.password_ref()}";',
            "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required user_{ch.username}="{ch.password_ref()}";',
            "config.providers=dir",
            "config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.broker}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS is the broker itself on the loopback controller listener (registration, heartbeats).
            f"super.users=User:{admin.username};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={self.data_dir / 'kafka'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
        ])

    def _connect_properties(self, name: str = "connect", port: int | None = None) -> Path:
        """Worker `name`'s config: every worker of the stack is in one group (same group.id and
        internal topics); only the REST port differs."""
        s = self.settings
        port = s.connect_port if port is None else port
        conn = s.kafka(KafkaRole.CONNECT)
        ref = conn.password_ref()
        # The worker, and its producers, consumers and admin clients (the connectors' too), as pf-connect.
        security = [line for prefix in ("", "producer.", "consumer.", "admin.")
                    for line in conn.java_properties(prefix, password_ref=ref)]
        return self._write_conf(f"{name}.properties", [
            *security,
            f"group.id={CONNECT_GROUP}",
            "key.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable=false",
            "value.converter.schemas.enable=false",
            f"config.storage.topic={CONNECT_TOPIC_PREFIX}configs",
            f"offset.storage.topic={CONNECT_TOPIC_PREFIX}offsets",
            f"status.storage.topic={CONNECT_TOPIC_PREFIX}status",
            "config.storage.replication.factor=1",
            "offset.storage.replication.factor=1",
            "status.storage.replication.factor=1",
            "offset.flush.interval.ms=1000",
            f"scheduled.rebalance.max.delay.ms={CONNECT_REBALANCE_DELAY_MS}",
            f"listeners=http://127.0.0.1:{port}",
            "rest.advertised.host.name=127.0.0.1",
            f"rest.advertised.port={port}",
            f"plugin.path={self.plugin_dir}",
            # Credentials in connector configs and in this file are provider references, resolved here.
            "config.providers=file,env,dir",
            "config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider",
            "config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider",
            "config.providers.dir.class=org.apache.kafka.common.config.provider.DirectoryConfigProvider",
            "topic.creation.enable=true",
        ])

    def _format_kafka_storage(self) -> None:
        data = self.data_dir / "kafka"
        users_stamp = data / ".scram-users"
        if (data / "meta.properties").exists():
            if not users_stamp.is_file():
                raise StackError(f"the Kafka data in {data} was formatted without SASL users (before the broker "
                                 "required SASL_SSL): run `freshctl down --wipe`, then `freshctl stack up`")
            return
        data.mkdir(parents=True, exist_ok=True)
        cluster_id = "-"
        while cluster_id.startswith("-"):  # Kafka refuses ids that look like CLI flags
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        passwords = ensure_passwords(self.settings)
        scram = [arg for user, password in passwords.items()
                 for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")]
        cmd = [
            "java", "-cp", str(self.jars_root / "kafka" / "*"), "kafka.tools.StorageTool", "format",
            "--standalone", "-t", cluster_id, "-c", str(self._kafka_properties()), *scram,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = f"{result.stdout}{result.stderr}".strip()
            for password in passwords.values():
                output = output.replace(password, "***")
            raise StackError(f"formatting Kafka storage in {data} failed: {output}")
        users_stamp.write_text("\n".join(passwords) + "\n", encoding="utf-8")

    def _install_debezium_plugin(self) -> None:
        """Lay the Debezium jars out as one plugin folder on the worker's plugin.path."""
        source = self.jars_root / "debezium"
        target = self.plugin_dir / "debezium-connector-mongodb"
        stamp = (source / ".stamp").read_text(encoding="utf-8")
        if (target / ".stamp").is_file() and (target / ".stamp").read_text(encoding="utf-8") == stamp:
            return
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            old.unlink()
        for jar in source.iterdir():
            (target / jar.name).symlink_to(jar.resolve())

    # ---- readiness -----------------------------------------------------------------------

    def _mongo_ready(self) -> bool:
        client = mongo_client(self.settings, timeout_s=1.0, appname="freshctl-stack")
        try:
            return bool(client.admin.command("ping").get("ok"))
        finally:
            client.close()

    def _kafka_ready(self) -> bool:
        if not _port_open(self.settings.kafka_port):
            return False
        admin = kafka_admin(self.settings.kafka("admin"), {"log_level": 0})
        return bool(admin.list_topics(timeout=3).brokers)

    def _connect_ready(self, port: int) -> bool:
        base = f"http://127.0.0.1:{port}"
        requests.get(f"{base}/", timeout=2).raise_for_status()
        plugins = requests.get(f"{base}/connector-plugins", timeout=5).json()
        return any(p.get("class") == DEBEZIUM_CONNECTOR_CLASS for p in plugins)

    # ---- process bookkeeping -------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid_of(self, name: str) -> int | None:
        """The PID of our running `name` process, or None (stale PID files are removed)."""
        pid_file = self._pid_file(name)
        try:
            pid = int(pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        with contextlib.suppress(ChildProcessError):  # reap our own exited child: no zombie left
            os.waitpid(pid, os.WNOHANG)
        cmdline = _cmdline(pid)
        if self._marker(name) in cmdline:
            return pid
        if not cmdline and _alive(pid):
            # Between fork and exec the command line reads empty: too early to call the PID stale.
            return pid
        pid_file.unlink(missing_ok=True)
        return None

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _check_ports(self, service: Service) -> None:
        for setting, port in service.ports.items():
            if not _port_free(port):
                raise PortInUseError(
                    f"port {port} on 127.0.0.1 (needed by {service.name}) is in use by a process this stack "
                    f"did not start: stop it, or choose another port with {setting}=<port>"
                )

    def _start(self, service: Service) -> int:
        self._check_ports(service)
        service.prepare()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file(service.name).open("ab") as out:
            out.write(f"\n==== freshctl stack: starting {service.name} at {time.ctime()} ====\n".encode())
            out.flush()
            proc = subprocess.Popen(
                service.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.home, start_new_session=True, env=service.env() if service.env else None,
            )
        self._pid_file(service.name).write_text(str(proc.pid), encoding="utf-8")
        marker = self._marker(service.name)
        wait_until(lambda: proc.poll() is not None or marker in _cmdline(proc.pid), timeout_s=10,
                   what=f"{service.name} (pid {proc.pid}) to start", interval_s=0.005)
        log.info("started service=%s pid=%s", service.name, proc.pid)
        return proc.pid

    def _await_ready(self, service: Service) -> None:
        def ready() -> bool:
            if self.pid_of(service.name) is None:
                raise ServiceDied(
                    f"{service.name} exited during startup; last lines of {self.log_file(service.name)}:\n"
                    + self.tail(service.name, 15)
                )
            return service.ready()

        wait_until(ready, timeout_s=service.ready_timeout_s, what=f"{service.name} at {service.address}",
                   fatal=(ServiceDied,))

    # ---- public verbs --------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the tools and fetch the jars (reused when already present)."""
        check_java()
        jars.fetch_all(self.jars_root, load_versions(), self.log_dir)
        self._write_log4j()

    def up(self, names: list[str] | None = None) -> UpReport:
        t0 = time.monotonic()
        wanted = self.wanted(names)
        self.home.mkdir(parents=True, exist_ok=True)
        for name in wanted:  # a taken port fails at once, before minutes of fetching jars
            if not self.pid_of(name):
                self._check_ports(self.services[name])
        self.prepare()
        started: list[str] = []
        reused: list[str] = []
        # mongo and kafka start side by side; connect needs kafka ready first.
        for name in ("mongo", "kafka"):
            if name in wanted:
                (reused if self.pid_of(name) else started).append(name)
                if name in started:
                    self._start(self.services[name])
        if "kafka" in wanted:
            self._await_ready(self.services["kafka"])
            if "kafka" in started:  # each user's ACLs for the pipeline config (docs/security.md)
                from fresh.pipeline import load_pipeline_config

                grant_pipeline_acls(self.settings, load_pipeline_config(self.settings.pipeline_config))
        connects = [n for n in self.connect_names if n in wanted]
        pending = [n for n in connects if not self.pid_of(n)]
        reused += [n for n in connects if n not in pending]
        if pending and "kafka" not in wanted:
            self._await_ready(self.services["kafka"])
        for name in pending:  # the workers start side by side and join one group
            self._start(self.services[name])
            started.append(name)
        for name in ("mongo", *connects):
            if name in wanted:
                self._await_ready(self.services[name])
        return UpReport(started=started, reused=reused, seconds=time.monotonic() - t0)

    def start_supervised(self, name: str, args: list[str] | None = None) -> bool:
        """Start supervised service `name` (with worker arguments `args`) unless it runs; wait until
        ready. True when started, False when reused."""
        if self.pid_of(name):
            self._await_ready(self.supervised[name])
            return False
        if args is not None:
            self.supervised = supervised_services(self, {name: args})
        self.home.mkdir(parents=True, exist_ok=True)
        self._start(self.supervised[name])
        self._await_ready(self.supervised[name])
        return True

    def stop_service(self, name: str, timeout_s: float = 30.0) -> bool:
        """SIGTERM `name`'s process group (SIGKILL after `timeout_s`); True if it was running."""
        pid = self.pid_of(name)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        try:
            self._await_exit(name, timeout_s)
        except WaitTimeoutError:
            log.warning("service=%s pid=%s did not stop on SIGTERM; sending SIGKILL", name, pid)
            _signal_group(pid, signal.SIGKILL)
            self._await_exit(name, 10)
        self._pid_file(name).unlink(missing_ok=True)
        return True

    def down(self, wipe: bool = False, timeout_s: float = 30.0) -> list[str]:
        # The ingest worker closes the embedded engine, which first stops its Kafka consumers: give it time.
        stopped = [name for name in reversed(self.supervised) if self.stop_service(name, max(timeout_s, 90.0))]
        stopped += [name for name in reversed(list(self.services)) if self.stop_service(name, timeout_s)]
        if wipe:
            import shutil

            # The pipeline's state goes together: a fresh broker's offsets start at 0, so old RAW rows must go too.
            chdb = self.settings.chdb_path
            for folder in (self.data_dir, self.run_dir, self.plugin_dir, self.conf_dir, self.home / "secrets", chdb):
                shutil.rmtree(folder, ignore_errors=True)
            owner_file(chdb).unlink(missing_ok=True)
        return stopped

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout_s: float = 30.0) -> int:
        """Send `sig` to one running service (its process group) and wait until it has exited; for
        fault injection. `up([name])` starts it again on the same data. Returns the PID it had."""
        if name not in self.services:
            raise StackError(f"unknown service {name!r}; known services: {', '.join(self.services)}")
        pid = self.pid_of(name)
        if pid is None:
            raise StackError(f"{name} is not running (freshctl stack up)")
        _signal_group(pid, sig)
        self._await_exit(name, timeout_s)
        self._pid_file(name).unlink(missing_ok=True)
        log.info("killed service=%s pid=%s signal=%s", name, pid, sig.name)
        return pid

    def _await_exit(self, name: str, timeout_s: float) -> None:
        wait_until(lambda: self.pid_of(name) is None, timeout_s=timeout_s, what=f"{name} to stop")

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for name, service in self.services.items():
            pid = self.pid_of(name)
            ready = False
            if pid:
                try:
                    ready = bool(service.ready())
                except Exception:  # a not-ready service is a status, not an error
                    ready = False
            rows.append({
                "service": name,
                "state": ("ready" if ready else "starting") if pid else "stopped",
                "pid": pid,
                "address": service.address,
                "log": str(self.log_file(name)),
            })
        for name, service in self.supervised.items():
            pid = self.pid_of(name)
            state = read_state(self, name)
            if pid:
                shown = str(state.get("state", "starting"))
            else:
                shown = str(state.get("state")) if state.get("state") in ("failed", "finished") else "stopped"
            rows.append({"service": name, "state": shown, "pid": state.get("pid") if pid else None,
                         "address": service.address, "log": str(self.log_file(name))})
        rows.append({"service": "clickhouse", "state": "embedded", "pid": None,
                     "address": f"chdb {_chdb_version()} at {self.settings.chdb_path}", "log": ""})
        return rows

    def tail(self, name: str, lines: int = 50) -> str:
        if name not in self.services and name not in self.supervised \
                and name not in connect_service_names(MAX_CONNECT_WORKERS):
            known = ", ".join([*self.services, *self.supervised])
            raise StackError(f"unknown service {name!r}; known services: {known}")
        path = self.log_file(name)
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def our_processes(self) -> list[int]:
        """Every live process carrying this stack's marker (used to prove `down` left nothing)."""
        prefix = f"-Dprobablyfresh.stack={self.home}#"
        return [pid for pid in _all_pids() if prefix in _cmdline(pid)]


# ---- module helpers ------------------------------------------------------------------------


def check_java() -> None:
    java = jars.require_tool("java", f"install a Java {MIN_JAVA}+ runtime (for example `apt-get install "
                             f"openjdk-{MIN_JAVA}-jre-headless`) and retry")
    jars.require_tool("mvn", "install Maven (for example `apt-get install maven`) and retry")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1)) if match.group(1) != "1" else int(match.group(2) or 0)
        if major < MIN_JAVA:
            raise StackError(f"Java {major} found at {java}; the stack needs Java {MIN_JAVA}+: install it and "
                             f"put it first on PATH")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (its state is the field after the parenthesised name)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _chdb_version() -> str:
    try:
        import chdb

        return str(chdb.__version__)
    except ImportError:
        return "(not installed)"
