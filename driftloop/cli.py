"""The ``driftloop`` command line. Each stage's commands live in ``driftloop/commands/``."""

from __future__ import annotations

import importlib
import pkgutil

import typer


def build_app() -> typer.Typer:
    """The app with every ``driftloop/commands/<module>.py`` registered via ``register(app)``."""
    from driftloop import commands

    app = typer.Typer(
        name="driftloop",
        help="Keep a tabular model healthy in production: ingest, train, serve, monitor, retrain.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Show Prefect's and its temporary server's own logs."
        ),
    ) -> None:
        """driftloop: ingest, train, serve, monitor and retrain a tabular model by itself."""
        import os

        from driftloop.output import quiet_libraries
        from tasks.settings import get_settings

        quiet_libraries(verbose)

        # before any library reads its env: Prefect, BentoML and W&B keep state under home
        get_settings().apply_env()
        # a throwaway server (no PREFECT_API_URL) takes longer than Prefect's 20 s default to
        # start on a busy 2-core machine
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"driftloop.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app


def main() -> None:  # pragma: no cover - console entry point
    build_app()()
