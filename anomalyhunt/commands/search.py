"""``anomalyhunt search``: weakly supervised searches (CWoLa, template methods, idealized, supervised) over methods,
signal regions and seeds, run as Dask tasks.

A YAML ``--config`` gives any :class:`~anomalyhunt.analysis.search.SearchConfig` key plus the lists to expand:
``methods``, ``seeds`` (or ``n_seeds``), ``srs`` (list of ``[lo, hi]`` or ``"lo:hi"``) or ``windows``
(``{lo, hi, width, step}``), ``n_signal`` (a number or a list), ``scheduler`` and ``workers``.
``generator_config`` may be keyed by generator name (``{cathode: {...}, sigma: {...}}``). Flags override the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The data, injection and classifier options shared by ``search`` and ``bench search``."""
    p.add_argument("--config", metavar="FILE", help="YAML search configuration (flags override it)")
    p.add_argument("--features", action="append", metavar="FILE_OR_DIR",
                   help="feature table(s): processor Parquet output or LHCO v2 features .h5; label 0 = background, "
                        "1 = signal (repeatable; default: ../shared/data/lhco-like)")
    p.add_argument("--signal", action="append", metavar="FILE", help="separate signal feature table (repeatable)")
    p.add_argument("--method", action="append", help="cwola, idealized, supervised or a generator (repeatable)")
    p.add_argument("--sr", action="append", metavar="LO:HI", help="signal region in TeV (repeatable)")
    p.add_argument("--windows", metavar="LO:HI:WIDTH:STEP", help="sliding signal regions in TeV")
    p.add_argument("--signal-events", action="append", type=int, metavar="N", help="injected signal events")
    p.add_argument("--significance", type=float, metavar="Z", help="inject to S/sqrt(B) = Z in the SR instead")
    p.add_argument("--background-events", type=int, metavar="N", help="use N background events (default all)")
    p.add_argument("--seed", action="append", type=int, metavar="S", help="seed (repeatable)")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1")
    p.add_argument("--classifier", choices=("hgb", "mlp"))
    p.add_argument("--classifier-option", action="append", metavar="KEY=VALUE", help="e.g. n_ensemble=10")
    p.add_argument("--generator-option", action="append", metavar="KEY=VALUE", help="e.g. epochs=20 (all generators)")
    p.add_argument("--folds", type=int)
    p.add_argument("--oversample", type=int)
    p.add_argument("--sideband-width", type=float, metavar="TEV", help="generator sidebands (default: all masses)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address; 'sync' runs in this process")
    p.add_argument("--workers", type=int, help="local Dask workers (default: min(#runs, #CPUs))")
    p.add_argument("--out", metavar="DIR", help="output directory")
    p.add_argument("--no-plots", action="store_true", help="skip the ROC/SIC plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="run weakly supervised searches with signal injection",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_search_arguments(p)
    p.set_defaults(func=main)


def _options(items: list[str] | None, flag: str) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"search config {p}: file does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"search config {p}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"search config {p}: expected a mapping of keys")
    return data


