"""Logging, configured once by the CLI. Context goes in messages as key=value pairs.

Client libraries never write to the user's terminal on their own: librdkafka's log lines are
routed to the `librdkafka` logger at DEBUG (`KafkaConnection.config`), and the warnings of
clickhouse-connect, urllib3 and pymongo are shown only at DEBUG; the error the command raises
says what went wrong, in one line.
"""

from __future__ import annotations

import logging
import sys

QUIET_LIBRARIES = ("clickhouse_connect", "urllib3", "pymongo", "librdkafka", "chdb")


class _QuietLibraries(logging.Filter):
    """Drop the libraries' records below ERROR. A handler filter, not logger levels: some
    libraries set their loggers' levels when imported (clickhouse-connect sets urllib3's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        top = record.name.split(".", 1)[0]
        return top not in QUIET_LIBRARIES or record.levelno >= logging.ERROR


def configure_logging(level: str = "INFO") -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    if numeric > logging.DEBUG:
        handler.addFilter(_QuietLibraries())
    logging.basicConfig(level=numeric, handlers=[handler])
