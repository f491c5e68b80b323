"""The demo: the whole chain on built-in data, on two CPU cores in minutes.

1. a small fresh Pythia sample through ``generate`` and the coffea processor on a local Dask cluster (the path a
   user's own files take);
2. a search-sized sample: the compact feature table shipped with the package (350k QCD + a W'(3500) -> X(500) Y(100)
   signal pool, see ``anomalyhunt/data/demo_features.json`` for how it was made), with signal injected by seed;
3. a sliding-window hunt with SIGMA, CATHODE and the idealized reference, cuts at fixed background efficiencies and
   dijet-function fits; plots, histograms, a Markdown report and a summary table.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from .datasets import Dataset
from .features import load_feature_table
from .runconfig import seed_everything, write_run_config

FRESH_EVENTS = {"qcd": 100, "signal": 100}
#: Windows of 0.4 TeV every 0.2 TeV: the injected 3.5 TeV resonance sits between window centres.
WINDOWS = ((3.0, 3.4), (3.2, 3.6), (3.4, 3.8), (3.6, 4.0), (3.8, 4.2))
METHODS = ("sigma", "cathode", "idealized")
EFFICIENCIES = (0.1, 0.01)
FEATURES = ("mj1", "delta_mj", "tau21_j1", "tau21_j2", "delta_r")
#: CPU-sized settings that keep the demo within minutes on two cores.
GENERATOR_CONFIG = {"sigma": {"epochs": 30}, "cathode": {"epochs": 8}, "drapes": {"epochs": 15}}
#: Generators that train on sidebands use this much (TeV) on each side of each window.
SIDEBAND_WIDTH = 0.4
CLASSIFIER_CONFIG = {"n_ensemble": 2, "n_threads": 1}
#: Fit-only toys per method for the global significance (the toys' own p-value bottoms out at 1 / (FIT_TOYS + 1);
#: beyond that the effective number of trials they measure extrapolates it).
FIT_TOYS = 30


def shipped_features() -> pd.DataFrame:
    """The compact search-sized feature table shipped with the package."""
    with resources.as_file(resources.files("anomalyhunt") / "data" / "demo_features.parquet") as path:
        return pd.read_parquet(path)


def process_fresh_sample(out: Path, seed: int, workers: int, console: Console) -> dict[str, Any]:
    """Generate (or take from the cache) a small sample and run the processor on a local Dask cluster."""
    from .commands.process import print_summary
    from .generation import cached_sample
    from .processors import run_process

    datasets = {}
    for i, (process, n) in enumerate(FRESH_EVENTS.items()):
        path = cached_sample(process, n, seed + i, workers=workers)
        datasets[f"demo_{process}"] = Dataset(f"demo_{process}", "generated", [str(path)], label=int(process != "qcd"))
    output = run_process(datasets, out, executor="dask", workers=workers, chunksize=50, write_clouds=True,
                         write_images=True)  # fmt: skip
    print_summary(output)
    for name in datasets:
        table = load_feature_table(out / name)
        console.print(f"[bold]{name}[/bold] ({len(table)} events), medians:")
        console.print(table[["mjj", "mj1", "mj2", "tau21_j1", "tau21_j2", "delta_r"]].median().round(3).to_string())
    return output


def run_demo(
    out: str | Path,
    *,
    seed: int = 1,
    workers: int = 2,
    n_signal: int = 600,
    methods: Sequence[str] = METHODS,
    style: str = "CMS",
    fresh: bool = True,
) -> pd.DataFrame:
    """Run the demo; returns the hunt table (one row per method, window and cut)."""
    import torch

    console = Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    # The models here are small: one torch thread per process avoids oversubscribing two cores (tens of times
    # slower when the classifier's or Dask's processes compete for them).
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = {"seed": seed, "workers": workers, "n_signal": n_signal, "methods": list(methods),
              "windows": [list(w) for w in WINDOWS], "efficiencies": list(EFFICIENCIES), "features": list(FEATURES),
              "generator_config": GENERATOR_CONFIG, "classifier": "hgb", "classifier_config": CLASSIFIER_CONFIG,
              "fresh_events": FRESH_EVENTS, "style": style}  # fmt: skip
    write_run_config(out, config)
    timings: dict[str, float] = {}
    if fresh:
        console.rule("[bold]1. Fresh Pythia 8 sample -> coffea DijetProcessor on a local Dask cluster")
        t0 = time.perf_counter()
        process_fresh_sample(out / "processed", seed, workers, console)
        timings["generate + process"] = time.perf_counter() - t0

    console.rule("[bold]2. Search-sized sample with an injected W' -> X Y signal")
    table = shipped_features()
    bkg, sig = table[table.label == 0].reset_index(drop=True), table[table.label == 1].reset_index(drop=True)
    hunt = hunt_report(bkg, sig, out, seed=seed, n_signal=n_signal, methods=methods, style=style, console=console,
                       timings=timings, start=start)  # fmt: skip
    return hunt


def hunt_report(
    bkg: pd.DataFrame,
    sig: pd.DataFrame,
    out: str | Path,
    *,
    seed: int = 1,
    n_signal: int = 600,
    methods: Sequence[str] = METHODS,
    windows: Sequence[tuple[float, float]] = WINDOWS,
    efficiencies: Sequence[float] = EFFICIENCIES,
    style: str = "CMS",
    console: Console | None = None,
    timings: dict[str, float] | None = None,
    start: float | None = None,
) -> pd.DataFrame:
    """Inject ``n_signal`` events into the background table, hunt in every window with every method, and write
    hunt.csv, hists (ROOT + pickle), plots, report.md and summary.json to ``out``."""
    from .analysis.histio import save_hists
    from .analysis.injection import inject_signal
    from .analysis.regions import Regions
    from .analysis.windows import hunt_fit_toys, hunt_windows

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {} if timings is None else timings
    start = time.perf_counter() if start is None else start
    sample = inject_signal(bkg, sig, regions=Regions((2.8, 7.0)), n_signal=n_signal, seed=seed, features=FEATURES,
                           test_fraction=0.15, idealized_fraction=0.15)  # fmt: skip
    truth_sr = Regions((3.3, 3.7)).sr_mask(sample.m)
    s_sr = int(sample.is_signal[truth_sr].sum())
    b_sr = int(truth_sr.sum()) - s_sr
    console.print(f"data: {len(sample.m)} events, {n_signal} signal injected; in 3.3-3.7 TeV S = {s_sr}, "
                  f"B = {b_sr}, S/B = {s_sr / b_sr:.2%}, S/sqrt(B) = {s_sr / np.sqrt(b_sr):.2f}")  # fmt: skip

    console.rule(f"[bold]3. Sliding-window hunt: {len(windows)} windows x {list(methods)}")
    t0 = time.perf_counter()
    hunt, results = hunt_windows(
        sample.x, sample.m, windows, methods, x_ideal=sample.x_ideal, m_ideal=sample.m_ideal, x_test=sample.x_test,
        m_test=sample.m_test, y_test=sample.y_test, efficiencies=efficiencies, generator_config=GENERATOR_CONFIG,
        classifier_config=CLASSIFIER_CONFIG, seed=seed, keep_templates=True, sideband_width=SIDEBAND_WIDTH,
    )  # fmt: skip
    timings["hunt"] = time.perf_counter() - t0
    hunt.to_csv(out / "hunt.csv", index=False)
    hists = {f"{r.method}_{r.window[0]:g}-{r.window[1]:g}_eff{eff:g}": h for r in results for eff, h in r.hists.items()}
    save_hists(hists, out / "hists.root")
    save_hists(hists, out / "hists.pkl")

    console.rule("[bold]4. Global significance (fit-only toys), plots and report")
    t0 = time.perf_counter()
    globals_ = {m: hunt_fit_toys([r for r in results if r.method == m], FIT_TOYS, seed=seed, progress=True)
                for m in methods}  # fmt: skip
    timings["fit-only toys"] = time.perf_counter() - t0
    summary = summarize_hunt(hunt, globals_)
    plots = make_plots(out / "plots", hunt, results, sample, style)
    timings["total"] = time.perf_counter() - start
    write_report(out, summary, hunt, plots, sample, n_signal, s_sr, b_sr, timings)
    print_table(summary)
    console.print(f"report: {out / 'report.md'}  ({timings['total']:.0f} s in all)")
    (out / "summary.json").write_text(json.dumps({"summary": summary.to_dict(orient="records"), "timings": timings},
                                                 indent=2, default=float))  # fmt: skip
    return hunt


def summarize_hunt(hunt: pd.DataFrame, globals_: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per method: the window and cut with the largest local significance, the raw (no cut) significance in that
    window, the max SIC measured on the labelled test set of that window, and (given ``globals_``, method ->
    :class:`~anomalyhunt.analysis.bumphunt.GlobalSignificance`) the global significance over all windows and cuts."""
    rows = []
    for method, g in hunt.groupby("method", sort=False):
        cut = g[g.efficiency < 1.0]
        best = cut.loc[cut.z.idxmax()]
        raw = g[(g.efficiency == 1.0) & (g.sr_lo == best.sr_lo)].iloc[0]
        rows.append({
            "method": method, "window": f"{best.sr_lo:g}-{best.sr_hi:g}", "efficiency": best.efficiency,
            "z_local": best.z, "z_raw": raw.z, "fitted_mean_gev": best.fitted_mean_gev,
            "max_sic": best.get("max_sic"), "seconds_train": g.seconds_train.sum(),
            "seconds_template": g.seconds_template.sum(),
        })  # fmt: skip
        if globals_ and method in globals_:
            gl = globals_[method]
            rows[-1] |= {"z_global_toys": gl.z, "z_global": gl.z_extrapolated, "n_eff_trials": gl.n_eff}
    return pd.DataFrame(rows)