def merged_settings(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """YAML file (``--config``) updated by the flags that were given, on top of ``defaults``."""
    s = {**(defaults or {}), **load_yaml(args.config)}
    flags = {
        "background": args.features, "signal": args.signal, "methods": args.method,
        "n_signal": args.signal_events, "significance": args.significance,
        "background_events": args.background_events, "seeds": args.seed, "n_seeds": args.seeds,
        "classifier": args.classifier, "folds": args.folds, "oversample": args.oversample,
        "sideband_width": args.sideband_width, "device": args.device, "scheduler": args.scheduler,
        "workers": args.workers, "out": args.out,
    }
    for k, v in flags.items():
        if v is not None:
            s[k] = v
    if args.signal_events is not None:
        s.pop("significance", None)
    elif args.significance is not None:
        s.pop("n_signal", None)
    if args.sr:
        from ..analysis.regions import parse_window

        s["srs"] = [list(parse_window(w)) for w in args.sr]
        s.pop("windows", None)
    if args.windows:
        try:
            lo, hi, width, step = (float(v) for v in args.windows.split(":"))
        except ValueError:
            raise ConfigError(f"--windows {args.windows!r}: expected LO:HI:WIDTH:STEP in TeV") from None
        s["windows"] = {"lo": lo, "hi": hi, "width": width, "step": step}
        s.pop("srs", None)
    if args.classifier_option:
        extra = _options(args.classifier_option, "--classifier-option")
        s["classifier_config"] = {**s.get("classifier_config", {}), **extra}
    if args.generator_option:
        extra = _options(args.generator_option, "--generator-option")
        s["generator_config"] = {**s.get("generator_config", {}), **extra}
    if args.seeds is not None:
        s.pop("seeds", None)
    if args.seed is not None:
        s.pop("n_seeds", None)
    if args.quiet:
        s["progress"] = False
    if args.no_plots:
        s["plots"] = False
    return s


def expand(settings: dict[str, Any], out: str | Path) -> list:
    """One :class:`SearchConfig` per (SR, injection, method, seed); each writes to ``out/<run name>``."""
    from ..analysis.regions import parse_window, sliding_windows
    from ..analysis.search import SearchConfig
    from ..models.base import GENERATORS

    s = dict(settings)
    for k in ("scheduler", "workers"):
        s.pop(k, None)
    methods = s.pop("methods", None) or ["cwola", "idealized"]
    methods = [methods] if isinstance(methods, str) else list(methods)
    seeds = s.pop("seeds", None)
    n_seeds = s.pop("n_seeds", None)
    if seeds is None:
        seeds = list(range(int(n_seeds))) if n_seeds is not None else [0]
    seeds = [seeds] if isinstance(seeds, int) else [int(x) for x in seeds]
    windows = s.pop("windows", None)
    srs = s.pop("srs", None)
    if windows is not None:
        try:
            lo, hi, width, step = (float(windows[k]) for k in ("lo", "hi", "width", "step"))
            srs = sliding_windows(lo, hi, width, step)
        except (KeyError, TypeError):
            raise ConfigError("search config 'windows': expected {lo, hi, width, step} in TeV") from None
    elif srs is None:
        srs = [s.pop("sr", (3.3, 3.7))]
    s.pop("sr", None)
    srs = [parse_window(w) if isinstance(w, str) else tuple(float(v) for v in w) for w in srs]
    n_signal = s.pop("n_signal", None)
    injections = [None] if n_signal is None else ([n_signal] if isinstance(n_signal, int) else list(n_signal))
    gen_cfg = s.pop("generator_config", {}) or {}
    per_method = bool(gen_cfg) and all(k in GENERATORS for k in gen_cfg)
    s.setdefault("progress", False)
    configs = []
    for sr in srs:
        for n in injections:
            for method in methods:
                for seed in seeds:
                    g = (gen_cfg.get(method, {}) if per_method else gen_cfg) if method in GENERATORS else {}
                    extra = {"n_signal": int(n)} if n is not None else {}
                    cfg = SearchConfig.from_dict({**s, **extra, "method": method, "sr": sr, "seed": seed,
                                                  "generator_config": dict(g), "out": None})
                    cfg.out = str(Path(out) / cfg.name)
                    configs.append(cfg)
    return configs


def report(results: list[dict[str, Any]], out: str | Path, settings: dict[str, Any], plots: bool = True) -> dict:
    """Write ``out/results.json`` (runs and the median/spread over seeds), the run config and combined ROC/SIC plots
    per SR and injection; print a summary table."""
    from ..analysis.metrics import aggregate
    from ..analysis.search import _jsonable
    from ..runconfig import write_run_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = aggregate(results)
    payload = {"runs": results, "summary": summary}
    (out / "results.json").write_text(json.dumps(_jsonable(payload), indent=2))
    write_run_config(out, _jsonable(settings))
    if plots:
        _combined_plots(results, out)
    print_summary(summary, results)
    return payload


def _combined_plots(results: list[dict[str, Any]], out: Path) -> None:
    import pandas as pd

    from ..analysis.search import plot_performance

    groups: dict[tuple, dict[str, tuple]] = {}
    for r in results:  # the first seed of each method, per SR and injection
        key = (tuple(r["sr"]), r["injection"])
        path = Path(r["config"]["out"] or "") / "scores.parquet"
        if r["method"] in groups.get(key, {}) or not path.is_file():
            continue
        df = pd.read_parquet(path)
        test = df[df["set"] == "test"]
        groups.setdefault(key, {})[r["method"]] = (test["label"].to_numpy(), test["score"].to_numpy())
    for (sr, inj), curves in groups.items():
        tag = f"sr{sr[0]:g}-{sr[1]:g}_{inj.replace('/', '').replace('=', '')}"
        plot_performance(curves, out / f"performance_{tag}", results[0]["config"]["min_background"])


def _fmt(s: dict[str, Any] | None, digits: int = 2) -> str:
    if not s or s.get("median") is None:
        return "-"
    if s["n"] > 1:
        return f"{s['median']:.{digits}f} [{s['p16']:.{digits}f}, {s['p84']:.{digits}f}]"
    return f"{s['median']:.{digits}f}"


def console_for_tables():
    """A rich console; wide when not a terminal, so that logged tables are not wrapped to 80 columns."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def print_summary(summary: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="anomalyhunt search: median [16%, 84%] over seeds")
    for col in ("method", "SR (TeV)", "injection", "S/sqrt(B)", "seeds", "max SIC", "SIC@0.2", "AUC", "template AUC"):
        table.add_column(col)
    for row in summary:
        key = (row["method"], list(row["sr"]), row["injection"])
        zs = [r["S/sqrt(B)"] for r in results if (r["method"], list(r["sr"]), r["injection"]) == key]
        table.add_row(
            row["method"], f"{row['sr'][0]:g}-{row['sr'][1]:g}", row["injection"],
            f"{sum(zs) / len(zs):.2f}" if zs else "-", str(len(row["seeds"])), _fmt(row["max_sic"]),
            _fmt(row["sic_at_0.2"]), _fmt(row["auc"], 3), _fmt(row["template_auc"], 3),
        )
    console_for_tables().print(table)


def main(args: argparse.Namespace) -> int:
    from ..analysis.search import run_searches

    settings = merged_settings(args)
    out = settings.get("out") or "search_results"
    configs = expand(settings, out)
    results = run_searches(
        configs, scheduler=settings.get("scheduler"), workers=settings.get("workers"), progress=not args.quiet
    )
    report(results, out, settings, plots=settings.get("plots", True))
    print(f"results in {out}/results.json")
    return 0
