"""Smoke tests: each service of the native local stack does its basic job for real."""

from __future__ import annotations

import json

import pymongo
import requests
from chdb import session as chdb_session
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from clickhouse.backend import trust_kafka_ca
from fresh.kafka_connection import KafkaConnection
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.services import DEBEZIUM_CONNECTOR_CLASS


def test_broker_round_trips_1000_records(bootstrap: KafkaConnection, unique: str) -> None:
    topic = f"smoke-{unique}"
    producer = Producer(bootstrap.config({"enable.idempotence": True}))
    for i in range(1000):
        producer.produce(topic, key=str(i).encode(), value=json.dumps({"n": i}).encode())
    assert producer.flush(30) == 0

    consumer = Consumer(bootstrap.config({"group.id": f"smoke-{unique}", "auto.offset.reset": "earliest",
    }))
    consumer.subscribe([topic])
    seen: set[int] = set()

    def consumed_all() -> bool:
        for msg in consumer.consume(num_messages=500, timeout=1.0):
            assert msg.error() is None, msg.error()
            seen.add(json.loads(msg.value())["n"])
        return len(seen) == 1000

    try:
        wait_until(consumed_all, timeout_s=60, what=f"1000 records back from {topic}")
    finally:
        consumer.close()
    assert seen == set(range(1000))


def test_topic_with_three_partitions_is_described(bootstrap: KafkaConnection, unique: str) -> None:
    admin = AdminClient(bootstrap.config())
    topic = f"smoke-parts-{unique}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)

    def described() -> int:
        return len(admin.list_topics(topic, timeout=5).topics[topic].partitions)

    assert wait_until(described, timeout_s=30, what=f"metadata of {topic}") == 3
    from confluent_kafka import TopicCollection

    description = admin.describe_topics(TopicCollection([topic]))[topic].result(30)
    assert description.name == topic
    assert [p.id for p in description.partitions] == [0, 1, 2]
    admin.delete_topics([topic])[topic].result(30)


def test_connect_lists_the_debezium_mongodb_plugin(settings: Settings) -> None:
    root = requests.get(f"{settings.connect_url}/", timeout=10).json()
    assert root["version"].startswith("4.")
    plugins = requests.get(f"{settings.connect_url}/connector-plugins", timeout=10).json()
    assert DEBEZIUM_CONNECTOR_CLASS in {p["class"] for p in plugins}


def test_chdb_kafka_engine_consumes_1000_json_records(
    bootstrap: KafkaConnection, settings: Settings, unique: str, chdb_path: str
) -> None:
    """Over SASL_SSL as pf-clickhouse (PLAIN: chdb's librdkafka has no SCRAM), with an ACL for this topic."""
    topic, group = f"smoke-ch-{unique}", f"probablyfresh-clickhouse-smoke-{unique}"
    engine = settings.kafka("clickhouse")
    acl = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{engine.username}", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)
    admin = AdminClient(bootstrap.config())  # kept in a variable while its futures run
    for fut in admin.create_acls([acl]).values():
        fut.result(30)
    producer = Producer(bootstrap.config())
    for i in range(1000):
        producer.produce(topic, json.dumps({"id": i, "name": f"row-{i}"}).encode())
    assert producer.flush(30) == 0

    db = f"smoke_{unique}"
    trust_kafka_ca(engine)  # the engine's librdkafka trusts the stack's CA
    connection = ", ".join(f"{k} = '{v}'" for k, v in engine.clickhouse_engine_settings().items())
    sess = chdb_session.Session(chdb_path)
    try:
        sess.query(f"CREATE DATABASE {db}")
        sess.query(f"""
            CREATE TABLE {db}.queue (id UInt64, name String) ENGINE = Kafka
            SETTINGS {connection}, kafka_topic_list = '{topic}',
                     kafka_group_name = '{group}', kafka_format = 'JSONEachRow',
                     kafka_flush_interval_ms = 500""")
        sess.query(f"CREATE TABLE {db}.rows (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        sess.query(f"CREATE MATERIALIZED VIEW {db}.queue_to_rows TO {db}.rows AS SELECT id, name FROM {db}.queue")

        def count() -> int:
            return int(sess.query(f"SELECT count() FROM {db}.rows", "CSV").bytes().strip() or 0)

        wait_until(lambda: count() >= 1000, timeout_s=90, what=f"1000 rows in {db}.rows")
        assert count() == 1000
        assert sess.query(f"SELECT uniqExact(id), max(id) FROM {db}.rows", "CSV").bytes().strip() == b"1000,999"
    finally:
        # Drop in dependency order: DROP DATABASE ... SYNC with a live Kafka engine table hangs in chdb 26.1.
        for statement in (f"DROP VIEW IF EXISTS {db}.queue_to_rows", f"DROP TABLE IF EXISTS {db}.queue",
                          f"DROP DATABASE IF EXISTS {db}"):
            sess.query(statement)
        sess.close()


def test_mongo_server_writes_and_reads_back(settings: Settings, unique: str) -> None:
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(settings.mongo_uri.get_secret_value())
    db = client[f"smoke_{unique}"]
    try:
        db.items.insert_many([{"_id": f"k{i}", "n": i} for i in range(100)])
        db.items.update_one({"_id": "k7"}, {"$set": {"n": 700}})
        assert db.items.count_documents({}) == 100
        assert db.items.find_one({"_id": "k7"}) == {"_id": "k7", "n": 700}
        assert sorted(d["n"] for d in db.items.find({"n": {"$lt": 10}})) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    finally:
        client.drop_database(db.name)
        client.close()
