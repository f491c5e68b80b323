"""Signal injection: a pseudo-data set of background plus N signal events, and held-out truth-labelled SR sets.

The background table is split by event (with the seed) into three disjoint parts: *data*, a *test* part and an
*idealized* part; only the SR events of the last two are used. Signal events are shuffled with the seed; the first N
are injected into the data, and SR signal events that were not injected form the signal half of the test set. So the
test set never overlaps anything a classifier or generator is trained on, and the split does not depend on the SR (the
same seed gives the same data for every window). Optionally the last SR signal events of that shuffle are *reserved*:
neither injected nor tested, they are the independent signal sample of the supervised reference; every method of a
configuration then has the same, smaller, test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from ..features import NON_INPUT_COLUMNS
from .regions import Regions

#: Classifier/generator inputs by default (the LHCO R&D / CATHODE set).
DEFAULT_FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")
#: Feature-table columns in GeV; they enter models in TeV so that all masses share one scale.
GEV_COLUMNS = frozenset({"mjj", "mj1", "mj2", "delta_mj", "pt_j1", "pt_j2"})


def check_feature_columns(
    features: Sequence[str], table: pd.DataFrame | None = None, source: str = "feature table"
) -> tuple[str, ...]:
    """Validate classifier input columns: refuses identifiers and truth (``features.NON_INPUT_COLUMNS``: mjj,
    label, event, source), duplicates, and columns missing from ``table``."""
    feats = tuple(str(f) for f in features)
    if not feats:
        raise InputError(source, "no input features given")
    forbidden = [f for f in feats if f in NON_INPUT_COLUMNS]
    if forbidden:
        raise InputError(
            source,
            f"{forbidden} cannot be classifier inputs ({', '.join(NON_INPUT_COLUMNS)} identify events, carry truth or "
            "are the resonance mass the search scans)",
        )
    dup = sorted({f for f in feats if feats.count(f) > 1})
    if dup:
        raise InputError(source, f"features listed twice: {dup}")
    if table is not None:
        missing = [f for f in feats if f not in table.columns]
        if missing:
            raise InputError(source, f"missing feature columns {missing} (found {list(table.columns)})")
    return feats


def feature_matrix(table: pd.DataFrame, features: Sequence[str], source: str = "feature table") -> np.ndarray:
    """``table[features]`` as float64 (n, d), GeV columns in TeV; refuses non-finite values."""
    feats = check_feature_columns(features, table, source)
    x = np.column_stack(
        [table[f].to_numpy(np.float64) / (1000.0 if f in GEV_COLUMNS else 1.0) for f in feats]
    ) if len(table) else np.zeros((0, len(feats)))
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(source, f"non-finite feature values in {int(bad.sum())} events")
    return x


def mjj_tev(table: pd.DataFrame, source: str = "feature table") -> np.ndarray:
    """The conditioning mass m_jj in TeV."""
    if "mjj" not in table.columns:
        raise InputError(source, "no 'mjj' column")
    m = table["mjj"].to_numpy(np.float64) / 1000.0
    bad = ~np.isfinite(m)
    if bad.any():  # such events would silently fall out of every SR and sideband
        raise InputError(source, f"non-finite mjj in {int(bad.sum())} events")
    return m


@dataclass
class InjectedSample:
    """Pseudo-data plus held-out truth sets for one seed.

    ``x``/``m``/``is_signal``: the data (``is_signal`` is truth kept for bookkeeping only, never a training input).
    ``x_test``/``m_test``/``y_test``: the SR test set. ``x_ideal``/``m_ideal``: held-out true SR background for the
    idealized detector. ``x_reserved``/``m_reserved``: SR signal events neither injected nor tested (the supervised
    reference's signal; empty unless reserved). ``rows`` maps each part to the positions of its events in the input
    tables (``*_bkg`` into the background table, ``*_sig`` into the signal table).
    """

    features: tuple[str, ...]
    regions: Regions
    x: np.ndarray
    m: np.ndarray
    is_signal: np.ndarray
    x_test: np.ndarray
    m_test: np.ndarray
    y_test: np.ndarray
    x_ideal: np.ndarray
    m_ideal: np.ndarray
    n_injected: int
    seed: int
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    x_reserved: np.ndarray | None = None
    m_reserved: np.ndarray | None = None
    w: np.ndarray | None = None  # event counts of the data (replica weights; injected signal counts once)
    w_ideal: np.ndarray | None = None  # and of the held-out background

    @property
    def sr_mask(self) -> np.ndarray:
        return self.regions.sr_mask(self.m)

    def stats(self) -> dict[str, float | int]:
        """S, B, S/B and S/sqrt(B) of the data in the SR, plus the test-set sizes."""
        sr = self.sr_mask
        s = int(self.is_signal[sr].sum())
        b = int(sr.sum()) - s
        return {
            "n_injected": self.n_injected,
            "S": s,
            "B": b,
            "S/B": s / b if b else math.inf,
            "S/sqrt(B)": s / math.sqrt(b) if b else math.inf,
            "n_data": len(self.m),
            "n_test_signal": int((self.y_test == 1).sum()),
            "n_test_background": int((self.y_test == 0).sum()),
            "n_ideal": len(self.m_ideal),
            "n_reserved_signal": 0 if self.m_reserved is None else len(self.m_reserved),
        }


def inject_signal(
    background: pd.DataFrame,
    signal: pd.DataFrame,
    *,
    regions: Regions | None = None,
    n_signal: int | None = None,
    significance: float | None = None,
    seed: int = 0,
    features: Sequence[str] = DEFAULT_FEATURES,
    background_events: int | None = None,
    test_fraction: float = 0.2,
    idealized_fraction: float = 0.2,
    test_signal_events: int | None = None,
    reserve_signal_events: int = 0,
    reserve_optional: bool = False,
    weights: np.ndarray | None = None,
) -> InjectedSample:
    """Build the data (background + ``n_signal`` signal events) and the held-out SR sets.

    Give either ``n_signal`` (0 allowed) or ``significance``, the S/sqrt(B) wanted in the data SR (N is then
    ``round(significance sqrt(B) / eps_SR)`` with eps_SR the signal fraction in the SR). ``background_events``
    subsamples the background first (all by default). ``test_fraction``/``idealized_fraction`` of the background
    events are held out; ``test_signal_events`` caps the signal half of the test set.

    ``reserve_signal_events``: SR signal events kept out of injection and test set (``x_reserved``), at most half of
    the SR signal events left after injection, so that the test set keeps at least as many; more is an
    :class:`InputError`, or with ``reserve_optional`` no reserve at all (for methods that do not use it: the test
    set is then the one of a configuration without a reserve).

    ``weights``: integer event counts of the background rows (Poisson replica weights,
    :mod:`~anomalyhunt.analysis.replicas`), carried into the data (``w``) and the held-out background
    (``w_ideal``); the split itself does not depend on them. The test set stays unweighted (truth metrics only).
    """
    regions = regions or Regions()
    feats = check_feature_columns(features, background, "background feature table")
    check_feature_columns(feats, signal, "signal feature table")
    if (n_signal is None) == (significance is None):
        raise ConfigError("signal injection: give exactly one of n_signal and significance")
    if not (0 <= test_fraction < 1 and 0 <= idealized_fraction < 1 and test_fraction + idealized_fraction < 1):
        raise ConfigError(
            f"test_fraction={test_fraction} and idealized_fraction={idealized_fraction}: each in [0, 1), sum < 1"
        )
    if len(background) == 0:
        raise InputError("background feature table", "holds no events")

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1A7E]))
    bkg_rows = rng.permutation(len(background))
    if background_events is not None:
        if background_events > len(background):
            raise InputError(
                "background feature table", f"{background_events} events requested, only {len(background)} available"
            )
        bkg_rows = bkg_rows[: int(background_events)]
    n_b = len(bkg_rows)
    n_test, n_ideal = int(round(test_fraction * n_b)), int(round(idealized_fraction * n_b))
    test_rows, ideal_rows, data_bkg = (
        bkg_rows[:n_test], bkg_rows[n_test : n_test + n_ideal], bkg_rows[n_test + n_ideal :]
    )

    m_bkg = mjj_tev(background, "background feature table")
    m_sig = mjj_tev(signal, "signal feature table")
    sig_rows = rng.permutation(len(signal))
    if significance is not None:
        b_sr = int(regions.sr_mask(m_bkg[data_bkg]).sum())
        eff = float(regions.sr_mask(m_sig).mean()) if len(signal) else 0.0
        if eff == 0.0:
            raise InputError("signal feature table", f"no signal events in the {regions.name}")
        n_signal = int(round(significance * math.sqrt(b_sr) / eff))
    n_signal = int(n_signal)
    if n_signal < 0:
        raise ConfigError(f"n_signal={n_signal}: must be >= 0")
    if n_signal > len(signal):
        raise InputError("signal feature table", f"{n_signal} signal events requested, only {len(signal)} available")
    inj_rows, rest = sig_rows[:n_signal], sig_rows[n_signal:]
    sr_rest = rest[regions.sr_mask(m_sig[rest])]
    n_reserve = int(reserve_signal_events)
    if n_reserve < 0:
        raise ConfigError(f"reserve_signal_events={n_reserve}: must be >= 0")
    if n_reserve > len(sr_rest) // 2:
        if not reserve_optional:
            raise InputError(
                "signal feature table",
                f"{n_reserve} SR signal events requested for the supervised reference, at most {len(sr_rest) // 2} "
                f"available (half of the {len(sr_rest)} SR signal events left after injecting {n_signal}; the rest "
                "is the test set)",
            )
        n_reserve = 0
    # The reserve is the end of the shuffle and the test set its front: with test_signal_events capping the test
    # set, a reserve that fits beside it leaves the test set exactly as without one.
    reserved, sr_rest = np.sort(sr_rest[len(sr_rest) - n_reserve :]), sr_rest[: len(sr_rest) - n_reserve]
    test_sig = sr_rest
    if test_signal_events is not None:
        test_sig = test_sig[: int(test_signal_events)]
    test_bkg = test_rows[regions.sr_mask(m_bkg[test_rows])]
    ideal_bkg = ideal_rows[regions.sr_mask(m_bkg[ideal_rows])]
    if len(test_sig) == 0:
        raise InputError("SR test set", f"no signal events left for testing in the {regions.name} after injection")
    if len(test_bkg) == 0:
        raise InputError("SR test set", f"no background events in the {regions.name} (raise test_fraction)")

    x_bkg = feature_matrix(background, feats, "background feature table")
    x_sig = feature_matrix(signal, feats, "signal feature table")
    x = np.concatenate([x_bkg[data_bkg], x_sig[inj_rows]])
    m = np.concatenate([m_bkg[data_bkg], m_sig[inj_rows]])
    is_signal = np.concatenate([np.zeros(len(data_bkg), np.int8), np.ones(n_signal, np.int8)])
    # Shuffle so that the position in the data carries no truth.
    order = rng.permutation(len(m))
    w = w_ideal = None
    if weights is not None:
        from .replicas import check_counts

        counts = check_counts(weights, len(background), "background event counts")
        w, w_ideal = np.concatenate([counts[data_bkg], np.ones(n_signal, np.int64)])[order], counts[ideal_bkg]
    return InjectedSample(
        features=feats,
        regions=regions,
        x=x[order],
        m=m[order],
        is_signal=is_signal[order],
        x_test=np.concatenate([x_bkg[test_bkg], x_sig[test_sig]]),
        m_test=np.concatenate([m_bkg[test_bkg], m_sig[test_sig]]),
        y_test=np.concatenate([np.zeros(len(test_bkg), np.int8), np.ones(len(test_sig), np.int8)]),
        x_ideal=x_bkg[ideal_bkg],
        m_ideal=m_bkg[ideal_bkg],
        n_injected=n_signal,
        seed=int(seed),
        rows={
            "data_bkg": np.sort(data_bkg),
            "data_sig": np.sort(inj_rows),
            "test_bkg": np.sort(test_bkg),
            "test_sig": np.sort(test_sig),
            "ideal_bkg": np.sort(ideal_bkg),
            "reserved_sig": reserved,
        },
        x_reserved=x_sig[reserved],
        m_reserved=m_sig[reserved],
        w=w,
        w_ideal=w_ideal,
    )


def split_by_label(table: pd.DataFrame, source: str = "feature table") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(background, signal) rows of a truth-labelled table (label 0 / 1)."""
    if "label" not in table.columns:
        raise InputError(source, "no 'label' column: cannot tell background from signal")
    label = table["label"].to_numpy()
    other = ~np.isin(label, (0, 1))
    if other.any():
        raise InputError(source, f"{int(other.sum())} events without truth label (label not 0/1): not simulation?")
    return table[label == 0].reset_index(drop=True), table[label == 1].reset_index(drop=True)
