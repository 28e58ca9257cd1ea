"""The normal-mixture SPRT: its formula, its interval, its two designs, its accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.rollout import sequential
from tasks.rollout.sequential import BETTER, UNDECIDED, WORSE, Summary

ALPHA, RHO = 0.05, 1e-3


def test_summary_from_losses_and_from_sums_agree() -> None:
    x = np.random.default_rng(0).exponential(0.5, (3, 250))
    s = Summary.of(x)
    t = Summary.from_sums(np.float64(250), x.sum(axis=1), (x**2).sum(axis=1))
    np.testing.assert_allclose(s.mean, x.mean(axis=1))
    np.testing.assert_allclose(s.var, x.var(axis=1, ddof=1))
    np.testing.assert_allclose(t.mean, s.mean)
    np.testing.assert_allclose(t.var, s.var, rtol=1e-9)


def test_p_value_is_the_inverse_mixture_likelihood_ratio() -> None:
    est, var, unit = 0.03, 1e-4, 0.5  # n_eff = 5000, r = 5
    test = sequential.mixture_test(est, var, unit, alpha=ALPHA, rho=RHO)
    r, z = RHO * unit / var, est / math.sqrt(var)
    lam = (1 + r) ** -0.5 * math.exp(z * z / 2 * r / (1 + r))
    assert float(test.p_value) == pytest.approx(1 / lam)
    assert float(test.n_eff) == pytest.approx(5000)


def test_the_interval_excludes_the_margin_exactly_when_p_is_below_alpha() -> None:
    rng = np.random.default_rng(1)
    est = rng.normal(0, 0.02, 5000)
    var = rng.uniform(1e-5, 1e-3, 5000) / 10
    for margin in (0.0, 0.01):
        test = sequential.mixture_test(est, var, 0.5, alpha=ALPHA, rho=RHO, margin=margin)
        outside = (test.lower > margin) | (test.upper < margin)
        assert outside.any() and not outside.all()
        np.testing.assert_array_equal(outside, test.p_value <= ALPHA)


def test_paired_design_sees_a_small_shift_that_two_samples_do_not() -> None:
    rng = np.random.default_rng(2)
    champion = rng.exponential(0.5, 3000)
    challenger = champion + 0.01 + rng.normal(0, 0.05, 3000)  # worse by 0.01 on every row
    paired = sequential.paired(Summary.of(challenger - champion), alpha=ALPHA, rho=RHO)
    two = sequential.two_sample(Summary.of(champion), Summary.of(challenger), alpha=ALPHA, rho=RHO)
    assert paired.direction == "worse" and float(paired.lower) > 0
    assert two.direction == "undecided"
    better = sequential.paired(Summary.of(champion - challenger), alpha=ALPHA, rho=RHO)
    assert better.direction == "better" and int(better.verdict()) == BETTER


def test_two_sample_handles_unequal_arms() -> None:
    rng = np.random.default_rng(3)
    champion, challenger = rng.exponential(0.5, 50_000), rng.exponential(0.7, 2_500)
    test = sequential.two_sample(Summary.of(champion), Summary.of(challenger), alpha=ALPHA, rho=RHO)
    assert test.direction == "worse"
    assert float(test.lower) < 0.2 < float(test.upper)  # covers the true difference
    assert 2_500 < float(test.n_eff) < 50_000  # between the arms' sizes


def test_accumulate_keeps_the_smallest_p_and_intersects_the_intervals() -> None:
    first = sequential.mixture_test(0.02, 1e-4, 0.5, alpha=ALPHA, rho=RHO)
    second = sequential.mixture_test(0.0, 5e-5, 0.5, alpha=ALPHA, rho=RHO)
    both = sequential.accumulate(first, second)
    assert float(both.p_value) == float(first.p_value) < float(second.p_value)
    assert float(both.lower) == max(float(first.lower), float(second.lower))
    assert float(both.upper) == min(float(first.upper), float(second.upper))
    assert sequential.accumulate(None, second) is second


def test_no_variance_is_no_evidence() -> None:
    same = Summary.of(np.full(500, 0.3))
    test = sequential.paired(Summary.of(np.zeros(500)), alpha=ALPHA, rho=RHO)
    assert float(test.p_value) == 1.0 and math.isinf(float(test.upper))
    assert int(sequential.two_sample(same, same, alpha=ALPHA, rho=RHO).verdict()) == UNDECIDED
    assert WORSE == -BETTER != UNDECIDED
