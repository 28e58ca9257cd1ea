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
