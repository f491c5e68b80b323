"""The demo: the whole chain on built-in data, on two CPU cores in minutes.

1. a small fresh Pythia sample through ``generate`` and the coffea processor on a local Dask cluster (the path a
   user's own files take);
2. a search-sized sample: the compact feature table shipped with the package (350k QCD + a W'(3500) -> X(500) Y(100)
   signal pool, see ``anomalyhunt/data/demo_features.json`` for how it was made), with signal injected by seed;
3. a sliding-window hunt with SIGMA, CATHODE and the idealized reference, cuts at fixed background efficiencies and
   dijet-function fits; plots, histograms, a Markdown report and a summary table.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from rich.console import Console

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
# SIGMA with the 2^k pi time frequencies and the linear interpolation from half a width outside the SR that the shipped
# background-only hunts (data/demo_null) were made with.
GENERATOR_CONFIG = {"sigma": {"epochs": 30, "time_frequencies": "octave", "interp_points": 2, "interp_offset": 0.5},
                    "cathode": {"epochs": 8}, "lacathode": {"epochs": 8}, "drapes": {"epochs": 15}}  # fmt: skip
#: Generators that train on sidebands use this much (TeV) on each side of each window.
SIDEBAND_WIDTH = 0.4
CLASSIFIER_CONFIG = {"n_ensemble": 2, "n_threads": 1}
#: Fit-only toys per method for the global significance (the toys' own p-value bottoms out at 1 / (FIT_TOYS + 1);
#: beyond that the effective number of trials they measure extrapolates it).
FIT_TOYS = 30


def shipped_null():
    """Background-only hunts made for the demo's configuration (windows, cuts, methods, settings; samples of a
    quarter of the shipped QCD): the calibrated global significance of the demo. ``None`` if not shipped."""
    from .analysis.hunt import NullStudy

    path = resources.files("anomalyhunt") / "data" / "demo_null"
    if not (path / "tasks.jsonl").is_file():
        return None
    with resources.as_file(path) as p:
        study = NullStudy.load(p, label="background-only hunts made for the demo's configuration (shipped)")
    study.calibrates = True  # made for exactly this configuration: the demo's own null
    return study


def _shipped_table(name: str) -> pd.DataFrame:
    with resources.as_file(resources.files("anomalyhunt") / "data" / name) as path:
        return pd.read_parquet(path)


def shipped_features() -> pd.DataFrame:
    """The compact search-sized feature table shipped with the package."""
    return _shipped_table("demo_features.parquet")


def shipped_simulation() -> pd.DataFrame:
    """The background simulation shipped with the package: 200k QCD events with Pythia's A14 tune beside the Monash
    data (``anomalyhunt/data/simulation_a14.json`` says how it was made and how it differs)."""
    return _shipped_table("simulation_a14.parquet")


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
    config = {"seed": seed, "workers": workers, "n_signal": n_signal, "methods": list(methods),
              "windows": [list(w) for w in WINDOWS], "efficiencies": list(EFFICIENCIES), "features": list(FEATURES),
              "generator_config": GENERATOR_CONFIG, "classifier": "hgb", "classifier_config": CLASSIFIER_CONFIG,
              "fresh_events": FRESH_EVENTS, "style": style}  # fmt: skip
    write_run_config(out, config)
    timings: dict[str, float] = {}
    from .generation import pythia_available

    if fresh and not pythia_available():
        console.print("[yellow]Pythia 8 (pythia8mc) is not installed: no fresh sample, the hunt runs on the shipped "
                      "events (pip install 'anomalyhunt[generate]' adds it)")  # fmt: skip
    elif fresh:
        console.rule("[bold]1. Fresh Pythia 8 sample -> coffea DijetProcessor on a local Dask cluster")
        t0 = time.perf_counter()
        process_fresh_sample(out / "processed", seed, workers, console)
        timings["generate + process"] = time.perf_counter() - t0

    console.rule("[bold]2. Search-sized sample with an injected W' -> X Y signal")
    table = shipped_features()
    bkg, sig = table[table.label == 0].reset_index(drop=True), table[table.label == 1].reset_index(drop=True)
    console.rule(f"[bold]3. Sliding-window hunt: {len(WINDOWS)} windows x {list(methods)}")
    hunt = hunt_report(bkg, sig, out, seed=seed, n_signal=n_signal, methods=methods, style=style, console=console,
                       timings=timings, null=shipped_null())  # fmt: skip
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
    null: Any = None,
    title: str = "anomalyhunt demo",
) -> pd.DataFrame:
    """A truth study on the hunt's one path: inject ``n_signal`` events into the background table (holding out true
    background for the idealized reference and a labelled test set), then :func:`~anomalyhunt.analysis.hunt.run_hunt`
    in every window with every method. ``null``: background-only hunts of this configuration (e.g.
    :func:`shipped_null` for the shipped table), else the global significance is labelled uncalibrated."""
    from .analysis.hunt import HuntSample, run_hunt
    from .analysis.injection import inject_signal
    from .analysis.regions import Regions

    sample = inject_signal(bkg, sig, regions=Regions((2.8, 7.0)), n_signal=n_signal, seed=seed, features=FEATURES,
                           test_fraction=0.15, idealized_fraction=0.15)  # fmt: skip
    desc = (f"{len(sample.m)} events of simulated background with {n_signal} signal events injected (seed {seed}; "
            "truth study: held-out background for the idealized reference and a labelled test set)")  # fmt: skip
    hunt_sample = HuntSample(
        sample.x, sample.m, tuple(FEATURES), desc, is_signal=sample.is_signal, x_ideal=sample.x_ideal,
        m_ideal=sample.m_ideal, x_test=sample.x_test, m_test=sample.m_test, y_test=sample.y_test,
    )  # fmt: skip
    return run_hunt(
        hunt_sample, windows, methods, out, efficiencies=efficiencies, seed=seed, generator_config=GENERATOR_CONFIG,
        classifier_config=CLASSIFIER_CONFIG, sideband_width=SIDEBAND_WIDTH, fit_toys=FIT_TOYS, style=style,
        null=null, title=title, console=console, timings=timings,
    )  # fmt: skip
