"""Poisson replica weights: an event with count w counts w times in every fit, cut, histogram and count of the hunt,
as w copies of it would, while its copies never sit on two sides of a split (k-fold folds, a generator's
training/validation split, a bootstrap draw), which duplicated rows would allow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anomalyhunt.analysis.bumphunt import efficiency_cuts
from anomalyhunt.analysis.regions import Regions
from anomalyhunt.analysis.replicas import check_counts, replica_weights
from anomalyhunt.analysis.templates import fit_generator
from anomalyhunt.analysis.windows import direct_count, hunt_windows
from anomalyhunt.errors import InputError


def test_counts_in_the_direct_estimate_equal_repeated_rows_in_their_fold():
    rng = np.random.default_rng(3)
    sr, ref = rng.normal(size=3000), rng.normal(size=9000)
    f_sr, f_ref = rng.integers(3, size=len(sr)), rng.integers(3, size=len(ref))
    w_sr, w_ref = replica_weights(len(sr), 1, 0), replica_weights(len(ref), 1, 1)
    for eff in (0.1, 0.01):
        weighted = direct_count(sr, f_sr, ref, f_ref, eff, sr_weights=w_sr, ref_weights=w_ref)
        repeated = direct_count(np.repeat(sr, w_sr), np.repeat(f_sr, w_sr), np.repeat(ref, w_ref),
                                np.repeat(f_ref, w_ref), eff)  # fmt: skip
        assert weighted == pytest.approx(repeated, rel=1e-12)
        assert weighted != pytest.approx(direct_count(sr, f_sr, ref, f_ref, eff), rel=1e-3)  # counts matter


def test_counts_in_the_flat_efficiency_cut_equal_repeated_events():
    """Thresholds from the sidebands' quantiles, selection and histogram: exactly those of the repeated events."""
    rng = np.random.default_rng(4)
    mjj = rng.uniform(2800.0, 4600.0, 20_000)
    scores = rng.normal(size=len(mjj)) + 1e-4 * mjj  # thresholds that depend on mjj
    w = replica_weights(len(mjj), 2, 0)
    edges = np.arange(2800.0, 4601.0, 100.0)
    kw = dict(edges=edges, signal_region=(3400.0, 3800.0), degree=2)
    weighted = efficiency_cuts(scores, mjj, (0.1, 0.01), weights=w, **kw)
    repeated = efficiency_cuts(np.repeat(scores, w), np.repeat(mjj, w), (0.1, 0.01), **kw)
    plain = efficiency_cuts(scores, mjj, (0.1, 0.01), **kw)
    for eff in (0.1, 0.01):
        np.testing.assert_allclose(weighted[eff].nodes_threshold, repeated[eff].nodes_threshold)
        np.testing.assert_array_equal(np.repeat(weighted[eff].selected, w), repeated[eff].selected)
        np.testing.assert_allclose(weighted[eff].hist.values(), repeated[eff].hist.values())
        assert not np.allclose(weighted[eff].nodes_threshold, plain[eff].nodes_threshold)


class _Recorder:
    """A generator stub that records what it is fitted on."""

    trains_on = "sidebands"
    config = {"val_fraction": 0.3, "seed": 5}

    def wants_simulation(self):
        return False

    def fit(self, x, m, x_val=None, m_val=None):
        self.x, self.x_val = x, x_val
        return self


def test_copies_of_an_event_stay_on_one_side_of_the_generator_validation_split():
    rng = np.random.default_rng(5)
    m = rng.uniform(2.5, 4.5, 5000)
    x = np.column_stack([np.arange(len(m), dtype=float), rng.normal(size=len(m))])  # column 0: the event's id
    w = replica_weights(len(m), 3, 0)
    regions = Regions((3.3, 3.7), 0.4)
    gen = fit_generator(_Recorder(), x, m, regions, w)
    sb = regions.select_sb(m, "data")
    ids_train, ids_val = gen.x[:, 0].astype(int), gen.x_val[:, 0].astype(int)
    assert not set(ids_train) & set(ids_val)
    counted = np.bincount(np.r_[ids_train, ids_val], minlength=len(m))
    np.testing.assert_array_equal(counted, np.where(sb, w, 0))  # every sideband event, its count times
    assert 0.25 < len(ids_val) / (len(ids_train) + len(ids_val)) < 0.35


