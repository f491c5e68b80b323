"""Sliding-window bump hunt: per window, a CWoLa classifier (SR data vs background template) scores every event of
the fit range, a cut at a fixed background efficiency selects events, and a dijet fit of the selected mjj spectrum
tests for a bump.

Every event is scored by a model that never saw it: SR data and template events out-of-fold, and each event outside
the SR by the model of the fold it is assigned to at random (one model, not the fold average, so that all scores
follow the same distribution). The cut keeps a flat background efficiency in mjj: its threshold is a smooth curve
through the data's score quantiles in the sidebands (which hold no signal to erase), interpolated into the SR; the
statistical uncertainty of that interpolation enters the fit as a constrained SR efficiency (see :func:`apply_cuts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import metrics
from ..errors import ConfigError
from .bumphunt import (
    DEFAULT_EDGES,
    BumpHunt,
    GlobalSignificance,
    bump_hunt,
    counting_significance,
    efficiency_cuts,
    global_from_toys,
    local_significance,
    mjj_hist,
)
from .references import CWOLA, IDEALIZED, LACATHODE
from .regions import Regions

#: Where the classifier's data events come from: the SR, or the SR and its sidebands (:func:`hunt_windows`).
TRAIN_ON = ("sr", "window", "auto")
#: (method, what its classifier trains on) whose fit-based local Z was measured calibrated at full LHCO size with
#: such inputs: the fewest generator epochs it was shown with (``epochs``; absent: the method's default) and the
#: settings it needs. README: CATHODE SR-trained 1.21 at its defaults (1.36 with 8 epochs and 2 trees),
#: window-trained 1.19 with 8 epochs; SIGMA window-trained 1.12 with its sideband masses interpolated as the SR's
#: centre (``sideband_nodes="centred"``, the default; 1.44 with the SR's own polynomial), in windows whose
#: interpolation masses lie above the trigger turn-on (:func:`anomalyhunt.commands.hunt.turn_on_note`); SR-trained it
#: is not (2.4 linear from half a width, 5.7 linear from one width, 3.9 cubic from one and two widths).
#: ``train_on="auto"`` trains each method's classifier on a range listed here (:func:`train_range`).
FULL_SIZE_CALIBRATED: dict[tuple[str, str], dict[str, Any]] = {
    ("cathode", "sr"): {}, ("cathode", "window"): {"epochs": 8}, ("sigma", "window"): {"sideband_nodes": "centred"},
}
#: Width (TeV) of each of CWoLa hunting's sidebands: narrow, so that the features barely change across them.
CWOLA_SIDEBAND_WIDTH = 0.2


@dataclass
class WindowResult:
    """One method in one window: the bump hunts per cut efficiency (1.0 = no cut) and the test-set metrics."""

    method: str
    window: tuple[float, float]  # TeV
    hunts: dict[float, BumpHunt]
    hists: dict[float, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds_train: float = 0.0
    seconds_template: float = 0.0
    test_scores: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    template: np.ndarray | None = None
    scores: np.ndarray | None = None  # of the data events in the fit range, and their mjj (GeV)
    mjj: np.ndarray | None = None
    ref_scores: np.ndarray | None = None  # out-of-fold scores of the reference (template) events, and their mjj
    ref_mjj: np.ndarray | None = None
    weights: np.ndarray | None = None  # event counts of the scored data events (replica weights); None: 1 each
    efficiency_errors: dict[float, float] = field(default_factory=dict)  # relative SR efficiency error per cut
    direct: dict[float, dict[str, float]] = field(default_factory=dict)  # direct estimate per cut (direct_count)
    closure: dict[float, float] = field(default_factory=dict)  # its relative closure uncertainty per cut

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for eff, h in self.hunts.items():
            out.append({
                "method": self.method, "sr_lo": self.window[0], "sr_hi": self.window[1],
                "centre": 0.5 * (self.window[0] + self.window[1]), "efficiency": eff, "z": h.local.z,
                "p_local": h.local.p_value, "fitted_signal": h.local.signal, "fitted_mean_gev": h.local.mean,
                "z_fixed": h.fixed.z if h.fixed is not None else np.nan,
                "z_direct": self.direct.get(eff, {}).get("z", np.nan),
                "observed_direct": self.direct.get(eff, {}).get("observed", np.nan),
                "expected_direct": self.direct.get(eff, {}).get("expected", np.nan),
                "expected_direct_stat": self.direct.get(eff, {}).get("stat_error", np.nan),
                "expected_direct_template": self.direct.get(eff, {}).get("template_error", np.nan),
                "closure_direct": self.closure.get(eff, np.nan),
                "observed_sr": h.observed_sr, "predicted_sr": h.predicted_sr,
                "efficiency_error": self.efficiency_errors.get(eff, 0.0), **self.metrics,
                "seconds_train": self.seconds_train, "seconds_template": self.seconds_template,
            })  # fmt: skip
        return out


def window_edges(edges: np.ndarray, window: tuple[float, float], margin: float) -> np.ndarray:
    """The bins of ``edges`` (GeV) within ``margin`` GeV of the SR ``window`` (TeV): the window's own fit range."""
    lo, hi = window[0] * 1000.0, window[1] * 1000.0
    return edges[(edges >= lo - margin - 1e-6) & (edges <= hi + margin + 1e-6)]


