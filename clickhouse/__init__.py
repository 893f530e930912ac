"""ClickHouse schema as ordered migrations: RAW from the `_secure` topics only, MART with
dedup and analytical marts, audit and verify. (Not built yet.)"""
