"""``anomalyhunt hunt``: the sliding-window bump hunt on an analyst's own (unlabelled) feature tables."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from ..analysis.hunt import NullStudy

#: The method run when none is named (its local Z is calibrated under background only; README).
DEFAULT_METHODS = ("cathode",)
#: Features that scale with mjj: CWoLa hunting (SR against neighbouring sidebands) learns mjj from them and sculpts
#: a bump (background-only local Z up to 13.7 with mj1 and delta_mj among the inputs; calibrated with tau21 only).
MASS_CORRELATED = ("mj1", "mj2", "delta_mj", "delta_r", "pt_j1", "pt_j2")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "hunt",
        help="bump hunt on your own data: windows, template methods, fits, limits and a report",
        description="Run the bump hunt on feature tables (anomalyhunt process output of your data, LHCO .h5, Parquet); "
        "a label column is ignored. For each window and method a CWoLa classifier (SR data vs the method's "
        "background reference) scores every event out of fold, cuts at fixed background efficiencies select events "
        "and a dijet fit of the selected mjj tests for a bump. Writes hunt.csv, summary.json, report.md, plots "
        "(PNG + PDF), histograms (ROOT + hist pickle), 95%% CL CLs limits and config.json to OUT. With --inject FILE "
        "--signal-events N, N events of FILE are added to the data (a sensitivity study; the only place truth enters).",
    )
    p.add_argument("--features", action="append", required=True, metavar="FILE_OR_DIR", help="data (repeatable)")
    p.add_argument("--method", action="append", help=f"cwola, lacathode or a template generator (repeatable; "
                                                     f"default {', '.join(DEFAULT_METHODS)})")
    p.add_argument("--sr", action="append", metavar="LO:HI", help="signal region in TeV (repeatable)")
    p.add_argument("--windows", metavar="LO:HI:WIDTH:STEP", help="sliding signal regions in TeV")
    p.add_argument("--fit-range", metavar="LO:HI", help="mjj fit range in TeV (default: end of the trigger turn-on "
                                                         "to the end of the data)")
    p.add_argument("--efficiency", action="append", type=float, metavar="EFF",
                   help="background efficiency of a cut (repeatable; default 0.1 and 0.01)")
    p.add_argument("--feature", action="append", metavar="COLUMN", help="classifier input (repeatable; default "
                                                                        "mj1 delta_mj tau21_j1 tau21_j2 delta_r)")
    p.add_argument("--inject", metavar="FILE", help="signal table to draw injected events from")
    p.add_argument("--simulation", metavar="FILE_OR_DIR",
                   help="background simulation (a feature table read like --features, with the same feature columns "
                        "and mjj) for simulation-assisted generators: feta, salad, drapes with seed_source=simulation")
    p.add_argument("--signal-events", type=int, default=0, metavar="N", help="events injected from --inject")
    p.add_argument("--generator-option", action="append", metavar="[METHOD.]KEY=VALUE", help="e.g. cathode.epochs=8")
    p.add_argument("--sideband-width", type=float, default=0.4, metavar="TEV",
                   help="sidebands of generators trained on sidebands (TeV each side; default 0.4)")
    p.add_argument("--template-ensemble", type=int, default=1, metavar="K",
                   help="train each template generator K times (other seeds) and use their union; the direct "
                        "estimate's template uncertainty is then the spread between the trainings (default 1)")
    p.add_argument("--train-on", choices=("auto", "sr", "window"), default="auto",
                   help="the classifier's data: the SR, or the SR and its sidebands against the reference sampled "
                        "there too (a score that means the same across the window); auto (default): each method as "
                        "its background-only hunts are calibrated (sigma: window; the others: sr)")
    p.add_argument("--significance", choices=("auto", "fit-fixed", "fit-floating", "direct"), default="auto",
                   help="local significance: dijet fit with the Gaussian at the window centre, with its mean floating "
                        "in the SR, or direct background estimation; auto (default): the one background-only hunts "
                        "showed calibrated per method (the fit with the mean fixed; direct for a truth study's "
                        "idealized reference)")
    p.add_argument("--null-toys", type=int, default=0, metavar="N",
                   help="null pseudo-experiments per window and method from a background-only model of this data "
                        "(mjj from the dijet fit, features from a template), generators and classifiers retrained: "
                        "the calibrated global p-value. Resumable; a re-run with a larger N adds toys (OUT/null-toys)")
    p.add_argument("--null-model", default="cathode", metavar="GENERATOR",
                   help="generator of the null model's features, trained around each window with its SR left out "
                        "(default cathode)")
    p.add_argument("--null", metavar="DIR", help="a null study made elsewhere (anomalyhunt bench hunt --out DIR); "
                                                 "it calibrates only if made for this data")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler for the pseudo-experiments (default: a "
                                                          "local cluster; 'sync': this process)")
    p.add_argument("--workers", type=int, metavar="N", help="local cluster workers (default: #CPUs)")
    p.add_argument("--fit-toys", type=int, default=30, metavar="N",
                   help="fit-only toys per method for an uncalibrated global Z without --null (0: none)")
    p.add_argument("--allow-partial", action="store_true", help="read partial or mixed processor outputs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=("CMS", "ATLAS", "LHCb"), default="CMS", help="the plots' mplhep style")
    p.add_argument("--label", default="Private work",
                   help="the plots' label (default 'Private work'; e.g. 'CMS Private Work' on CMS data)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip the PNG/PDF plots (hists, tables, summary and report are still written)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=run)


def windows_from_args(sr: list[str] | None, windows: str | None) -> list[tuple[float, float]]:
    """``--sr LO:HI`` (repeated) or ``--windows LO:HI:WIDTH:STEP``, exactly one of them."""
    from ..analysis.regions import parse_scan, parse_window, sliding_windows
    from ..errors import ConfigError

    if bool(sr) == bool(windows):
        raise ConfigError("give the signal regions with --sr LO:HI (repeatable) or --windows LO:HI:WIDTH:STEP")
    if sr:
        return [parse_window(w) for w in sr]
    return sliding_windows(*parse_scan(windows))


def generator_options(items: list[str] | None, methods: list[str]) -> dict[str, dict]:
    """``KEY=VALUE`` for every generator, ``METHOD.KEY=VALUE`` for one."""
    from .search import _options

    out: dict[str, dict] = {m: {} for m in methods}
    for key, value in _options(items, "--generator-option").items():
        method, _, k = key.rpartition(".")
        for m in [method] if method else methods:
            out.setdefault(m, {})[k] = value
    return out


def _config(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}


#: Keys `run` adds to the hunt's config.json after the command line's (what the command line resolved to).
RECORDED_AFTER = ("windows_resolved", "inputs", "simulation_resolved", "train_on_resolved")
#: Settings that may change between runs of one hunt: how many pseudo-experiments (more are added to those there)
#: and where they run.
MAY_CHANGE = ("null_toys", "scheduler", "workers")
#: Where the hunt's null pseudo-experiments are kept (kept across re-runs of the same hunt: they resume).
NULL_TOYS_DIR = "null-toys"


def check_out_dir(args: argparse.Namespace) -> None:
    """A hunt's OUT holds one hunt: re-running the same one replaces it; a different one is refused (its files would
    mix with the earlier hunt's)."""
    import shutil
    from pathlib import Path

    from ..runconfig import check_same_run

    out = Path(args.out)
    if not check_same_run(out, _config(args), "hunt", ignore=RECORDED_AFTER + MAY_CHANGE):
        return
    for name in ("plots", "hunt.csv", "summary.json", "report.md", "hists.root", "hists.pkl"):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from ..analysis.hunt import NullStudy, data_sample, fit_edges, run_hunt
    from ..analysis.null_toys import run_null_toys
    from ..analysis.injection import DEFAULT_FEATURES
    from ..analysis.regions import parse_window
    from ..analysis.references import CWOLA, LACATHODE
    from ..analysis.templates import read_simulation, require_simulation
    from ..analysis.windows import check_train_on, train_range
    from ..errors import ConfigError
    from ..features import check_unique_events, check_unit_weights, load_feature_table
    from ..models.base import GENERATORS
    from ..runconfig import seed_everything, write_run_config

    methods = list(args.method or DEFAULT_METHODS)
    unknown = [m for m in methods if m not in (CWOLA, LACATHODE) and m not in GENERATORS]
    if unknown:
        raise ConfigError(f"unknown hunt method(s) {unknown}; available: {CWOLA}, {LACATHODE}, "
                          f"{', '.join(GENERATORS.names())} "
                          "(the idealized reference needs truth: use `anomalyhunt report`)")  # fmt: skip
    windows = windows_from_args(args.sr, args.windows)
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    if args.null_toys < 0 or (args.workers is not None and args.workers < 1) or args.template_ensemble < 1:
        raise ConfigError("--null-toys must be >= 0, --workers >= 1 and --template-ensemble >= 1")
    if args.null_toys and args.null:
        raise ConfigError("give --null-toys (pseudo-experiments of this data) or --null DIR (a study made elsewhere)")
    features = tuple(args.feature or DEFAULT_FEATURES)
    correlated = [f for f in features if f in MASS_CORRELATED]
    if CWOLA in methods and correlated:
        raise ConfigError(f"cwola: features {correlated} scale with mjj, so CWoLa hunting would sculpt a bump; give "
                          "mass-decorrelated inputs, e.g. --feature tau21_j1 --feature tau21_j2")
    needing = [m for m in methods + [args.null_model] if m in GENERATORS and GENERATORS.get(m).needs_simulation]
    require_simulation(needing, args.simulation)
    check_train_on(args.train_on, methods)  # before any work, the pseudo-experiments' included
    check_out_dir(args)
    seed_everything(args.seed)
    tables = [load_feature_table(f, args.allow_partial) for f in args.features]
    data = pd.concat(tables, ignore_index=True)
    inject = load_feature_table(args.inject, args.allow_partial) if args.inject else None
    every = pd.concat([data] + ([inject] if inject is not None else []), ignore_index=True)
    check_unique_events(every, ", ".join(args.features + ([args.inject] if args.inject else [])))
    sample = data_sample(data, features, source=", ".join(args.features),
                         inject=inject, inject_source=args.inject or "", n_signal=args.signal_events, seed=args.seed)
    check_unit_weights(every, ", ".join(args.features + ([args.inject] if args.inject else [])))
    simulation, sim_table = None, None
    if args.simulation:
        simulation, sim_table = read_simulation(args.simulation, features, every,
                                                ", ".join(args.features), args.allow_partial)  # fmt: skip
    config = _config(args)
    config["windows_resolved"] = [list(w) for w in windows]
    config["train_on_resolved"] = {m: train_range(args.train_on, m) for m in methods}
    config["inputs"] = [i for t in tables for i in t.attrs.get("inputs", [])]
    if simulation is not None:
        config["simulation_resolved"] = {"path": args.simulation, "events": len(simulation[1]),
                                         "features": list(features), "inputs": sim_table.attrs.get("inputs", [])}
    write_run_config(args.out, config)
    efficiencies = tuple(args.efficiency or (0.1, 0.01))
    edges = fit_edges(sample.m, windows, fit_range=parse_window(args.fit_range) if args.fit_range else None,
                      source=", ".join(args.features))  # fmt: skip
    gen_config = generator_options(args.generator_option, [m for m in methods if m != CWOLA] + [args.null_model])
    fingerprint = sample.fingerprint()
    null = NullStudy.load(args.null, data=fingerprint) if args.null else None
    if args.null_toys:
        directory = Path(args.out) / NULL_TOYS_DIR
        values, settings, _ = run_null_toys(
            sample.x, sample.m, fingerprint, windows, methods, directory, args.null_toys, edges=edges,
            efficiencies=efficiencies, null_model=args.null_model, generator_config=gen_config,
            sideband_width=args.sideband_width, train_on=args.train_on, seed=args.seed, scheduler=args.scheduler,
            workers=args.workers, template_ensemble=args.template_ensemble, simulation=simulation,
        )  # fmt: skip
        label = (f"null pseudo-experiments from a background-only model of this data (mjj: dijet fit; features: "
                 f"{args.null_model} around each window, SR left out; generators and classifiers retrained; windows "
                 f"drawn independently, conservative for overlapping windows; {directory})")  # fmt: skip
        null = NullStudy(directory, values, settings, label, calibrates=True)
    run_hunt(
        sample, windows, methods, args.out, efficiencies=efficiencies, edges=edges, seed=args.seed,
        generator_config={m: gen_config[m] for m in methods if m != CWOLA}, sideband_width=args.sideband_width,
        train_on=args.train_on, template_ensemble=args.template_ensemble,
        fit_toys=args.fit_toys, significance=args.significance, null=null, style=args.style, label=args.label,
        plots=not args.no_plots, title="anomalyhunt bump hunt",
        notes=dispersion_note(correlated, len(sample.m), null, args.train_on, methods, gen_config)
        + turn_on_note(methods, windows, edges[0] / 1000.0, gen_config),
        simulation=simulation,
    )  # fmt: skip
    return 0


