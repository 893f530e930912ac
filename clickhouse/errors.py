"""Errors of the ClickHouse part, all under the project's one root."""

from fresh.errors import FreshError


class ClickHouseError(FreshError):
    """A statement failed on the ClickHouse backend, or the backend could not be opened."""


class MigrationError(FreshError):
    """A migration could not be applied (the message names the file and the statement)."""


class MigrationChangedError(MigrationError):
    """An applied migration's file was edited since (checksum mismatch)."""


class AuditFindingError(FreshError):
    """`audit` found a non-secure topic or plaintext PII; the findings were printed."""
