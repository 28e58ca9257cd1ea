"""The driftloop service: the champion scores requests, the challenger shadows, both are logged.
During a canary rollout the challenger answers the entities the split routes to it (sticky by
the id column; ``bentos/arms.py``); every answer names its model and arm (docs/rollout.md).

The dataset, state directory and every knob come from :class:`tasks.settings.Settings`
(``DRIFTLOOP_DATASET``, ``DRIFTLOOP_HOME``, ``DRIFTLOOP_MAX_BODY_BYTES``, ...).
The model is named at class scope (so ``bentoml build`` packs the champion) and the
alias-resolved champion is loaded in ``__init__``; a watcher thread in every worker swaps it
when the alias index moves. Requests are validated by models generated from the dataset's
contract; the prediction log is written off the request path (``tasks.predlog``).
"""

import gc
import hmac
import logging
import os
import time
from typing import Annotated

import anyio
import bentoml
import orjson
from pydantic import Field
from starlette.responses import JSONResponse, Response

from bentos.arms import Answer, predictions, score_routed
from bentos.metrics import serving_metrics
from bentos.middleware import GuardMiddleware
from bentos.process_metrics import SAMPLE_SECONDS, ProcessMetrics
from bentos.runtime import (
    Models,
    ModelWatcher,
    feedback_log,
    load_stored,
    prediction_log,
)
from schemas import load_dataset
from schemas.requests import (
    MAX_BATCH_RECORDS,
    MAX_FEEDBACK,
    MAX_RECORDS,
    FeedbackItem,
    FeedbackResponse,
    Prediction,
    PredictResponse,
    label_values,
    records_to_frame,
    records_type,
    request_models,
)
from tasks import registry
from tasks.predlog import feedback_frame
from tasks.settings import get_settings

log = logging.getLogger("driftloop.serving")

SETTINGS = get_settings()  # the environment as `bentoml serve` started this worker
DATASET = load_dataset(SETTINGS.dataset)
REQUESTS = request_models(DATASET)
Records = records_type(REQUESTS, SETTINGS.max_records or MAX_RECORDS)
BatchRecords = records_type(REQUESTS, MAX_BATCH_RECORDS)
INLINE_MAX_RECORDS = 64
FeedbackItems = Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK)]


def _class_scope_tag(name: str) -> str:
    """The champion's tag when the alias index names one (what ``bentoml build`` packs)."""
    try:
        return registry.get_alias(name, registry.CHAMPION) or f"{name}:latest"
    except (OSError, ValueError):
        return f"{name}:latest"


