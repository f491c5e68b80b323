"""The bump hunt on an analyst's own data: windows over the data's own m_jj range, every method, limits, a report.

One path for every caller: ``anomalyhunt hunt`` (unlabelled data, optional injection from a separate signal table),
``report`` and ``demo`` (truth studies with held-out references) all build a :class:`HuntSample` and call
:func:`run_hunt`, which runs :func:`~anomalyhunt.analysis.windows.hunt_windows` and writes hunt.csv, histograms (ROOT
and ``hist`` pickles), plots (PNG + PDF), 95% CL upper limits (CLs, pyhf), summary.json and report.md.

Truth enters only where the caller puts it: the injected signal events (``is_signal``, bookkeeping) and, for truth
studies, held-out background (the idealized reference) and a labelled test set. A ``label`` column of the data is
never read here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from .injection import DEFAULT_FEATURES, feature_matrix, mjj_tev

#: Bins of the dijet fits (GeV).
BIN_WIDTH = 100.0
#: Sidebands (GeV) on each side of a window in its fit (the fit range is clipped to the data's fit range).
MARGIN = 600.0
#: A window needs this many data events in its SR (and this many in its fit range outside it) for a fit.
MIN_EVENTS = 100
#: Said of a method's result unless background-only hunts of these windows and this method calibrate it.
UNCALIBRATED = ("uncalibrated: the global Z comes from fit-only toys (classifiers not retrained), not from "
                "background-only hunts of these windows and this method")  # fmt: skip
#: The default local significance, per method (``auto``, :func:`significance_for`): the dijet fit with the
#: Gaussian's mean fixed at the window centre, except for the idealized reference, whose reference *is* a sample of
#: the SR background: there the direct count is exact, and background-only hunts measured its spread at 0.97-1.05
#: (demo configuration, quarter-size and full-size samples) where the fit gave 1.16-1.72 (its SR-trained classifier
#: on the jet-mass inputs bends the efficiency in mjj inside the SR, which the sideband interpolation cannot see);
#: CATHODE's fit: 0.97-1.21 (``anomalyhunt bench hunt``; README).
DEFAULT_SIGNIFICANCE = "auto"


def significance_for(method: str, significance: str = DEFAULT_SIGNIFICANCE) -> str:
    """The local Z definition (a key of :data:`~anomalyhunt.analysis.windows.SIGNIFICANCES`) that ``significance``
    means for ``method``: ``auto`` is ``direct`` for the idealized reference and ``fit-fixed`` for every other
    method; any other value means itself."""
    from .references import IDEALIZED

    if significance != "auto":
        return significance
    return "direct" if method == IDEALIZED else "fit-fixed"


def significance_column(method: str, significance: str = DEFAULT_SIGNIFICANCE) -> str:
    """The hunt table's column of ``method``'s local Z under ``significance`` (``z_fixed``, ``z`` or ``z_direct``)."""
    from .windows import SIGNIFICANCES

    return SIGNIFICANCES[significance_for(method, significance)]


@dataclass
class NullStudy:
    """A null max-Z distribution: one row per background-only sample (or pseudo-experiment), method, window and cut.

    ``label`` says what the samples are; ``calibrates`` whether they were made for the data being hunted (null
    pseudo-experiments of this table, :mod:`~anomalyhunt.analysis.null_toys`, or the demo's shipped study of its own
    configuration): only then is a global significance from them called calibrated."""

    path: Path
    values: pd.DataFrame
    settings: dict[str, Any]
    label: str
    calibrates: bool = False

    @classmethod
    def load(cls, path: str | Path, label: str | None = None, data: str | None = None) -> "NullStudy":
        """A study directory (``anomalyhunt bench hunt --out DIR`` or a hunt's ``null-toys``); it calibrates when
        its ``data`` fingerprint is the one given (:meth:`HuntSample.fingerprint`)."""
        from ..resume import read_tasks

        p = Path(path)
        if not (p / "tasks.jsonl").exists() or not (p / "study.json").exists():
            raise InputError(p, "not a calibration study (no tasks.jsonl / study.json from `anomalyhunt bench hunt` "
                                "or `anomalyhunt hunt --null-toys`)")  # fmt: skip
        settings = json.loads((p / "study.json").read_text())
        values = pd.DataFrame([r for rows in read_tasks(p).values() for r in rows])
        return cls(p, values, settings, label or f"background-only hunts ({p})",
                   data is not None and settings.get("data") == data)  # fmt: skip

    def check(self, windows: Sequence[tuple[float, float]], efficiencies: Sequence[float]) -> None:
        """Refuse a study made for other windows or cuts (its max-Z distribution would be another trials factor)."""
        want = [[float(a), float(b)] for a, b in windows]
        if self.settings.get("windows") != want or list(self.settings.get("efficiencies", [])) != list(efficiencies):
            raise InputError(self.path, f"calibration study made for windows {self.settings.get('windows')} and cuts "
                                        f"{self.settings.get('efficiencies')}, not {want} and {list(efficiencies)}")

    def global_p(self, method: str, observed: float, column: str) -> dict[str, Any] | None:
        """The global p-value of a largest local Z counted among the background-only hunts' largest local Zs,
        (k + 1) / (n + 1); beyond all of them, also an extrapolation with the effective number of trials their
        median measures (labelled so). None when the study has no hunts of ``method``."""
        from .bumphunt import global_from_toys
        from .hunt_calibration import sample_max_z

        max_z = sample_max_z(self.values, method, column) if len(self.values) else []
        if len(max_z) == 0:
            return None
        g = global_from_toys(observed, np.asarray(max_z), "background-only hunts")
        out = {"p_global": g.p_value, "z_global": g.z, "n_null": g.n_toys}
        if g.p_value == 1 / (g.n_toys + 1):  # beyond every null hunt: the count only bounds it
            out |= {"z_global_extrapolated": g.z_extrapolated, "n_eff_trials": g.n_eff}
        return out


@dataclass
class HuntSample:
    """The events a hunt runs on (masses in TeV, features as the models see them).

    ``is_signal``: truth of injected events (bookkeeping only; None for plain data). ``x_ideal``/``m_ideal``: held-out
    true background (the idealized reference) and ``x_test``/``m_test``/``y_test`` a labelled test set, for truth
    studies only.
    """

    x: np.ndarray
    m: np.ndarray
    features: tuple[str, ...]
    description: str
    is_signal: np.ndarray | None = None
    x_ideal: np.ndarray | None = None
    m_ideal: np.ndarray | None = None
    x_test: np.ndarray | None = None
    m_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def fingerprint(self) -> str:
        """sha1 of the events (masses, features, their names): what a null study made for this data records."""
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(self.m, np.float64).tobytes())
        h.update(np.ascontiguousarray(self.x, np.float64).tobytes())
        h.update(",".join(self.features).encode())
        return h.hexdigest()

    def signal_in(self, window: tuple[float, float]) -> int | None:
        """Injected signal events in a window (None without injection)."""
        if self.is_signal is None:
            return None
        return int(self.is_signal[(self.m >= window[0]) & (self.m < window[1])].sum())


def data_sample(
    table: pd.DataFrame,
    features: Sequence[str] = DEFAULT_FEATURES,
    *,
    source: str = "data",
    inject: pd.DataFrame | None = None,
    inject_source: str = "injection table",
    n_signal: int = 0,
    seed: int = 0,
) -> HuntSample:
    """A :class:`HuntSample` of data events (any ``label`` column ignored), plus ``n_signal`` events drawn with
    ``seed`` from the separate table ``inject`` for a sensitivity study."""
    m = mjj_tev(table, source)
    x = feature_matrix(table, features, source)
    desc = f"{len(m)} data events ({source})"
    if inject is None:
        if n_signal:
            raise ConfigError("--signal-events needs --inject FILE (the table the signal events are drawn from)")
        return HuntSample(x, m, tuple(features), desc)
    m_sig = mjj_tev(inject, inject_source)
    x_sig = feature_matrix(inject, features, inject_source)
    if not 0 <= n_signal <= len(m_sig):
        raise InputError(inject_source, f"{n_signal} signal events asked, the table holds {len(m_sig)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1417]))
    pick = np.sort(rng.permutation(len(m_sig))[:n_signal])
    is_signal = np.r_[np.zeros(len(m), np.int8), np.ones(n_signal, np.int8)]
    desc += f" + {n_signal} signal events injected from {inject_source} (seed {seed})"
    return HuntSample(np.r_[x, x_sig[pick]], np.r_[m, m_sig[pick]], tuple(features), desc, is_signal)


def turn_on_end(m_gev: np.ndarray, width: float = BIN_WIDTH) -> float:
    """Where the m_jj spectrum stops rising (GeV): one bin above its most populated bin. Below, the trigger turn-on
    shapes the spectrum and the dijet function cannot describe it."""
    edges = np.arange(np.floor(m_gev.min() / width) * width, m_gev.max() + width, width)
    counts, _ = np.histogram(m_gev, edges)
    return float(edges[int(np.argmax(counts)) + 2])


def fit_edges(
    m: np.ndarray, windows: Sequence[tuple[float, float]], *, fit_range: tuple[float, float] | None = None,
    source: str = "data",
) -> np.ndarray:
    """Bin edges (GeV) of the fit range: from the end of the trigger turn-on (or ``fit_range``, TeV) to the data's
    end; every window must lie inside with sidebands on both sides. Refuses, with one line, a fit range inside the
    turn-on and windows outside the data."""
    m_gev = np.asarray(m) * 1000.0
    if len(m_gev) < MIN_EVENTS:
        raise InputError(source, f"{len(m_gev)} events: too few for a bump hunt (need >= {MIN_EVENTS})")
    start = turn_on_end(m_gev)
    data_end = float(np.floor(np.quantile(m_gev, 0.9999) / BIN_WIDTH) * BIN_WIDTH)
    lo, hi = (start, data_end) if fit_range is None else (fit_range[0] * 1000.0, fit_range[1] * 1000.0)
    if lo < start - 1e-6:
        raise InputError(source, f"fit range starts at {lo / 1000:g} TeV, inside the trigger turn-on: the mjj spectrum "
                                 f"rises up to {(start - BIN_WIDTH) / 1000:g} TeV; start at >= {start / 1000:g} TeV")
    hi = min(hi, data_end)
    edges = np.arange(lo, hi + BIN_WIDTH / 2, BIN_WIDTH)
    if len(edges) < 8:
        raise InputError(source, f"fit range {lo / 1000:g}-{hi / 1000:g} TeV holds too few {BIN_WIDTH:g} GeV bins")
    for w in windows:
        if w[0] * 1000.0 < edges[0] + 2 * BIN_WIDTH or w[1] * 1000.0 > edges[-1] - 2 * BIN_WIDTH:
            where = "outside the data's mjj range" if (w[1] * 1000 <= m_gev.min() or w[0] * 1000 >= m_gev.max()) \
                else "without sidebands inside the fit range"
            raise InputError(source, f"SR {w[0]:g}-{w[1]:g} TeV lies {where} {edges[0] / 1000:g}-"
                                     f"{edges[-1] / 1000:g} TeV (the spectrum rises below {start / 1000:g} TeV)")
        in_sr = int(((m >= w[0]) & (m < w[1])).sum())
        if in_sr < MIN_EVENTS:
            raise InputError(source, f"SR {w[0]:g}-{w[1]:g} TeV holds {in_sr} events: too few for a fit "
                                     f"(need >= {MIN_EVENTS})")
    return edges


def prediction_error(fit: Any, bins: np.ndarray) -> float:
    """Standard error of a background fit's prediction summed over ``bins``, from the fit's covariance (numerical
    derivatives): how well the sidebands pin down the background they are extrapolated into."""
    from .dijetfit import background_counts

    mn = fit.minuit
    names = [p for p in ("norm", "p1", "p2", "p3") if p in mn.parameters and not mn.fixed[p]]
    if mn is None or mn.covariance is None or not names:
        return 0.0
    v = dict(fit.values)

    def total(vals: dict[str, float]) -> float:
        counts = background_counts(fit.edges, vals["norm"], vals["p1"], vals["p2"], vals["p3"], fit.sqrt_s)
        return float(counts[bins].sum())

    grad = []
    for p in names:
        h = 1e-4 * max(abs(v[p]), 1e-3)
        grad.append((total({**v, p: v[p] + h}) - total({**v, p: v[p] - h})) / (2 * h))
    cov = np.array([[mn.covariance[a, b] for b in names] for a in names])
    g = np.asarray(grad)
    return float(np.sqrt(max(g @ cov @ g, 0.0)))


def upper_limit(hunt: Any, efficiency_error: float = 0.0, rel_width: float = 0.06) -> dict[str, float]:
    """95% CL CLs upper limit (pyhf) on signal events after the cut in a window's SR: a Gaussian at the window
    centre over the sideband fit's background, whose normalisation carries the fit's own extrapolation error and the
    cut's SR efficiency error (in quadrature) as one correlated uncertainty."""
    import pyhf
    from scipy import special

    fit = hunt.sideband_fit
    sr = ~fit.mask
    lo, hi = hunt.signal_region
    centre = 0.5 * (lo + hi)
    e = fit.edges
    shape = np.diff(special.ndtr((e - centre) / (rel_width * centre)))[sr]
    bkg = np.maximum(fit.background()[sr], 1e-3)
    obs = fit.counts[sr]
    rel = float(np.hypot(prediction_error(fit, sr) / bkg.sum(), efficiency_error))
    norm = {"hi": 1 + rel, "lo": max(1 - rel, 0.01)}
    spec = {"channels": [{"name": "sr", "samples": [
        {"name": "signal", "data": (shape / shape.sum()).tolist(),
         "modifiers": [{"name": "n_signal", "type": "normfactor", "data": None}]},
        {"name": "background", "data": bkg.tolist(),
         "modifiers": [{"name": "background_norm", "type": "normsys", "data": norm}]},
    ]}]}  # fmt: skip
    model = pyhf.Model(spec, poi_name="n_signal")
    data = obs.tolist() + model.config.auxdata
    hi_mu = 8.0 * (np.sqrt(bkg.sum()) + rel * bkg.sum() + max(obs.sum() - bkg.sum(), 0.0)) + 10.0
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (0.0, 2.0 * hi_mu)  # the signal strength is a number of events here
    # A scan rather than a root finder: CLs is 0/0 near zero events, and the +2 sigma band needs a wide range.
    scan = np.geomspace(1.0, hi_mu, 40)
    with np.errstate(divide="ignore", invalid="ignore"):  # the 0/0 of CLs at the scan's low end, as said above
        obs_limit, exp_limits = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan, level=0.05,
                                                                              par_bounds=bounds)  # fmt: skip
    return {"limit_obs": float(obs_limit), "limit_exp": float(exp_limits[2]),
            "limit_exp_lo": float(exp_limits[1]), "limit_exp_hi": float(exp_limits[3])}  # fmt: skip


