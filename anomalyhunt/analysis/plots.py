"""Publication plots (mplhep styles, non-interactive Agg): bump hunt, p-value scan, ROC/SIC, SIC vs injection,
template vs data, DRAPES sigma' scan.

Every ``plot_*`` function builds its own ``matplotlib.figure.Figure`` (no pyplot state) in an experiment's mplhep
style (fonts and layout), labels it with what it shows -- ``label``, by default :data:`SIMULATION` (our Pythia 8
samples carry no experiment's name; an analyst passes e.g. "CMS Private Work" for their data) -- at
sqrt(s) = 13 TeV, saves it as PNG and PDF when ``path`` (without suffix) is given, and
returns a small dataclass with the figure and the numbers it drew, so tests can check what is on the plot.
Masses are taken in GeV and drawn in TeV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import sys

import matplotlib

# Batch plotting: Agg unless the user already chose a backend through pyplot (a notebook). The figures here are
# plain ``Figure`` objects saved with ``savefig``, which renders PNG with Agg and PDF with the pdf backend either way.
if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.style as mstyle  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from ..errors import InputError  # noqa: E402

STYLES = {"CMS": hep.style.CMS, "ATLAS": hep.style.ATLAS, "LHCb": hep.style.LHCb2}
COM_TEV = 13


def _style(style: str):
    if style not in STYLES:
        raise InputError("plots", f"unknown style {style!r}; choose one of {sorted(STYLES)}")
    return mstyle.context(STYLES[style])


#: The label of plots made from this project's samples: Pythia 8 at particle level, no detector, no experiment.
SIMULATION = "Pythia 8 simulation, particle level"


def experiment_label(ax, style: str = "CMS", loc: int = 0, text: str | None = None) -> None:
    """``text`` (default :data:`SIMULATION`) and '(13 TeV)' on ``ax``; an experiment's name appears only where
    ``text`` names it. ``style`` is checked here too: it sets the fonts of the figure around."""
    if style not in STYLES:
        raise InputError("plots", f"unknown style {style!r}; choose one of {sorted(STYLES)}")
    hep.label.exp_label(exp="", llabel=SIMULATION if text is None else text, com=COM_TEV, ax=ax, loc=loc)


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``path.png`` and ``path.pdf`` (``path`` without suffix; a .png/.pdf suffix is dropped)."""
    p = Path(path)
    if p.suffix.lower() in (".png", ".pdf"):
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".pdf"):
        target = p.parent / (p.name + ext)
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        out.append(target)
    return out


@dataclass
class Drawn:
    """A figure, the files written (if any) and the arrays it drew."""

    fig: Figure
    files: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _finish(fig: Figure, path: str | Path | None, data: dict[str, Any]) -> Drawn:
    return Drawn(fig, save_figure(fig, path) if path is not None else [], data)


# --------------------------------------------------------------------------------------------------------------
# Bump hunt and p-value scan
# --------------------------------------------------------------------------------------------------------------


def plot_bump_hunt(
    fit: Any,
    *,
    signal_fit: Any = None,
    signal_region: tuple[float, float] | None = None,
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
    title: str | None = None,
) -> Drawn:
    """Data with Poisson errors, the background fit, optionally the signal + background fit, the SR band, and a pull
    panel (data - fit) / sqrt(fit) against the background fit.

    ``fit``: a :class:`~anomalyhunt.analysis.dijetfit.DijetFit` (typically the sideband fit with the SR masked), or a
    :class:`~anomalyhunt.analysis.bumphunt.BumpHunt` (its sideband fit, signal fit and SR are used).
    ``data['pulls']`` holds the pulls drawn.
    """
    if hasattr(fit, "sideband_fit"):
        signal_fit = signal_fit if signal_fit is not None else fit.local.signal_fit
        signal_region = signal_region if signal_region is not None else fit.signal_region
        fit = fit.sideband_fit
    edges_tev = fit.edges / 1000.0
    counts = fit.counts
    bkg = np.maximum(fit.background(), 1e-12)
    pulls = (counts - bkg) / np.sqrt(bkg)
    with _style(style):
        fig = Figure(figsize=(9, 9))
        ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
        hep.histplot(counts, edges_tev, yerr=np.sqrt(counts), histtype="errorbar", color="k", label="Data", ax=ax)
        ax.stairs(bkg, edges_tev, baseline=None, color="tab:blue", lw=2, label=f"Dijet fit ({fit.n_params} par.)"
                  + (", SR masked" if not fit.mask.all() else ""))
        if signal_fit is not None:
            ax.stairs(signal_fit.expected(), edges_tev, baseline=None, color="tab:red", lw=2, ls="--",
                      label=rf"Signal + bkg. fit ($\hat{{m}}$ = {signal_fit.values['mean'] / 1000:.2f} TeV)")
        for a in (ax, rax):
            if signal_region is not None:
                a.axvspan(signal_region[0] / 1000, signal_region[1] / 1000, color="0.85", zorder=0,
                          label="Signal region" if a is ax else None)
        ax.set_yscale("log")
        positive = counts[counts > 0]
        low = 0.5 * float(positive.min()) if len(positive) else 0.5
        high = max(float(counts.max()), float(bkg.max()), 1.0)
        ax.set_ylim(low, high * (high / low) ** 1.1)  # headroom in log space for the legend and the label
        ax.set_ylabel(f"Events / {np.median(np.diff(fit.edges)):.0f} GeV")
        # one clause per line: a long one-line legend title runs into the axis label
        ax.legend(title=None if title is None else title.replace(", ", "\n"), loc="upper right",
                  fontsize="x-small", title_fontsize="x-small", alignment="right")
        experiment_label(ax, style, text=label)
        rax.bar(0.5 * (edges_tev[1:] + edges_tev[:-1]), pulls, width=np.diff(edges_tev), color="tab:blue", alpha=0.7)
        rax.axhline(0, color="k", lw=1)
        lim = max(3.0, float(np.nanmax(np.abs(pulls))) * 1.15)
        rax.set_ylim(-lim, lim)
        rax.set_ylabel("(Data − Fit) / √Fit", fontsize="small")
        rax.set_xlabel(r"$m_{jj}$ [TeV]")
        rax.set_xlim(edges_tev[0], edges_tev[-1])
        return _finish(fig, path, {"pulls": pulls, "counts": counts, "background": bkg, "edges": fit.edges})


