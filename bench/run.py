"""Run every benchmark area and write ``BENCHMARKS.md`` and ``bench/results/results.json``.

    python -m bench.run [--quick] [--only AREA ...] [--jobs N] [--timeout SECONDS]

Each ``bench/bench_<area>.py`` runs in its own subprocess with its own throwaway
``DRIFTLOOP_HOME``: a crash, an import error or a timeout in one area is reported as
"not measured" for that area and the others still run, and each area's peak memory is its
own (measured from outside). ``--quick`` is the smoke run: tiny inputs, results under
``bench/results/smoke/``, the real ``BENCHMARKS.md`` is never touched. ``--only`` re-runs some
areas of a full run and keeps the other areas' last results (each table shows its date).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import BENCH_DIR, REPO, RESULTS_DIR, SMOKE_DIR

# Areas issues 7 and 15 ask for; a missing module shows up as "not measured", never silently.
EXPECTED_AREAS = (
    "ingest",
    "training",
    "profiling",
    "serving",
    "loop",
    "orchestration",
    "scaling",
    "memory",
    "rollout",
    "streaming",
)
QUICK_TIMEOUT_S = 45.0  # per area
QUICK_BUDGET_S = 45.0  # the whole smoke run: `make test` runs it, so it must stay short
FULL_TIMEOUT_S = 5400.0
MD_NAME = "BENCHMARKS.md"


@dataclass
class AreaResult:
    area: str
    status: str  # ok | crashed | timed out | invalid | missing
    rows: list[dict[str, Any]]
    date: str
    wall_s: float | None = None
    peak_rss_bytes: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def discover() -> list[str]:
    """Area names of ``bench/bench_*.py``, in issue order, then any others alphabetically."""
    found = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    return [a for a in EXPECTED_AREAS if a in found] + [a for a in found if a not in EXPECTED_AREAS]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _failure_rows(area: str, status: str, error: str) -> list[dict[str, Any]]:
    last = next((ln for ln in reversed(error.strip().splitlines()) if ln.strip()), status)
    why = last.strip()[:300]
    return [harness.not_available(area, "area run", "", why, prefix=f"not measured ({status})")]


def run_area(area: str, quick: bool, timeout: float, out_dir: Path) -> AreaResult:
    """Run one area in a child process with its own state directory; never raises.

    The child's output goes to ``<out_dir>/logs/<area>.log``; plots it makes go to
    ``out_dir`` (through ``DRIFTLOOP_BENCH_RESULTS``, see ``harness.results_dir``).
    """
    base = harness.make_temp_base()
    out = base / "rows.json"
    logs = (out_dir / "logs") if quick else (RESULTS_DIR / "tmp" / "logs")
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{area}.log"
    cmd = [sys.executable, "-m", "bench.run", "--child", area, "--out", str(out)]
    cmd += ["--quick"] if quick else []
    env: dict[str, str | None] = {
        **harness.bench_env(base, quick),
        "PREFECT_API_URL": None,
        "DRIFTLOOP_BENCH_RESULTS": str(out_dir),
    }
    started = _now()
    try:
        proc = harness.run_measured(cmd, env, cwd=REPO, timeout=timeout, interval=0.1, log=log)
        if proc.timed_out:
            error = f"stopped after {timeout:.0f} s (log: {_show(log)})"
            return AreaResult(area, "timed out", _failure_rows(area, "timed out", error),
                              started, proc.wall_s, proc.peak_rss, error)  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            error = proc.stderr.strip()[-4000:] or f"exit code {proc.returncode}"
            return AreaResult(area, "crashed", _failure_rows(area, "crashed", error),
                              started, proc.wall_s, proc.peak_rss, error)  # fmt: skip
        rows = json.loads(out.read_text())["rows"]
        problems = harness.validate_rows(rows, area)
        if problems:
            error = "; ".join(problems)
            return AreaResult(area, "invalid", _failure_rows(area, "invalid rows", error),
                              started, proc.wall_s, proc.peak_rss, error)  # fmt: skip
        return AreaResult(area, "ok", rows, started, proc.wall_s, proc.peak_rss)
    except Exception as exc:  # the runner itself must survive anything one area does
        error = f"{type(exc).__name__}: {exc}"
        return AreaResult(area, "crashed", _failure_rows(area, "crashed", error), started,
                          error=error)  # fmt: skip
    finally:
        harness.remove_temp(base)


def _show(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def missing_area(area: str) -> AreaResult:
    why = f"bench/bench_{area}.py does not exist yet"
    return AreaResult(area, "missing", [harness.not_available(area, "area run", "", why)], _now())


def child(area: str, out: Path, quick: bool) -> int:
    """Inside the area's subprocess: import the module, run it, write its rows."""
    try:
        module = importlib.import_module(f"bench.bench_{area}")
        rows = module.run(quick)
    except Exception:
        traceback.print_exc()
        return 1
    problems = harness.validate_rows(rows, area)
    if problems:
        print("invalid rows: " + "; ".join(problems), file=sys.stderr)
        return 2
    out.write_text(json.dumps({"rows": rows}, default=harness._json_default))
    return 0