def run_hunt(
    sample: HuntSample,
    windows: Sequence[tuple[float, float]],
    methods: Sequence[str],
    out: str | Path,
    *,
    efficiencies: Sequence[float] = (0.1, 0.01),
    fit_range: tuple[float, float] | None = None,
    edges: np.ndarray | None = None,
    seed: int = 0,
    generator_config: dict[str, dict[str, Any]] | None = None,
    classifier_config: dict[str, Any] | None = None,
    sideband_width: float | None = 0.4,
    train_on: str = "sr",
    template_ensemble: int = 1,
    fit_toys: int = 30,
    significance: str = DEFAULT_SIGNIFICANCE,
    null: NullStudy | None = None,
    style: str = "CMS",
    label: str | None = None,
    plots: bool = True,
    title: str = "anomalyhunt bump hunt",
    notes: Sequence[str] = (),
    console: Any = None,
    timings: dict[str, float] | None = None,
    simulation: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Hunt in every window with every method and write the outputs to ``out``; returns the hunt table (one row per
    method, window and cut, with every local Z definition, fitted signal and the 95% CL upper limit on signal events).

    ``significance`` picks the local Z the summary, the p-value scan and the global significance use (``auto``: per
    method, :func:`significance_for`). The global
    significance comes from ``null`` (background-only hunts of the same windows, cuts and method: calibrated) or,
    without it, from fit-only toys (uncalibrated; none for ``direct``). Plots are drawn in the experiment's
    ``style`` and labelled ``label`` (default: Pythia 8 simulation; an analyst's data: e.g. "CMS Private Work"),
    unless ``plots`` is false. ``notes``: caveats printed and written at the top of the report. ``simulation``: a
    background simulation sample (features, masses in TeV) for the generators that want one (FETA, SALAD)."""
    from rich.console import Console

    from .histio import save_hists
    from .windows import SIGNIFICANCES, hunt_windows, train_range

    if significance != "auto" and significance not in SIGNIFICANCES:
        raise ConfigError(f"unknown significance {significance!r}: use auto, {', '.join(SIGNIFICANCES)}")
    if null is not None:
        null.check(windows, efficiencies)
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {} if timings is None else timings
    start, before = time.perf_counter(), sum(timings.values())  # ``timings`` may hold the caller's earlier steps
    edges = fit_edges(sample.m, windows, fit_range=fit_range) if edges is None else np.asarray(edges, float)
    console.print(f"{sample.description}; fit range {edges[0] / 1000:g}-{edges[-1] / 1000:g} TeV")
    for w in windows:
        s = sample.signal_in(w)
        n = int(((sample.m >= w[0]) & (sample.m < w[1])).sum())
        console.print(f"  SR {w[0]:g}-{w[1]:g} TeV: {n} events" + ("" if s is None else
                      f" ({s} injected signal, S/sqrt(B) = {s / np.sqrt(max(n - s, 1)):.2f})"))  # fmt: skip
    hunt, results = hunt_windows(
        sample.x, sample.m, windows, methods, x_ideal=sample.x_ideal, m_ideal=sample.m_ideal, x_test=sample.x_test,
        m_test=sample.m_test, y_test=sample.y_test, efficiencies=efficiencies, edges=edges,
        generator_config=generator_config, classifier_config=classifier_config, seed=seed, keep_templates=True,
        sideband_width=sideband_width, train_on=train_on, template_ensemble=template_ensemble, simulation=simulation,
    )  # fmt: skip
    timings["hunt"] = time.perf_counter() - start
    t0 = time.perf_counter()
    limits = [upper_limit(r.hunts[eff], r.efficiency_errors.get(eff, 0.0)) for r in results for eff in r.hunts]
    hunt = pd.concat([hunt, pd.DataFrame(limits)], axis=1)
    if sample.is_signal is not None:
        hunt["injected_in_sr"] = [sample.signal_in((lo, hi)) for lo, hi in zip(hunt.sr_lo, hunt.sr_hi)]
    timings["limits"] = time.perf_counter() - t0
    hunt.to_csv(out / "hunt.csv", index=False)
    hists = {f"{r.method}_{r.window[0]:g}-{r.window[1]:g}_eff{eff:g}": h for r in results for eff, h in r.hists.items()}
    save_hists(hists, out / "hists.root")
    save_hists(hists, out / "hists.pkl")

    t0 = time.perf_counter()
    globals_ = global_significances(hunt, results, methods, significance, null, fit_toys, seed)
    timings["global significance"] = time.perf_counter() - t0
    summary = summarize_hunt(hunt, significance, globals_)
    # where each method's classifier trained (``train_on="auto"`` picks per method)
    summary.insert(2, "classifier_trained_on", [train_range(train_on, m) for m in summary.method])
    figures = make_plots(out / "plots", hunt, results, sample, style, significance, label) if plots else {}
    timings["total"] = before + time.perf_counter() - start
    write_report(out, title, summary, hunt, figures, sample, timings, significance, notes)
    print_table(summary, title)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    (out / "summary.json").write_text(json.dumps(
        {"significance": significance, "significance_by_method": {m: significance_for(m, significance) for m in methods},
         "data": sample.description, "fit_range_gev": [edges[0], edges[-1]],
         "calibration": {m: g["calibration"] for m, g in globals_.items()}, "notes": list(notes),
         "summary": summary.to_dict(orient="records"), "timings": timings}, indent=2, default=float))  # fmt: skip
    console.print(f"report: {out / 'report.md'}  ({timings['total']:.0f} s in all)")
    return hunt


def global_significances(
    hunt: pd.DataFrame, results: list, methods: Sequence[str], significance: str, null: NullStudy | None,
    fit_toys: int, seed: int,
) -> dict[str, dict[str, Any]]:
    """Per method: the global p-value and Z of its largest local Z over windows and cuts, and how it was obtained."""
    from .windows import SIGNIFICANCES, hunt_fit_toys

    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        own = significance_for(m, significance)
        column = SIGNIFICANCES[own]
        observed = float(hunt[(hunt.method == m) & (hunt.efficiency < 1.0)][column].max())
        from_null = null.global_p(m, observed, column) if null is not None else None
        if from_null is not None:
            n = from_null["n_null"]
            state = "calibrated" if null.calibrates else "uncalibrated for this data"
            out[m] = {**from_null, "calibration": f"{state}: {n} {null.label}"}
        elif fit_toys and own != "direct":
            g = hunt_fit_toys([r for r in results if r.method == m], fit_toys, seed=seed, progress=True,
                              significance=own)  # fmt: skip
            out[m] = {"p_global": g.p_value, "z_global_toys": g.z, "z_global": g.z_extrapolated,
                      "n_eff_trials": g.n_eff, "calibration": UNCALIBRATED}
        else:
            out[m] = {"calibration": "uncalibrated: no global significance (no toys)"}
    return out


def summarize_hunt(
    hunt: pd.DataFrame, significance: str = DEFAULT_SIGNIFICANCE, globals_: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """Per method: the window and cut with the largest local significance (as ``significance`` defines it), the
    same test before any cut, its 95% CL limit, the max SIC on a labelled test set (truth studies), and the global
    significance over all windows and cuts (``globals_``, from :func:`global_significances`)."""
    rows = []
    for method, g in hunt.groupby("method", sort=False):
        column = significance_column(method, significance)
        cut = g[g.efficiency < 1.0] if (g.efficiency < 1.0).any() else g
        best = cut.loc[cut[column].idxmax()]
        raw = g[(g.efficiency == 1.0) & (g.sr_lo == best.sr_lo)].iloc[0]
        rows.append({
            "method": method, "significance": significance_for(method, significance),
            "window": f"{best.sr_lo:g}-{best.sr_hi:g}", "efficiency": best.efficiency,
            # before any cut there is no direct count (the SR against itself): the fixed-mean fit
            "z_local": best[column], "z_raw": raw[column] if pd.notna(raw[column]) else raw.z_fixed,
            "fitted_mean_gev": best.fitted_mean_gev, "limit_obs": best.limit_obs, "limit_exp": best.limit_exp,
            "max_sic": best.get("max_sic"), "seconds_train": g.seconds_train.sum(),
            "seconds_template": g.seconds_template.sum(),
        })  # fmt: skip
        if globals_ and method in globals_:
            rows[-1] |= {k: v for k, v in globals_[method].items() if k != "calibration"}
            rows[-1]["calibrated"] = globals_[method]["calibration"].startswith("calibrated")
    return pd.DataFrame(rows)


def make_plots(out: Path, hunt: pd.DataFrame, results: list, sample: HuntSample, style: str,
               significance: str = DEFAULT_SIGNIFICANCE, label: str | None = None) -> dict[str, list[Path]]:  # fmt: skip
    """Per method: the bump hunt of its best window and cut, template vs data there (template methods) and ROC/SIC
    (truth studies); over all: the local p-value scan. Every window and cut also gets its bump-hunt plot, under
    ``windows/`` (key ``"windows"``: listed in the report, not shown)."""
    from scipy import stats

    from .plots import plot_bump_hunt, plot_pvalue_scan, plot_roc_sic, plot_template_vs_data
    from .references import CWOLA, IDEALIZED, LACATHODE

    files: dict[str, list[Path]] = {}
    curves = {}
    for _, row in summarize_hunt(hunt, significance).iterrows():
        r = next(r for r in results if r.method == row.method and f"{r.window[0]:g}-{r.window[1]:g}" == row.window)
        h = r.hunts[row.efficiency]
        shown = h.local if significance == "fit-floating" else h.fixed
        files[f"bump hunt, {row.method}"] = plot_bump_hunt(
            h.sideband_fit, signal_fit=shown.signal_fit, signal_region=h.signal_region, style=style, label=label,
            title=f"{row.method}, SR {row.window} TeV, background efficiency {row.efficiency:g}",
            path=out / f"bumphunt_{row.method}",
        ).files  # fmt: skip
        if r.test_scores is not None:
            curves[f"{r.method} (SR {row.window} TeV)"] = {"scores": r.test_scores, "labels": r.test_labels}
        if r.template is not None and r.method not in (IDEALIZED, CWOLA, LACATHODE):  # a template of the features
            in_sr = (sample.m >= r.window[0]) & (sample.m < r.window[1])
            feats = list(sample.features)
            files[f"template vs data, {r.method}, SR {row.window} TeV"] = plot_template_vs_data(
                pd.DataFrame(r.template, columns=feats), pd.DataFrame(sample.x[in_sr], columns=feats), feats,
                style=style, label=label, template_label=f"{r.method} template",
                path=out / f"template_vs_data_{r.method}",
            ).files  # fmt: skip
    scan = {}
    for (method, eff), g in hunt[hunt.efficiency < 1.0].groupby(["method", "efficiency"], sort=False):
        scan[f"{method}, eff {eff:g}"] = (g.centre.to_numpy() * 1000.0,
                                           stats.norm.sf(g[significance_column(method, significance)].to_numpy()))
    g = hunt[(hunt.efficiency == 1.0) & (hunt.method == hunt.method.iloc[0])]
    scan["no cut"] = (g.centre.to_numpy() * 1000.0, stats.norm.sf(g.z_fixed.to_numpy()))
    files["local p-value scan"] = plot_pvalue_scan(scan, style=style, label=label, path=out / "pvalue_scan").files
    if curves:
        files["ROC and SIC (labelled test set)"] = plot_roc_sic(curves, style=style, label=label,
                                                                path=out / "roc_sic").files
    files["windows"] = []
    for r in results:
        for eff, h in r.hunts.items():
            shown = h.local if significance == "fit-floating" else h.fixed
            what = "no cut" if eff == 1.0 else f"background efficiency {eff:g}"
            files["windows"] += plot_bump_hunt(
                h.sideband_fit, signal_fit=shown.signal_fit, signal_region=h.signal_region, style=style, label=label,
                title=f"{r.method}, SR {r.window[0]:g}-{r.window[1]:g} TeV, {what}",
                path=out / "windows" / f"bumphunt_{r.method}_{r.window[0]:g}-{r.window[1]:g}_eff{eff:g}",
            ).files  # fmt: skip
    return files


def write_report(out: Path, title: str, summary: pd.DataFrame, hunt: pd.DataFrame, plots: dict[str, list[Path]],
                 sample: HuntSample, timings: dict[str, float], significance: str,
                 notes: Sequence[str] = ()) -> Path:  # fmt: skip
    lines = [
        f"# {title}", "", f"Data: {sample.description}.", "", *[f"**Note:** {n}\n" for n in notes],
        f"Local significance: `{significance}`"
        + (" (per method: `direct` for the idealized reference, an exact sample of the SR background, and `fit-fixed`"
           " for every other method; the definition used is in the summary's `significance` column)"
           if significance == "auto" else "")
        + ". `fit-fixed`: binned Poisson likelihood ratio of dijet-function fits "
        "(background only vs background + a Gaussian at the window centre, 6% width), with the cut's SR efficiency "
        "uncertainty profiled; `fit-floating`: the same with the Gaussian's mean floating in the SR (`z` in the "
        "table); `direct`: the template's pass fraction times the SR count against the observed count, with a "
        "closure uncertainty from the other windows (`z_direct`). `z_raw` is the test before any cut: the fit (with "
        "the fixed mean where the local Z is a direct count, which before a cut would compare the SR with itself). "
        "The global "
        "significance covers all windows and cut levels of a method: from background-only hunts of these windows "
        "where they were given (`calibrated`), otherwise from fit-only toys, which do not retrain the classifiers "
        "(`z_global_toys`: the toys' own p-value; `z_global`: extrapolated with the effective number of trials "
        "`n_eff_trials`) and are labelled uncalibrated; beyond every background-only hunt the count only bounds the "
        "p-value, and `z_global_extrapolated` extrapolates it with the effective trials the hunts measure. "
        "`limit_obs` / `limit_exp`: 95% CL CLs upper limits (pyhf) on signal events inside the SR after the cut.", "",
        "## Summary", "", markdown_table(summary), "",
        "## Timing", "", *[f"- {k}: {v:.0f} s" for k, v in timings.items()], "",
        "## Plots", "",
    ]  # fmt: skip
    for name, paths in plots.items():
        if name == "windows":
            continue
        png = next(p for p in paths if p.suffix == ".png")
        lines += [f"### {name}", "", f"![{name}]({png.relative_to(out)})", ""]
    windows = [p for p in plots.get("windows", []) if p.suffix == ".png"]
    if windows:
        lines += ["### Every window and cut", "", *[f"- [{p.stem}]({p.relative_to(out)})" for p in windows], ""]
    lines += ["## All windows", "", markdown_table(hunt.drop(columns=["seconds_train", "seconds_template"])), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)

    rows = [list(df.columns), ["---"] * len(df.columns)] + [[cell(v) for v in r] for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def print_table(summary: pd.DataFrame, title: str) -> None:
    """The summary as a rich table, wide enough not to wrap in a log file."""
    from rich.table import Table

    from ..console import console_for_tables

    console = console_for_tables()
    t = Table(title=f"{title}: best window per method")
    for col in ("method", "window [TeV]", "bkg eff.", "local Z (cut)", "local Z from", "global Z", "Z before cut",
                "95% CL obs/exp", "max SIC", "train s", "template s"):  # fmt: skip
        t.add_column(col, justify="right")
    for _, r in summary.iterrows():
        z_global = f"{r.z_global:.2f}" if "z_global" in r and pd.notna(r.z_global) else "-"
        z_global += "" if r.get("calibrated", False) else " (uncal.)"
        t.add_row(r.method, r.window, f"{r.efficiency:g}", f"{r.z_local:.2f}", str(r.get("significance", "-")),
                  z_global, f"{r.z_raw:.2f}",
                  f"{r.limit_obs:.0f} / {r.limit_exp:.0f}",
                  "-" if r.max_sic is None or pd.isna(r.max_sic) else f"{r.max_sic:.1f}",
                  f"{r.seconds_train:.0f}", f"{r.seconds_template:.0f}")  # fmt: skip
    console.print(t)
