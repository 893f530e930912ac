"""The PII policy in the pipeline config: validated at load, one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import REPO_ROOT
from smt.transform import PolicyMissingError, Transformer


def write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "pipeline.yaml").read_text())
    mutate(raw)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repo_policy_covers_every_entity_and_the_contract(pipeline: PipelineConfig) -> None:
    assert all(e.pii is not None for e in pipeline.entities.values())
    customers, purchases = pipeline.entity("customers").pii, pipeline.entity("purchases").pii
    assert customers and purchases
    for policy, prefix in ((customers, ""), (purchases, "customer.")):
        for field, norm in (("email", "email"), ("phone", "phone")):
            rule = policy[prefix + field]
            assert (rule.action, rule.blind_index, rule.normalize) == ("encrypt", True, norm)
    assert customers["first_name"].action == "encrypt" and customers["birth_date"].action == "encrypt"
    assert pipeline.entity("stores").pii == {"manager": pipeline.entity("stores").pii["manager"]}
    assert pipeline.entity("products").pii == {}


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["entities"]["customers"]["pii"].update(email="scramble"), "entities.customers.pii.email.action"),
    (lambda r: r["entities"]["customers"]["pii"].update({"customer_id": "encrypt"}), "business keys"),
    (lambda r: r["entities"]["customers"]["pii"].update({"__op": "drop"}), "business keys"),
    (lambda r: r["entities"]["customers"]["pii"].update({"bad path!": "drop"}), "not a field path"),
    (lambda r: r["entities"]["customers"]["pii"].update({"tags[]": "drop"}), "inside the array"),
    (lambda r: r["entities"]["purchases"]["pii"].update({"customer": "drop"}), "nested inside pii.customer"),
    (lambda r: r["entities"]["customers"]["pii"].update(email={"action": "drop", "blind_index": True}),
     "blind_index: true needs"),
    (lambda r: r["entities"]["customers"]["pii"].update(email={"action": "encrypt", "normalize": "upper"}),
     "entities.customers.pii.email.normalize"),
    (lambda r: r.update(pii_processor={"default_region": "usa"}), "pii_processor.default_region"),
])
def test_bad_policy_fails_at_load_with_one_line(tmp_path: Path, mutate, message: str) -> None:
    path = write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_entity_without_policy_is_refused_not_passed_through(tmp_path: Path) -> None:
    cfg = load_pipeline_config(write(tmp_path, lambda r: r["entities"]["products"].pop("pii")))
    with pytest.raises(PolicyMissingError, match=r"'products'.*has no pii policy"):
        Transformer(cfg.entity("products"), "US", 1000)