# --- the report -----------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A number for a table: thousands separated, about four significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (abs(value) >= 1000 and float(value).is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    if abs(value) >= 0.001:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _met(row: dict[str, Any]) -> str:
    if row.get("value") is None:
        return "not measured"
    if row.get("met") is True:
        return "yes"
    if row.get("met") is False:
        return "**NO**"
    return "–" if not row.get("target") else "not judged"


def _gap(row: dict[str, Any]) -> str:
    if row.get("gap") is not None:
        return str(row["gap"])
    target = harness.parse_target(row.get("target"))
    if target is None or row.get("value") is None:
        return "see target"
    gap = target.gap(float(row["value"]))
    word = "over" if target.op in ("≤", "<=", "<") else "short"
    return f"{fmt(abs(gap))} {row.get('unit', '')} {word}".strip()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _area_table(result: AreaResult) -> list[str]:
    lines = [
        "| metric | median | spread | n | unit | target | met? | note |",
        "| --- | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for row in result.rows:
        value = row.get("median", row.get("value"))
        if row.get("value") is None:
            value = None
        spread = fmt(row.get("spread"))
        if row.get("spread") is not None and row.get("spread_kind"):
            spread += f" ({row['spread_kind']})"
        cells = [
            row.get("name"),
            fmt(value),
            spread,
            fmt(row.get("n")),
            row.get("unit") or "",
            row.get("target") or "—",
            _met(row),
            row.get("note") or "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _bytes(n: int | None) -> str:
    return "—" if not n else f"{n / harness.MiB:,.0f} MiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)} min {sec:.0f} s" if minutes else f"{sec:.1f} s"


def _machine(facts: dict[str, Any]) -> list[str]:
    libs = " · ".join(f"{k} {v}" for k, v in facts.get("libraries", {}).items() if v)
    mem = facts.get("memory_total_bytes", 0) / harness.GiB
    avail = facts.get("memory_available_bytes", 0) / harness.GiB
    return [
        "| fact | value |",
        "| --- | --- |",
        f"| CPU | {facts.get('cpu_model')} ({facts.get('cores_logical')} logical cores, "
        f"{facts.get('cores_physical')} physical) |",
        f"| memory | {mem:.1f} GiB total, {avail:.1f} GiB available at start |",
        f"| OS | {facts.get('os')} |",
        f"| Python | {facts.get('python')} |",
        f"| load average at start (1, 5, 15 min) | {facts.get('load_average')} |",
        f"| libraries | {libs} |",
    ]


def _provenance(doc: dict[str, Any]) -> list[str]:
    """Which command measured what, when, in how long (a re-run of some areas is listed)."""
    runs = doc.get("runs") or [
        {k: doc.get(k) for k in ("date", "command", "wall_s")} | {"areas": list(doc["areas"])}
    ]
    lines = [
        f"- {run['date']}: `{run['command']}` in {_duration(run.get('wall_s'))} "
        f"({', '.join(run.get('areas') or [])})"
        for run in runs
    ]
    head = "Produced by `make bench` (`python -m bench.run`); the smoke run is `make bench-smoke`."
    if doc["quick"]:
        head += " **Quick smoke run: tiny inputs, the numbers mean nothing.**"
    return [head, "", *lines]


def render(doc: dict[str, Any], out_dir: Path, md_path: Path) -> str:
    """BENCHMARKS.md: facts, the misses first, then one table per area."""
    results = [AreaResult(**a) for a in doc["areas"].values()]
    all_rows = [row for r in results for row in r.rows]
    missed = [row for row in all_rows if row.get("met") is False]
    unmeasured = [row for row in all_rows if row.get("value") is None]
    lines = [
        "# driftloop benchmarks",
        "",
        *_provenance(doc),
        "",
        "Every median below comes from repeated runs, measured side by side with its peer in "
        "the same run on the same machine (round-robin, so both see the same load). The machine "
        "is a shared 2-core box with other work running, so the spreads are wide: read ratios "
        "from the same run, not absolute times across runs. Memory is the peak resident set "
        "size measured from outside the process (psutil samples of the process tree and the "
        'kernel\'s peak via GNU time). "not measured" means the benchmark could not measure '
        "the thing (yet): it never counts as met.",
        "",
        "## Machine",
        "",
        *_machine(doc["machine"]),
        "",
        "## Targets not met",
        "",
    ]
    if missed:
        lines += ["| area | metric | measured | target | gap |", "| --- | --- | ---: | --- | --- |"]
        for row in missed:
            value = f"{fmt(row.get('value'))} {row.get('unit', '')}".strip()
            cells = [row["area"], row["name"], value, row.get("target"), _gap(row)]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    else:
        lines.append("None.")
    lines += ["", "## Not measured", ""]
    if unmeasured:
        for row in unmeasured:
            lines.append(f"- {row['area']} / {row['name']}: {row.get('note') or 'no value'}")
    else:
        lines.append("None.")
    lines += [
        "",
        "## Areas",
        "",
        "Each area runs in its own process; its wall time and peak memory are below.",
        "",
        "| area | status | measured at | wall time | peak RSS of the area process |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| [{r.area}](#{r.area}) | {r.status} | {r.date} | {_duration(r.wall_s)} "
            f"| {_bytes(r.peak_rss_bytes)} |"
        )
    plots = sorted(out_dir.glob("*.png"))
    if plots:
        links = " · ".join(f"[{p.stem}]({os.path.relpath(p, md_path.parent)})" for p in plots)
        lines += ["", f"Plots (scaling curves): {links}"]
    for r in results:
        lines += ["", f"## {r.area}", ""]
        if r.status != "ok":
            lines += [f"Status: **{r.status}** — see the row below.", ""]
        lines += _area_table(r)
        plots = sorted(out_dir.glob(f"{r.area}_*.png")) + sorted(out_dir.glob(f"{r.area}.png"))
        if plots:
            lines.append("")
            for plot in plots:
                rel = os.path.relpath(plot, md_path.parent)
                lines.append(f"![{plot.stem}]({rel})")
    return "\n".join(lines) + "\n"


# --- the command ----------------------------------------------------------------------------
def _load_doc(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _runs(previous: dict[str, Any], this_run: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs whose areas are still in the results, oldest first, this one last."""
    earlier = previous.get("runs") or (
        [{k: previous.get(k) for k in ("date", "command", "wall_s")}
         | {"areas": list(previous.get("areas", {}))}]
        if previous.get("areas") else []
    )  # fmt: skip
    kept = []
    for run in earlier:
        left = [a for a in run.get("areas", []) if a not in this_run["areas"]]
        if left:
            kept.append({**run, "areas": left})
    return [*kept, this_run]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--only", nargs="+", metavar="AREA", help="run only these areas")
    parser.add_argument("--jobs", type=int, default=None, help="areas at once (full: 1)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per area")
    parser.add_argument(
        "--budget", type=float, default=None,
        help=f"seconds for the whole run (quick: {QUICK_BUDGET_S:.0f}); areas still running "
        "then are stopped and reported as timed out",
    )  # fmt: skip
    parser.add_argument(
        "--out-dir", type=Path, default=None,
        help="write results.json, BENCHMARKS.md and plots here (default: the repository's "
        "BENCHMARKS.md and bench/results/; quick: bench/results/smoke/)",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    parser.add_argument(
        "--render", action="store_true", help="only re-write BENCHMARKS.md from results.json"
    )
    parser.add_argument("--child", metavar="AREA", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out, args.quick)

    found = discover()
    if args.render:
        out_dir = (args.out_dir or (SMOKE_DIR if args.quick else RESULTS_DIR)).resolve()
        md_path = REPO / MD_NAME if out_dir == RESULTS_DIR and not args.quick else out_dir / MD_NAME
        md_path.write_text(render(_load_doc(out_dir / "results.json"), out_dir, md_path))
        return 0
    if args.list:
        print("\n".join(found))
        return 0
    wanted = (
        list(dict.fromkeys(args.only))
        if args.only
        else list(EXPECTED_AREAS) + [a for a in found if a not in EXPECTED_AREAS]
    )
    unknown = [a for a in wanted if a not in found and a not in EXPECTED_AREAS]
    if unknown:
        parser.error(f"unknown area(s): {', '.join(unknown)} (known: {', '.join(found)})")
    timeout = args.timeout or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    budget = args.budget or (QUICK_BUDGET_S if args.quick else None)
    out_dir = (args.out_dir or (SMOKE_DIR if args.quick else RESULTS_DIR)).resolve()
    if args.quick and out_dir == RESULTS_DIR:
        parser.error("a quick run never writes into bench/results/ (the full run's results)")
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    # the real BENCHMARKS.md comes only from a full run into the default place
    md_path = REPO / MD_NAME if out_dir == RESULTS_DIR and not args.quick else out_dir / MD_NAME

    facts = harness.machine_facts()
    t0 = time.perf_counter()
    to_run = [a for a in wanted if a in found]
    # Quick runs start every area at once (the smoke run is about the harness, not speed);
    # full runs go one area at a time so no benchmark competes with another for the CPU.
    jobs = args.jobs or (len(to_run) if args.quick else 1)

    def _one(area: str) -> AreaResult:
        left = timeout if budget is None else min(timeout, budget - (time.perf_counter() - t0))
        if left < 1:
            error = f"not started: the run's budget of {budget:.0f} s was used up"
            return AreaResult(area, "timed out", _failure_rows(area, "timed out", error),
                              _now(), error=error)  # fmt: skip
        print(f"[bench] {area}: running", file=sys.stderr, flush=True)
        result = run_area(area, args.quick, left, out_dir)
        n = sum(r.get("value") is not None for r in result.rows)
        print(
            f"[bench] {area}: {result.status} in {_duration(result.wall_s)}, "
            f"{n}/{len(result.rows)} rows measured, peak {_bytes(result.peak_rss_bytes)}",
            file=sys.stderr,
            flush=True,
        )
        if result.error:
            print(f"[bench] {area}: {result.error[-1500:]}", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        ran = dict(zip(to_run, pool.map(_one, to_run), strict=True))
    areas: dict[str, dict[str, Any]] = {}
    merge = bool(args.only and not args.quick)
    previous_doc = _load_doc(json_path) if merge else {}
    previous = previous_doc.get("areas", {})
    for area in [*EXPECTED_AREAS, *found, *previous]:
        if area in areas:
            continue
        if area in ran:
            areas[area] = ran[area].to_dict()
            if ran[area].status == "ok":
                harness.write_area_results(
                    area, ran[area].rows, args.quick, out=out_dir / f"{area}.json"
                )
        elif area in previous:
            areas[area] = previous[area]
        elif area in EXPECTED_AREAS and (area not in found or not args.only):
            areas[area] = missing_area(area).to_dict()
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    command += f" --only {' '.join(args.only)}" if args.only else ""
    wall = time.perf_counter() - t0
    this_run = {"date": _now(), "command": command, "wall_s": wall, "areas": list(ran)}
    doc = {
        "date": this_run["date"],
        "command": command,
        "quick": args.quick,
        "wall_s": wall,
        "runs": _runs(previous_doc, this_run),
        "machine": facts,
        "areas": areas,
    }
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=harness._json_default) + "\n")
    os.replace(tmp, json_path)
    md_path.write_text(render(doc, out_dir, md_path))
    print(f"[bench] wrote {_show(json_path)} and {_show(md_path)} "
          f"in {_duration(doc['wall_s'])}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
