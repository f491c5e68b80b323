"""ROC/SIC metrics against analytically known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from anomalyhunt.analysis import metrics

N = 200_000


@pytest.fixture(scope="module")
def gaussians() -> tuple[np.ndarray, np.ndarray]:
    """Background N(0, 1), signal N(1, 1), score = x: every curve is known in closed form."""
    rng = np.random.default_rng(1)
    score = np.concatenate([rng.normal(0.0, 1.0, N), rng.normal(1.0, 1.0, N)])
    y = np.concatenate([np.zeros(N), np.ones(N)])
    return y, score


def test_auc_and_fixed_efficiency_points(gaussians) -> None:
    y, s = gaussians
    mu = 1.0
    # AUC of two unit Gaussians a distance mu apart: Phi(mu / sqrt 2) = 0.7602.
    assert metrics.auc(y, s) == pytest.approx(norm.cdf(mu / np.sqrt(2)), abs=2e-3)
    for eps_s in (0.2, 0.5):
        cut = mu + norm.isf(eps_s)  # eps_S(cut) = eps_s
        eps_b = norm.sf(cut)  # 0.0328 at eps_S = 0.2, 0.1587 at 0.5
        assert metrics.background_efficiency_at(y, s, eps_s) == pytest.approx(eps_b, rel=0.03)
        assert metrics.sic_at_signal_efficiency(y, s, eps_s) == pytest.approx(eps_s / np.sqrt(eps_b), rel=0.02)
    assert metrics.rejection_at(y, s, 0.2) == pytest.approx(1 / norm.sf(mu + norm.isf(0.2)), rel=0.03)
    # The eps_S = 0.2 cut keeps ~6.6k of 200k background events: fine for 50, not for 10k.
    assert metrics.sic_at_signal_efficiency(y, s, 0.2, min_background=50) is not None
    assert metrics.sic_at_signal_efficiency(y, s, 0.2, min_background=10_000) is None
    assert metrics.rejection_at(y, s, 0.2, min_background=10_000) is None
    # With thousands of events kept, the 84% lower bound sits just below the SIC (upper limit k + ~sqrt(k)).
    sic = metrics.sic_at_signal_efficiency(y, s, 0.2)
    assert 0.98 * sic < metrics.sic_lower_bound_at_signal_efficiency(y, s, 0.2) < sic
    # 200k background events >= 50k: SIC at eps_B = 1e-3 is defined; eps_S = Q(Q^-1(1e-3) - mu) = 0.0183.
    expected = norm.sf(norm.isf(1e-3) - mu) / np.sqrt(1e-3)
    assert metrics.sic_at_background_efficiency(y, s, 1e-3) == pytest.approx(expected, rel=0.1)


def test_max_sic_matches_analytic_maximum(gaussians) -> None:
    y, s = gaussians
    t = np.linspace(-3, 5, 20001)
    sic = norm.sf(t - 1.0) / np.sqrt(norm.sf(t))
    allowed = norm.sf(t) * N >= 50  # the same statistics cut as max_sic
    expected = sic[allowed].max()
    assert metrics.max_sic(y, s, min_background=50) == pytest.approx(expected, rel=0.03)
    # A larger minimum number of background events can only lower the maximum.
    assert metrics.max_sic(y, s, min_background=5000) <= metrics.max_sic(y, s, min_background=50) + 1e-12


def test_perfect_and_random_scores() -> None:
    y = np.concatenate([np.zeros(5000), np.ones(1000)])
    perfect = y.astype(float)
    assert metrics.auc(y, perfect) == 1.0
    # Every signal event kept with exactly 50 of 5000 background events: SIC = 1 / sqrt(50 / 5000) = 10.
    ranks = np.concatenate([np.arange(5000) / 5000, 1 + np.arange(1000) / 1000])
    assert metrics.max_sic(y, ranks, min_background=50) == pytest.approx(10.0, rel=1e-9)
    # No background survives a cut at eps_S = 0.2: the SIC there is not measurable, not infinite.
    assert metrics.sic_at_signal_efficiency(y, ranks, 0.2) is None
    assert metrics.rejection_at(y, ranks, 0.2) is None
    # Fewer than 50k background test events: no SIC at eps_B = 1e-3.
    assert metrics.sic_at_background_efficiency(y, ranks, 1e-3) is None

    rng = np.random.default_rng(3)
    y = np.concatenate([np.zeros(50_000), np.ones(50_000)])
    noise = rng.random(len(y))
    assert metrics.auc(y, noise) == pytest.approx(0.5, abs=0.01)
    # A random cut keeps eps_S = eps_B: SIC = sqrt(eps_S).
    assert metrics.sic_at_signal_efficiency(y, noise, 0.5) == pytest.approx(np.sqrt(0.5), rel=0.03)


def test_summary_and_spread_over_seeds() -> None:
    rng = np.random.default_rng(4)
    y = np.concatenate([np.zeros(2000), np.ones(2000)])
    s = np.concatenate([rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)])
    summary = metrics.summarize(y, s)
    assert set(summary) >= {"max_sic", "sic_at_0.2", "sic_at_0.5", "sic_at_1e-3", "auc", "rejection_at_0.2"}
    assert summary["sic_at_1e-3"] is None
    assert summary["auc"] == pytest.approx(norm.cdf(2 / np.sqrt(2)), abs=0.02)

    sp = metrics.spread([1.0, 2.0, 3.0, None, float("nan")])
    assert sp["median"] == 2.0 and sp["n"] == 3 and sp["p16"] < 2.0 < sp["p84"]
    assert metrics.spread([None])["median"] is None

    runs = [
        {"method": "a", "sr": [3.3, 3.7], "injection": "n=1", "seed": k, "max_sic": float(k), "auc": 0.6}
        for k in range(5)
    ] + [{"method": "b", "sr": [3.3, 3.7], "injection": "n=1", "seed": 0, "max_sic": 9.0, "auc": 0.9}]
    agg = {row["method"]: row for row in metrics.aggregate(runs)}
    assert agg["a"]["max_sic"]["median"] == 2.0 and agg["a"]["seeds"] == [0, 1, 2, 3, 4]
    assert agg["b"]["max_sic"]["n"] == 1 and agg["b"]["template_auc"]["median"] is None


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="both signal"):
        metrics.auc(np.zeros(10), np.arange(10.0))
    with pytest.raises(ValueError, match="labels"):
        metrics.max_sic(np.array([0, 1]), np.arange(3.0))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.auc(np.array([0, 1]), np.array([0.0, np.nan]))


@pytest.mark.parametrize("kept,upper", [(0, 1.8326), (1, 3.2885), (3, 5.9038)])
def test_sic_lower_bound_counts_the_background_a_tight_cut_keeps(kept: int, upper: float) -> None:
    """1,000 signal and 10,000 background events; the eps_S = 0.2 cut keeps ``kept`` background events, whose 84%
    Poisson upper limit is ``upper`` (-ln 0.16 = 1.8326 for none): the bound is 0.2 / sqrt(upper / 10,000), where
    the SIC itself is undefined (none kept) or rests on one or three events."""
    signal = np.linspace(1.0, 2.0, 1000)
    background = np.r_[np.full(kept, 1.9), np.linspace(-3.0, 0.5, 10_000 - kept)]  # above the cut at ~1.8
    y = np.r_[np.ones(1000), np.zeros(10_000)]
    bound = metrics.sic_lower_bound_at_signal_efficiency(y, np.r_[signal, background], 0.2)
    assert bound == pytest.approx(0.2 / np.sqrt(upper / 10_000), rel=1e-3)
    assert metrics.sic_at_signal_efficiency(y, np.r_[signal, background], 0.2, min_background=50) is None
