"""The native local stack: Kafka (KRaft), Kafka Connect with the Debezium MongoDB plugin and a
MongoDB wire-protocol server, all from Maven Central jars, plus the embedded ClickHouse engine
(chdb) from PyPI. It exists because build machines have no Docker engine; `freshctl stack up`
starts it, `freshctl stack down` stops exactly what it started."""

SUPERVISED = ("ingest", "processor", "changes")  # supervised services (stack/supervisor.py), in start order

MAX_CONNECT_WORKERS = 4  # Kafka Connect workers the local stack can run in one group (FRESH_CONNECT_WORKERS)


def connect_service_names(workers: int) -> list[str]:
    """The service names of `workers` Connect workers: `connect`, `connect-2`, ... (worker i's REST
    port is FRESH_CONNECT_PORT + i - 1)."""
    return ["connect", *(f"connect-{i}" for i in range(2, workers + 1))]


def processor_services(instances: int) -> list[str]:
    """The supervised PII processors `up` runs for pipeline.yaml's scale.processor_instances: one
    consumer group; `processor` is the first, `processor-2`... the others, as the Connect workers
    (docs/scaling.md)."""
    return ["processor", *(f"processor-{i}" for i in range(2, instances + 1))]
