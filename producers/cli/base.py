"""What every command shares: the root app, command groups, the `--json` and `--sender` options,
and one way to print a result or an error (for a person, or as one JSON document)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from worker.delivery.errors import DispatchError
from worker.ops import logs
from worker.settings import get_settings

if TYPE_CHECKING:
    from worker.delivery.send import SenderServices
    from worker.services import Services

app = typer.Typer(
    help="Send WhatsApp messages through Interakt, and operate the workers that do.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SenderOption = Annotated[
    str | None, typer.Option("--sender", help="A sender of DISPATCH_SENDERS (else `default`).")
]


def command_group(name: str, help: str) -> typer.Typer:
    """A command group (`wa-dispatch NAME ...`) that prints its help when given no command."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


@app.callback()
def _setup() -> None:
    """Logs go to stderr as JSON lines; stdout is for results."""
    settings = get_settings()
    logs.configure(settings.log_level if "log_level" in settings.model_fields_set else "WARNING")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def table_of(data: Any, title: str) -> Table:
    """A dict as field/value rows, a list of dicts as one row each."""
    table = Table(title=title, title_justify="left")
    if isinstance(data, dict):
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
        return table
    rows = [row if isinstance(row, dict) else {"value": row} for row in data]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def emit(data: Any, as_json: bool, title: str, table: Table | None = None) -> None:
    """One JSON document with --json; otherwise `table` (or `data` laid out as one) for a person."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif isinstance(data, list) and not data:
        console.print(f"{title}: none")
    else:
        console.print(table or table_of(data, title))


def fail(error: dict[str, Any], as_json: bool, code: int) -> NoReturn:
    """An error: JSON on stdout with --json, a line on stderr otherwise; exit `code`."""
    if as_json:
        typer.echo(json.dumps(error, indent=2, default=str))
    else:
        typer.echo(f"error: {error.get('error')}", err=True)
    raise typer.Exit(code)


def services() -> Services:
    """The worker's services, built on first use: `wa-dispatch --help` and commands that need no
    sender (a campaign file's check, a new API key) never read a token or load Celery."""
    from worker.services import services as built

    return built()


def chosen_sender(sender: str | None, as_json: bool) -> SenderServices:
    """A sender's services, or a clear error naming the known senders."""
    try:
        return services().send.sender(sender)
    except DispatchError as exc:
        fail({"error": str(exc), **exc.info}, as_json, 2)
