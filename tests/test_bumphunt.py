"""Dijet fits, flat-efficiency cuts, sculpting test and significances, on the recorded Pythia QCD sample.

Numbers measured when these tests were written (350k QCD events, 2.8-7 TeV, 100 GeV bins) are quoted next to each
assertion; the bounds leave room for statistical fluctuations but fail for a wrong fit, a wrong Z or a sculpting cut.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomalyhunt.analysis.bumphunt import (
    DEFAULT_EDGES,
    bump_hunt,
    draw_fit_toys,
    efficiency_cuts,
    full_pipeline_toys,
    global_significance_fit_toys,
    injection_calibration,
    local_significance,
    mjj_hist,
    s_over_sqrt_b,
    scan,
    sculpting_test,
)
from anomalyhunt.analysis.dijetfit import fit_background, fit_signal_plus_background, signal_counts
from anomalyhunt.errors import InputError

pytestmark = pytest.mark.lhco
COLUMNS = ["mjj", "pt_j1", "delta_r", "tau21_j1"]


@pytest.fixture(scope="module")
def qcd(lhco_dir) -> pd.DataFrame:
    """All recorded QCD (14 files x 25k events), with the file index as ``file``."""
    from anomalyhunt.io.lhco import read_lhco_features

    files = sorted(lhco_dir.glob("rnd_qcd_seed*.features.h5"))
    assert len(files) >= 14, f"expected the 14 QCD files in {lhco_dir}"
    frames = [read_lhco_features(f)[COLUMNS].assign(file=i) for i, f in enumerate(files[:14])]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def qcd_fit(qcd):
    return fit_background(qcd["mjj"].to_numpy(), edges=DEFAULT_EDGES)


# ------------------------------------------------------------------------------------------------ dijet fit


def test_dijet_fit_describes_recorded_qcd(qcd, qcd_fit):
    mjj = qcd["mjj"].to_numpy()
    # Measured: deviance 44.4 for 38 ndf, p = 0.22; Pearson chi2 close to it.
    assert qcd_fit.valid
    assert qcd_fit.p_value > 0.01
    assert 0.6 < qcd_fit.deviance / qcd_fit.ndf < 1.6
    assert 0.6 < qcd_fit.pearson_chi2 / qcd_fit.ndf < 1.6
    assert abs(qcd_fit.background().sum() - qcd_fit.counts.sum()) < 1e-3 * qcd_fit.counts.sum()
    # Sideband fit (3.3-3.7 TeV masked): measured deviance 39.5 / 34, p = 0.24; its SR prediction matches the data
    # within a few Poisson sigma, since there is no signal.
    side = fit_background(mjj, edges=DEFAULT_EDGES, signal_region=(3300, 3700))
    assert side.p_value > 0.01 and (~side.mask).sum() == 4
    pred, obs = side.background()[~side.mask].sum(), side.counts[~side.mask].sum()
    assert abs(obs - pred) < 4 * np.sqrt(pred) + 0.01 * pred
    # The 3-parameter variant (p3 = 0) cannot describe 350k events (measured p ~ 1e-22): why 4 is the default.
    three = fit_background(mjj, edges=DEFAULT_EDGES, n_params=3)
    assert three.values["p3"] == 0.0 and three.p_value < 1e-6
    # Same histogram in TeV gives the same fit.
    tev = fit_background(mjj_hist(mjj / 1000.0, DEFAULT_EDGES / 1000.0), unit="TeV")
    np.testing.assert_allclose(tev.background(), qcd_fit.background(), rtol=1e-4)
    assert qcd_fit.p0 > 0


def test_units_and_bad_input_are_explicit():
    m = np.random.default_rng(0).uniform(2.8, 7.0, 1000)
    with pytest.raises(InputError, match="looks like TeV"):
        fit_background(m, edges=DEFAULT_EDGES / 1000.0)
    with pytest.raises(InputError, match="needs bin edges"):
        fit_background(m)
    with pytest.raises(InputError, match="unknown mjj unit"):
        fit_background(m, edges=DEFAULT_EDGES, unit="MeV")
    with pytest.raises(InputError, match="cannot constrain"):
        fit_background(m * 1000, edges=[2800, 2900, 3000, 3100], signal_region=(2700, 3200))


def test_signal_fit_recovers_an_asimov_bump(qcd_fit):
    """On Asimov data (fit + 2000 signal events at 3.5 TeV) the s+b fit returns the injected yield and mean."""
    e = qcd_fit.edges
    asimov = qcd_fit.background() + signal_counts(e, 2000.0, 3500.0, 210.0)
    sb = fit_signal_plus_background((asimov, e), 3400.0, mean_range=(3300, 3700))
    assert sb.values["signal"] == pytest.approx(2000, rel=0.05)
    assert sb.values["mean"] == pytest.approx(3500, abs=15)
    positive = fit_signal_plus_background((qcd_fit.background() - 0.5 * signal_counts(e, 2000, 3500, 210), e),
                                          3500.0, signal_positive=True)
    assert positive.values["signal"] >= 0 and positive.values["signal"] < 50


# ------------------------------------------------------------------------------------------------ significance


def test_background_only_local_z_is_standard_normal(qcd, qcd_fit):
    # Fit-only toys from the QCD fit, Gaussian fixed at 3.5 TeV. Measured (these 150 toys): median |Z| 0.75 (0.67 for
    # N(0, 1)), mean -0.01, std 1.00, 3% with |Z| > 2, none above 3.
    rng = np.random.default_rng(11)
    e = qcd_fit.edges
    z = np.array([local_significance((rng.poisson(qcd_fit.background()).astype(float), e), 3500.0).z
                  for _ in range(150)])
    assert np.median(np.abs(z)) < 0.9
    assert np.mean(z > 3) < 0.05 and np.mean(np.abs(z) > 2) < 0.12
    assert abs(z.mean()) < 0.3 and 0.75 < z.std() < 1.25
    # The real thing: each of the 14 recorded files is an independent 25k-event background-only sample.
    # Measured over 4 centres x 14 files: median |Z| 0.85, max |Z| 2.72.
    zf = []
    for _, grp in qcd.groupby("file"):
        h = mjj_hist(grp["mjj"].to_numpy())
        bkg = fit_background(h)
        zf += [local_significance(h, c, background=bkg).z for c in (3000.0, 3500.0, 4000.0, 4500.0)]
    zf = np.array(zf)
    assert np.median(np.abs(zf)) < 1.0 and np.max(np.abs(zf)) < 3.5 and abs(zf.mean()) < 0.5


def test_efficiency_nuisance_absorbs_a_calibration_error_of_its_size(qcd_fit):
    """A cut whose SR background efficiency is 8% too high looks like a bump, unless the 8% calibration uncertainty
    is profiled. Measured (60 pseudo-experiments, 1/10 of the QCD fit): mean Z 3.6 without, 0.4 with the nuisance;
    with the nuisance and no bias, Z has mean -0.4, spread 1.3 (the free SR normalisation leaves the floating
    Gaussian to chase the shape inside the SR)."""
    rng = np.random.default_rng(5)
    e = qcd_fit.edges
    b = 0.1 * qcd_fit.background()
    in_sr = (e[:-1] >= 3300) & (e[1:] <= 3700)
    z_plain, z_nuis, z_null = [], [], []
    for _ in range(60):
        biased = rng.poisson(np.where(in_sr, 1.08 * b, b)).astype(float)
        z_plain.append(bump_hunt((biased, e), (3300.0, 3700.0)).local.z)
        hunt = bump_hunt((biased, e), (3300.0, 3700.0), efficiency_error=0.08)
        z_nuis.append(hunt.local.z)
        z_null.append(bump_hunt((rng.poisson(b).astype(float), e), (3300.0, 3700.0), efficiency_error=0.08).local.z)
    assert hunt.local.background_fit.values["kappa"] > 0.0 and "kappa" in hunt.local.signal_fit.values
    assert np.mean(z_plain) > 2.5 and np.mean(z_nuis) < 1.5
    assert abs(np.mean(z_null)) < 0.7 and 0.7 < np.std(z_null) < 1.6


def test_injected_bump_significance_and_mean(qcd, qcd_fit):
    mjj = qcd["mjj"].to_numpy()
    per_event = s_over_sqrt_b(qcd_fit.background(), qcd_fit.edges, 1.0, 3500.0, 210.0)
    targets = (0.0, 3.0, 5.0, 7.0)  # S/sqrt(B) within 3.5 TeV +- 1.5 widths
    sizes = [int(round(t / per_event)) for t in targets]
    # (a) Calibration with the QCD shape: fit-only background draws + Gaussian signal of known size.
    # Measured medians vs Asimov: Z 0.53/1.55/2.69/3.81 vs 0.00/1.58/2.63/3.67 (the 4-parameter background profile
    # keeps ~0.53 of S/sqrt(B) at 3.5 TeV; with no signal the mean floating over +-1 width gives a small positive
    # look-elsewhere bias); fitted mean 3511 GeV and yield 2321 / 2305 at the top size.
    cal = injection_calibration(mjj, sizes, n_trials=16, background_mode="fit", seed=5)
    med = cal.groupby("injected")[["z", "z_asimov", "mean_fit", "s_over_sqrt_b"]].median()
    assert np.all(np.diff(med["z"].to_numpy()) > 0), med  # rises over 4 levels
    assert np.all(np.abs(med["z"] - med["z_asimov"]) < 1.0), med
    top = med.iloc[-1]
    assert top["s_over_sqrt_b"] == pytest.approx(7.0, rel=0.01)
    assert 0.4 * 7 < top["z_asimov"] < 0.7 * 7
    assert abs(top["mean_fit"] - 3500) < 60
    # (b) On the recorded QCD events themselves (bootstrap), Gaussian bump of S/sqrt(B) = 7 at 3.5 TeV.
    # Stated range: median Z in [0.3, 0.8] x S/sqrt(B) (measured 3.0 = 0.43 x 7: the profile loss, plus the
    # recorded QCD's own -0.9 sigma fluctuation at 3.5 TeV); fitted mean within 100 GeV (measured: median Z 3.24,
    # range 0.7-4.5 over 12 bootstraps, mean 3459 GeV, yield 0.93 of the injected).
    real = injection_calibration(mjj, [sizes[-1]], n_trials=12, background_mode="bootstrap", seed=6)
    assert 0.3 * 7 < real["z"].median() < 0.8 * 7
    assert abs(real["mean_fit"].median() - 3500) < 100
    assert (real["signal_fit"].median() / sizes[-1]) == pytest.approx(1.0, abs=0.45)


def test_bump_hunt_single_region(qcd):
    from anomalyhunt.analysis.bumphunt import inject_gaussian

    m, is_sig = inject_gaussian(qcd["mjj"].to_numpy(), 2500, 3500.0, rng=1)
    bh = bump_hunt(mjj_hist(m), (3300.0, 3700.0))
    # Measured: local Z 3.2, mean 3449 GeV, excess over the sideband prediction 549 (2.4 sqrt(B)) of the 1660 signal
    # events in the SR bins: the 34% of the signal that leaks into the sidebands pulls the sideband fit up.
    assert bh.local.z > 2.0 and 3300 <= bh.local.mean <= 3700
    sig_in_sr = np.sum(is_sig & (m > 3300) & (m < 3700))
    assert 0.2 * sig_in_sr < bh.excess < 1.1 * sig_in_sr
    assert bh.sideband_fit.p_value > 0.01


# ------------------------------------------------------------------------------------------------ scan + toys


def test_scan_and_fit_only_global_significance(qcd):
    mjj, score = qcd["mjj"].to_numpy(), -qcd["tau21_j1"].to_numpy()
    cut = efficiency_cuts(score, mjj, (0.1,), signal_region=(3300, 3700))[0.1]
    centres = np.arange(3100.0, 4800.0, 200.0)
    res = scan({0.1: cut}, centres)
    assert set(res.table["centre"]) == set(centres) and res.table["valid"].all()
    glob = global_significance_fit_toys(res, n_toys=25, seed=3)
    assert glob.method == "fit-only toys" and glob.n_toys == 25
    # Background only: no global excess. Measured: observed max Z 0.77, toy max Z median 1.15 and max 2.64
    # (look-elsewhere: above the single-window median 0), global p 0.85.
    assert glob.p_value > 0.05
    assert 0.5 < np.median(glob.toy_max_z) < 2.5 and glob.toy_max_z.max() < 4.0
    # With a large bump among the selected events (S/sqrt(B) = 13.6 in the window), the scan peaks at 3.5 TeV
    # (measured Z 7.1, yield 1488 +- 209 of 1500) and no toy comes close.
    rng = np.random.default_rng(4)
    bumped = cut.hist.values() + np.histogram(rng.normal(3500, 210, 1500), DEFAULT_EDGES)[0]
    res_s = scan({0.1: (bumped, DEFAULT_EDGES)}, centres)
    assert abs(res_s.best()["centre"] - 3500) <= 200 and res_s.max_z > 4
    glob_s = global_significance_fit_toys(res_s, n_toys=10, seed=3)
    assert glob_s.observed_max_z > glob_s.toy_max_z.max()
    assert glob_s.p_value == pytest.approx(1 / 11)


def test_nested_toys_follow_the_fits(qcd_fit):
    from anomalyhunt.analysis.bumphunt import ScanResult

    tight = fit_background((np.round(0.1 * qcd_fit.counts), qcd_fit.edges))
    res = ScanResult(pd.DataFrame({"z": [0.0]}), qcd_fit.edges, {0.5: qcd_fit.counts, 0.05: tight.counts},
                     {0.5: qcd_fit, 0.05: tight})
    rng = np.random.default_rng(0)
    draws = [draw_fit_toys(res, rng) for _ in range(400)]
    loose = np.array([d[0.5] for d in draws])
    tt = np.array([d[0.05] for d in draws])
    assert np.all(tt <= loose)  # nested selections
    np.testing.assert_allclose(loose.mean(0), qcd_fit.background(), rtol=0.1, atol=3)
    np.testing.assert_allclose(tt.mean(0), tight.background(), rtol=0.15, atol=3)


def test_full_pipeline_toys_hook(qcd):
    mjj = qcd["mjj"].to_numpy()
    seen = []

    def make_toy(seed: int):
        seen.append(seed)
        rng = np.random.default_rng(seed)
        return rng.random(len(mjj)), mjj  # a "retrained classifier" that knows nothing

    glob = full_pipeline_toys(make_toy, 3, observed_max_z=10.0, efficiencies=(0.1,), centres=[3300.0, 3700.0],
                              seed=100)
    assert seen == [100, 101, 102] and glob.method == "full-pipeline toys"
    assert glob.toy_max_z.max() < 4 and glob.p_value == pytest.approx(1 / 4)


# ------------------------------------------------------------------------------------------------ cuts, sculpting


def test_sculpting_test_positive_control(qcd):
    a, b = qcd[qcd["file"] < 7], qcd[qcd["file"] >= 7]
    rng = np.random.default_rng(2)
    rng_ = (2800.0, 7000.0)

    def global_cut(values: np.ndarray) -> np.ndarray:
        return values > np.quantile(values, 0.9)

    # Positive controls: kinematic variables correlated with mjj sculpt it (measured chi2 ~1.9e4 and ~4e4 / 19).
    for col in ("pt_j1", "delta_r"):
        res = sculpting_test(a["mjj"].to_numpy(), global_cut(a[col].to_numpy()), mjj_range=rng_)
        assert res.p_value < 1e-6, col
    # A random score passes (measured p = 0.40).
    res = sculpting_test(a["mjj"].to_numpy(), global_cut(rng.random(len(a))), mjj_range=rng_)
    assert res.p_value > 0.01 and res.overall_efficiency == pytest.approx(0.1, abs=0.01)
    # tau21 with flat-efficiency thresholds derived on files 1-7, applied to the independent files 8-14, passes at
    # every efficiency (measured p = 0.31, 0.56, 0.14), and keeps the target efficiency.
    cuts = efficiency_cuts(b["tau21_j1"].to_numpy(), b["mjj"].to_numpy(), (0.1, 0.01, 0.002),
                           reference=(a["tau21_j1"].to_numpy(), a["mjj"].to_numpy()), signal_region=(3300, 3700))
    inside = (b["mjj"] >= 2800) & (b["mjj"] < 7000)
    for eff, cut in cuts.items():
        res = sculpting_test(b["mjj"].to_numpy(), cut.selected, mjj_range=rng_)
        assert res.p_value > 0.01, (eff, res.chi2, res.ndf)
        assert cut.selected[inside.to_numpy()].mean() == pytest.approx(eff, rel=0.25)
        assert cut.hist.sum().value == cut.selected[inside.to_numpy()].sum()


def test_flat_cuts_keep_a_signal_region_excess(qcd):
    """Thresholds come from the sidebands, so signal-like events in the SR survive instead of being cut to eff."""
    mjj = qcd["mjj"].to_numpy()
    rng = np.random.default_rng(8)
    sig_m = rng.normal(3500, 100, 2000)
    m = np.r_[mjj, sig_m]
    s = np.r_[rng.random(len(mjj)), 0.99 + 0.01 * rng.random(len(sig_m))]
    cut = efficiency_cuts(s, m, (0.1,), signal_region=(3300, 3700))[0.1]
    in_sr = (m > 3300) & (m < 3700)
    n_bkg_sr = np.sum(in_sr[: len(mjj)])
    kept = cut.selected[in_sr].sum()
    signal_kept = np.sum(in_sr[len(mjj):])
    assert kept == pytest.approx(0.1 * n_bkg_sr + signal_kept, rel=0.05)


def test_cut_and_sculpting_input_errors():
    with pytest.raises(InputError, match="equal length"):
        efficiency_cuts(np.zeros(5), np.zeros(4))
    with pytest.raises(InputError, match=r"in \(0, 1\)"):
        efficiency_cuts(np.zeros(5), np.full(5, 3000.0), (1.5,))
    with pytest.raises(InputError, match="not testable"):
        sculpting_test(np.linspace(3000, 4000, 10), np.zeros(10, bool))