def train_range(train_on: str, method: str) -> str:
    """``"sr"`` or ``"window"`` for ``method``'s classifier: ``train_on`` itself, or under ``"auto"`` a range its
    full-size hunts are calibrated with (:data:`FULL_SIZE_CALIBRATED`): the SR when both are (or neither)."""
    if train_on != "auto":
        return train_on
    window_only = (method, "window") in FULL_SIZE_CALIBRATED and (method, "sr") not in FULL_SIZE_CALIBRATED
    return "window" if window_only else "sr"


def check_train_on(train_on: str, methods: Sequence[str]) -> None:
    """The classifier's training range is known, and CWoLa hunting (SR against sidebands) is not asked to train
    over the window."""
    if train_on not in TRAIN_ON:
        raise ConfigError(f"unknown classifier training range {train_on!r}: use {', '.join(TRAIN_ON)}")
    if train_on == "window" and CWOLA in methods:
        raise ConfigError("cwola: CWoLa hunting trains SR against sidebands; it has no training over the window")


def calibrated_cuts(
    scores: np.ndarray, mjj: np.ndarray, ref_scores: np.ndarray, ref_mjj: np.ndarray, signal_region: tuple[float, float],
    efficiencies: Sequence[float], edges: np.ndarray,
) -> dict[float, np.ndarray]:
    """Selection masks keeping ``eff`` of the background in every mjj bin (GeV): data quantiles outside the SR,
    reference (template) quantiles inside it."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    in_sr_bin = (centres > signal_region[0]) & (centres < signal_region[1])
    data_bin = np.clip(np.digitize(mjj, edges) - 1, 0, len(centres) - 1)
    ref_bin = np.digitize(ref_mjj, edges) - 1
    out = {}
    for eff in efficiencies:
        thresholds = np.full(len(centres), np.inf)
        for b in range(len(centres)):
            pool = ref_scores[ref_bin == b] if in_sr_bin[b] else scores[data_bin == b]
            if len(pool):
                thresholds[b] = np.quantile(pool, 1.0 - eff)
        out[float(eff)] = scores > thresholds[data_bin]
    return out


def apply_cuts(
    res: WindowResult, efficiencies: Sequence[float], edges: np.ndarray = DEFAULT_EDGES, *,
    calibration: str = "sidebands", margin: float = 600.0, n_bootstrap: int = 20, seed: int = 0,
) -> WindowResult:
    """Cut at each background efficiency and run the bump hunt in ``margin`` GeV of sidebands around the SR.

    ``calibration="sidebands"``: thresholds follow a smooth (quadratic in log mjj) curve through the data's score
    quantiles in the sidebands, interpolated into the SR (:func:`~anomalyhunt.analysis.bumphunt.efficiency_cuts`):
    the SR background efficiency does not depend on the template, which then only sets the classifier's power.
    Its statistical uncertainty (``n_bootstrap`` resamplings of the sidebands) is profiled in the bump hunt.
    ``calibration="template"``: SR thresholds from the template's own scores (:func:`calibrated_cuts`), which is
    exact for a faithful template and biased by any mismodelling (with CATHODE's CPU-size template, background-only
    local Z ~ 14 at the 10% cut, against ~1 with the sideband calibration); its binomial uncertainty from the
    reference size is profiled.

    The sideband calibration is not free of bias either: a classifier trained in the SR scores events further away
    in mjj more broadly, so the true efficiency has structure in the SR that the interpolation cannot see. On the
    shipped QCD (16 seeds x 3 windows, idealized reference, nuisance profiled) background-only local Z with the
    Gaussian's mean floating in the SR had mean -0.9 and spread 1.9 at the 10% cut, largest 3.5; most of that spread
    was the floating mean's own look-elsewhere: with the mean fixed at the window centre (the hunt's default) the
    pooled spread is 1.16 (idealized) and 1.01 (CATHODE) (``anomalyhunt bench hunt``).
    """
    lo, hi = res.window[0] * 1000.0, res.window[1] * 1000.0
    local = window_edges(edges, res.window, margin)
    inside = (res.mjj >= local[0]) & (res.mjj < local[-1])
    mjj, scores = res.mjj[inside], res.scores[inside]
    weights = None if res.weights is None else res.weights[inside]
    if calibration == "sidebands":
        cuts = efficiency_cuts(scores, mjj, efficiencies, edges=local, signal_region=(lo, hi), degree=2,
                               n_bootstrap=n_bootstrap, seed=seed, weights=weights)  # fmt: skip
        selected = {eff: c.selected for eff, c in cuts.items()}
        errors = {eff: c.rel_error for eff, c in cuts.items()}
    elif calibration == "template":
        selected = calibrated_cuts(scores, mjj, res.ref_scores, res.ref_mjj, (lo, hi), efficiencies, local)
        n_ref = max(int(np.sum((res.ref_mjj >= lo) & (res.ref_mjj < hi))), 1)
        errors = {eff: float(np.sqrt((1 - eff) / (eff * n_ref))) for eff in selected}  # binomial, reference size
    else:
        raise ConfigError(f"unknown cut calibration {calibration!r}: use 'sidebands' or 'template'")

    def hist_of(sel: np.ndarray) -> Any:
        return mjj_hist(mjj[sel], local, weights=None if weights is None else weights[sel])

    res.hists = {1.0: hist_of(np.ones(len(mjj), bool))} | {eff: hist_of(sel) for eff, sel in selected.items()}
    res.efficiency_errors = {1.0: 0.0} | errors
    res.hunts = {eff: bump_hunt(h, (lo, hi), efficiency_error=res.efficiency_errors[eff], seed=seed)
                 for eff, h in res.hists.items()}  # fmt: skip
    return res


#: The local significance of a (window, cut), by name: the hunt-table column it is in.
SIGNIFICANCES = {"fit-fixed": "z_fixed", "fit-floating": "z", "direct": "z_direct"}


def local_z(hunt: BumpHunt, significance: str = "fit-fixed") -> float:
    """A bump hunt's local Z as ``significance`` defines it (the fit-based ones)."""
    if significance == "fit-fixed":
        return hunt.fixed.z
    if significance == "fit-floating":
        return hunt.local.z
    raise ConfigError(f"no fit-based local Z {significance!r}: use fit-fixed or fit-floating")


