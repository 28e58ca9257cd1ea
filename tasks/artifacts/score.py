"""The score run's artifacts: rows, score distribution summary, the output file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tasks.artifacts import Artifact, artifact_key, file_link, lineage, md_table, publish

if TYPE_CHECKING:
    from tasks.registry import LoadedModel
    from tasks.scoring import ScoreResult


_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def score_summary(scores: Sequence[float], threshold: float | None) -> dict[str, Any]:
    """Count, mean, quantiles and the share at or above the threshold of a batch's scores."""
    import numpy as np

    s = np.asarray(scores, dtype=float)
    if not len(s):
        return {"rows": 0}
    out: dict[str, Any] = {"rows": int(len(s)), "mean": float(s.mean()), "min": float(s.min())}
    out |= {f"p{round(q * 100):02d}": float(np.quantile(s, q)) for q in _QUANTILES}
    out["max"] = float(s.max())
    if threshold is not None:
        out[f"share >= {threshold:.3g}"] = float((s >= threshold).mean())
    return out


def score_markdown(
    result: ScoreResult, summary: Mapping[str, Any], data_version: str | None
) -> str:
    lines = [
        f"# Score: {result.scored} of {result.rows} rows scored",
        lineage(result.model_tag, data_version),
        "",
        f"- Rejected rows: {result.rejected}"
        + (f" ([{result.rejects.name}]({file_link(result.rejects)}))" if result.rejects else ""),
        f"- Output: [{result.out}]({file_link(result.out)})",
        f"- Shadow: {result.shadow_tag or 'none'} · {result.seconds:.2f} s",
        "",
        "Score distribution:",
        "",
        md_table([dict(summary)]),
    ]
    return "\n".join(lines)


def score_artifacts(
    result: ScoreResult, scores: Sequence[float], threshold: float | None, data_version: str | None
) -> list[Artifact]:
    """Summary with the score distribution, and a link to the output file."""
    key = artifact_key("score", result.model_tag.split(":")[0])
    summary = score_summary(scores, threshold)
    line = lineage(result.model_tag, data_version)
    return [
        Artifact(key, "markdown", f"batch scoring ({line})",
                 score_markdown(result, summary, data_version)),
        Artifact(f"{key}-output", "link", f"scores ({line})", file_link(result.out),
                 link_text=result.out.name),
    ]  # fmt: skip


def publish_score(result: ScoreResult, scores: Sequence[float], model: LoadedModel) -> list[str]:
    """The score run's artifacts (only inside a flow run)."""
    version = model.metadata.get("data_version")
    return publish(score_artifacts(result, scores, model.threshold, version))
