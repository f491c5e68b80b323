"""Invertible preprocessing carried with the generators: exact round trips, finite output off the fitted range, and
state save/load."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyhunt.errors import InputError
from anomalyhunt.models.preprocessing import (
    EventScaler,
    MinMaxLogit,
    Pipeline,
    Standardize,
    make_pipeline,
    validation_split,
)


@pytest.fixture()
def features() -> np.ndarray:
    rng = np.random.default_rng(3)
    # A jet-mass-like positive column, a ratio in (0, 1.3), an angle-like column and a constant column.
    return np.column_stack([
        rng.gamma(3.0, 0.05, 5000),
        rng.uniform(0.02, 1.3, 5000),
        rng.normal(3.2, 0.25, 5000),
        np.full(5000, 7.0),
    ])


@pytest.mark.parametrize("kind", ["logit", "standard", "none"])
def test_round_trip(features: np.ndarray, kind: str) -> None:
    pipe = make_pipeline(kind).fit(features)
    z = pipe.transform(features)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(pipe.inverse_transform(z), features, rtol=1e-9, atol=1e-9)


def test_standardize_moments(features: np.ndarray) -> None:
    z = Standardize().fit_transform(features[:, :3])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-12)


def test_minmax_logit_margin_and_order(features: np.ndarray) -> None:
    step = MinMaxLogit(margin=0.05).fit(features)
    z = step.transform(features)
    # The fitted range maps onto logit(0.05) .. logit(0.95), monotonically.
    edge = np.log(0.95 / 0.05)
    np.testing.assert_allclose(z[:, :3].min(axis=0), -edge, rtol=1e-9)
    np.testing.assert_allclose(z[:, :3].max(axis=0), edge, rtol=1e-9)
    order = np.argsort(features[:, 1])
    assert np.all(np.diff(z[order, 1]) >= 0)


def test_out_of_range_stays_finite(features: np.ndarray) -> None:
    pipe = make_pipeline("logit").fit(features)
    wild = np.array([[-1e6, -5.0, 100.0, 7.0], [1e6, 50.0, -100.0, 8.0], [np.inf, -np.inf, 0.0, 7.0]])
    z = pipe.transform(wild)
    assert np.all(np.isfinite(z))
    back = pipe.inverse_transform(z)
    assert np.all(np.isfinite(back))
    lo, hi = features[:, :3].min(axis=0), features[:, :3].max(axis=0)
    # Clipped values come back at most a margin (1% of 98% of the range) outside the fitted range.
    assert np.all(back[:, :3] >= lo - 0.011 * (hi - lo)) and np.all(back[:, :3] <= hi + 0.011 * (hi - lo))
    # And any real number in the transformed space inverts to a finite value.
    assert np.all(np.isfinite(pipe.inverse_transform(np.full((2, 4), 1e4) * np.array([[1], [-1]]))))


def test_nan_is_an_input_error(features: np.ndarray) -> None:
    pipe = make_pipeline("logit").fit(features)
    bad = features[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pipe.transform(bad)
    with pytest.raises(InputError, match="NaN"):
        make_pipeline("standard").fit(bad)
    with pytest.raises(InputError, match="fitted on 4 features"):
        pipe.transform(features[:, :2])


def test_state_save_load(features: np.ndarray, tmp_path) -> None:
    import torch

    pipe = make_pipeline("logit", margin=0.02).fit(features)
    torch.save(pipe.state_dict(), tmp_path / "pre.pt")
    restored = Pipeline.from_state_dict(torch.load(tmp_path / "pre.pt", weights_only=False))
    assert [type(s) for s in restored.steps] == [MinMaxLogit, Standardize]
    assert restored.steps[0].margin == 0.02
    probe = features[::7] * 1.1
    np.testing.assert_array_equal(restored.transform(probe), pipe.transform(probe))

    scaler = EventScaler("logit").fit(features[:, :3], features[:, 2] + 1.0)
    copy = EventScaler("logit")
    copy.load_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(copy.transform_mass([3.5, 4.0]), scaler.transform_mass([3.5, 4.0]))


def test_validation_split_is_a_seeded_partition() -> None:
    tr, va = validation_split(1000, 0.2, seed=5)
    assert len(va) == 200 and len(tr) == 800
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    tr2, va2 = validation_split(1000, 0.2, seed=5)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, validation_split(1000, 0.2, seed=6)[1])
