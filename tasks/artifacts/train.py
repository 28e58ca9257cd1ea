"""The train run's artifacts: metrics beside the baseline, threshold, business value, the
W&B run and its sync command, the model card."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.artifacts import Artifact, artifact_key, fmt, lineage, md_table, pairs, publish


def metric_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Test metrics of the model beside the untuned baseline's."""
    model, base = result.get("metrics") or {}, result.get("baseline_metrics") or {}
    return [{"metric": k, "model": v, "baseline": base.get(k)} for k, v in model.items()
            if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip


def train_markdown(result: Mapping[str, Any]) -> str:
    """Model, data, threshold, business value, the W&B run and how to sync it, metrics."""
    run_dir = result.get("wandb_run_dir")
    wandb = (f"`{run_dir}` · sync: `wandb sync {run_dir}`" if run_dir
             else "not recorded (W&B disabled)")  # fmt: skip
    business = result.get("business") or {}
    lines = [
        f"# Train: {result.get('model_tag')} ({result.get('alias')})",
        lineage(result.get("model_tag"), result.get("data_version")),
        "",
        f"- Threshold: {fmt(result.get('threshold'))} (chosen on the valid split)",
        f"- Business value on test: {fmt(result.get('expected_value_per_month'))} per month"
        + (f" ({pairs({k: v for k, v in business.items() if k != 'expected_value_per_month'})})"
           if business else ""),
        f"- W&B run: {wandb}",
        "",
        md_table(metric_rows(result)),
    ]  # fmt: skip
    return "\n".join(lines)


def train_artifacts(result: Mapping[str, Any], card: str) -> list[Artifact]:
    """Summary, metrics table and the model card."""
    key = artifact_key("train", str(result.get("dataset") or "model"))
    line = lineage(result.get("model_tag"), result.get("data_version"))
    out = [Artifact(key, "markdown", f"train summary ({line})", train_markdown(result))]
    rows = metric_rows(result)
    if rows:
        out.append(Artifact(f"{key}-metrics", "table", f"test metrics ({line})", rows))
    out.append(Artifact(f"{key}-card", "markdown", f"model card ({line})", card))
    return out


def publish_train(result: dict[str, Any]) -> dict[str, Any]:
    """The train run's artifacts, the card as stored with the model (only inside a flow run);
    returns ``result`` unchanged."""
    from tasks.registry import CARD_FILE

    card = Path(result["model_path"]) / CARD_FILE
    publish(train_artifacts(result, card.read_text() if card.exists() else "(no card)"))
    return result
