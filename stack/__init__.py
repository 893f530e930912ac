"""The native local stack: Kafka (KRaft), Kafka Connect with the Debezium MongoDB plugin and a
MongoDB wire-protocol server, all from Maven Central jars, plus the embedded ClickHouse engine
(chdb) from PyPI. It exists because build machines have no Docker engine; `freshctl stack up`
starts it, `freshctl stack down` stops exactly what it started."""

SUPERVISED = ("ingest", "processor", "changes")  # supervised services (stack/supervisor.py), in start order


def processor_services(instances: int) -> list[str]:
    """The supervised PII processors `up` runs for pipeline.yaml's scale.processor_instances: one
    consumer group; `processor` is the first, `processor-1`... the others (docs/scaling.md)."""
    return ["processor", *(f"processor-{i}" for i in range(1, instances))]