def hunt_fit_toys(results: Sequence[WindowResult], n_toys: int = 30, *, seed: int = 0,
                  progress: bool = False, significance: str = "fit-fixed") -> GlobalSignificance:
    """Global significance of the largest local Z (``significance``: with the Gaussian's mean fixed at the window
    centre or floating in the SR) over the windows and cut levels of one method's ``results``, from
    **fit-only toys**: each (window, cut) spectrum is replaced by a Poisson draw of its background-only dijet fit
    (the SR scaled by an efficiency error drawn from the calibration's constraint) and the SR test is redone;
    classifiers are not retrained (``anomalyhunt bench toys`` does that). Overlapping windows and nested cuts are
    drawn independently, i.e. counted as independent trials, which overstates the look-elsewhere effect a little:
    the global significance is conservative."""
    from tqdm.auto import tqdm

    hunts = [h for r in results for eff, h in r.hunts.items() if eff < 1.0]
    if not hunts:
        raise ConfigError("fit-only toys need at least one window with a cut level below 1")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7075]))
    toy_max = np.empty(n_toys)
    for i in tqdm(range(n_toys), desc="fit-only toys", unit="toy", disable=not progress):
        z = []
        for h in hunts:
            null = h.local.background_fit
            lo, hi = h.signal_region
            mu = null.background()
            if null.nuisance is not None:  # the calibration's error drawn from its constraint, not its fitted pull
                sr = null.nuisance.bins(null.edges)
                mu = np.where(sr, mu * max(1.0 + rng.normal(0.0, null.nuisance.rel_error), 0.0), mu)
            toy = (rng.poisson(mu).astype(float), null.edges)
            floating = (lo, hi) if significance == "fit-floating" else None
            z.append(local_significance(toy, 0.5 * (lo + hi), mean_range=floating, nuisance=null.nuisance,
                                        seed=seed).z)  # fmt: skip
        toy_max[i] = max(z)
    return global_from_toys(max(local_z(h, significance) for h in hunts), toy_max, "fit-only toys")


