"""Debezium MongoDB source connectors as code: Jinja2 templates, values per environment,
lint, validate, diff and apply against Kafka Connect (docs/connectors.md)."""