def test_count_refusals():
    with pytest.raises(InputError, match="non-negative integers"):
        check_counts(np.array([1.0, 0.5]), 2)
    with pytest.raises(InputError, match="counts for 3 events"):
        check_counts(np.ones(2), 3)


@pytest.fixture(scope="module")
def shipped_background():
    from anomalyhunt.demo import shipped_features

    t = shipped_features()
    return t[t.label == 0].reset_index(drop=True).iloc[:40_000].reset_index(drop=True), t[t.label == 1]


def _hunt(x, m, x_i, m_i, **kw):
    return hunt_windows(x, m, [(3.3, 3.7)], ["idealized"], x_ideal=x_i, m_ideal=m_i, progress=False,
                        classifier_config={"n_ensemble": 1}, seed=1, **kw)[0]  # fmt: skip


def test_hunt_counts_events_as_often_as_their_count(shipped_background):
    """Idealized hunts of 40k shipped QCD events: count 0 is the same hunt without the event (dropped before any
    random split); count 2 for every event doubles the uncut histogram and both direct counts (class-balanced
    classifier weights and the reference's thresholds are unchanged by a common factor; the flat-efficiency cut is
    not: twice the events give its threshold curve twice the nodes)."""
    from anomalyhunt.analysis.injection import feature_matrix, mjj_tev

    bkg, _ = shipped_background
    x, m = feature_matrix(bkg, ["mj1", "delta_mj", "tau21_j1", "tau21_j2"]), mjj_tev(bkg)
    x_i, m_i, x, m = x[:12_000], m[:12_000], x[12_000:], m[12_000:]
    base = _hunt(x, m, x_i, m_i)
    keep = np.random.default_rng(6).uniform(size=len(m)) < 0.7
    dropped = _hunt(x[keep], m[keep], x_i, m_i)
    zeroed = _hunt(x, m, x_i, m_i, w=keep.astype(int))
    cols = ["observed_sr", "predicted_sr", "z_fixed", "observed_direct", "expected_direct"]
    np.testing.assert_allclose(zeroed[cols].to_numpy(float), dropped[cols].to_numpy(float))
    doubled = _hunt(x, m, x_i, m_i, w=np.full(len(m), 2))
    uncut = base.efficiency == 1.0
    np.testing.assert_allclose(doubled.observed_sr[uncut], 2 * base.observed_sr[uncut])
    np.testing.assert_allclose(doubled.observed_direct, 2 * base.observed_direct)
    np.testing.assert_allclose(doubled.expected_direct, 2 * base.expected_direct)


def test_calibration_on_replicas_shares_one_split_and_records_it(shipped_background, tmp_path):
    """Two replicas of one sample: the same events in each SR (one split), different counts, hence different local
    Z; the study says it is made of replicas; a fraction other than 1 is refused."""
    from anomalyhunt.analysis.hunt_calibration import calibration_values
    from anomalyhunt.errors import ConfigError

    bkg, sig = shipped_background
    kw = dict(methods=["idealized"], n_samples=2, fraction=1.0, windows=[(3.3, 3.7)],
              features=["tau21_j1", "tau21_j2"], classifier_config={"n_ensemble": 1}, progress=False)  # fmt: skip
    values = calibration_values(bkg, sig, tmp_path / "study", replicas=True, **kw)
    assert json.loads((tmp_path / "study" / "study.json").read_text())["replicas"] is True
    assert sorted(values["sample"].unique()) == [0, 1] and values.groupby("sample").z_fixed.first().nunique() == 2
    with pytest.raises(ConfigError, match="fraction must be 1"):
        calibration_values(bkg, sig, tmp_path / "other", replicas=True, **{**kw, "fraction": 0.5})
