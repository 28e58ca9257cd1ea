"""Train flow: a data file in, a tuned, evaluated, tracked and registered model out.

ingest (validated snapshot + data version) -> check -> split -> tune + fit -> evaluate on test
(metrics, slices, business-value threshold) -> register (BentoML store + model card + alias)
-> reference profile. One W&B run records it all and is always finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from schemas import load_dataset
from tasks import card, evaluate, profiling, registry, tracking
from tasks import train as training
from tasks.features import FeatureSpec
from tasks.ingest import compose
from tasks.settings import get_settings


class TrainConfig(BaseModel):
    """Everything one training run needs; the CLI and deployments map onto these fields.

    ``alias``: ``auto`` makes the new model champion when the model name (= dataset name) has
    no champion yet, else challenger (promotion is then the gate's job); ``champion`` promotes
    it at once; ``challenger`` never touches the champion (what the retrain flow uses).
    ``warm_start`` enqueues the champion's parameters as the first Optuna trial (LightGBM's
    defaults come next, so the search starts from the untuned model); ``init_model`` (a tag or
    ``name:champion``) continues training from that model's trees. The study is fresh per run
    unless ``study_name`` names an existing one. Business knobs default to the dataset's
    ``extras``. Same data + seed + trials (n_jobs=1, timeout not reached) = same model.
    """

    dataset: str = "telco"
    data: str | None = Field(None, description="CSV/Parquet file; default: the dataset's own.")
    trials: int = Field(50, ge=1)
    timeout_s: float = Field(900.0, gt=0)
    seed: int = 0
    num_threads: int = Field(1, ge=1)
    n_jobs: int = Field(1, ge=1, description="Parallel Optuna trials (gives up determinism).")
    pruning: bool = True
    alias: Literal["auto", "champion", "challenger"] = "auto"
    warm_start: bool = True
    init_model: str | None = None
    min_rows: int = Field(200, ge=1)
    study_name: str | None = None
    valid_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    fail_on_quality: bool = True
    profile: bool = True
    value_retained: float | None = None
    offer_cost: float | None = None
    offer_success_rate: float | None = Field(None, ge=0, le=1)
    reason: str = "train"

    def tune_options(self, storage: str, study_name: str) -> training.TuneOptions:
        keys = ("trials", "timeout_s", "seed", "num_threads", "n_jobs", "pruning")
        return training.TuneOptions(
            **self.model_dump(include=set(keys)), storage=storage, study_name=study_name
        )

    def business_knobs(self) -> dict[str, float | None]:
        return self.model_dump(include={"value_retained", "offer_cost", "offer_success_rate"})


@dataclass(frozen=True)
class Steps:
    """The steps worth a Prefect task run (visible, retryable); plain functions otherwise."""

    ingest: Callable[..., Any] = compose.ingest_file
    train: Callable[..., Any] = training.train_model
    evaluate: Callable[..., Any] = evaluate.evaluate_model
    register: Callable[..., Any] = registry.register_model
    profile: Callable[..., Any] = profiling.save_reference_profile

    def as_tasks(self) -> Steps:
        names = {f.name: f.name for f in fields(self)} | {"train": "tune_and_fit"}
        wrapped = {
            f.name: task(getattr(self, f.name), name=names[f.name], cache_policy=NO_CACHE)
            for f in fields(self)
        }  # fmt: skip
        return Steps(**wrapped)


TASKS = Steps().as_tasks()


@flow(name="train")
def train(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and register one model; return what was made (JSON-ready)."""
    return run_training(config, TASKS)


def run_training(config: TrainConfig, steps: Steps) -> dict[str, Any]:
    """The flow's body; ``Steps()`` runs it without orchestration (benchmarks measure both)."""
    settings, clock = get_settings().ensure_dirs(), card.Clock()
    dataset = load_dataset(config.dataset)
    source = training.resolve_data_path(data=config.data, dataset=dataset)
    ingested = steps.ingest(path=source, dataset=dataset, settings=settings)
    training.check_ingested(
        ingested=ingested, dataset=dataset, min_rows=config.min_rows, strict=config.fail_on_quality
    )
    splits = training.split_data(
        frame=ingested.accepted, dataset=dataset, seed=config.seed,
        valid_fraction=config.valid_fraction, test_fraction=config.test_fraction,
    )  # fmt: skip
    features = FeatureSpec.from_dataset(dataset)
    prior = registry.prior_model(
        name=dataset.name, warm_start=config.warm_start, init_model=config.init_model,
        features=features, default_params=training.default_search_params(), settings=settings,
    )  # fmt: skip
    study = config.study_name or training.new_study_name(dataset.name, ingested.data_version)
    lineage = training.lineage(config=config.model_dump(), data_version=ingested.data_version,
                               source=source, prior=prior, storage=settings.optuna_url)  # fmt: skip
    with tracking.start_run(settings, name=study, config=lineage, group=dataset.name) as run:
        model = steps.train(
            splits=splits, dataset=dataset, features=features,
            options=config.tune_options(storage=settings.optuna_url, study_name=study),
            warm_params=prior.warm_params, init_model=prior.init_booster, on_trial=run.log_trial,
        )  # fmt: skip
        scored = training.score_splits(
            model=model, splits=splits, dataset=dataset, features=features, seed=config.seed
        )
        business = evaluate.BusinessValue.from_dataset(dataset, **config.business_knobs())
        result = steps.evaluate(
            dataset=dataset, scored=scored, test_frame=splits.test, business=business
        )
        meta = card.model_metadata(
            dataset=dataset, data_version=ingested.data_version, splits=splits, model=model,
            evaluation=result, clock=clock,
            lineage={**lineage, "wandb_run_path": run.run_path, "wandb_run_dir": run.run_dir},
        )  # fmt: skip
        registered = steps.register(
            booster=model.booster, name=dataset.name, features=features, metadata=meta,
            labels=card.model_labels(meta), card=card.from_metadata(dataset, meta, result.slices),
            alias=config.alias, reason=config.reason, settings=settings,
        )  # fmt: skip
        profile = steps.profile(
            frame=scored.reference, scores=scored.reference_scores, model_tag=registered.tag,
            dataset=dataset, settings=settings,
        ) if config.profile else None  # fmt: skip
        run.log_model(
            tag=registered.tag, evals=model.evals, summary=card.summary(meta), y=scored.test_y,
            scores=scored.test_scores, threshold=result.threshold,
            importance=meta["feature_importance"], task=dataset.task,
        )  # fmt: skip
    return training.train_result(
        registered=registered, metadata=meta, slices=result.slices, profile=profile
    )
