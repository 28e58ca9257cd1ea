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
