"""The serving runtime: the models in use, the watcher that swaps them, and the logs.

Each worker process watches the alias index itself (an HTTP call reaches one worker only).
A candidate is checked before it is used: its files against the sha256 recorded at save time,
then a prediction in a subprocess with a timeout (a corrupted LightGBM file can abort the
process that loads it), then loaded here. The swap is one attribute assignment of an immutable
:class:`Models`, so a request in flight keeps the models it started with. A failed load keeps
the old model and is counted.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from bentos.background import Every
from bentos.metrics import ServingMetrics, observe_scores
from tasks import registry
from tasks.buffered_log import BufferedLog
from tasks.io import disk_full
from tasks.predict import score_frame
from tasks.predlog import ScoredBatch, decode_batches, encode_batch, log_sink, prediction_frame
from tasks.registry import CHALLENGER, CHAMPION, LoadedModel, tag_of
from tasks.rollout.routing import Router, Split, split_of
from tasks.settings import Settings

log = logging.getLogger("driftloop.serving")

WATCH_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 60.0

_PROBE = """
import sys, json
for name in ("sklearn", "pandas", "dask", "pyarrow", "matplotlib", "graphviz"):
    sys.modules[name] = None  # lightgbm imports these if present: 10 s of a 13 s probe
import lightgbm as lgb, numpy as np
b = lgb.Booster(model_file=sys.argv[1])
x = np.full((1, b.num_feature()), np.nan)
print(json.dumps([float(v) for v in np.ravel(b.predict(x, num_threads=1))]))
"""


@dataclass(frozen=True)
class Models:
    """What a worker serves: the models, the rollout split (only once the worker has loaded
    the split's challenger) and its router (a canary with a share above 0)."""

    champion: LoadedModel | None
    challenger: LoadedModel | None
    split: Split | None = None
    router: Router | None = None


def _active(split: Split | None, challenger: LoadedModel | None) -> Models:
    """The split this worker can serve: none until its challenger is the one loaded."""
    if split is None or challenger is None or challenger.tag != split.challenger:
        return Models(None, None)
    canary = split.mode == "canary" and split.share > 0
    return Models(None, None, split, split.router() if canary else None)


def probe_model(path: Path, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Load and predict with the model in a child process; raise if it crashes or hangs."""
    registry.verify_files(path)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path / registry.MODEL_FILE)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise registry.CorruptModelError(f"{path}: model probe hung for {timeout:.0f}s") from None
    scores = json.loads(done.stdout or "null") if done.returncode == 0 else None
    if not scores or not all(np.isfinite(scores)):
        raise registry.CorruptModelError(
            f"{path}: model probe failed (exit {done.returncode}): {done.stderr[-300:]}"
        )


def load_stored(stored) -> LoadedModel:
    """A model straight from a BentoML store entry (e.g. the one a built bento packs)."""
    import lightgbm as lgb

    from tasks.features import FeatureSpec

    path = Path(stored.path)
    probe_model(path)
    booster = lgb.Booster(model_file=str(path / registry.MODEL_FILE))
    features = FeatureSpec.from_dict(json.loads((path / registry.FEATURES_FILE).read_text()))
    return LoadedModel(str(stored.tag), booster, features, dict(stored.info.metadata), path)


def load_checked(tag: str, settings: Settings) -> LoadedModel:
    """A stored model, loaded only after its checksum and a subprocess probe pass."""
    probe_model(registry.model_path(tag, settings))
    return registry.load_model(tag, settings)


@dataclass(eq=False)
class ModelWatcher:
    """Holds the current :class:`Models`; reloads them when the alias index changes."""

    name: str
    settings: Settings
    metrics: ServingMetrics
    loader: Callable[[str, Settings], LoadedModel] = load_checked
    poll_seconds: float = WATCH_SECONDS
    models: Models = field(default_factory=lambda: Models(None, None), init=False)
    # alias -> when this worker began serving it
    since: dict[str, datetime] = field(default_factory=dict, init=False)
    _signature: tuple | None = field(default=None, init=False)
    _failed: set[str] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._every = Every(self.poll_seconds, self.check, "model-watcher",
                            "alias index check failed; keeping the current models")  # fmt: skip

    def check(self, force: bool = False) -> Models:
        """Reload whichever alias moved since the last check; return the models in use."""
        with self._lock:
            signature = registry.index_signature(self.settings)
            if signature == self._signature and not force:
                return self.models
            self._signature = signature
            entry = registry.read_index(self.settings).get(self.name, {})
            aliases = entry.get("aliases", {})
            current = self.models
            # a promotion moves the challenger's tag to champion: reuse the loaded model
            loaded = {m.tag: m for m in (current.champion, current.challenger) if m is not None}
            champion = self._maybe_load(CHAMPION, aliases.get(CHAMPION), current.champion, loaded)
            challenger = self._maybe_load(
                CHALLENGER, aliases.get(CHALLENGER), current.challenger, loaded
            )
            if champion is not None and challenger is not None and challenger.tag == champion.tag:
                challenger = None
            routing = _active(split_of(entry), challenger)
            now = datetime.now(UTC)
            for alias, before, after in ((CHAMPION, current.champion, champion),
                                         (CHALLENGER, current.challenger, challenger)):  # fmt: skip
                if tag_of(before) != tag_of(after):
                    self.since[alias] = now
            if current.split != routing.split:
                self.since["split"] = now
            self.models = Models(champion, challenger, routing.split, routing.router)
            return self.models

    def _maybe_load(
        self,
        alias: str,
        tag: str | None,
        current: LoadedModel | None,
        loaded: dict[str, LoadedModel],
    ) -> LoadedModel | None:
        if tag is None:
            # a champion alias never disappears by itself: keep serving what we have
            return current if alias == CHAMPION else None
        if current is not None and current.tag == tag:
            return current
        if tag in self._failed:
            return current
        try:
            if tag in loaded:  # probed and loaded under the other alias: its files must still
                registry.verify_files(loaded[tag].path)  # match what was loaded
                model = loaded[tag]
            else:
                model = self.loader(tag, self.settings)
        except Exception as exc:
            self._failed.add(tag)
            self.metrics.swaps.labels(alias=alias, outcome="failed").inc()
            log.error("not switching %s to %s: %s (keeping %s)", alias, tag, exc, tag_of(current))
            return current
        self.metrics.swaps.labels(alias=alias, outcome="loaded").inc()
        log.info("%s: %s -> %s", alias, tag_of(current), tag)
        return model

    def start(self) -> ModelWatcher:
        self._every.seconds = self.poll_seconds
        self._every.start()
        return self

    def stop(self) -> None:
        self._every.stop()


def prediction_log(settings: Settings, metrics: ServingMetrics, **kwargs) -> BufferedLog:
    """The prediction log: entries are ``(ScoredBatch, challenger)``, journalled as the batch
    alone (:func:`encode_batch`); shadow-scored at flush (rows recovered from a killed worker's
    journal have no shadow score: the rollout's paired test skips such rows)."""

    def to_frame(entries: list[tuple[ScoredBatch, LoadedModel | None]]) -> pl.DataFrame:
        batches: list[ScoredBatch] = []
        for _, run in itertools.groupby(entries, key=lambda e: id(e[1])):
            group = list(run)
            batches += _with_shadow([b for b, _ in group], group[0][1])
        return prediction_frame(batches)

    def on_flush(frame: pl.DataFrame) -> None:
        for (tag,), part in frame.group_by(["model_tag"]):
            observe_scores(metrics.scores, str(tag), part["score"].to_numpy())

    sink = log_sink("predictions", settings)  # Parquet files, or PostgreSQL when configured
    return BufferedLog(
        settings.predictions_dir, to_frame, prefix="predictions", sink=sink,
        encode=lambda entry: encode_batch(entry[0]), decode=decode_batches,
        fsync=settings.predlog_fsync, on_flush=on_flush, **kwargs,
    ).start()  # fmt: skip


def _with_shadow(batches: list[ScoredBatch], challenger: LoadedModel | None) -> list[ScoredBatch]:
    """Score the champion arm's requests with the challenger at once, then split the scores
    back (a canary's challenger-arm requests are its own answers: no shadow)."""
    todo = [i for i, b in enumerate(batches) if b.arm == "champion"] if challenger else []
    if challenger is None or not todo:
        return batches
    inputs = pl.concat([batches[i].inputs for i in todo], how="vertical_relaxed")
    shadow = score_frame(inputs, challenger)
    bounds = np.cumsum([0] + [len(batches[i]) for i in todo])
    out = list(batches)
    for i, lo, hi in zip(todo, bounds[:-1], bounds[1:], strict=True):
        out[i] = replace(batches[i], shadow_tag=challenger.tag, shadow_scores=shadow[lo:hi])
    return out


def feedback_log(settings: Settings, **kwargs) -> BufferedLog:
    """The feedback log: entries are feedback frames (already typed and validated)."""
    return BufferedLog(
        settings.feedback_dir,
        lambda frames: pl.concat(frames, how="vertical_relaxed"),
        prefix="feedback",
        sink=log_sink("feedback", settings),
        fsync=settings.predlog_fsync,
        **kwargs,
    ).start()


async def logged(done: Future) -> str | None:
    """Wait until a log entry is journalled; return why it is not (None once it is).

    A request is answered only after its row is in the journal: a SIGKILL never loses a row
    whose request was answered 200 (``Settings.predlog_durability``: written to the OS, or
    also fsynced, one fsync per group commit).
    """
    try:
        if done.done():  # journalled as it was appended ("write"): no loop round trip
            done.result()
        else:
            await asyncio.wrap_future(done)
    except Exception as exc:  # noqa: BLE001 - reported to the client as a 503
        log.error("log write failed: %s", exc)
        return "the disk is full" if disk_full(exc) else f"{type(exc).__name__}: {exc}"
    return None


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have Linux send ``sig`` to this worker when the process that started it dies.

    ``bentoml serve`` starts each worker in a session of its own, holding the listening
    socket: without this, a SIGKILLed ``driftloop serve`` leaves its workers behind and the
    port stays taken ("Address already in use" on restart).
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent == 1 or os.getppid() != parent:  # the parent died before the call
        os.kill(os.getpid(), sig)
