"""The native local stack: Kafka (KRaft), Kafka Connect with the Debezium MongoDB plugin and a
MongoDB wire-protocol server, all from Maven Central jars, plus the embedded ClickHouse engine
(chdb) from PyPI. It exists because build machines have no Docker engine; `freshctl stack up`
starts it, `freshctl stack down` stops exactly what it started."""

SUPERVISED = ("ingest", "processor", "changes")  # supervised services (stack/supervisor.py), in start order
