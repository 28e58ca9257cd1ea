"""How every CLI command reports: one JSON object on stdout with ``--json``, else rich text.

Errors are one line on stderr (``error: ...``) and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from tasks.io import dumps as io_dumps

EXIT_BAD_INPUT = 1  # the input was bad, or an operation could not be done
EXIT_GATE = 3  # the run completed but a quality gate failed

Renderer = Callable[[dict[str, Any]], None]


class CLIError(Exception):
    """An error to print as one line and exit with ``code`` (and ``result`` with --json)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT, result: dict | None = None):
        super().__init__(message)
        self.code = code
        self.result = result


# What keeps the temporary Prefect server's own noise (telemetry heartbeats, SQLite "database is
# locked" retries, uvicorn start-up lines) out of the user's terminal: Prefect's console log
# handler, which the CLI process and the server subprocess both configure from the environment,
# shows only critical records. A failing command still says what failed, in its one error line.
VERBOSE_ENV = "DRIFTLOOP_VERBOSE"
QUIET_ENV = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL": "CRITICAL",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def quiet_libraries(verbose: bool) -> None:
    """Unless ``verbose``, keep library logs off the terminal (set before Prefect loads; a
    value the user set in the environment wins). ``verbose`` also lets unexpected errors
    show their traceback."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def dumps(result: dict[str, Any]) -> str:
    return io_dumps(result, allow_nan=True)


def emit(result: dict[str, Any], as_json: bool, render: Renderer | None = None) -> None:
    """Print ``result``: exactly one JSON object with ``as_json``, else a human rendering."""
    if as_json:
        sys.stdout.write(dumps(result) + "\n")
        sys.stdout.flush()
    elif render is not None:
        render(result)
    else:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(result))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``message`` as one line (a multi-line message is joined) and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def errors_as_exit(as_json: bool = False) -> Iterator[None]:
    """Turn expected errors into one stderr line + exit code (and the JSON result, if any)."""
    try:
        yield
    except CLIError as exc:
        if as_json and exc.result is not None:
            emit(exc.result, True)
        fail(str(exc), exc.code)
    except (typer.Exit, typer.Abort):
        raise  # click's own exits subclass RuntimeError: let them through untouched
    except (FileNotFoundError, FileExistsError, LookupError, ValueError, RuntimeError) as exc:
        fail(str(exc) or type(exc).__name__)
    except Exception as exc:  # unexpected: still one line, the traceback on request
        if os.environ.get(VERBOSE_ENV):
            raise
        fail(f"{type(exc).__name__}: {exc} (driftloop --verbose shows the traceback)")