@bentoml.service(
    name="driftloop",
    workers=SETTINGS.serve_workers,
    http={"host": "127.0.0.1", "port": 3000},
    traffic={"timeout": 60},
    logging={"access": {"enabled": SETTINGS.access_log}},
    # no trace exporter is configured: spans would be pure per-request cost (~0.2 ms)
    tracing={"excluded_urls": [] if SETTINGS.tracing else ["/"]},
)
class Driftloop:
    model = bentoml.models.BentoModel(_class_scope_tag(DATASET.name))

    def __init__(self) -> None:
        settings = SETTINGS
        self.metrics = serving_metrics()
        self.watcher = ModelWatcher(DATASET.name, settings, self.metrics)
        if self.watcher.check(force=True).champion is None:
            self._load_packed_model()
        self.watcher.start()
        every = settings.process_metrics_seconds or SAMPLE_SECONDS
        self.observed = ProcessMetrics(
            DATASET.name, settings, lambda: self.watcher.models, interval=every
        ).start()
        flush = settings.predlog_flush_seconds
        self.prediction_log = prediction_log(settings, self.metrics, flush_seconds=flush)
        self.feedback_log = feedback_log(settings, flush_seconds=flush)
        self.admin_token = settings.admin_token
        self.worker_header = {"x-driftloop-worker": str(os.getpid())}  # which worker answered
        # Everything loaded so far lives as long as the worker. Without this, each full
        # collection re-scans ~240k import-time objects: 0.4 s pauses measured (p99 spikes).
        gc.freeze()

    def _load_packed_model(self) -> None:
        # No champion in this home's alias index: a built bento serves the model it packs.
        if type(self).model.stored is None:
            log.warning("no %s champion yet: not ready until one is promoted", DATASET.name)
            return
        self.watcher.models = Models(load_stored(self.model), None)

    def __is_ready__(self) -> bool:
        return self.watcher.models.champion is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.watcher.stop()
        self.observed.stop()
        self.prediction_log.close()  # nothing lost on a clean stop
        self.feedback_log.close()

    def _score(self, frame, started: float) -> list[Answer] | None:
        models = self.watcher.models  # one read: a swap mid-request cannot mix models or splits
        if models.champion is None:
            return None
        answers = score_routed(
            frame, models.champion, models.challenger, models.router, DATASET.id_column, started
        )
        for answer in answers:
            batch = answer.batch
            self.prediction_log.append((batch, models.challenger), len(batch))
            self.metrics.predictions.labels(model_tag=batch.model_tag).inc(len(batch))
        return answers

    @bentoml.api(route="/predict")
    async def predict(self, records: Records) -> PredictResponse:
        """Score one or many records, each by the model of its rollout arm (the champion
        unless a canary routes the entity to the challenger); each says which answered."""
        started = time.perf_counter()
        if len(records) < INLINE_MAX_RECORDS:  # cheaper than a thread hop
            answers = self._score(records.frame, started)
        else:  # LightGBM and polars release the GIL: parsing the next request overlaps
            answers = await anyio.to_thread.run_sync(self._score, records.frame, started)
        if answers is None:
            return _no_model()
        tag = answers[0].batch.model_tag
        return Response(
            orjson.dumps({"model_tag": tag, "predictions": predictions(answers)}),
            media_type="application/json",
            headers=self.worker_header,
        )

    @bentoml.api(
        route="/predict_batch",
        batchable=True,
        max_batch_size=MAX_BATCH_RECORDS,
        max_latency_ms=SETTINGS.batch_max_latency_ms,
    )
    async def predict_batch(self, records: BatchRecords) -> list[Prediction]:
        """Large batches; concurrent calls are merged by BentoML's adaptive batching."""
        frame = records_to_frame(records, REQUESTS)
        answers = await anyio.to_thread.run_sync(self._score, frame, time.perf_counter())
        if answers is None:
            raise bentoml.exceptions.ServiceUnavailable(f"no {DATASET.name} champion model yet")
        return predictions(answers)

    @bentoml.api(route="/feedback")
    async def feedback(self, feedback: FeedbackItems) -> FeedbackResponse:
        """Delayed ground truth, keyed by the prediction's request_id or the entity id."""
        labels = label_values(feedback, REQUESTS)
        frame = feedback_frame(
            [f.request_id for f in feedback], [f.entity_id for f in feedback], labels,
            [f.ts for f in feedback],
        )  # fmt: skip
        self.feedback_log.append(frame, frame.height)
        for item in feedback:
            key = "request_id" if item.request_id is not None else "entity_id"
            self.metrics.feedback.labels(key=key).inc()
        return FeedbackResponse(accepted=frame.height)

    @bentoml.api(route="/models")
    async def models(self) -> dict:
        """The models in use by the worker that answers."""
        m, since = self.watcher.models, self.watcher.since
        return {
            "dataset": DATASET.name,
            "champion": m.champion.tag if m.champion else None,
            "challenger": m.challenger.tag if m.challenger else None,
            "threshold": m.champion.threshold if m.champion else None,
            # when this worker began serving each (its own clock): how long a swap took
            "champion_since": since["champion"].isoformat() if "champion" in since else None,
            "challenger_since": since["challenger"].isoformat() if "challenger" in since else None,
            "worker": os.getpid(),
            # the rollout split this worker routes by (None: the champion answers everything)
            "split": None if m.split is None else {
                "experiment": m.split.experiment_id, "mode": m.split.mode,
                "challenger": m.split.challenger, "share": m.split.share,
            },
            "split_since": since["split"].isoformat() if "split" in since else None,
        }  # fmt: skip

    @bentoml.api(route="/admin/reload")
    def admin_reload(self, ctx: bentoml.Context) -> dict:
        """Re-read the alias index now (needs ``Authorization: Bearer $DRIFTLOOP_ADMIN_TOKEN``).

        Each worker also does this by itself every half second; this only makes it immediate
        for the worker that answers.
        """
        if not self.admin_token:
            ctx.response.status_code = 403  # (BentoML applies ctx's status to any response)
            return {"error": "admin endpoints are off: no DRIFTLOOP_ADMIN_TOKEN set"}
        given = ctx.request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            ctx.response.status_code = 401
            return {"error": "missing or wrong admin token (Authorization: Bearer <token>)"}
        m = self.watcher.check(force=True)
        return {"champion": m.champion.tag if m.champion else None,
                "challenger": m.challenger.tag if m.challenger else None}  # fmt: skip


Driftloop.add_asgi_middleware(
    GuardMiddleware,
    max_body_bytes=SETTINGS.max_body_bytes,
)


def _no_model() -> Response:
    return JSONResponse({"error": f"no {DATASET.name} champion model yet"}, status_code=503)
