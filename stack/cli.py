"""`freshctl stack up|down|status|logs`: the native local stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from fresh.settings import Settings

# stack.services (requests, the Kafka and MongoDB drivers) is imported inside each command: a TAB
# in `freshctl stack ...` loads this module and must stay quick.
from stack import MAX_CONNECT_WORKERS, SUPERVISED, connect_service_names

CONNECT_WORKERS_OPTION = click.option(
    "--connect-workers", type=click.IntRange(1, MAX_CONNECT_WORKERS), default=None,
    help="Kafka Connect workers in the one Connect group (FRESH_CONNECT_WORKERS; worker i listens on "
         "FRESH_CONNECT_PORT + i - 1). [default: 1]")


@click.group()
def stack() -> None:
    """Run the native local stack: Kafka, Kafka Connect + Debezium, a MongoDB server, chdb.

    \b
    Examples:
      freshctl stack up            # fetch jars on first use, start everything, wait until ready
      freshctl stack up --connect-workers 2   # Kafka Connect as two workers of one group
      freshctl stack status        # what runs, where, and whether it is ready
      freshctl stack logs connect  # last lines of the Connect worker's log
      freshctl stack down          # stop exactly the processes the stack started
    """


@stack.command()
@click.option("--service", "services", multiple=True, type=click.Choice(["kafka", "connect", "mongo"]),
              help="Start only these services (repeatable). Default: all.")
@CONNECT_WORKERS_OPTION
@click.option("--dry-run", is_flag=True, help="Show what would be started, start nothing.")
@OUTPUT_OPTION
@click.pass_obj
def up(settings: Settings, services: tuple[str, ...], connect_workers: int | None, dry_run: bool,
       output: str) -> None:
    """Start the stack and wait until every service is ready (idempotent: running services are
    reused, not twinned). A port taken by another process fails at once, naming its setting.

    \b
    Examples:
      freshctl stack up
      freshctl stack up --service kafka --service mongo
      freshctl stack up --connect-workers 2   # a second worker (connect-2) joins the running one
      freshctl stack up --dry-run
    """
    from stack.services import LocalStack

    if connect_workers is not None:
        settings = settings.model_copy(update={"connect_workers": connect_workers})
    local = LocalStack(settings)
    if dry_run:
        wanted = local.wanted(list(services) or None)
        running = [n for n in wanted if local.pid_of(n)]
        to_start = [n for n in wanted if n not in running]
        if output == "json":
            print_rows([{"started": to_start, "reused": running, "seconds": 0.0, "dry_run": True}], output)
        else:
            click.echo(f"would start: {', '.join(to_start) or '-'}; reuse: {', '.join(running) or '-'}")
        return
    result = local.up(list(services) or None)
    if output == "json":
        print_rows([{"started": result.started, "reused": result.reused, "seconds": round(result.seconds, 1)}],
                   output)
        return
    parts = [f"started: {', '.join(result.started) or '-'}", f"reused: {', '.join(result.reused) or '-'}"]
    click.echo(f"stack ready in {result.seconds:.1f}s ({'; '.join(parts)})")


@stack.command()
@click.option("--wipe", is_flag=True,
              help="Also delete the stack's data (Kafka logs, configs, the chdb folder); keeps jars and the keyring.")
@click.option("--dry-run", is_flag=True, help="Show what would be stopped, stop nothing.")
@OUTPUT_OPTION
@click.pass_obj
def down(settings: Settings, wipe: bool, dry_run: bool, output: str) -> None:
    """Stop the processes this stack started (by PID), and nothing else.

    \b
    Examples:
      freshctl stack down
      freshctl stack down --wipe   # start from empty topics next time
    """
    from stack.services import LocalStack

    local = LocalStack(settings)
    if dry_run:
        running = [n for n in [*local.supervised, *local.services] if local.pid_of(n)]
        if output == "json":
            print_rows([{"stopped": running, "wiped": wipe, "dry_run": True}], output)
            return
        click.echo(f"would stop: {', '.join(running) or 'nothing'}" + (" and wipe data" if wipe else ""))
        return
    stopped = local.down(wipe=wipe)
    if output == "json":
        print_rows([{"stopped": stopped, "wiped": wipe, "dry_run": False}], output)
        return
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data wiped" if wipe else ""))


@stack.command()
@OUTPUT_OPTION
@click.pass_obj
def status(settings: Settings, output: str) -> None:
    """Show each service's state, PID, address and log file.

    \b
    Examples:
      freshctl stack status
      freshctl stack status -o json
    """
    from stack.services import LocalStack

    print_rows(LocalStack(settings).status(), output)


@stack.command()
@click.argument("service", type=click.Choice(["kafka", *connect_service_names(MAX_CONNECT_WORKERS), "mongo",
                                               *SUPERVISED]))
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.pass_obj
def logs(settings: Settings, service: str, lines: int) -> None:
    """Print the last lines of a service's log.

    \b
    Examples:
      freshctl stack logs kafka
      freshctl stack logs connect -n 200
      freshctl stack logs connect-2    # the second Connect worker (stack up --connect-workers 2)
      freshctl stack logs processor    # the PII processor `freshctl up` supervises
    """
    from stack.services import LocalStack

    click.echo(LocalStack(settings).tail(service, lines))
