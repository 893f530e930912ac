"""ClickHouse schema as ordered migrations: RAW from the `_secure` topics only, MART with
dedup and analytical marts, audit and verify. One SQL dialect for two backends: a ClickHouse
server (clickhouse-connect) and the embedded engine (chdb) of the local stack."""
