"""How every CLI command reports: one JSON object on stdout with ``--json``, else rich text.

Errors are one line on stderr (``error: ...``) and a non-zero exit code, never a traceback.
The exit codes are the README's, decided here for every command: 0 done, 1 bad input or an
operation that could not be done (a full disk included), 3 a data-quality gate failed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

from tasks.io import disk_full, free_bytes
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
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_EXPECTED = (FileNotFoundError, FileExistsError, LookupError, ValueError, RuntimeError)


def disk_full_message(home: Path) -> str:
    free = free_bytes(home) // 2**20
    return (
        f"the disk holding {home} is full ({free} MiB free): nothing was written half-way, and "
        "the earlier snapshots, models, alias index and logs are intact; free some space and "
        "run the command again"
    )


def _expected(exc: BaseException) -> bool:
    from tasks.ingest.quality import DataQualityFailed

    return disk_full(exc) or isinstance(exc, (CLIError, DataQualityFailed, *_EXPECTED))


class _ExpectedErrorsInOneLine(logging.Filter):
    """Prefect logs a failed run's traceback; for an expected error (bad input, a failed gate,
    a full disk) the CLI's one line says it all, so the traceback is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and _expected(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_expected_tracebacks() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedErrorsInOneLine) for f in logger.filters):
            logger.addFilter(_ExpectedErrorsInOneLine())


@contextmanager
def errors_as_exit(as_json: bool = False, writes: bool = False) -> Iterator[None]:
    """Turn expected errors into one stderr line + exit code (and the JSON result, if any).

    ``writes``: the command writes under DRIFTLOOP_HOME, so it refuses to start on a (nearly)
    full disk. Any failure on a full disk, whatever a library made of it (Optuna's
    ``AssertionError``, a Parquet traceback), is reported as the full disk it is.
    """
    from tasks.ingest.quality import DataQualityFailed
    from tasks.io import require_free_space
    from tasks.settings import get_settings

    settings = get_settings()
    _quiet_expected_tracebacks()
    try:
        if writes:
            require_free_space(settings.root, settings.min_free_mb * 2**20)
        yield
    except CLIError as exc:
        if as_json and exc.result is not None:
            emit(exc.result, True)
        fail(str(exc), exc.code)
    except (typer.Exit, typer.Abort):
        raise  # click's own exits subclass RuntimeError: let them through untouched
    except Exception as exc:  # noqa: BLE001 - decided below; re-raised when unexpected
        if disk_full(exc):
            fail(disk_full_message(settings.root))
        if isinstance(exc, DataQualityFailed):
            if as_json and getattr(exc, "result", None) is not None:
                emit(exc.result, True)  # type: ignore[attr-defined]
            fail(str(exc), EXIT_GATE)
        if isinstance(exc, _EXPECTED):
            fail(str(exc) or type(exc).__name__)
        if free_bytes(settings.root) < settings.min_free_mb * 2**20:
            fail(disk_full_message(settings.root))  # a library's own error hid the full disk
        raise
