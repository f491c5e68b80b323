"""``anomalyhunt bench``: benchmarks, one sub-command each.

Sub-benchmarks live in :data:`BENCHMARKS`. Another module adds one with :func:`register_benchmark` (at import time,
before or after this command's parser is built), e.g. ``register_benchmark("process", help=..., add_arguments=...,
run=...)`` for ``anomalyhunt bench process``. ``bench search`` compares the search methods side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: name -> benchmark; ``anomalyhunt bench NAME`` runs ``BENCHMARKS[NAME].run(args)``.
BENCHMARKS: dict[str, Benchmark] = {}
_subparsers: argparse._SubParsersAction | None = None


def _add(sub: argparse._SubParsersAction, bench: Benchmark) -> None:
    p = sub.add_parser(bench.name, help=bench.help, description=bench.help)
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)


def register_benchmark(
    name: str,
    *,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add ``anomalyhunt bench NAME``; works whether or not the ``bench`` parser already exists."""
    if name in BENCHMARKS and BENCHMARKS[name].run is not run:
        raise ValueError(f"benchmark {name!r} is registered twice")
    BENCHMARKS[name] = Benchmark(name, help, add_arguments, run)
    if _subparsers is not None and name not in _subparsers.choices:
        _add(_subparsers, BENCHMARKS[name])


def register(subparsers: argparse._SubParsersAction) -> None:
    global _subparsers
    p = subparsers.add_parser("bench", help="benchmarks (speed and performance side by side)", description=__doc__)
    _subparsers = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for bench in BENCHMARKS.values():
        _add(_subparsers, bench)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


# ----------------------------------------------------------------------------------------------------------------
# bench search
# ----------------------------------------------------------------------------------------------------------------

#: ``--quick``: a small run for a laptop or CI (S/sqrt(B) raised so that the numbers are not pure noise).
QUICK = {"background_events": 100_000, "n_seeds": 2, "significance": 4.0, "folds": 3,
         "classifier_config": {"n_ensemble": 3}}
QUICK_GENERATORS = {"epochs": 15, "patience": None, "lr": 3e-3, "scheduler": "cosine"}


def _search_arguments(p: argparse.ArgumentParser) -> None:
    from .search import add_search_arguments

    add_search_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="100k background, 2 seeds, S/sqrt(B) = 4, 3 folds, 3 trees, 15 generator epochs")


def bench_settings(args: argparse.Namespace) -> dict[str, Any]:
    """LHCO-level defaults (all background, S/sqrt(B) = 2.2 in the SR, 5 seeds, every method), ``--quick``,
    then the config file and flags."""
    from ..models.base import GENERATORS
    from .search import merged_settings

    defaults: dict[str, Any] = {
        "methods": ["cwola", "idealized", "supervised", *GENERATORS.names()],
        "n_seeds": 5,
        "significance": 2.2,
        "sr": [3.3, 3.7],
    }
    if args.quick:
        defaults.update(QUICK)
        defaults["generator_config"] = {name: _quick_generator(name) for name in GENERATORS.names()}
    return merged_settings(args, defaults)


def _quick_generator(name: str) -> dict[str, Any]:
    from ..models.base import GENERATORS

    known = getattr(GENERATORS.get(name), "DEFAULTS", {}) or {}
    return {k: v for k, v in QUICK_GENERATORS.items() if not known or k in known}


def _median(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize_bench(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: median training seconds, seconds per additional SR, median max SIC (with spread) over seeds,
    and its ratio to the idealized detector."""
    from ..analysis.metrics import spread
    from ..models.base import GENERATORS

    methods: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        methods.setdefault(r["method"], []).append(r)
    ideal = spread(r["max_sic"] for r in methods.get("idealized", []))["median"]
    rows = []
    for method, rs in methods.items():
        fit = _median([r["seconds_fit"] for r in rs])
        clf = _median([r["seconds_train"] for r in rs])
        sample = _median([r["seconds_sample"] for r in rs]) or 0.0
        # A generator trained on the sidebands is retrained for every SR; one trained on all data only samples.
        refit = fit if (method in GENERATORS and GENERATORS.get(method).trains_on == "sidebands" and fit) else 0.0
        sic = spread(r["max_sic"] for r in rs)
        rows.append({
            "method": method,
            "seeds": len(rs),
            "seconds_train": (fit or 0.0) + (clf or 0.0),
            "seconds_fit": fit,
            "seconds_classifier": clf,
            "seconds_per_sr": refit + sample + (clf or 0.0),
            "max_sic": sic,
            "ratio_to_idealized": (sic["median"] / ideal) if (ideal and sic["median"] is not None) else None,
            "template_auc": spread(r["template_auc"] for r in rs),
            "S/sqrt(B)": _median([r["S/sqrt(B)"] for r in rs]),
        })
    return rows


def print_bench(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from .search import _fmt, console_for_tables

    r0 = results[0]
    title = (
        f"bench search: SR {r0['sr'][0]:g}-{r0['sr'][1]:g} TeV, {r0['n_data']:,} data events, "
        f"S = {_median([r['S'] for r in results]):.0f}, B = {_median([r['B'] for r in results]):.0f}, "
        f"S/sqrt(B) = {_median([r['S/sqrt(B)'] for r in results]):.2f}, classifier {r0['classifier']}"
    )
    table = Table(title=title)
    for col in ("method", "seeds", "train s", "s / extra SR", "max SIC median [16%, 84%]", "vs idealized",
                "template AUC"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["method"], str(row["seeds"]), f"{row['seconds_train']:.1f}", f"{row['seconds_per_sr']:.1f}",
            _fmt(row["max_sic"]),
            f"{row['ratio_to_idealized']:.2f}" if row["ratio_to_idealized"] is not None else "-",
            _fmt(row["template_auc"], 3),
        )
    console_for_tables().print(table)


def run_search_bench(args: argparse.Namespace) -> int:
    from ..analysis.search import _jsonable, run_searches
    from .search import expand, report

    settings = bench_settings(args)
    out = settings.get("out") or "bench_results/search"
    configs = expand(settings, out)
    results = run_searches(configs, scheduler=settings.get("scheduler"), workers=settings.get("workers"),
                           progress=not args.quiet)
    report(results, out, settings, plots=settings.get("plots", True))
    rows = summarize_bench(results)
    Path(out, "bench.json").write_text(json.dumps(_jsonable(rows), indent=2))
    print_bench(rows, results)
    return 0


register_benchmark(
    "search",
    help="per method: training seconds, seconds per additional SR, median max SIC over seeds and its ratio to the "
         "idealized detector (LHCO-level statistics by default; --quick for a small run)",
    add_arguments=_search_arguments,
    run=run_search_bench,
)