#: Above about this many events, inputs that change with mjj over-disperse the fit-based local Z of a lightly
#: trained SR classifier (README).
DISPERSION_EVENTS = 150_000


def turn_on_note(methods: Sequence[str], windows: Sequence[tuple[float, float]], start_tev: float,
                 generator_config: dict[str, dict] | None = None) -> list[str]:
    """A note for each SIGMA window whose nearest interpolation mass below the SR (the one weighted most) lies below
    ``start_tev`` (the end of the trigger turn-on, or of the fit range): there the trigger shapes the features, and a
    template interpolated from them is not the SR background's (README: background-only local Z means down to -3.7
    in 3.0-3.4 TeV, interpolated from 2.2 and 2.6 TeV; 3.4-3.8 TeV, from 2.6 and 3.0, is calibrated)."""
    from ..models.base import GENERATORS

    if "sigma" not in methods:
        return []
    sigma = GENERATORS.get("sigma")(**(generator_config or {}).get("sigma", {}))
    nearest = {w: max(v for v in sigma.interpolation_masses(w) if v < w[0]) for w in windows}
    low = {w: v for w, v in nearest.items() if v < start_tev}
    if not low:
        return []
    which = "; ".join(f"SR {w[0]:g}-{w[1]:g} TeV from {v:g} TeV" for w, v in low.items())
    return [f"sigma interpolates below {start_tev:g} TeV, where the trigger still shapes the spectrum ({which}): "
            "its template there is not the background's and its local Z is not calibrated in these windows (README); "
            "hunt them with cathode, or give sigma interp_masses above the turn-on."]


