"""Errors of the Grafana part, all under the project's one root."""

from fresh.errors import FreshError


class GrafanaError(FreshError):
    """A dashboard could not be rendered, loaded or pictured."""


class ProvisioningDriftError(GrafanaError):
    """The committed provisioning files differ from what the code renders."""

    exit_code = 3


class MacroError(GrafanaError):
    """A panel's SQL uses a macro or variable the expander does not know, or uses it wrongly."""
