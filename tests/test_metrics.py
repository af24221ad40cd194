"""Hand-made cases with known answers for marlgen.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marlgen import metrics
from marlgen.metrics import (
    assign_to_mixture,
    class_histogram_kl,
    frechet_distance,
    mean_ci95,
    mode_figures,
    mode_histogram,
    prdc,
    reverse_kl,
    standardised_distance,
    within_mode_spread,
)

RING8 = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


# ---------------------------------------------------------------- mixtures


def test_points_at_means_are_hq_with_their_own_mode():
    modes = assign_to_mixture(RING8[[3, 0, 7, 7, 5]], RING8, std=0.01)
    assert modes.dtype == np.int64
    np.testing.assert_array_equal(modes, [3, 0, 7, 7, 5])
    np.testing.assert_array_equal(standardised_distance(RING8, RING8, 0.01), np.zeros(8))


def test_hq_threshold_boundary():
    std = 0.05
    centre = RING8[2]  # (0, 1); the next means are ~0.77 away, far beyond 3 std
    samples = np.stack([centre + [2.9 * std, 0.0], centre + [0.0, -3.1 * std], centre + [3.0 * std, 0]])
    np.testing.assert_allclose(standardised_distance(samples, RING8, std), [2.9, 3.1, 3.0])
    modes = assign_to_mixture(samples[:2], RING8, std)
    np.testing.assert_array_equal(modes, [2, -1])
    # a looser threshold accepts the 3.1-std point
    np.testing.assert_array_equal(assign_to_mixture(samples[:2], RING8, std, hq_threshold=3.5), [2, 2])


@pytest.mark.parametrize("dim", [2, 12])
def test_assignment_matches_brute_force(dim):
    rng = np.random.default_rng(0)
    means = rng.normal(size=(25, dim)) * 3
    samples = rng.normal(size=(5000, dim)) * 3
    dist = np.linalg.norm(samples[:, None] - means[None], axis=-1)
    expect = np.where(dist.min(1) / 0.3 < 3, dist.argmin(1), -1)
    np.testing.assert_array_equal(assign_to_mixture(samples, means, 0.3), expect)
    np.testing.assert_allclose(standardised_distance(samples, means, 0.3), dist.min(1) / 0.3)
    # float32 samples (a decoder's output) are compared in float64, as if converted first
    as32 = samples.astype(np.float32)
    np.testing.assert_array_equal(
        standardised_distance(as32, means, 0.3), standardised_distance(as32.astype(np.float64), means, 0.3)
    )


def test_nearest_mean_ties_and_nan_as_argmin():
    means = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 0.0]])
    samples = np.array([[1.0, 0.0], [np.nan, 0.0], [4.0, 1.0]])  # a tie (means 0 and 1), a NaN, plain
    idx, dist = metrics._nearest_mean(samples, means, 0.5)
    sq = ((samples[:, None] - means[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, sq.argmin(1))  # [0, 0, 2]: ties to the lowest index
    np.testing.assert_array_equal(dist, np.sqrt(sq[np.arange(3), sq.argmin(1)]) / 0.5)  # NaN stays NaN


def test_nearest_mean_matches_argmin_over_many_rows_and_a_nan_mean():
    # Rows on a coarse grid make many exact ties; a NaN mean makes argmin pick it in every row, as a
    # branch-free argmin must too (it only sees the NaN after it has passed finite candidates).
    rng = np.random.default_rng(0)
    samples = rng.integers(-3, 4, size=(500, 3)).astype(np.float64)
    with_nan = np.array([[0.0, 0.0, 0.0], [1.0, np.nan, 0.0]])
    for means in (rng.integers(-3, 4, size=(9, 3)).astype(np.float64), with_nan):
        idx, dist = metrics._nearest_mean(samples, means, 0.5)
        sq = ((samples[:, None] - means[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(idx, sq.argmin(1))
        np.testing.assert_array_equal(dist, np.sqrt(sq[np.arange(len(sq)), sq.argmin(1)]) / 0.5)


def test_assignment_empty_and_bad_input():
    assert assign_to_mixture(np.zeros((0, 2)), RING8, 0.01).shape == (0,)
    with pytest.raises(ValueError):
        assign_to_mixture(np.zeros((3, 3)), RING8, 0.01)
    with pytest.raises(ValueError):
        assign_to_mixture(np.zeros((3, 2)), RING8, 0.0)
    with pytest.raises(ValueError, match="at least one dimension"):
        assign_to_mixture(np.zeros((3, 0)), np.zeros((2, 0)), 0.1)


def test_mode_histogram_ignores_negative():
    hist = mode_histogram(np.array([0, 0, 2, -1, -1, 2, 2]), 4)
    np.testing.assert_array_equal(hist, [2, 0, 3, 0])
    with pytest.raises(ValueError):
        mode_histogram(np.array([4]), 4)


def test_reverse_kl_known_values():
    assert reverse_kl(np.array([5, 5, 5, 5])) == pytest.approx(0.0, abs=1e-12)
    assert reverse_kl(np.array([0, 0, 7, 0, 0, 0, 0, 0])) == pytest.approx(math.log(8))
    expected = 0.75 * math.log(0.75 * 2) + 0.25 * math.log(0.25 * 2)  # ~0.130812
    assert reverse_kl(np.array([3, 1])) == pytest.approx(expected)
    assert reverse_kl(np.array([3, 1])) == pytest.approx(0.1308120546)
    assert math.isnan(reverse_kl(np.zeros(8)))


def test_mode_figures_hand_made():
    modes = np.array([0, 0, 1, -1, 1, 3, -1, -1, 0, 0])  # 7 HQ of 10; modes 0,1,3 of 5
    fig = mode_figures(modes, 5)
    assert fig["modes_covered"] == 3 and isinstance(fig["modes_covered"], int)
    assert fig["modes_total"] == 5
    assert fig["high_quality_fraction"] == pytest.approx(0.7)
    p = np.array([4, 2, 1]) / 7
    assert fig["reverse_kl"] == pytest.approx(float(np.sum(p * np.log(p * 5))))


def test_mode_figures_no_hq_and_empty():
    fig = mode_figures(np.array([-1, -1]), 8)
    assert fig["modes_covered"] == 0 and fig["high_quality_fraction"] == 0.0
    assert math.isnan(fig["reverse_kl"])
    fig = mode_figures(np.array([], dtype=np.int64), 8)
    assert fig["high_quality_fraction"] == 0.0 and fig["modes_total"] == 8
    assert math.isnan(fig["reverse_kl"])


def test_class_histogram_kl():
    assert class_histogram_kl(np.arange(10).repeat(3), 10) == pytest.approx(0.0, abs=1e-12)
    assert class_histogram_kl(np.full(50, 4), 10) == pytest.approx(math.log(10))
    with pytest.raises(ValueError):
        class_histogram_kl(np.array([0, -1]), 10)


def test_within_mode_spread():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    samples = np.concatenate([c + 0.1 * rng.standard_normal((2000, 2)) for c in centres])
    modes = np.repeat([0, 1], 2000)
    assert within_mode_spread(samples, modes) == pytest.approx(0.1, rel=0.05)
    # collapsed generator: one repeated point per mode
    collapsed = np.repeat(centres, 50, axis=0)
    assert within_mode_spread(collapsed, np.repeat([0, 1], 50)) == 0.0
    # non-HQ samples are ignored; modes with a single sample are skipped
    noisy = np.concatenate([collapsed, [[100.0, -100.0], [0.5, 0.5]]])
    assert within_mode_spread(noisy, np.concatenate([np.repeat([0, 1], 50), [-1, 2]])) == 0.0
    assert math.isnan(within_mode_spread(centres, np.array([0, 1])))


def test_within_mode_spread_hand_value():
    samples = np.array([[0.0, 0.0], [2.0, 4.0]])  # per-axis std (ddof=1): sqrt(2), 2*sqrt(2)
    assert within_mode_spread(samples, np.array([0, 0])) == pytest.approx(1.5 * math.sqrt(2))
    # image-shaped samples are flattened: same numbers in a (n, 1, 1, 2) array
    assert within_mode_spread(samples.reshape(2, 1, 1, 2), np.array([0, 0])) == pytest.approx(
        1.5 * math.sqrt(2)
    )


# ---------------------------------------------------------------- PRDC


def _prdc_brute(real, fake, k_pr, k_dc):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # (N, M)

    def radii(d, k):  # k-th smallest excluding the zero on the diagonal
        return np.sort(d, axis=1)[:, k]

    r_pr, f_pr, r_dc = radii(d_rr, k_pr), radii(d_ff, k_pr), radii(d_rr, k_dc)
    return {
        "precision": (d_rf < r_pr[:, None]).any(axis=0).mean(),
        "recall": (d_rf < f_pr[None, :]).any(axis=1).mean(),
        "density": (d_rf < r_dc[:, None]).sum() / (k_dc * fake.shape[0]),
        "coverage": (d_rf.min(axis=1) < r_dc).mean(),
    }


@pytest.mark.parametrize("seed", range(6))
def test_prdc_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(40, 2))
    fake = rng.normal(loc=0.5, scale=1.3, size=(30, 2))
    got = prdc(real, fake)
    want = _prdc_brute(real, fake, 3, 5)
    for key in ("precision", "recall", "density", "coverage"):
        assert isinstance(got[key], float)
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_prdc_matches_brute_force_other_k_and_dim():
    rng = np.random.default_rng(42)
    real = rng.normal(size=(60, 16))
    fake = rng.normal(scale=0.8, size=(45, 16))
    got = prdc(real, fake, k_pr=1, k_dc=7)
    want = _prdc_brute(real, fake, 1, 7)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_prdc_identical_sets():
    real = np.random.default_rng(3).normal(size=(50, 3))
    got = prdc(real, real.copy())
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0
    assert got["density"] > 0.5


def test_prdc_disjoint_sets():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(30, 2))
    got = prdc(real, real + 100.0)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_rejects_too_few_points():
    with pytest.raises(ValueError):
        prdc(np.zeros((5, 2)), np.ones((3, 2)), k_pr=3)


# ---------------------------------------------------------------- Frechet distance


def _with_moments(rng, n, mean, cov):
    """n samples whose empirical mean and (ddof=1) covariance are exactly mean and cov."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T  # whiten: cov(z) = I
    return z @ np.linalg.cholesky(cov).T + mean


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_self_is_zero():
    x = np.random.default_rng(5).normal(size=(500, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_1d_closed_form():
    rng = np.random.default_rng(6)
    a = _with_moments(rng, 300, np.array([1.0]), np.array([[4.0]]))
    b = _with_moments(rng, 200, np.array([-2.0]), np.array([[0.25]]))
    # (m1 - m2)^2 + (s1 - s2)^2 = 9 + (2 - 0.5)^2
    assert frechet_distance(a, b) == pytest.approx(9.0 + 2.25, rel=1e-9)


def test_frechet_general_closed_form():
    rng = np.random.default_rng(7)
    d = 4
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    q1, q2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = q1 @ q1.T + 0.5 * np.eye(d), q2 @ q2.T + 0.1 * np.eye(d)
    a, b = _with_moments(rng, 400, m1, s1), _with_moments(rng, 300, m2, s2)
    r1 = _psd_sqrt(s1)  # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), an independent route
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * _psd_sqrt(r1 @ s2 @ r1))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_near_singular_is_finite():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(5, 20))  # rank-4 covariance in 20-D
    b = rng.normal(size=(6, 20))
    a[:, 0] = 1.0  # constant feature
    val = frechet_distance(a, b)
    assert np.isfinite(val) and val > 0


