"""The house rules that a reviewer would otherwise check by hand (issue 11): no source module
over 400 lines, no flow body over 35 lines, no sys.path edits in tests."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("tasks", "flows", "bentos", "driftloop")
MAX_MODULE_LINES = 400
MAX_FLOW_BODY_LINES = 35


def _modules(*rooms: str) -> list[Path]:
    return sorted(p for room in rooms for p in (REPO / room).rglob("*.py"))


def test_no_source_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in _modules(*ROOMS)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _flow_bodies(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "flow")
            or getattr(d, "id", None) == "flow"
            for d in node.decorator_list
        ):
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring is not wiring
            out[node.name] = body[-1].end_lineno - body[0].lineno + 1
    return out


def test_flow_bodies_are_wiring_sized() -> None:
    bodies = {
        f"{p.name}:{name}": n for p in _modules("flows") for name, n in _flow_bodies(p).items()
    }
    assert bodies, "no @flow found: the check itself is broken"
    long = {k: n for k, n in bodies.items() if n > MAX_FLOW_BODY_LINES}
    assert not long, f"flow bodies over {MAX_FLOW_BODY_LINES} lines: {long}"


def test_tests_do_not_edit_sys_path() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "tests").rglob("*.py"))
        if p.name != Path(__file__).name and "sys.path.insert(0, str(" in p.read_text()
    ]
    assert not offenders, f"tests that edit sys.path (use tests.support): {offenders}"
