"""Null pseudo-experiments of the bump hunt on an analyst's own data: a global significance that holds under
background only, made for this table, these windows and this method.

The background-only model of the data: m_jj from the dijet fit of the whole (uncut) spectrum over the fit range, and
in each window the features at each mass from a conditional template generator (``cathode`` by default) trained on
the data around the window with its SR left out (SR +- the hunt's fit margin): any signal in the SR stays out of
the model, unlike bootstraps of the observed data, which keep it. A pseudo-experiment of a window draws Poisson counts
of the fit in the window's fit range (5 GeV bins, uniform inside), features from the window's model, and runs the
whole hunt on it: the method's generator and the classifiers retrained, cuts, fits. A toy's largest local Z over the
windows and cuts is one entry of the null max-Z distribution (:class:`~anomalyhunt.analysis.hunt.NullStudy`).

One task per (toy, window, method) through :func:`~anomalyhunt.tasks.run_tasks` (a local Dask cluster, a cluster by
address, or this process), each recorded in a :class:`~anomalyhunt.resume.TaskLog` as it finishes: a stopped run
resumes, and a larger number of toys adds to those already there. A task that fails is reported and runs again on
a re-run; only toys with every window finished enter the null.

Two approximations, both stated with the result: the windows of one toy are drawn independently, so overlapping
windows count as independent trials (the look-elsewhere correction is somewhat conservative); and the toys' SR
background is the model's own interpolation, which a retrained generator of the same kind may match more closely
than it matches real data (the calibration studies of ``anomalyhunt bench hunt`` measure the real-data spread).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from .regions import Regions

#: Width (GeV) of the bins the toys' masses are drawn in (uniform inside each).
FINE_BIN = 5.0


@dataclass
class WindowModel:
    """The background-only model in one window: the bins of the window's fit range (GeV), expected counts per fine
    bin of that range and the feature generator trained on the window's sidebands."""

    window: tuple[float, float]
    edges: np.ndarray
    fine_edges: np.ndarray
    expected: np.ndarray
    generator: Any


