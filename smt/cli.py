"""`freshctl keys ...` and `freshctl secure ...`: parse, call smt/, print. Never prints key material."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from typing import Any

import click

from fresh.errors import ConfigError
from fresh.output import OUTPUT_OPTION, print_rows
from fresh.pipeline import load_pipeline_config
from fresh.settings import Settings
from smt.envelope import decrypt
from smt.keyring import KeyringSource
from smt.processor import DLQ_COLLECTION, topic_mapping
from smt.service import build_processor, run_processor
from smt.transform import compile_rules, decrypt_record

log = logging.getLogger(__name__)


def _rows(infos: Any) -> list[dict[str, str]]:
    return [{"id": k.id, "role": k.role, "created_at": k.created_at} for k in infos]


@click.group()
def keys() -> None:
    """Manage the PII keyring (FRESH_KEYRING_PATH, outside the repo; or FRESH_KEYRING_JSON, read-only).

    One key is active (encrypts); older keys only decrypt; a separate key makes blind indexes.
    Key material is never printed.

    \b
    Examples:
      freshctl keys generate
      freshctl keys rotate            # a running processor picks the new key up, no restart
      freshctl keys list -o json
    """


@keys.command("generate")
@click.option("--dry-run", is_flag=True, help="Show what would be created; write nothing.")
@OUTPUT_OPTION
@click.pass_obj
def keys_generate(settings: Settings, dry_run: bool, output: str) -> None:
    """Create a new keyring with one active key and a blind-index key.

    \b
    Example:
      FRESH_KEYRING_PATH=~/.config/probablyfresh/keyring.json freshctl keys generate
    """
    infos = KeyringSource.from_settings(settings).generate(dry_run=dry_run)
    print_rows(_rows(infos), output)
    click.echo(f"{'would create' if dry_run else 'created'} {settings.keyring_path}", err=True)


@keys.command("rotate")
@click.option("--dry-run", is_flag=True, help="Show the new key list; write nothing.")
@OUTPUT_OPTION
@click.pass_obj
def keys_rotate(settings: Settings, dry_run: bool, output: str) -> None:
    """Add a new key and make it active. Old keys stay and keep decrypting.

    \b
    Example:
      freshctl keys rotate --dry-run
    """
    infos = KeyringSource.from_settings(settings).rotate(dry_run=dry_run)
    print_rows(_rows(infos), output)


@keys.command("list")
@OUTPUT_OPTION
@click.pass_obj
def keys_list(settings: Settings, output: str) -> None:
    """List key ids, roles and creation times (never the keys).

    \b
    Example:
      freshctl keys list
    """
    print_rows(_rows(KeyringSource.from_settings(settings).current().info), output)


@click.group()
def secure() -> None:
    """The PII processor: CDC topics -> <topic>_secure, exactly once (docs/pii.md).

    \b
    Examples:
      freshctl secure policy
      freshctl secure run --instance-id pii-0
      freshctl secure decrypt --entity customers --field email pf1.k...
    """


@secure.command("policy")
@OUTPUT_OPTION
@click.pass_obj
def secure_policy(settings: Settings, output: str) -> None:
    """Show the PII policy of every entity, as the processor will apply it.

    \b
    Example:
      freshctl secure policy -o json
    """
    cfg = load_pipeline_config(settings.pipeline_config)
    rows: list[dict[str, Any]] = []
    for e in cfg.entities.values():
        if e.pii is None:
            rows.append({"entity": e.name, "field": "(no policy: refused)", "action": "", "blind_index": "",
                         "normalize": ""})
        elif not e.pii:
            rows.append({"entity": e.name, "field": "(none: passes through)", "action": "", "blind_index": "",
                         "normalize": ""})
        for path, f in (e.pii or {}).items():
            rows.append({"entity": e.name, "field": path, "action": f.action,
                         "blind_index": f.blind_index or f.action == "blind_index", "normalize": f.normalize})
    print_rows(rows, output)


@secure.command("run")
@click.option("--instance-id", default=None, help="Transactional id and static group member id. [default: hostname]")
@click.option("--batch-size", default=5000, show_default=True, help="Records per consume call and transaction.")
@click.option("--idle-exit", type=float, default=None, help="Exit after this many seconds without records.")
@click.option("--counters-interval", type=float, default=10.0, show_default=True,
              help="Seconds between counter log lines (in, out, dlq, lag).")
@click.option("--transform-threads", type=click.IntRange(1, 64), default=None,
              help="Threads of the native transform per batch. [default: CPU count, at most 4]")
@click.option("--dry-run", is_flag=True, help="Check policy, keyring and topics; print the mapping; process nothing.")
@OUTPUT_OPTION
@click.pass_obj
def secure_run(settings: Settings, instance_id: str | None, batch_size: int, idle_exit: float | None,
               counters_interval: float, transform_threads: int | None, dry_run: bool, output: str) -> None:
    """Run the processor until SIGTERM/SIGINT (the open transaction is committed first).

    Run several instances with distinct --instance-id values to share the partitions; restart a
    crashed one with the same id so it fences its former self at once.

    \b
    Examples:
      freshctl --log-level INFO secure run --instance-id pii-0
      freshctl secure run --dry-run
    """
    cfg = load_pipeline_config(settings.pipeline_config)
    processor = build_processor(settings, cfg, instance_id=instance_id, batch_size=batch_size,
                                counters_interval_s=counters_interval, transform_threads=transform_threads)
    opts = processor.options
    if dry_run:
        rows = [{"cdc_topic": c, "secure_topic": s} for c, s in topic_mapping(cfg).items()]
        rows.append({"cdc_topic": "(dlq)", "secure_topic": cfg.kafka.dlq_topic})
        print_rows(rows, output)
        click.echo(f"dry run: group={processor.group_id} instance={opts.instance_id} "
                   f"active_key={processor.keyring.active.id} transform={processor.transform_kind} "
                   f"transform_threads={opts.transform_threads}", err=True)
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal=%s: finishing the open transaction", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    counters = run_processor(settings, cfg, processor, stop, idle_exit_s=idle_exit)
    click.echo(counters.line(), err=True)


@secure.command("decrypt")
@click.argument("value", required=False)
@click.option("--entity", help="Entity whose policy applies (customers, purchases, ...).")
@click.option("--field", "field_path", help="Field path of VALUE, e.g. email or customer.email.")
@click.option("--record", "record_file", type=click.File("r"), help="File ('-' for stdin) of JSON records, one a line.")
@click.option("--dlq-source", help="VALUE is a DLQ payload whose source topic is this (header dlq.source.topic).")
@click.pass_obj
def secure_decrypt(settings: Settings, value: str | None, entity: str | None, field_path: str | None,
                   record_file: Any, dlq_source: str | None) -> None:
    """Decrypt one envelope, a DLQ payload, or whole _secure records. For authorized operators:
    the output is plaintext PII.

    \b
    Examples:
      freshctl secure decrypt --entity customers --field email pf1.k2026...g.AbC...
      freshctl secure decrypt --entity purchases --record records.jsonl
      freshctl secure decrypt --dlq-source cdc.probablyfresh.customers pf1.k2026...g.XyZ...
    """
    keyring = KeyringSource.from_settings(settings).current()
    log.warning("operator decrypt entity=%s field=%s dlq_source=%s", entity, field_path, dlq_source)
    if dlq_source:
        if not value:
            raise click.UsageError("give the DLQ payload (an envelope) as VALUE")
        sys.stdout.buffer.write(decrypt(keyring.keys, value.strip(), DLQ_COLLECTION, dlq_source) + b"\n")
        return
    cfg = load_pipeline_config(settings.pipeline_config)
    if not entity:
        raise click.UsageError("--entity is required (or --dlq-source)")
    ent = cfg.entity(entity)
    if record_file is not None:
        compile_rules(ent)
        for n, line in enumerate(record_file, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{record_file.name}: line {n} is not JSON") from None
                click.echo(json.dumps(decrypt_record(record, ent, keyring), ensure_ascii=False))
        return
    if not value or not field_path:
        raise click.UsageError("give VALUE and --field, or --record FILE")
    click.echo(decrypt(keyring.keys, value.strip(), ent.collection, field_path).decode())