# ---------------------------------------------------------------- aggregation


def test_mean_ci95_hand_computation():
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    # mean 2, sample sd 1, t_{0.975, 2} = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    assert mean == 2.0
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert half == pytest.approx(2.484138, rel=1e-6)


def test_mean_ci95_small_inputs():
    mean, half = mean_ci95([0.7])
    assert mean == 0.7 and math.isnan(half)
    mean, half = mean_ci95([])
    assert math.isnan(mean) and math.isnan(half)
    assert mean_ci95(np.array([2.0, 2.0, 2.0])) == (2.0, 0.0)


def test_frechet_eps_fallback_when_sqrtm_not_finite(monkeypatch):
    """pytorch-fid numerics: a non-finite sqrtm is retried with eps on both diagonals."""
    real_sqrtm = metrics.linalg.sqrtm
    calls = []

    def flaky_sqrtm(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    expected = frechet_distance(a, b)
    monkeypatch.setattr(metrics.linalg, "sqrtm", flaky_sqrtm)
    got = frechet_distance(a, b, eps=1e-6)
    assert len(calls) == 2
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    np.testing.assert_allclose(calls[1], (s_a + 1e-6 * np.eye(3)) @ (s_b + 1e-6 * np.eye(3)))
    assert got == pytest.approx(expected, abs=1e-4)