def hunt_windows(
    x: np.ndarray,
    m: np.ndarray,
    windows: Sequence[tuple[float, float]],
    methods: Sequence[str],
    *,
    x_ideal: np.ndarray | None = None,
    m_ideal: np.ndarray | None = None,
    x_test: np.ndarray | None = None,
    m_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    efficiencies: Sequence[float] = (0.1, 0.01),
    edges: np.ndarray = DEFAULT_EDGES,
    oversample: int = 4,
    generator_config: dict[str, dict[str, Any]] | None = None,
    classifier: str = "hgb",
    classifier_config: dict[str, Any] | None = None,
    folds: int = 3,
    seed: int = 0,
    progress: bool = True,
    keep_templates: bool = False,
    calibration: str = "sidebands",
    margin: float = 600.0,
    sideband_width: float | None = None,
    train_on: str = "sr",
    template_ensemble: int = 1,
    w: np.ndarray | None = None,
    w_ideal: np.ndarray | None = None,
    simulation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, list[WindowResult]]:
    """Run every method in every window (masses in TeV); returns one row per (method, window, cut) and the
    per-window results (fits and histograms for plots). Generators that train on all data train once; those that
    train on sidebands use ``sideband_width`` TeV on each side of the SR (None: all other masses). See
    :func:`apply_cuts` for ``calibration`` and ``margin``.

    ``train_on``: ``"sr"`` -- the classifier separates SR data from the reference sampled in the SR; ``"window"``
    -- data from reference across the SR and its sidebands (``sideband_width`` each side; the generator samples
    there too), so that the score means the same at every mass the cut and fit use; ``"auto"`` -- each method as
    its full-size hunts are calibrated (:func:`train_range`).

    ``template_ensemble``: a template generator is trained that many times (other seeds) and the template is their
    union; the direct estimate's template uncertainty is then the spread of the trainings' pass fractions.

    ``w`` / ``w_ideal``: integer event counts of the data / held-out background (Poisson replica weights,
    :mod:`~anomalyhunt.analysis.replicas`): every event counts that many times in every fit, cut, histogram and
    count, while staying one row in the k-fold split; events of count 0 are dropped first.

    ``simulation``: a background simulation sample (features, masses in TeV; the data's features) handed to every
    template generator that wants one (FETA, SALAD, DRAPES simulation seeds) before its fit."""
    from tqdm.auto import tqdm

    from ..models.kfold import kfold_classify
    from .references import ensemble_reference, idealized_reference, latent_reference, sideband_reference
    from .templates import make_generator

    from .replicas import check_counts, total

    check_train_on(train_on, methods)
    w, w_ideal = check_counts(w, len(m), "data event counts"), check_counts(
        w_ideal, 0 if m_ideal is None else len(m_ideal), "held-out background event counts")
    if w is not None and calibration != "sidebands":
        raise ConfigError("event counts (replica weights) need the sideband cut calibration")
    if w is not None:
        x, m, w = x[w > 0], m[w > 0], w[w > 0]
    if w_ideal is not None:
        x_ideal, m_ideal, w_ideal = x_ideal[w_ideal > 0], m_ideal[w_ideal > 0], w_ideal[w_ideal > 0]
    fit_mask = (m * 1000 >= edges[0]) & (m * 1000 < edges[-1])
    results: list[WindowResult] = []
    generator_config = generator_config or {}
    shared: dict[str, Any] = {}
    tasks = [(method, w) for method in methods for w in windows]
    bar = tqdm(tasks, desc="windows x methods", unit="window", disable=not progress)
    for i, (method, window) in enumerate(bar):
        bar.set_postfix_str(f"{method}, SR {window[0]:g}-{window[1]:g} TeV")
        regions = Regions(tuple(window), sideband_width)
        sr = regions.select_sr(m, "data")
        # the events the classifier trains on as data: the SR, or the SR and its sidebands
        across = train_range(train_on, method) == "window"
        side = (sideband_width if sideband_width is not None else margin / 1000.0) if across else 0.0
        span = (round(window[0] - side, 9), round(window[1] + side, 9)) if across else None
        train = sr if span is None else (m >= span[0]) & (m < span[1])
        n_ref = oversample * total(train, w)
        ref_seed = seed + 31 * i
        if method == CWOLA:
            ref = sideband_reference(x, m, Regions(tuple(window), CWOLA_SIDEBAND_WIDTH), w)
        elif method == IDEALIZED:
            ref = idealized_reference(x_ideal, m_ideal, regions, n_ref, int(np.random.SeedSequence([seed, i, 5])
                                                                                .generate_state(1)[0]), span, w_ideal)  # fmt: skip
        elif method == LACATHODE:
            gen = make_generator("cathode", generator_config.get(method), seed=seed, progress=progress)
            ref = latent_reference(gen, x, m, regions, n_ref, ref_seed, span, w)
        else:
            def make(k: int, method: str = method, window: tuple = window) -> Any:
                cfg = dict(generator_config.get(method) or {})
                if k and "seed" in cfg:
                    cfg["seed"] = int(cfg["seed"]) + k  # an ensemble member is another training
                return make_generator(method, cfg, seed=seed + k, progress=progress, sr=list(window))

            ref = ensemble_reference(make, template_ensemble, x, m, regions, n_ref, ref_seed, method, shared, span,
                                     w, simulation)  # fmt: skip
        test_sel = None if m_test is None else regions.sr_mask(m_test)
        # data against the reference; every other event of the fit range scored too, out of fold
        others = fit_mask & ~train
        if ref.rows is not None:
            others[ref.rows] = False  # reference events that are data keep their out-of-fold reference scores
        x_t = None if test_sel is None else ref.features(x_test[test_sel], m_test[test_sel])
        kf = kfold_classify(ref.features(x[train], m[train]), ref.x, x_t,
                            x_other=ref.features(x[others], m[others]), w1=None if w is None else w[train], w0=ref.w,
                            classifier=classifier, classifier_config=classifier_config, folds=folds,
                            seed=seed + i)  # fmt: skip
        scores = np.full(len(m), np.nan)
        scores[train], scores[others] = kf.scores_1, kf.other_scores
        if ref.rows is not None:
            scores[ref.rows] = kf.scores_0
        scored = fit_mask | sr
        res = WindowResult(method, tuple(window), {}, {}, seconds_train=kf.seconds,
                           seconds_template=ref.seconds_template, template=ref.x if keep_templates else None,
                           scores=scores[scored], mjj=m[scored] * 1000.0, ref_scores=kf.scores_0,
                           ref_mjj=ref.m * 1000.0, weights=None if w is None else w[scored])  # fmt: skip
        apply_cuts(res, efficiencies, edges, calibration=calibration, margin=margin, seed=seed)
        # the direct estimate counts the SR only; a reference of sideband data (CWoLa hunting) stands for the SR
        # background as a whole (inputs that do not change across the window)
        in_sr = sr[train]
        ref_sr = regions.sr_mask(ref.m) if ref.rows is None else np.ones(len(ref.m), bool)
        members = None if ref.member is None or template_ensemble < 2 else ref.member[ref_sr]
        w_sr = None if w is None else w[train][in_sr]
        w_ref = None if ref.w is None else ref.w[ref_sr]
        res.direct = {eff: direct_count(kf.scores_1[in_sr], kf.fold_1[in_sr], kf.scores_0[ref_sr], kf.fold_0[ref_sr],
                                        eff, members, w_sr, w_ref) for eff in efficiencies}  # fmt: skip
        if kf.test_scores is not None and y_test[test_sel].min() != y_test[test_sel].max():
            res.metrics = metrics.summarize(y_test[test_sel], kf.test_scores)
            res.test_scores, res.test_labels = kf.test_scores, y_test[test_sel]
        results.append(res)
    add_closure(results)
    table = pd.DataFrame([row for r in results for row in r.rows()])
    return table, results