def make_plots(out: Path, hunt: pd.DataFrame, results: list, sample: Any, style: str) -> dict[str, list[Path]]:
    from .analysis.plots import plot_bump_hunt, plot_pvalue_scan, plot_roc_sic, plot_template_vs_data

    files: dict[str, list[Path]] = {}
    summary = summarize_hunt(hunt)
    for _, row in summary.iterrows():
        r = next(r for r in results if r.method == row.method and f"{r.window[0]:g}-{r.window[1]:g}" == row.window)
        h = r.hunts[row.efficiency]
        files[f"bump hunt, {row.method}"] = plot_bump_hunt(
            h.sideband_fit, signal_fit=h.local.signal_fit, signal_region=h.signal_region, style=style,
            title=f"{row.method}, SR {row.window} TeV, background efficiency {row.efficiency:g}",
            path=out / f"bumphunt_{row.method}",
        ).files  # fmt: skip
    scan = {}
    for (method, eff), g in hunt[hunt.efficiency < 1.0].groupby(["method", "efficiency"], sort=False):
        scan[f"{method}, eff {eff:g}"] = (g.centre.to_numpy() * 1000.0, g.p_local.to_numpy())
    g = hunt[(hunt.efficiency == 1.0) & (hunt.method == hunt.method.iloc[0])]
    scan["no cut"] = (g.centre.to_numpy() * 1000.0, g.p_local.to_numpy())
    files["local p-value scan"] = plot_pvalue_scan(scan, style=style, path=out / "pvalue_scan").files
    curves = {r.method: {"scores": r.test_scores, "labels": r.test_labels} for r in results
              if r.window == (3.2, 3.6) and r.test_scores is not None}  # fmt: skip
    if curves:
        files["ROC and SIC, SR 3.2-3.6 TeV"] = plot_roc_sic(curves, style=style, path=out / "roc_sic").files
    for r in results:
        if r.window == (3.2, 3.6) and r.template is not None and r.method != "idealized":
            in_sr = (sample.m >= 3.2) & (sample.m < 3.6)
            data = pd.DataFrame(sample.x[in_sr], columns=FEATURES)
            tmpl = pd.DataFrame(r.template, columns=FEATURES)
            files[f"template vs data, {r.method}"] = plot_template_vs_data(
                tmpl, data, FEATURES, style=style, template_label=f"{r.method} template",
                path=out / f"template_vs_data_{r.method}",
            ).files  # fmt: skip
    return files


