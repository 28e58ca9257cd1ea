"""Two trees of this repository measured side by side: the same benchmark functions, each
tree's own code, one run, round-robin (before, after, after, before, ...) so both see the
same load. For "speed unchanged" claims across a refactor.

    python -m bench.compare --before REV [--rounds 2] [--parts ingest profiling ...]
    python -m bench.compare --before REV --rounds 6 --parts serving-fresh  # a server per round

``REV`` (and ``--after``, default HEAD) are checked out into throwaway git worktrees, so
merging into this checkout during the run changes nothing. Each part
runs in a fresh process of this venv with the tree first on ``PYTHONPATH`` and its own
throwaway ``DRIFTLOOP_HOME``. Rows of the same name are paired; the table gives each tree's
median over the rounds and after / before. Written to ``bench/results/compare.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import REPO, RESULTS_DIR

# part -> (benchmark module, code setting `rows` with that module as `m`); the same code runs
# in both trees, so it calls only what both trees' modules have
_FRESH_SERVER = """
s = m.prepare(False)
p = m.start_bentoml(s)
try:
    load = {"/predict b1000 c2": ("/predict", 1000, 2, 6.0, "rows_per_s", "rows/s"),
            "/predict_batch b1000 c2": ("/predict_batch", 1000, 2, 6.0, "rows_per_s", "rows/s"),
            "/predict b1 c32": ("/predict", 1, 32, 4.0, "rps", "req/s")}
    rows = [{"name": f"fresh server {k}", "unit": unit,
             "value": m.run_load(p.port, path, s.records, b, c, sec, warmup=1.0)[key]}
            for k, (path, b, c, sec, key, unit) in load.items()]
finally:
    p.stop()
"""
PARTS: dict[str, tuple[str, str]] = {
    "ingest": ("bench_ingest", "rows = m.run(False)"),
    "profiling": ("bench_profiling", "rows = [*m.bench_profiling_speed(1_000_000, 3, 'float'), "
                                     "*m.bench_profiling_speed(1_000_000, 3, 'mixed')]"),
    "training-overhead": ("bench_training", "rows = m.bench_overhead(False)"),
    "serving": ("bench_serving", "rows = m.run(False, soak_seconds=5.0)"),
    # one server process per tree per round: LightGBM's speed differs between processes of the
    # same model by up to ~15% (measured), which two rounds of `serving` cannot average out
    "serving-fresh": ("bench_serving", _FRESH_SERVER),
}  # fmt: skip
DEFAULT_PARTS = ["ingest", "profiling", "training-overhead", "serving"]
CHILD = """
import json, sys
from bench import {module} as m
{code}
json.dump(rows, open(sys.argv[1], "w"), default=str)
"""


def _worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="driftloop-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    return path


def _run_part(tree: Path, part: str, timeout_s: float) -> list[dict[str, Any]]:
    module, call = PARTS[part]
    base = harness.make_temp_base()
    out = base / "rows.json"
    env = {**os.environ, **harness.bench_env(base), "PYTHONPATH": str(tree)}
    env.pop("PREFECT_API_URL", None)
    code = CHILD.format(module=module, code=call)
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{part} in {tree}: {proc.stderr[-2000:]}")
        return json.loads(out.read_text())
    finally:
        harness.remove_temp(base)


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def _table(got: dict[str, dict[str, dict[str, list[float]]]], units: dict[str, str]) -> list[str]:
    lines = ["| part | metric | unit | before (median) | after (median) | after / before | runs |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for part, rows in got.items():
        for name, by_tree in rows.items():
            b, a = by_tree.get("before", []), by_tree.get("after", [])
            if not b or not a:
                continue
            mb, ma = statistics.median(b), statistics.median(a)
            ratio = f"{ma / mb:.3f}" if mb else "–"
            runs = f"before {_values(b)}; after {_values(a)}"
            lines.append(f"| {part} | {name} | {units[name]} | {mb:.4g} | {ma:.4g} | {ratio} "
                         f"| {runs} |")  # fmt: skip
    return lines


def _write(args: argparse.Namespace, after_rev: str, got: dict, units: dict[str, str],
           load: list[float], t0: float) -> str:  # fmt: skip
    text = [
        "# Before / after, side by side",
        "",
        f"`python -m bench.compare --before {args.before} --rounds {args.rounds}` on "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}: before = {args.before}, after = "
        f"{after_rev}, {args.rounds} round(s), parts alternated; "
        f"{(time.perf_counter() - t0) / 60:.0f} min; 1-min load average "
        f"{min(load):.1f} to {max(load):.1f} during the run (2-core box).",
        "",
        *_table(got, units),
        "",
    ]
    args.out.write_text("\n".join(text))
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--before", required=True, help="the git revision to compare against")
    parser.add_argument("--after", default="HEAD", help="the revision to compare (default HEAD)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=DEFAULT_PARTS)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per part run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "compare.md")
    args = parser.parse_args(argv)
    rev = ["git", "rev-parse", "--short", args.after]
    after_rev = subprocess.run(rev, cwd=REPO, capture_output=True, text=True, check=True).stdout
    after_rev = after_rev.strip()
    trees = {"before": _worktree(args.before), "after": _worktree(after_rev)}
    got: dict[str, dict[str, dict[str, list[float]]]] = {}
    units: dict[str, str] = {}
    load = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    try:
        for r in range(args.rounds):
            for i, part in enumerate(args.parts):
                order = ["before", "after"] if (r + i) % 2 == 0 else ["after", "before"]
                for which in order:
                    print(f"[compare] round {r + 1}: {part} ({which})", file=sys.stderr, flush=True)
                    for row in _run_part(trees[which], part, args.timeout):
                        if isinstance(row.get("value"), int | float):
                            units[row["name"]] = row.get("unit", "")
                            got.setdefault(part, {}).setdefault(row["name"], {}).setdefault(
                                which, []).append(float(row["value"]))  # fmt: skip
                    load.append(os.getloadavg()[0])
                    _write(args, after_rev, got, units, load, t0)  # what a stopped run had
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                           capture_output=True)  # fmt: skip
    print(_write(args, after_rev, got, units, load, t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
