"""Partitions and consumers of the pipeline config, side by side (`freshctl config scale`)."""

from __future__ import annotations

from fresh.pipeline import PipelineConfig


def scale_rows(cfg: PipelineConfig) -> list[dict[str, object]]:
    """One row per setting: its value, what it sizes, and (for consumers) the partitions they share."""
    s, ch = cfg.scale, cfg.clickhouse
    topics = f"{len(cfg.cdc_topics)} CDC topics and their {cfg.kafka.secure_suffix} copies"
    return [
        {"setting": "scale.partitions", "value": s.partitions, "consumers": "",
         "sizes": f"{topics} (Debezium topic.creation.cdc.partitions, `up`, the processor)"},
        {"setting": "scale.dlq_partitions", "value": s.dlq_partitions, "consumers": "",
         "sizes": f"the DLQ topic {cfg.kafka.dlq_topic}"},
        {"setting": "scale.processor_instances", "value": s.processor_instances,
         "consumers": f"{s.processor_instances} of {s.partitions} partitions",
         "sizes": f"PII processors `up` runs in group {cfg.pii_processor.consumer_group}"},
        {"setting": "scale.clickhouse_consumers", "value": s.clickhouse_consumers,
         "consumers": f"{s.clickhouse_consumers * s.clickhouse_nodes} of {s.partitions} partitions",
         "sizes": f"kafka_num_consumers per Kafka table and node (groups {ch.consumer_group}-<entity>)"},
        {"setting": "scale.clickhouse_nodes", "value": s.clickhouse_nodes, "consumers": "",
         "sizes": "ClickHouse nodes with the Kafka tables (shards x replicas)"},
        {"setting": "clickhouse.cluster", "value": ch.cluster or "(none)", "consumers": "",
         "sizes": "ON CLUSTER DDL, Replicated and Distributed tables" if ch.cluster else "one ClickHouse node"},
    ]