def write_report(out: Path, summary: pd.DataFrame, hunt: pd.DataFrame, plots: dict[str, list[Path]], sample: Any,
                 n_signal: int, s_sr: int, b_sr: int, timings: dict[str, float]) -> Path:  # fmt: skip
    lines = [
        "# anomalyhunt demo report", "",
        f"Data: {len(sample.m)} events (recorded Pythia 8 QCD, shipped feature table) with {n_signal} W'(3500) -> "
        f"X(500) Y(100) events injected (seed {sample.seed}); in 3.3-3.7 TeV S = {s_sr}, B = {b_sr}, "
        f"S/sqrt(B) = {s_sr / np.sqrt(b_sr):.2f}.", "",
        "Local significances come from a binned Poisson likelihood ratio of dijet-function fits (background only vs "
        "background + Gaussian signal with its mean floating in the SR); `z_raw` is the same fit before any cut. "
        "`z_global` includes the look-elsewhere effect over all windows and cut levels of a method, from fit-only "
        f"toys ({FIT_TOYS} per method, classifiers not retrained; `anomalyhunt bench toys` retrains them): "
        "`z_global_toys` is the toys' own p-value (it cannot exceed the toy count's reach), `z_global` extrapolates "
        "the local p-value with the effective number of trials `n_eff_trials` the toys measure.", "",
        "## Summary", "", markdown_table(summary), "",
        "## Timing", "", *[f"- {k}: {v:.0f} s" for k, v in timings.items()], "",
        "## Plots", "",
    ]  # fmt: skip
    for name, paths in plots.items():
        png = next(p for p in paths if p.suffix == ".png")
        lines += [f"### {name}", "", f"![{name}]({png.relative_to(out)})", ""]
    lines += ["## All windows", "", markdown_table(hunt.drop(columns=["seconds_train", "seconds_template"])), ""]  # fmt: skip
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)

    rows = [list(df.columns), ["---"] * len(df.columns)] + [[cell(v) for v in r] for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


def print_table(summary: pd.DataFrame) -> None:
    """The summary as a rich table, wide enough not to wrap in a log file."""
    from .commands.search import console_for_tables

    console = console_for_tables()
    t = Table(title="anomalyhunt demo: best window per method")
    for col in ("method", "window [TeV]", "bkg eff.", "local Z (cut)", "global Z", "Z before cut", "max SIC",
                "train s", "template s"):  # fmt: skip
        t.add_column(col, justify="right")
    for _, r in summary.iterrows():
        z_global = f"{r.z_global:.2f}" if "z_global" in r and pd.notna(r.z_global) else "-"
        t.add_row(r.method, r.window, f"{r.efficiency:g}", f"{r.z_local:.2f}", z_global, f"{r.z_raw:.2f}",
                  "-" if r.max_sic is None or pd.isna(r.max_sic) else f"{r.max_sic:.1f}",
                  f"{r.seconds_train:.0f}", f"{r.seconds_template:.0f}")  # fmt: skip
    console.print(t)
