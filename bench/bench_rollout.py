"""Rollout benchmark: the always-valid test's false-decision rate and power, and routing cost.

From the simulation harness (``tasks.rollout.simulate``): A/A experiments looked at after every
100 labels per arm up to the config's maximum sample, for the sequential test and, on the same
experiments, a naive repeated z-test; then the power and the labels per arm needed for 80%
power at several log-loss changes, for the canary (two independent arms) and the shadow
(paired, same rows) designs. Routing: p50 per request of the sticky hash routing against no
routing (a constant arm), and of the service's routing step on a one-record request frame with
an experiment running and without, each pair measured side by side, round-robin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.harness import compare, main, metric, not_available

if TYPE_CHECKING:
    from tasks.rollout.config import RolloutConfig
    from tasks.rollout.scenario import Scenario
    from tasks.rollout.simulate import Design, Rate, SimulationResult

AREA = "rollout"
# (design, challenger share, label); power is reported for the first and the last
DESIGNS: tuple[tuple[Design, float, str], ...] = (
    ("two_sample", 0.5, "canary 50/50 (two-sample)"),
    ("two_sample", 0.05, "canary at 5% (two-sample)"),
    ("paired", 0.5, "shadow (paired)"),
)
POWER_DESIGNS = (DESIGNS[0], DESIGNS[-1])
LONGER_HORIZON = 8  # x max_sample, to find the sample for 80% power beyond the maximum


def _rate_note(rate: Rate, experiments: int, looks: int) -> str:
    return (f"{rate.k:,} of {experiments:,} experiments, 95% Wilson interval "
            f"[{rate.low:.4f}, {rate.high:.4f}], {looks} looks each")  # fmt: skip


def _sim(scenario: Scenario, config: RolloutConfig, *, design: Design, share: float,
         experiments: int, quick: bool) -> SimulationResult:  # fmt: skip
    from tasks.rollout.simulate import POOL_ROWS, simulate

    rows = POOL_ROWS // 10 if quick else POOL_ROWS
    return simulate(scenario, config, design=design, share=share, experiments=experiments,
                    seed=11, pool_rows=rows)  # fmt: skip


def _a_a_rows(config: RolloutConfig, experiments: int, quick: bool) -> list[dict[str, Any]]:
    from tasks.rollout.scenario import Scenario

    rows = []
    for design, share, label in DESIGNS:
        res = _sim(Scenario(0.0), config, design=design, share=share, experiments=experiments,
                   quick=quick)  # fmt: skip
        looks = res.max_sample // res.look_every
        rows += [
            metric(AREA, f"A/A false decisions, always-valid test, {label}", res.decided.rate,
                   "share", target=None if quick else f"≤ {config.alpha}",
                   note=_rate_note(res.decided, experiments, looks)),
            metric(AREA, f"A/A false decisions, upper 95% bound, {label}", res.decided.high,
                   "share", target=None if quick else "≤ 0.055", note="Wilson interval"),
            metric(AREA, f"A/A false decisions, naive repeated z-test, {label}",
                   res.naive_decided.rate, "share",
                   note=f"z-test at {config.alpha} at every look, same experiments: "
                        + _rate_note(res.naive_decided, experiments, looks)),
        ]  # fmt: skip
    return rows


def _longer(config: RolloutConfig) -> RolloutConfig:
    """The same test (its mixture tuned at the same sample) with a longer maximum sample."""
    tuned_at = config.tuned_fraction * config.max_sample
    longer = LONGER_HORIZON * config.max_sample
    return config.model_copy(update={"max_sample": longer, "tuned_fraction": tuned_at / longer})


def _power_rows(
    config: RolloutConfig, changes: tuple[float, ...], experiments: int, quick: bool
) -> list[dict[str, Any]]:
    from tasks.rollout.scenario import Scenario

    rows = []
    for design, share, label in POWER_DESIGNS:
        for change in changes:
            res = _sim(Scenario(change), config, design=design, share=share,
                       experiments=experiments, quick=quick)  # fmt: skip
            word = "worse" if change > 0 else "better"
            what = f"log loss {abs(change):.0%} {word}, {label}"
            judged = not quick and change == 0.05 and design == "two_sample"
            power = res.power
            assert power is not None
            rows.append(
                metric(AREA, f"power within {config.max_sample:,} labels/arm, {what}",
                       power.rate, "share", target="≥ 0.8" if judged else None,
                       note=f"{_rate_note(power, experiments, res.max_sample // res.look_every)}; "
                            f"realized change {res.realized_change:+.4f}")
            )  # fmt: skip
            name = f"labels per arm for 80% power, {what}"
            note = "the right verdict in 80% of experiments by then"
            if res.sample_for_power is None:  # same test, a longer horizon: how many it needs
                longer = _longer(config)
                res = _sim(Scenario(change), longer, design=design, share=share,
                           experiments=experiments, quick=quick)  # fmt: skip
                note += f" (maximum raised to {longer.max_sample:,} for this row, same mixture)"
            if res.sample_for_power is None:
                why = f"power {power.rate:.2f} even at {res.max_sample:,} labels per arm"
                rows.append(not_available(AREA, name, "labels", why, prefix="80% not reached"))
            else:
                rows.append(metric(AREA, name, res.sample_for_power, "labels", note=note))
    return rows


def _routing_rows(rounds: int) -> list[dict[str, Any]]:
    from tasks.rollout.routing import Router

    router = Router("bench-experiment", 0.25)
    ids = [f"customer-{i}" for i in range(rounds)]
    it_routed, it_plain = iter(ids), iter(ids)
    timed = compare(
        {
            "hash routing": lambda: router.arm(next(it_routed)),
            "no routing": lambda: (next(it_plain), "champion")[1],
        },
        n=rounds,
        warmup=0,
    )
    routed, plain = timed["hash routing"].scaled(1e6), timed["no routing"].scaled(1e6)
    return [
        metric(AREA, "routing per request, hash routing (p50)", None, "µs",
               target="≤ 100 µs", stats=routed,
               note="keyed BLAKE2b of the entity id, one call per request"),
        metric(AREA, "routing per request, no routing (p50)", None, "µs", stats=plain,
               note="a constant arm: the same loop without the hash, side by side"),
        *_service_routing_rows(rounds),
    ]  # fmt: skip


def _service_routing_rows(rounds: int) -> list[dict[str, Any]]:
    """The service's own routing step (``bentos.arms.to_challenger``) on one-record request
    frames, with the experiment's router and with none (routing off), side by side."""
    import polars as pl

    from bentos.arms import to_challenger
    from tasks.rollout.routing import Router

    router = Router("bench-experiment", 0.25)
    frames = [pl.DataFrame({"customerID": [f"customer-{i}"]}) for i in range(rounds)]
    on, off = iter(frames), iter(frames)
    timed = compare(
        {
            "service routing on": lambda: to_challenger(next(on), "customerID", router),
            "service routing off": lambda: to_challenger(next(off), "customerID", None),
        },
        n=rounds,
        warmup=0,
    )
    routed, plain = (
        timed["service routing on"].scaled(1e6),
        timed["service routing off"].scaled(1e6),
    )
    return [
        metric(AREA, "routing per request in the service path, on (p50)", None, "µs",
               target="≤ 100 µs", stats=routed,
               note="bentos.arms.to_challenger on a one-record request frame: id read + hash"),
        metric(AREA, "routing per request in the service path, off (p50)", None, "µs",
               stats=plain, note="the same call with no experiment running, side by side"),
    ]  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    from tasks.rollout.config import RolloutConfig

    config = RolloutConfig(mode="canary")
    if quick:  # a smaller maximum sample (100 looks) and pools; the full run uses the defaults
        config = RolloutConfig(mode="canary", max_sample=10_000)
    changes = (0.05, -0.05) if quick else (0.02, 0.05, 0.10, -0.02, -0.05, -0.10)
    return [
        *_a_a_rows(config, 1_000 if quick else 10_000, quick),
        *_power_rows(config, changes, 200 if quick else 2_000, quick),
        *_routing_rows(2_000 if quick else 20_000),
    ]


if __name__ == "__main__":
    main(AREA, run)
