"""Direct background estimation (arXiv 2411.00085): the reference's out-of-fold pass fraction times the SR count.

Counting experiments with known truth: SR background and reference scores from the same N(0, 1), or from trainings
whose templates are each off by a random shift (a generator's retraining spread). The pulls (observed - expected)
/ sqrt(expected + reference error^2) must be N(0, 1) where the reference error is right: counting alone without a
training spread, the ensemble's spread with one; counting alone with a spread must be visibly too small.
"""

from __future__ import annotations

import numpy as np

from anomalyhunt.analysis.windows import direct_count


def _pulls(n_rep: int, members: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pulls with the counting error and with the ensemble's error, ``n_rep`` background-only experiments of 20k SR
    events and 80k reference events from ``members`` trainings each shifted by N(0, spread), 5 folds, cut at 10%."""
    rng = np.random.default_rng(seed)
    stat, ens = np.empty(n_rep), np.empty(n_rep)
    for i in range(n_rep):
        sr = rng.normal(size=20_000)
        member = np.repeat(np.arange(members), 80_000 // members)
        ref = rng.normal(size=len(member)) + rng.normal(0.0, spread, members)[member]
        d = direct_count(sr, rng.integers(5, size=len(sr)), ref, rng.integers(5, size=len(ref)), 0.1,
                         member if members > 1 else None)  # fmt: skip
        diff = d["observed"] - d["expected"]
        stat[i] = diff / np.sqrt(d["expected"] + d["stat_error"] ** 2)
        ens[i] = diff / np.sqrt(d["expected"] + d.get("template_error", d["stat_error"]) ** 2)
    return stat, ens


def test_direct_estimate_is_calibrated_by_counting_when_the_template_is_exact():
    """Same distribution for reference and SR background: the (k+1)/(n+1) pass fraction is unbiased and the
    counting error covers the spread (measured: mean -0.02, SD 0.98 over 400 experiments)."""
    stat, _ = _pulls(300, 1, 0.0, seed=1)
    assert abs(stat.mean()) < 0.15 and 0.85 < stat.std() < 1.15, (stat.mean(), stat.std())
    one = direct_count(np.zeros(10), np.zeros(10, int), np.arange(100.0), np.zeros(100, int), 0.1)
    assert "template_error" not in one  # one training: no spread to measure, counting only


def test_ensemble_spread_covers_the_retraining_uncertainty():
    """Five trainings, each template shifted by N(0, 0.05) in score (a few % in pass fraction): counting alone
    under-covers (measured SD 1.80), the spread between the trainings restores coverage (measured 1.14; five members
    estimate their spread with 4 degrees of freedom, so the pulls have slightly wide tails)."""
    stat, ens = _pulls(300, 5, 0.05, seed=2)
    assert stat.std() > 1.5, stat.std()
    assert abs(ens.mean()) < 0.2 and 0.85 < ens.std() < 1.3, (ens.mean(), ens.std())


def test_auto_significance_is_the_direct_count_for_the_idealized_reference_only():
    """The hunt's default local Z (``auto``): the direct count for the idealized reference (an exact sample of the
    SR background), the dijet fit with the mean fixed for a template method; the summary picks each method's best
    window by its own definition, and a named definition applies to every method."""
    import pandas as pd

    from anomalyhunt.analysis.hunt import significance_for, summarize_hunt

    rows = [dict(method=method, sr_lo=lo, sr_hi=lo + 0.4, efficiency=eff, z=0.0, z_fixed=zf, z_direct=zd,
                 fitted_mean_gev=1000.0 * (lo + 0.2), limit_obs=50.0, limit_exp=40.0, max_sic=None, seconds_train=1.0,
                 seconds_template=0.0)
            for method in ("idealized", "cathode") for lo, zf, zd in ((3.0, 2.5, 0.4), (3.4, 0.3, 1.9))
            for eff in (1.0, 0.01)]  # fmt: skip
    auto = summarize_hunt(pd.DataFrame(rows)).set_index("method")
    assert auto.loc["idealized", ["significance", "window", "z_local"]].tolist() == ["direct", "3.4-3.8", 1.9]
    assert auto.loc["cathode", ["significance", "window", "z_local"]].tolist() == ["fit-fixed", "3-3.4", 2.5]
    fixed = summarize_hunt(pd.DataFrame(rows), "fit-fixed").set_index("method")
    assert fixed.loc["idealized", ["window", "z_local"]].tolist() == ["3-3.4", 2.5]
    assert significance_for("idealized", "fit-floating") == "fit-floating"