def dispersion_note(correlated: list[str], n_events: int, null: NullStudy | None, train_on: str = "sr",
                    methods: Sequence[str] = ("cathode",), generator_config: dict[str, dict] | None = None) -> list[str]:
    """A note for the report when the local Z of this hunt is not known to be calibrated under background only:
    inputs that change with mjj on a large sample, no null pseudo-experiments of this data, and a method not measured
    at full size with its classifier trained this way (:data:`FULL_SIZE_CALIBRATED`), with fewer epochs or other
    settings."""
    from ..analysis.windows import FULL_SIZE_CALIBRATED, train_range
    from ..models.base import GENERATORS

    if not correlated or n_events < DISPERSION_EVENTS or (null is not None and null.calibrates):
        return []

    trained_by = {m: train_range(train_on, m) for m in methods}

    def proven(method: str) -> bool:
        needs = FULL_SIZE_CALIBRATED.get((method, trained_by[method]))
        if needs is None:
            return False
        defaults = GENERATORS.get(method).DEFAULTS
        config = defaults | (generator_config or {}).get(method, {})
        least = needs.get("epochs", defaults["epochs"])
        return int(config["epochs"]) >= least and all(config[k] == v for k, v in needs.items() if k != "epochs")

    unproven = [m for m in methods if not proven(m)]
    if not unproven:
        return []
    ranges = {"sr": "the SR", "window": "SR and sidebands"}
    trained = {trained_by[m] for m in unproven}
    trained_on = ranges[trained.pop()] if len(trained) == 1 else "the SR or SR and sidebands"
    advice = (", or hunt with `--train-on window`"
              if {"cathode", "sigma"} & {m for m in unproven if trained_by[m] == "sr"} else "")
    return [f"Inputs {', '.join(correlated)} change with mjj: on {n_events:,} events the fit-based local Z of "
            f"{', '.join(unproven)} with the classifier trained on {trained_on} is not shown calibrated under "
            "background only (lightly trained CATHODE is over-dispersed: 8 epochs and 2 trees spread 1.36, at its "
            "defaults 1.21; SIGMA SR-trained 2.4 and more, trained across SR and sidebands 1.12; README); judge it by "
            "the global significance from "
            f"`--null-toys`, which carries that spread{advice}."]
