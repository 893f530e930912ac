"""`freshctl stack up|down|status|logs`: the native local stack."""

from __future__ import annotations

import click

from fresh.output import OUTPUT_OPTION, print_rows
from fresh.settings import Settings
from stack.services import LocalStack
from stack.supervisor import SUPERVISED


@click.group()
def stack() -> None:
    """Run the native local stack: Kafka, Kafka Connect + Debezium, a MongoDB server, chdb.

    \b
    Examples:
      freshctl stack up            # fetch jars on first use, start everything, wait until ready
      freshctl stack status        # what runs, where, and whether it is ready
      freshctl stack logs connect  # last lines of the Connect worker's log
      freshctl stack down          # stop exactly the processes the stack started
    """


@stack.command()
@click.option("--service", "services", multiple=True, type=click.Choice(["kafka", "connect", "mongo"]),
              help="Start only these services (repeatable). Default: all.")
@click.pass_obj
def up(settings: Settings, services: tuple[str, ...]) -> None:
    """Start the stack (idempotent: running services are reused, not twinned).

    \b
    Examples:
      freshctl stack up
      freshctl stack up --service kafka --service mongo
    """
    report = LocalStack(settings).up(list(services) or None)
    parts = [f"started: {', '.join(report.started) or '-'}", f"reused: {', '.join(report.reused) or '-'}"]
    click.echo(f"stack ready in {report.seconds:.1f}s ({'; '.join(parts)})")


@stack.command()
@click.option("--wipe", is_flag=True,
              help="Also delete the stack's data (Kafka logs, configs, the chdb folder); keeps jars and the keyring.")
@click.option("--dry-run", is_flag=True, help="Show what would be stopped, stop nothing.")
@click.pass_obj
def down(settings: Settings, wipe: bool, dry_run: bool) -> None:
    """Stop the processes this stack started (by PID), and nothing else.

    \b
    Examples:
      freshctl stack down
      freshctl stack down --wipe   # start from empty topics next time
    """
    local = LocalStack(settings)
    if dry_run:
        running = [n for n in [*local.supervised, *local.services] if local.pid_of(n)]
        click.echo(f"would stop: {', '.join(running) or 'nothing'}" + (" and wipe data" if wipe else ""))
        return
    stopped = local.down(wipe=wipe)
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
    print_rows(LocalStack(settings).status(), output)


@stack.command()
@click.argument("service", type=click.Choice(["kafka", "connect", "mongo", *SUPERVISED]))
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.pass_obj
def logs(settings: Settings, service: str, lines: int) -> None:
    """Print the last lines of a service's log.

    \b
    Examples:
      freshctl stack logs kafka
      freshctl stack logs connect -n 200
      freshctl stack logs processor    # the PII processor `freshctl up` supervises
    """
    click.echo(LocalStack(settings).tail(service, lines))
