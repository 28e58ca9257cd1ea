"""The CLI shell: every command and group answers --help; --json prints one object."""

from __future__ import annotations

import json

import typer.main
from typer.testing import CliRunner

from driftloop.cli import build_app


def _command_paths(app):
    stack = [((), typer.main.get_command(app))]
    while stack:
        path, cmd = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(((*path, name), sub))


def test_every_command_has_help() -> None:
    app = build_app()
    paths = list(_command_paths(app))
    assert ("info",) in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_info_json_is_one_object(home) -> None:
    result = CliRunner().invoke(build_app(), ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["home"] == str(home.resolve())
    assert "telco" in data["datasets"]


def test_stack_status_and_down_read_the_recorded_state(home) -> None:
    """A state file in the layout a running stack writes (``stack/state.json`` under home):
    status reports its processes, down stops them (here: long gone) and removes the file."""
    app, runner = build_app(), CliRunner()
    empty = json.loads(runner.invoke(app, ["stack", "status", "--json"]).stdout)
    assert empty == {"api_url": None, "api_urls": [], "api_healthy": False,
                     "home": str(home.resolve()), "processes": {}}  # fmt: skip
    state = home / "stack" / "state.json"
    state.parent.mkdir(parents=True)
    record = {"name": "prefect-server", "pid": 999_999_999, "pgid": 999_999_999,
              "create_time": 0.0, "argv": ["prefect"], "log": str(home / "x.log")}  # fmt: skip
    state.write_text(json.dumps({"api_url": "http://127.0.0.1:9/api", "config": {},
                                 "processes": [record]}))  # fmt: skip
    status = json.loads(runner.invoke(app, ["stack", "status", "--json"]).stdout)
    assert status["api_url"] == "http://127.0.0.1:9/api" and not status["api_healthy"]
    assert status["api_urls"] == []  # a state file written before several API processes
    assert status["processes"] == {
        "prefect-server": {"pid": 999_999_999, "alive": False, "log": str(home / "x.log")}
    }
    down = runner.invoke(app, ["stack", "down", "--json"])
    assert down.exit_code == 0, down.output
    assert json.loads(down.stdout) == {"stopped": {"prefect-server": "not-running"}}
    assert not state.exists()


def test_errors_are_one_line_and_library_noise_is_off_unless_verbose(monkeypatch) -> None:
    import os

    import pytest

    from driftloop import output

    for key in (*output.QUIET_ENV, output.VERBOSE_ENV):
        monkeypatch.setenv(key, "")  # recorded, so the test leaves the environment as it was
        monkeypatch.delenv(key)
    output.quiet_libraries(verbose=False)
    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "CRITICAL"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"

    def boom() -> None:
        with output.errors_as_exit():
            raise TypeError("first line\n  second line")

    with pytest.raises(typer.Exit):
        boom()
    monkeypatch.setenv(output.VERBOSE_ENV, "1")  # --verbose: the traceback comes through
    with pytest.raises(TypeError):
        boom()


def test_an_unexpected_error_prints_one_line(capsys) -> None:
    import pytest

    from driftloop import output

    with pytest.raises(typer.Exit), output.errors_as_exit():
        raise KeyError("x") from TypeError("y")  # a LookupError: the expected path
    with pytest.raises(typer.Exit), output.errors_as_exit():
        raise ArithmeticError("a\nb")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: 'x'", "error: ArithmeticError: a b (driftloop --verbose shows the "
                   "traceback)"]  # fmt: skip


def test_stack_up_refuses_a_bad_serving_url_before_starting_anything(home) -> None:
    """``stack up --serving-url`` uses the monitor's URL rule: one error line, exit 1, no
    server started (no state file written)."""
    failed = CliRunner().invoke(build_app(), ["stack", "up", "--serving-url", "ftp://h:3000"])
    assert failed.exit_code == 1, failed.output
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --serving-url"), lines
    assert "http(s) URL" in lines[0] and "Traceback" not in failed.output
    assert not (home / "stack" / "state.json").exists()