def plot_pvalue_scan(
    scan: Any,
    *,
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
    global_significance: Any = None,
    max_sigma: int = 5,
) -> Drawn:
    """Local p-value against window centre, one curve per cut level, with 1-5 sigma (one-sided) lines.

    ``scan``: a :class:`~anomalyhunt.analysis.bumphunt.ScanResult`, or a mapping label -> (centres GeV, p-values).
    """
    if hasattr(scan, "table"):
        groups = scan.table.groupby("cut", sort=False)
        curves = {k: (g["centre"].to_numpy(), g["p_local"].to_numpy()) for k, g in groups}
    else:
        curves = {k: (np.asarray(c, float), np.asarray(p, float)) for k, (c, p) in scan.items()}
    if not curves:
        raise InputError("plot_pvalue_scan", "nothing to plot")
    lowest = min(float(np.min(p)) for _, p in curves.values())
    with _style(style):
        fig = Figure(figsize=(10, 8))
        ax = fig.subplots()
        looks = []
        for i, (key, (c, p)) in enumerate(curves.items()):
            name = f"$\\epsilon$ = {key:g}" if isinstance(key, float) else str(key)
            # one colour and line style per curve: the style's own colour cycle repeats after a few curves
            look = (matplotlib.colormaps["tab10"](i % 10), ("-", "--", ":", "-.")[(i // 10) % 4])
            ax.plot(c / 1000.0, p, marker="o", ms=4, label=name, color=look[0], ls=look[1])
            looks.append(look)
        lines = {k: float(stats.norm.sf(k)) for k in range(1, max_sigma + 1)}
        for k, pk in lines.items():
            ax.axhline(pk, color="0.5", ls=":", lw=1)
            ax.text(0.98, pk, f"{k}$\\sigma$", va="bottom", ha="right", color="0.4", fontsize="small",
                    transform=ax.get_yaxis_transform())
        ax.set_yscale("log")
        ax.set_ylim(min(lines[max_sigma] / 3, lowest / 3), 1.5)
        ax.set_xlabel(r"Window centre $m_{jj}$ [TeV]")
        ax.set_ylabel("Local p-value")
        title = None
        if global_significance is not None:
            title = (f"max local Z = {global_significance.observed_max_z:.2f}, global Z = "
                     f"{global_significance.z:.2f}\n({global_significance.method}, {global_significance.n_toys} toys)")
        ax.legend(title=title, loc="lower left")
        experiment_label(ax, style, text=label)
        return _finish(fig, path, {"curves": curves, "sigma_lines": lines, "looks": looks})


# --------------------------------------------------------------------------------------------------------------
# Classifier performance
# --------------------------------------------------------------------------------------------------------------


def _curve(spec: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(eps_s, eps_b) from a ``(eps_s, eps_b)`` pair or a mapping with ``scores`` and ``labels`` (1 = signal)."""
    if isinstance(spec, Mapping):
        from sklearn.metrics import roc_curve

        if "scores" not in spec or "labels" not in spec:
            raise InputError("plot_roc_sic", f"method {name!r}: a mapping needs 'scores' and 'labels'")
        fpr, tpr, _ = roc_curve(np.asarray(spec["labels"]), np.asarray(spec["scores"]))
        return tpr, fpr
    eps_s, eps_b = (np.asarray(a, float) for a in spec)
    if eps_s.shape != eps_b.shape:
        raise InputError("plot_roc_sic", f"method {name!r}: eps_s {eps_s.shape} and eps_b {eps_b.shape} differ")
    return eps_s, eps_b


def plot_roc_sic(
    methods: Mapping[str, Any],
    *,
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
    min_eps_b: float = 1e-4,
) -> Drawn:
    """ROC (background rejection 1/eps_b vs eps_s) and SIC (eps_s / sqrt(eps_b) vs eps_s) of several methods.

    ``methods``: name -> ``(eps_s, eps_b)`` arrays, or name -> ``{"scores": ..., "labels": ...}``. Points with
    eps_b < ``min_eps_b`` are dropped (a handful of background events make SIC meaningless there).
    ``data['curves'][name] = (eps_s, eps_b, sic)`` as drawn.
    """
    curves = {}
    with _style(style):
        fig = Figure(figsize=(18, 8))
        ax_roc, ax_sic = fig.subplots(1, 2)
        for name, spec in methods.items():
            eps_s, eps_b = _curve(spec, name)
            keep = (eps_b >= min_eps_b) & (eps_s > 0)
            eps_s, eps_b = eps_s[keep], eps_b[keep]
            sic = eps_s / np.sqrt(eps_b)
            curves[name] = (eps_s, eps_b, sic)
            ax_roc.plot(eps_s, 1.0 / eps_b, label=name)
            ax_sic.plot(eps_s, sic, label=f"{name} (max {sic.max():.1f})" if len(sic) else name)
        grid = np.linspace(1e-3, 1, 200)
        ax_roc.plot(grid, 1 / grid, color="0.5", ls=":", label="Random")
        ax_sic.plot(grid, np.sqrt(grid), color="0.5", ls=":", label="Random")
        ax_roc.set_yscale("log")
        ax_roc.set_xlabel(r"Signal efficiency $\epsilon_S$")
        ax_roc.set_ylabel(r"Background rejection $1/\epsilon_B$")
        ax_sic.set_xlabel(r"Signal efficiency $\epsilon_S$")
        ax_sic.set_ylabel(r"SIC $\epsilon_S$ / √$\epsilon_B$")
        for a in (ax_roc, ax_sic):
            a.set_xlim(0, 1)
            a.legend(loc="upper right")
            experiment_label(a, style, text=label)
        return _finish(fig, path, {"curves": curves})


def _median_band(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs = np.unique(x)
    med = np.array([np.median(y[x == v]) for v in xs])
    lo = np.array([np.quantile(y[x == v], 0.16) for v in xs])
    hi = np.array([np.quantile(y[x == v], 0.84) for v in xs])
    return xs, med, lo, hi


def _xy(spec: Any, x: str, y: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat (x, y) from a DataFrame/mapping with columns ``x`` and ``y``, or a pair (x (n,), y (n,) or (seeds, n))."""
    if hasattr(spec, "columns") or isinstance(spec, Mapping):
        try:
            return np.asarray(spec[x], float), np.asarray(spec[y], float)
        except KeyError:
            raise InputError("plots", f"{name!r}: needs columns {x!r} and {y!r}") from None
    xv, yv = np.asarray(spec[0], float), np.asarray(spec[1], float)
    if yv.ndim == 2:  # seeds x points
        xv = np.broadcast_to(xv, yv.shape)
    if xv.shape != yv.shape:
        raise InputError("plots", f"{name!r}: x {xv.shape} and y {yv.shape} do not match")
    return xv.ravel(), yv.ravel()


def plot_max_sic_vs_injection(
    results: Mapping[str, Any],
    *,
    x: str = "s_over_sqrt_b",
    y: str = "max_sic",
    xlabel: str = "Injected S / √B in the SR",
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
) -> Drawn:
    """Max SIC against injected signal, one curve per method: median over seeds with a 16-84% band.

    ``results``: method -> DataFrame with columns ``x`` and ``y`` (one row per seed and injection), or
    ``(x (n,), y (seeds, n))``. ``data['curves'][method] = (x, median, lo, hi)``.
    """
    curves = {}
    with _style(style):
        fig = Figure(figsize=(10, 8))
        ax = fig.subplots()
        for name, spec in results.items():
            xs, med, lo, hi = _median_band(*_xy(spec, x, y, name))
            curves[name] = (xs, med, lo, hi)
            (line,) = ax.plot(xs, med, marker="o", label=name)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
        ax.axhline(1.0, color="0.5", ls=":", label="No gain (SIC = 1)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(r"max SIC $\epsilon_S$ / √$\epsilon_B$")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # headroom for the legend
        ax.legend(title="median, 16-84% over seeds", loc="upper left", ncols=2)
        experiment_label(ax, style, text=label)
        return _finish(fig, path, {"curves": curves})


# --------------------------------------------------------------------------------------------------------------
# Templates and DRAPES
# --------------------------------------------------------------------------------------------------------------


def plot_template_vs_data(
    template: Any,
    data: Any,
    features: Sequence[str],
    *,
    bins: int = 30,
    template_label: str = "Template",
    data_label: str = "Data (SR)",
    template_weights: np.ndarray | None = None,
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
) -> Drawn:
    """Normalised feature distributions of a background template and the SR data, with a data/template ratio panel
    per feature. Bins span the 0.5-99.5% range of the data. ``data['ratios'][feature] = (edges, ratio, error)``."""
    if not features:
        raise InputError("plot_template_vs_data", "no features to plot")
    ncol = min(3, len(features))
    nrow = int(np.ceil(len(features) / ncol))
    ratios = {}
    with _style(style):
        fig = Figure(figsize=(9 * ncol, 9 * nrow))
        outer = fig.add_gridspec(nrow, ncol, hspace=0.3, wspace=0.35)
        for i, feat in enumerate(features):
            inner = outer[divmod(i, ncol)].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.06)
            ax = fig.add_subplot(inner[0])
            rax = fig.add_subplot(inner[1], sharex=ax)
            try:
                d = np.asarray(data[feat], float)
                t = np.asarray(template[feat], float)
            except KeyError:
                raise InputError("plot_template_vs_data", f"feature {feat!r} missing in template or data") from None
            e = np.linspace(*np.quantile(d, [0.005, 0.995]), bins + 1)
            tw = np.ones_like(t) if template_weights is None else np.asarray(template_weights, float)
            hd, _ = np.histogram(d, e)
            ht, _ = np.histogram(t, e, weights=tw)
            ht2, _ = np.histogram(t, e, weights=tw**2)
            nd, nt = max(hd.sum(), 1), max(ht.sum(), 1e-12)
            width = np.diff(e)
            hep.histplot(ht / nt / width, e, yerr=np.sqrt(ht2) / nt / width, histtype="step", lw=2,
                         label=template_label, ax=ax)
            hep.histplot(hd / nd / width, e, yerr=np.sqrt(hd) / nd / width, histtype="errorbar", color="k",
                         label=data_label, ax=ax)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = (hd / nd) / (ht / nt)
                err = ratio * np.sqrt(1 / np.maximum(hd, 1) + ht2 / np.maximum(ht, 1e-12) ** 2)
            ratios[feat] = (e, ratio, err)
            mid = 0.5 * (e[1:] + e[:-1])
            rax.errorbar(mid, ratio, yerr=err, fmt="o", color="k", ms=3)
            rax.axhline(1, color="0.5", ls="--")
            rax.set_ylim(0.5, 1.5)
            rax.set_ylabel("Data / Tmpl.")
            rax.set_xlabel(feat)
            ax.set_ylim(0, 1.45 * max(float(np.max(hd / nd / width)), float(np.max(ht / nt / width))))
            ax.set_ylabel("Normalised density")
            ax.tick_params(labelbottom=False)
            ax.legend(loc="upper right", fontsize="small")
            experiment_label(ax, style, text=label)
        return _finish(fig, path, {"ratios": ratios})


def plot_drapes_scan(
    sigma: np.ndarray,
    auc: np.ndarray,
    max_sic: np.ndarray,
    *,
    path: str | Path | None = None,
    style: str = "CMS",
    label: str | None = None,
) -> Drawn:
    """DRAPES smearing scan: template-vs-data AUC and max SIC against sigma'. ``auc``/``max_sic`` may be (n,) or
    (seeds, n): then the median and the 16-84% band are drawn. ``data`` holds (sigma, median, lo, hi) per panel."""
    s = np.asarray(sigma, float)
    out = {}
    with _style(style):
        fig = Figure(figsize=(10, 11))
        ax_auc, ax_sic = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.08})
        for key, values, ax, ref, ylabel in (
            ("auc", auc, ax_auc, 0.5, "Template vs data AUC"),
            ("max_sic", max_sic, ax_sic, 1.0, r"max SIC $\epsilon_S$ / √$\epsilon_B$"),
        ):
            xs, med, lo, hi = _median_band(*_xy((s, values), "", "", key))
            out[key] = (xs, med, lo, hi)
            (line,) = ax.plot(xs, med, marker="o")
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
            ax.axhline(ref, color="0.5", ls=":")
            ax.set_ylabel(ylabel)
        ax_sic.set_xlabel(r"Smearing $\sigma'$")
        experiment_label(ax_auc, style, text=label)
        return _finish(fig, path, out)
