"""Connect's own validation (`PUT /connector-plugins/{class}/config/validate`), errors per field."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from connectors.connect_api import ConnectApi
from connectors.secrets import mask_text
from fresh.errors import FreshError


class ValidationFailedError(FreshError):
    """Connect rejected at least one field of a rendered config."""


@dataclass(frozen=True)
class FieldError:
    connector: str
    field: str
    error: str

    def row(self) -> dict[str, str]:
        return asdict(self)


def validate_config(api: ConnectApi, name: str, config: dict[str, str]) -> list[FieldError]:
    result = api.validate(config["connector.class"], {**config, "name": name})
    errors = []
    for entry in result.get("configs", []):
        value = entry.get("value", {})
        for message in value.get("errors") or []:
            errors.append(FieldError(name, str(value.get("name")), mask_text(str(message))))
    if result.get("error_count", 0) and not errors:
        errors.append(FieldError(name, "(config)", f"{result['error_count']} error(s) without a field"))
    return errors


def raise_on_errors(errors: list[FieldError]) -> None:
    if errors:
        first = errors[0]
        raise ValidationFailedError(
            f"validate: {len(errors)} field error(s); first: {first.connector} {first.field}: {first.error}"
        )
