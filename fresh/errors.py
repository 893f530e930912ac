"""The one exception root. The CLI catches `FreshError` once and prints one line.

Messages say what happened, the limit that was hit, and how to fix it.
"""


class FreshError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(FreshError):
    """A config file or setting is missing or invalid."""


class StackError(FreshError):
    """The native local stack could not be installed, started or stopped."""


class PortInUseError(StackError):
    """A port the stack needs is taken by a process this stack did not start."""


class ToolMissingError(StackError):
    """A required executable (java, mvn) is not on PATH."""


class DownloadError(StackError):
    """Maven could not fetch the jars."""


class WaitTimeoutError(FreshError):
    """A polled condition did not become true before its deadline."""


class DriftError(FreshError):
    """What runs differs from what the code says (connectors diff, clickhouse plan): exit 3."""

    exit_code = 3
