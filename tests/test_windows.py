"""The sliding-window bump hunt: calibrated cuts keep background flat; an injected resonance is found where it is."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyhunt.analysis.bumphunt import DEFAULT_EDGES, global_from_toys, mjj_hist
from anomalyhunt.analysis.hunt_toys import subsamples
from anomalyhunt.analysis.injection import inject_signal
from anomalyhunt.analysis.regions import Regions
from anomalyhunt.analysis.windows import calibrated_cuts, hunt_windows
from anomalyhunt.demo import FEATURES, shipped_features

FAST_HGB = {"n_ensemble": 1, "n_threads": 1, "max_iter": 100}


def test_calibrated_cuts_keep_a_flat_efficiency():
    rng = np.random.default_rng(3)
    mjj = 2800 + rng.exponential(600, 200_000)
    scores = rng.normal(size=len(mjj)) + mjj / 2000  # mass-dependent score, as a CWoLa classifier's often is
    ref_mjj = rng.uniform(3200, 3600, 80_000)
    ref_scores = rng.normal(size=len(ref_mjj)) + ref_mjj / 2000
    sel = calibrated_cuts(scores, mjj, ref_scores, ref_mjj, (3200, 3600), [0.1], DEFAULT_EDGES)[0.1]
    before = mjj_hist(mjj, DEFAULT_EDGES).values()
    after = mjj_hist(mjj[sel], DEFAULT_EDGES).values()
    full = before > 1000
    eff = after[full] / before[full]
    np.testing.assert_allclose(eff, 0.1, atol=4 * np.sqrt(0.1 * 0.9 / before[full]).max())
    # a template that underestimates the scores of SR background makes an SR excess: the cut is only as good as
    # the template (which is why the hunt interpolates thresholds from the sidebands by default)
    biased = calibrated_cuts(scores, mjj, ref_scores - 0.3, ref_mjj, (3200, 3600), [0.1], DEFAULT_EDGES)[0.1]
    in_sr = (mjj >= 3200) & (mjj < 3600)
    assert biased[in_sr].mean() > 0.13 and abs(biased[~in_sr & (mjj < 5000)].mean() - 0.1) < 0.01


def test_effective_trials_from_toys():
    """Toys whose max Z is the largest of 10 independent N(0, 1) trials measure about 10 effective trials, and the
    extrapolated global p-value of a local 4 sigma is ~10 x its local p-value."""
    rng = np.random.default_rng(2)
    g = global_from_toys(4.0, rng.standard_normal((4000, 10)).max(axis=1), "test")
    assert 8.0 < g.n_eff < 12.5
    assert g.p_value < 2e-3  # counted directly, 4000 toys barely reach the true 3.2e-4
    assert 2.5e-4 < g.p_extrapolated < 4.0e-4 and 3.3 < g.z_extrapolated < 3.5


def test_toy_subsamples_are_disjoint_within_a_block():
    rows = subsamples(1000, 0.25, 6, seed=3)
    assert [len(r) for r in rows] == [250] * 6
    assert len(np.unique(np.concatenate(rows[:4]))) == 1000  # one block: 4 disjoint quarters
    assert not np.array_equal(rows[0], rows[4])


@pytest.fixture(scope="module")
def demo_table(lhco_dir):  # the shipped table is derived from the recorded sample; tie the physics test to it
    table = shipped_features()
    return table[table.label == 0].reset_index(drop=True), table[table.label == 1].reset_index(drop=True)


def _hunt(bkg, sig, n_signal, seed, windows=((3.2, 3.6), (3.6, 4.0))):
    s = inject_signal(bkg, sig, regions=Regions((2.8, 7.0)), n_signal=n_signal, seed=seed, features=FEATURES,
                      test_fraction=0.15, idealized_fraction=0.15)  # fmt: skip
    table, _ = hunt_windows(s.x, s.m, windows, ["idealized"], x_ideal=s.x_ideal, m_ideal=s.m_ideal,
                            efficiencies=(0.1, 0.01), classifier_config=FAST_HGB, folds=3, seed=seed,
                            progress=False)  # fmt: skip
    return table


@pytest.mark.slow
def test_median_significance_rises_with_signal_size(demo_table):
    """The full hunt (idealized reference, 1% cut, 3.2-3.6 TeV window) over 5 seeds per level. Measured medians:
    0 -> -0.9, 600 -> 3.4, 1000 -> 5.6 (S/sqrt(B) in 3.3-3.7 TeV about 0, 2.3, 3.8); single seeds scatter
    (600: -3.7 to 4.5), which is why the claim is about medians."""
    bkg, sig = demo_table
    medians = []
    for n in (0, 600, 1000):
        z = [_hunt(bkg, sig, n, seed, windows=((3.2, 3.6),)).query("efficiency == 0.01").z.iloc[0] for seed in range(5)]
        medians.append(float(np.median(z)))
    assert medians[0] < 2.0 < medians[1] + 1.0 and medians[1] < medians[2], medians
    assert medians[2] > 3.0, medians


@pytest.mark.slow
def test_injected_resonance_is_found_in_its_window(demo_table):
    """Idealized reference, 245k events. Measured (seed 11): background only, max local Z over 2 windows x 2 cuts
    3.5 (at 10%, where the shape of the true efficiency inside the SR is not captured by the interpolated threshold;
    see ``windows.apply_cuts``); 600 injected W' events (S/sqrt(B) ~ 2.3 in 3.3-3.7 TeV): Z = -1.6 before any cut
    and 5.0 after the 1% cut in the 3.2-3.6 TeV window."""
    bkg, sig = demo_table
    t0 = _hunt(bkg, sig, 0, seed=11)
    assert t0[t0.efficiency < 1].z.max() < 4.0  # background only: nothing beyond the method's known systematics
    t = _hunt(bkg, sig, 600, seed=11)
    raw = t[(t.efficiency == 1) & (t.sr_lo == 3.2)].z.iloc[0]
    cut = t[(t.efficiency == 0.01) & (t.sr_lo == 3.2)].z.iloc[0]
    assert raw < 2.0 and cut > 3.0  # invisible before the cut, significant after it, in the window holding 3.5 TeV
    assert cut > t0[(t0.efficiency == 0.01) & (t0.sr_lo == 3.2)].z.iloc[0] + 2
