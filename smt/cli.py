"""`freshctl keys ...` and `freshctl secure ...`: parse, call smt/, print. Never prints key material."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fresh import progress
from fresh.completion import complete_entities
from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from fresh.settings import Settings
    from smt.keyring import KeyringSource

# smt's modules (cryptography, librdkafka) are imported inside each command: a TAB in
# `freshctl keys|secure ...` loads this module and must stay quick (docs/cli.md).

log = logging.getLogger(__name__)


def _source(settings: Settings) -> KeyringSource:
    from smt.keyring import KeyringSource

    return KeyringSource.from_settings(settings)


def _rows(infos: Any) -> list[dict[str, str]]:
    return [{"id": k.id, "kind": k.kind, "state": k.role, "created_at": k.created_at} for k in infos]


def _print_change(infos: Any, output: str, dry_run: bool, what: str) -> None:
    print_rows(_rows(infos), output)
    click.echo(f"{'dry run: would ' + what if dry_run else what.replace('write', 'wrote')}", err=True)


DRY_RUN_OPTION = click.option("--dry-run", is_flag=True, help="Show the resulting key list; write nothing.")


@click.group()
def keys() -> None:
    """Manage the PII keyring: data and index keys, wrapped by a key-encryption key (docs/pii.md).

    The keyring lives in FRESH_KEYRING_PATH (outside the repo, mode 0600; or FRESH_KEYRING_JSON,
    read-only), wrapped by a key-encryption key: FRESH_KEYRING_PASSPHRASE (scrypt) or FRESH_KEK_PATH
    (a 32-byte file, mode 0600). Without a KEK, writes are refused unless
    FRESH_KEYRING_ALLOW_UNWRAPPED=true (throwaway keyrings only).

    Data keys: one active (encrypts), others decrypt-only, disabled (kept, refuse to decrypt) or
    destroyed (secret erased, id kept). Index keys (blind indexes): one active, one dual-write while
    an index rotation's window is open, others retired, disabled or destroyed. Key material is never
    printed; every write takes --dry-run. A running processor picks changes up without a restart.

    \b
    Examples:
      FRESH_KEK_PATH=~/.config/probablyfresh/kek freshctl keys generate
      freshctl keys get -o json
      freshctl keys rotate                          # new active data key
      freshctl keys rotate --index                  # new index key, dual-write window opens
      freshctl keys rotate --index --close-window   # after the backfill
      freshctl keys disable k20260101a1b2c3 && freshctl keys destroy k20260101a1b2c3 --yes
      freshctl keys wrap                            # wrap an unwrapped keyring with the KEK
    """


@keys.command("generate")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_generate(settings: Settings, dry_run: bool, output: str) -> None:
    """Create a new keyring with one active data key and one active index key.

    Without a KEK (FRESH_KEK_PATH, FRESH_KEYRING_PASSPHRASE) it first creates a KEK file next to
    the keyring (<keyring dir>/kek, mode 0600), found there from then on; keep the two apart in
    production (docs/pii.md).

    \b
    Examples:
      freshctl keys generate
      FRESH_KEYRING_PATH=~/.config/probablyfresh/keyring.json FRESH_KEK_PATH=~/secrets/kek freshctl keys generate
    """
    from smt.keyring import new_keyring

    source, infos, kek_file = new_keyring(settings, dry_run=dry_run)
    if kek_file is not None:
        click.echo(f"{'dry run: would create' if dry_run else 'created'} KEK file {kek_file} (mode 0600)", err=True)
    _print_change(infos, output, dry_run, f"write {settings.keyring_path} ({_wrapping(source)})")


def _wrapping(source: KeyringSource) -> str:
    return f"wrapped by {source.kek.description}" if source.kek else "UNWRAPPED"


@keys.command("rotate")
@click.option("--index", "index", is_flag=True, help="Rotate the blind-index key instead: opens a dual-write window.")
@click.option("--close-window", is_flag=True,
              help="With --index: close the open dual-write window (after the backfill).")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_rotate(settings: Settings, index: bool, close_window: bool, dry_run: bool, output: str) -> None:
    """Add a new data key and make it active (the old one stays, decrypt-only); with --index, add a
    new index key: it becomes active and the previous one is written too (dual-write) until
    --close-window (docs/pii.md, "Rotating the index key").

    \b
    Examples:
      freshctl keys rotate --dry-run
      freshctl keys rotate --index
      freshctl keys rotate --index --close-window
    """
    if close_window and not index:
        raise click.UsageError("--close-window goes with --index")
    source = _source(settings)
    if close_window:
        infos = source.close_index_window(dry_run=dry_run)
    else:
        infos = source.rotate_index(dry_run=dry_run) if index else source.rotate(dry_run=dry_run)
    _print_change(infos, output, dry_run, f"write {settings.keyring_path}")


@keys.command("get")
@OUTPUT_OPTION
@click.pass_obj
def keys_list(settings: Settings, output: str) -> None:
    """List key ids, kinds, states and creation times (never the keys).

    \b
    Example:
      freshctl keys get -o json
    """
    source = _source(settings)
    ring = source.current()
    print_rows(_rows(ring.info), output)
    if output == "table":
        wrapping = f"wrapped by KEK {ring.kek_id}" if ring.kek_id else "UNWRAPPED (run `freshctl keys wrap`)"
        click.echo(f"{ring.origin}: {wrapping}", err=True)


# `keys list`: the former name of `keys get` (the CLI's verb for listings), kept for scripts.
keys.add_command(click.Command("list", callback=keys_list.callback, params=keys_list.params, hidden=True,
                               help="Former name of `keys get`."))


@keys.command("disable")
@click.argument("key_id")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_disable(settings: Settings, key_id: str, dry_run: bool, output: str) -> None:
    """Disable a decrypt-only data key or a retired index key: kept, but it refuses to decrypt (or to
    be used) until `keys enable`. Disable before you destroy, and watch for errors meanwhile.

    \b
    Example:
      freshctl keys disable k20260101a1b2c3 --dry-run
    """
    _print_change(_source(settings).disable(key_id, dry_run=dry_run), output, dry_run,
                  f"write {settings.keyring_path}: {key_id} disabled")


@keys.command("enable")
@click.argument("key_id")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_enable(settings: Settings, key_id: str, dry_run: bool, output: str) -> None:
    """Enable a disabled key again (data: decrypt-only; index: retired). A destroyed key cannot be.

    \b
    Example:
      freshctl keys enable k20260101a1b2c3
    """
    _print_change(_source(settings).enable(key_id, dry_run=dry_run), output, dry_run,
                  f"write {settings.keyring_path}: {key_id} enabled")


@keys.command("destroy")
@click.argument("key_id")
@click.option("--yes", is_flag=True, help="Confirm: the key's secret is erased; its ciphertexts are lost for good.")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_destroy(settings: Settings, key_id: str, yes: bool, dry_run: bool, output: str) -> None:
    """Destroy a disabled key: its secret is erased from the keyring, its id stays, and every value
    encrypted with it fails with "key destroyed". Irreversible (except from a keyring backup).

    \b
    Example:
      freshctl keys destroy k20260101a1b2c3 --yes
    """
    if not yes and not dry_run:
        raise click.UsageError(f"destroying {key_id} loses every value encrypted with it; add --yes to confirm")
    _print_change(_source(settings).destroy(key_id, dry_run=dry_run), output, dry_run,
                  f"write {settings.keyring_path}: {key_id} destroyed")


@keys.command("wrap")
@click.option("--from-kek-path", type=click.Path(path_type=Path), help="KEK rotation: the old KEK file.")
@click.option("--from-passphrase-env", metavar="NAME",
              help="KEK rotation: the environment variable holding the old passphrase (never on the command line).")
@DRY_RUN_OPTION
@OUTPUT_OPTION
@click.pass_obj
def keys_wrap(settings: Settings, from_kek_path: Path | None, from_passphrase_env: str | None, dry_run: bool,
              output: str) -> None:
    """Rewrite the keyring wrapped by the configured KEK: migrates an unwrapped
    probablyfresh-keyring/1 or /2 file, rotates the KEK (the file is read with the old one given by
    --from-kek-path or --from-passphrase-env), or re-wraps with a fresh salt and nonce.

    \b
    Examples:
      FRESH_KEK_PATH=~/.config/probablyfresh/kek freshctl keys wrap        # migrate an unwrapped keyring
      OLD_PASSPHRASE=... FRESH_KEK_PATH=~/.config/probablyfresh/kek2 \\
        freshctl keys wrap --from-passphrase-env OLD_PASSPHRASE              # new KEK
    """
    if from_kek_path and from_passphrase_env:
        raise click.UsageError("give one of --from-kek-path and --from-passphrase-env")
    from smt.keyring import FileKek, Kek, PassphraseKek

    from_kek: Kek | None = None
    if from_kek_path:
        from_kek = FileKek(from_kek_path)
    elif from_passphrase_env:
        if not os.environ.get(from_passphrase_env):
            raise click.UsageError(f"--from-passphrase-env: ${from_passphrase_env} is not set")
        from_kek = PassphraseKek(os.environ[from_passphrase_env], source=f"${from_passphrase_env}")
    source = _source(settings)
    _print_change(source.wrap(dry_run=dry_run, from_kek=from_kek), output, dry_run,
                  f"write {settings.keyring_path} ({_wrapping(source)})")


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
    from fresh.pipeline import load_pipeline_config

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
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Records per consume call and transaction. [default: pii_processor.batch_size of pipeline.yaml]")
@click.option("--idle-exit", type=float, default=None, help="Exit after this many seconds without records.")
@click.option("--counters-interval", type=float, default=10.0, show_default=True,
              help="Seconds between counter log lines (in, out, dlq, lag).")
@click.option("--transform-threads", type=click.IntRange(1, 64), default=None,
              help="Threads of the native transform per batch. [default: CPU count, at most 4]")
@click.option("--max-starts", type=click.IntRange(0), default=5, show_default=True,
              help="Exit (crash loop) when started this many times at the same committed offset without a commit; "
                   "0 disables the check.")
@click.option("--dry-run", is_flag=True,
              help="Check policy, keyring, the broker (reachable within 5 s) and the CDC topics; print the mapping; "
                   "process nothing. One line per problem, exit 1 if any.")
@OUTPUT_OPTION
@click.pass_obj
def secure_run(settings: Settings, instance_id: str | None, batch_size: int | None, idle_exit: float | None,
               counters_interval: float, transform_threads: int | None, max_starts: int, dry_run: bool,
               output: str) -> None:
    """Run the processor until SIGTERM/SIGINT (the open transaction is committed or aborted within 5 s).

    Run several instances with distinct --instance-id values to share the partitions; restart a
    crashed one with the same id so it fences its former self at once. Exits non-zero, with one
    line, when Kafka is unreachable at start, when it stops making progress (a Kafka call blocked
    past its bound, no commit for 120 s while records wait) and when it crash-loops
    (--max-starts): for a supervisor to restart it or to stop trying.

    \b
    Examples:
      freshctl --log-level INFO secure run --instance-id pii-0
      freshctl secure run --dry-run
    """
    from fresh.pipeline import load_pipeline_config
    from smt.processor import KafkaUnreachableError, ProcessorStuckError, preflight, topic_mapping
    from smt.service import build_processor, run_processor

    cfg = load_pipeline_config(settings.pipeline_config)
    check = preflight(cfg, settings.kafka("processor"), timeout_s=5.0)  # the broker answers, the CDC topics exist
    if check.broker and not dry_run:
        raise KafkaUnreachableError(check.broker)  # one line within seconds when the broker is down
    processor = build_processor(settings, cfg, instance_id=instance_id, batch_size=batch_size,
                                counters_interval_s=counters_interval, transform_threads=transform_threads,
                                max_starts=max_starts)  # refuses a topic without policy
    opts = processor.options
    if dry_run:
        rows = [{"cdc_topic": c, "secure_topic": s} for c, s in topic_mapping(cfg).items()]
        rows.append({"cdc_topic": "(dlq)", "secure_topic": cfg.kafka.dlq_topic})
        print_rows(rows, output)
        click.echo(f"dry run: group={processor.group_id} instance={opts.instance_id} "
                   f"active_key={processor.keyring.active.id} transform={processor.transform_kind} "
                   f"transform_threads={opts.transform_threads}", err=True)
        for problem in check.problems:
            click.echo(f"error: {problem}", err=True)
        if check.problems:
            click.get_current_context().exit(1)
        return
    if progress.enabled() and logging.getLogger().getEffectiveLevel() > logging.INFO:
        # On a terminal, the processor's start, partition and counter lines are its progress.
        logging.getLogger("smt.processor").setLevel(logging.INFO)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal=%s: finishing the open transaction", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        counters = run_processor(settings, cfg, processor, stop, idle_exit_s=idle_exit)
    except ProcessorStuckError as exc:
        # The processor thread is blocked inside librdkafka: say so and leave without waiting for it.
        click.echo(f"error: {exc}", err=True)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(1)
    click.echo(counters.line(), err=True)


@secure.command("health")
@click.option("--max-lag", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="Most CDC records the processor's group may have left uncommitted.")
@OUTPUT_OPTION
@click.pass_obj
def secure_health(settings: Settings, max_lag: int, output: str) -> None:
    """Check that the processor keeps up: its consumer group's lag on the CDC topics, per topic.
    Exit 1 when the lag exceeds --max-lag (the compose processor's healthcheck).

    \b
    Examples:
      freshctl secure health
      freshctl secure health --max-lag 0 -o json
    """
    from fresh.clients import group_lag
    from fresh.errors import FreshError
    from fresh.pipeline import load_pipeline_config

    cfg = load_pipeline_config(settings.pipeline_config)
    group = cfg.pii_processor.consumer_group
    lags = group_lag(settings.kafka("admin"), group, [e.cdc_topic for e in cfg.entities.values()])
    print_rows([{"topic": topic, "lag": lag or 0} for topic, lag in lags.items()], output)
    total = sum(lag or 0 for lag in lags.values())
    if total > max_lag:
        raise FreshError(f"processor group {group} is {total} records behind on the CDC topics (limit {max_lag}); "
                         "check that `freshctl secure run` runs and its log")


@secure.command("decrypt")
@click.argument("value", required=False)
@click.option("--entity", shell_complete=complete_entities,
              help="Entity whose policy applies (customers, purchases, ...).")
@click.option("--field", "field_path", help="Field path of VALUE, e.g. email or customer.email.")
@click.option("--record", "record_file", type=click.File("r"), help="File ('-' for stdin) of JSON records, one a line.")
@click.option("--record-id", default="", help="Business key of VALUE's record (customer_id, purchase_id, ...): "
              "a randomized envelope is bound to its record.")
@click.option("--dlq-source", help="VALUE is a DLQ payload whose source topic is this (header dlq.source.topic).")
@click.pass_obj
def secure_decrypt(settings: Settings, value: str | None, entity: str | None, field_path: str | None,
                   record_file: Any, record_id: str, dlq_source: str | None) -> None:
    """Decrypt one envelope, a DLQ payload, or whole _secure records. For authorized operators:
    the output is plaintext PII. Every run, failed ones too, appends an audit record (OS user,
    FRESH_OPERATOR, key ids, counts, outcome; never a value) to FRESH_DECRYPT_AUDIT_PATH, by default
    <keyring dir>/decrypt-audit.jsonl; nothing is printed before it is written.

    \b
    Examples:
      FRESH_OPERATOR=anna freshctl secure decrypt --entity customers --field email --record-id C000001 pf2.k2026...
      freshctl secure decrypt --entity purchases --record records.jsonl
      freshctl secure decrypt --dlq-source cdc.probablyfresh.customers pf2.k2026...g.XyZ...
    """
    from fresh.pipeline import load_pipeline_config
    from smt.decrypt_audit import DecryptAudit, DecryptRequest, audit_path, decrypt_audited

    if dlq_source:
        if not value:
            raise click.UsageError("give the DLQ payload (an envelope) as VALUE")
        request = DecryptRequest(dlq_source=dlq_source, value=value)
    else:
        if not entity:
            raise click.UsageError("--entity is required (or --dlq-source)")
        ent = load_pipeline_config(settings.pipeline_config).entity(entity)
        if record_file is not None:
            request = DecryptRequest(entity=ent, lines=record_file, lines_name=record_file.name)
        elif not value or not field_path:
            raise click.UsageError("give VALUE and --field, or --record FILE")
        else:
            request = DecryptRequest(entity=ent, field=field_path, value=value, record_id=record_id)
    path = audit_path(settings)
    audit = DecryptAudit(path, settings.operator)
    try:
        outputs = decrypt_audited(request, _source(settings).current, audit)
    finally:
        audit.close()
    log.info("operator decrypt audited path=%s mode=%s outputs=%d", path, request.mode, len(outputs))
    for out in outputs:
        sys.stdout.buffer.write(out + b"\n")
    sys.stdout.buffer.flush()