def direct_count(
    sr_scores: np.ndarray, sr_folds: np.ndarray, ref_scores: np.ndarray, ref_folds: np.ndarray, efficiency: float,
    ref_members: np.ndarray | None = None, sr_weights: np.ndarray | None = None, ref_weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Direct background estimation for one cut (arXiv 2411.00085): per fold, the threshold is the reference's
    (1 - efficiency) score quantile, and the expected background after the cut is the background fraction above it
    times the SR data count (which includes any signal: conservative). Every score is out of fold.

    Returns observed and expected SR counts after the cut, and the expectation's statistical error from the
    reference's size. With ``ref_members`` (the generator of an ensemble of trainings that made each reference
    event) also ``template_error``: the spread of the members' own pass fractions above the same threshold, over
    the square root of their number -- the template's uncertainty from retraining (it includes each member's
    counting noise), which then replaces the statistical error. The mismodelling common to all trainings enters
    through :func:`add_closure`.

    ``sr_weights`` / ``ref_weights``: integer event counts (replica weights); an event counts that many times,
    exactly as that many copies of it in its fold would."""
    from .replicas import repeat_rows

    if len(ref_scores) == 0 or len(sr_scores) == 0:
        return {"observed": float("nan"), "expected": float("nan"), "stat_error": float("nan")}
    observed = expected = var = 0.0
    members = np.unique(ref_members) if ref_members is not None else np.empty(0)
    per_member = np.zeros(len(members))
    for k in np.unique(ref_folds):
        in_k = ref_folds == k
        w_k = None if ref_weights is None else ref_weights[in_k]
        ref_k = np.sort(repeat_rows(ref_scores[in_k], w_k))[::-1]
        sr_k = repeat_rows(sr_scores[sr_folds == k], None if sr_weights is None else sr_weights[sr_folds == k])
        n, above = len(ref_k), int(efficiency * len(ref_k))
        # The threshold is the (above + 1)-th highest reference score: the background fraction above it follows
        # Beta(above + 1, n - above), mean (above + 1) / (n + 1) -- not above / n, which is biased low by ~1 / above.
        threshold = ref_k[min(above, n - 1)]
        eps, eps_var = (above + 1) / (n + 1), (above + 1) * (n - above) / ((n + 1) ** 2 * (n + 2))
        observed += float(np.sum(sr_k > threshold))
        expected += eps * len(sr_k)
        var += len(sr_k) ** 2 * eps_var
        for j, member in enumerate(members):
            own = ref_scores[in_k & (ref_members == member)]
            per_member[j] += np.mean(own >= threshold) * len(sr_k) if len(own) else np.nan
    out = {"observed": observed, "expected": expected, "stat_error": float(np.sqrt(var))}
    if len(members) >= 2:
        out["template_error"] = float(np.std(per_member, ddof=1) / np.sqrt(len(members)))
    return out


def _reference_error(d: dict[str, float]) -> float:
    """The direct estimate's reference uncertainty: the ensemble's spread where there is one, else counting."""
    return d.get("template_error", d["stat_error"])


def add_closure(results: Sequence["WindowResult"]) -> None:
    """The closure uncertainty of the direct estimate, measured in the other windows of the same method and cut that
    do not overlap this one (they are sideband validation windows for it): the relative residual
    (observed - expected) / expected, its mean square less what their statistics explain. It covers the template's
    mismodelling (bias and spread between trainings); with no such window it is unknown (NaN) and the direct
    significance is not quoted."""
    for res in results:
        res.closure = {}
        others = [o for o in results if o.method == res.method and (o.window[1] <= res.window[0]
                                                                      or o.window[0] >= res.window[1])]
        for eff, d in res.direct.items():
            # each other window's squared relative residual, less what its own statistics explain
            rel2 = [((od["observed"] - od["expected"]) ** 2 - od["expected"] - _reference_error(od) ** 2)
                    / max(od["expected"], 1.0) ** 2 for od in (o.direct[eff] for o in others)]  # fmt: skip
            closure = float(np.sqrt(max(np.mean(rel2), 0.0))) if rel2 else float("nan")
            res.closure[eff] = closure
            sigma = np.hypot(_reference_error(d), (0.0 if np.isnan(closure) else closure) * d["expected"])
            d["z"] = counting_significance(d["observed"], d["expected"], sigma) if rel2 else float("nan")
