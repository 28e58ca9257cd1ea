"""Sticky routing: same entity, same arm, in this process and another; the split holds."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from tasks.rollout.routing import Router, bucket

IDS = [f"customer-{i}" for i in range(10_000)]


def test_the_same_id_gets_the_same_arm_across_calls_and_routers() -> None:
    router = Router("exp-1", 0.25)
    arms = [router.arm(i) for i in IDS[:500]]
    assert arms == [Router("exp-1", 0.25).arm(i) for i in IDS[:500]]
    assert bucket("customer-7", "exp-1") == router.bucket("customer-7")


def test_the_same_id_gets_the_same_bucket_in_another_process() -> None:
    code = (
        "import json; from tasks.rollout.routing import Router; "
        f"print(json.dumps(Router('exp-1', 0.25).buckets({IDS[:200]!r}).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_array_equal(json.loads(out.stdout), Router("exp-1", 0.25).buckets(IDS[:200]))


@pytest.mark.parametrize("share", [0.05, 0.25, 0.5])
def test_the_split_is_within_one_point_of_the_share(share: float) -> None:
    observed = Router("exp-2", share).to_challenger(IDS).mean()
    assert abs(observed - share) <= 0.01


def test_vector_and_scalar_routing_agree_and_integer_ids_work() -> None:
    router = Router("exp-3", 0.3)
    mask = router.to_challenger(range(1_000))
    assert mask.tolist() == [router.arm(i) == "challenger" for i in range(1_000)]


def test_ramping_up_only_adds_entities_and_a_new_salt_reshuffles() -> None:
    small, large = (
        Router("exp-4", 0.05).to_challenger(IDS),
        Router("exp-4", 0.25).to_challenger(IDS),
    )
    assert small.sum() > 0 and not (small & ~large).any()
    other = Router("exp-5", 0.05).to_challenger(IDS)
    assert (other & small).sum() < 0.5 * small.sum()
    assert Router("exp-4", 1.0).to_challenger(IDS).all()
    assert not Router("exp-4", 0.0).to_challenger(IDS).any()
    with pytest.raises(ValueError):
        Router("exp-4", 1.5)


def test_routing_costs_well_under_a_tenth_of_a_millisecond() -> None:
    router = Router("exp-6", 0.25)
    samples = []
    for entity in IDS[:2_000]:
        t0 = time.perf_counter()
        router.arm(entity)
        samples.append(time.perf_counter() - t0)
    assert float(np.median(samples)) < 1e-4