def background_model(
    x: np.ndarray, m: np.ndarray, windows: Sequence[tuple[float, float]], edges: np.ndarray, *, null_model: str,
    generator_config: dict[str, Any] | None, margin: float, seed: int, directory: Path, console: Any,
    simulation: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[WindowModel]:
    """Fit the uncut m_jj spectrum and train (or load from ``directory``) one feature generator per window on the
    data within ``margin`` GeV of its SR, SR excluded."""
    from .dijetfit import fit_background
    from .templates import fit_generator, make_generator
    from .windows import window_edges

    fit = fit_background(np.asarray(m) * 1000.0, edges=edges, seed=seed)
    console.print(f"background-only model: dijet fit of the uncut spectrum {edges[0] / 1000:g}-{edges[-1] / 1000:g}"
                  f" TeV (fit p-value {fit.p_value:.2f}), {null_model} features per window")  # fmt: skip
    out = []
    for i, w in enumerate(windows):
        local = window_edges(edges, w, margin)
        fine = np.linspace(local[0], local[-1], int(round((local[-1] - local[0]) / FINE_BIN)) + 1)
        path = directory / f"model_{w[0]:g}-{w[1]:g}.pt"
        gen = make_generator(null_model, generator_config, seed=seed + i, progress=False, sr=list(w))
        if gen.trains_on != "sidebands":
            raise ConfigError(f"null model {null_model!r} trains on all data, SR included (it would learn a signal "
                              "there); use a generator trained on sidebands, e.g. cathode")  # fmt: skip
        if path.exists():
            gen = type(gen).load(path)
        else:
            console.print(f"  training the {null_model} null model around SR {w[0]:g}-{w[1]:g} TeV")
            fit_generator(gen, x, m, Regions(tuple(w), margin / 1000.0), simulation=simulation)
            gen.save(path)
        out.append(WindowModel(tuple(w), local, fine, fit.background(fine), gen))
    return out


def draw_toy(model: WindowModel, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One background-only pseudo-dataset of a window: features and masses (TeV)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x70E5]))
    counts = rng.poisson(model.expected)
    m = (np.repeat(model.fine_edges[:-1], counts) + rng.uniform(0.0, FINE_BIN, counts.sum())) / 1000.0
    x = np.asarray(model.generator.sample(m, region=model.window, seed=int(seed)), dtype=np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():  # redraw those events' features once; a model that keeps failing is an error, not thinned
        x[bad] = np.asarray(model.generator.sample(m[bad], region=model.window, seed=int(seed) + 1), np.float64)
        if not np.isfinite(x).all():
            raise InputError("null model", f"{int((~np.isfinite(x).all(axis=1)).sum())} sampled events not finite")
    return x, m


def _toy_task(p: dict[str, Any]) -> dict[str, Any]:
    """Task: draw one toy of one window and hunt in it with one method; its local Z values or why it failed."""
    from .hunt_calibration import value_row
    from .windows import hunt_windows

    try:
        x, m = draw_toy(p["model"], p["seed"])
        table, _ = hunt_windows(x, m, [p["model"].window], [p["method"]], edges=p["model"].edges, seed=p["seed"],
                                progress=False, **p["hunt_options"])  # fmt: skip
        rows = [{"sample": p["toy"], **value_row(r)} for r in table.to_dict("records") if r["efficiency"] < 1.0]
        return {"rows": rows}
    except Exception as err:  # one toy must not take the others down; the driver reports it, a re-run retries it
        return {"failed": f"{type(err).__name__}: {err}".splitlines()[0]}


def task_name(toy: int, window: tuple[float, float], method: str) -> str:
    return f"{toy}/{window[0]:g}-{window[1]:g}/{method}"


def run_null_toys(
    x: np.ndarray, m: np.ndarray, fingerprint: str, windows: Sequence[tuple[float, float]], methods: Sequence[str],
    directory: str | Path, n_toys: int, *, edges: np.ndarray, efficiencies: Sequence[float],
    null_model: str = "cathode", generator_config: dict[str, dict[str, Any]] | None = None,
    classifier_config: dict[str, Any] | None = None, sideband_width: float | None = 0.4, margin: float = 600.0,
    train_on: str = "sr", seed: int = 0, scheduler: str | None = None, workers: int | None = None, console: Any = None,
    template_ensemble: int = 1, simulation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """Run (or resume, or extend) ``n_toys`` pseudo-experiments per window and method; returns the local Z values of
    the toys with every window finished (one row per toy, method, window and cut), the study's settings and the
    failures of this run."""
    from rich.console import Console

    from ..resume import TaskLog
    from ..tasks import run_tasks
    from .references import array_digest

    console = console or Console()
    directory = Path(directory)
    generator_config = generator_config or {}
    settings = {
        "kind": "null pseudo-experiments from a background-only model of the data", "data": fingerprint,
        "windows": [list(map(float, w)) for w in windows], "efficiencies": [float(e) for e in efficiencies],
        "null_model": null_model, "generator_config": generator_config, "classifier_config": classifier_config,
        "sideband_width": sideband_width, "margin": margin, "train_on": train_on, "edges": [float(e) for e in edges],
        "seed": seed, **({"template_ensemble": template_ensemble} if template_ensemble > 1 else {}),
        # the study's settings name the simulation sample without holding it
        **({"simulation": array_digest(*simulation, size=12)} if simulation is not None else {}),
    }  # fmt: skip
    log = TaskLog(directory, settings, "set of null pseudo-experiments")
    models = background_model(x, m, windows, np.asarray(edges, float), null_model=null_model,
                              generator_config=generator_config.get(null_model), margin=margin, seed=seed,
                              directory=directory, console=console, simulation=simulation)  # fmt: skip
    hunt_options = {"efficiencies": tuple(efficiencies), "generator_config": generator_config,
                    "classifier_config": classifier_config, "sideband_width": sideband_width, "margin": margin,
                    "train_on": train_on, "template_ensemble": template_ensemble, "simulation": simulation}
    payloads, names = [], []
    for toy in range(n_toys):
        for wi, model in enumerate(models):
            for method in methods:
                name = task_name(toy, model.window, method)
                if name in log.done:
                    continue
                toy_seed = int(np.random.SeedSequence([int(seed), 0x4E55, toy, wi]).generate_state(1)[0] % 2**31)
                payloads.append({"model": model, "seed": toy_seed, "toy": toy, "method": method,
                                 "hunt_options": hunt_options})  # fmt: skip
                names.append(name)
    if log.done:
        console.print(f"resuming: {len(log.done)} (toy, window, method) tasks already in {log.path}, "
                      f"{len(payloads)} to run")  # fmt: skip
    failures: list[str] = []

    def record(i: int, result: dict[str, Any]) -> None:
        if "failed" in result:
            failures.append(f"{names[i]}: {result['failed']}")
        else:
            log.record(names[i], result["rows"])

    run_tasks(_toy_task, payloads, scheduler=scheduler, workers=workers, progress=True, names=names,
              desc="null pseudo-experiments", on_result=record)  # fmt: skip
    for f in failures:
        console.print(f"[yellow]pseudo-experiment failed (runs again on a re-run): {f}[/yellow]")
    values = pd.DataFrame(log.rows())
    if values.empty:
        return values, settings, failures
    values = values[values["sample"] < n_toys]
    complete = values.groupby(["sample", "method"])["sr_lo"].transform("nunique") == len(windows)
    return values[complete].reset_index(drop=True), settings, failures
