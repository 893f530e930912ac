"""PII processor: reads the CDC topics and writes `<topic>_secure` with PII encrypted,
blind-indexed or dropped per the policy in the pipeline config, exactly once (docs/pii.md)."""
