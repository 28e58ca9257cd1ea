"""``driftloop migrate --to URL``: move a home's embedded state to PostgreSQL."""

from __future__ import annotations

import typer

from driftloop.output import CLIError, emit, errors_as_exit


def migrate(
    to: str = typer.Option(..., "--to", help="PostgreSQL URL, e.g. postgresql://user@host/db."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
) -> None:
    """Copy the Parquet prediction and feedback logs and the alias index (with its history)
    into an empty PostgreSQL database, checked row for row before it commits. The files stay;
    then set DRIFTLOOP_DATABASE_URL to the same URL on every host."""
    with errors_as_exit(as_json):  # TransferError and an unreachable server: one line
        from tasks.postgres.transfer import transfer_home
        from tasks.settings import get_settings

        if not to.startswith(("postgresql://", "postgresql+", "postgres://")):
            raise CLIError(f"--to must be a postgresql:// URL, not {to!r}")
        moved = transfer_home(get_settings(), to)
        result = {
            "to": to.rpartition("@")[2],  # host and database; no credentials in the output
            "predictions": moved.predictions,
            "feedback": moved.feedback,
            "models": moved.models,
            "alias_moves": moved.history,
        }
        emit(result, as_json)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
