"""``anomalyhunt bench``: benchmarks, one sub-command each.

Sub-benchmarks live in :data:`BENCHMARKS`. Another module adds one with :func:`register_benchmark` (at import time,
before or after this command's parser is built). Here: ``bench search`` compares the search methods side by side
(performance, training time and the cost of every further signal region), ``bench drapes-scan`` scans DRAPES'
partial-diffusion depth sigma', ``bench process`` times the processor against bare fastjet clustering.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


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
#: Methods whose template is retrained for every SR: the references SIGMA's cost per further SR is compared to.
RETRAINING_REFERENCES = ("sigma-cr", "cathode")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    from .search import add_search_arguments

    add_search_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="100k background, 2 seeds, S/sqrt(B) = 4, 3 folds, 3 trees, 15 generator epochs")
    p.add_argument("--extra-srs", type=int, metavar="N",
                   help="further SRs (the first SR shifted by -/+ half its width, then a whole width, ...) run by "
                        "every template method with the first seed, to measure the cost of each additional SR "
                        "(default 2; 0: estimate it from the first SR)")


def bench_settings(args: argparse.Namespace) -> dict[str, Any]:
    """LHCO-level defaults (all background, S/sqrt(B) = 2.2 in the SR, 5 seeds, every method including SIGMA's
    v^CR, 2 extra SRs), ``--quick``, then the config file and flags."""
    from ..models.base import GENERATORS
    from .search import merged_settings

    defaults: dict[str, Any] = {
        # Generators that learn from a background simulation only when one is given.
        "methods": ["cwola", "idealized", "supervised",
                    *(n for n in GENERATORS.names() if args.simulation or not GENERATORS.get(n).needs_simulation),
                    *(["sigma-cr"] if "sigma" in GENERATORS else [])],
        "n_seeds": 5,
        "significance": 2.2,
        "sr": [3.3, 3.7],
        "extra_srs": 2,
        "equal_size": True,  # the yardstick at equal reference size beside the full-size one
    }
    if args.constituents:
        # Every constituent method beside the feature-level idealized detector, on the same injected events.
        from ..models.constituents import CONSTITUENT_METHODS

        defaults.update(methods=["idealized", *CONSTITUENT_METHODS.names()], extra_srs=0, equal_size=False)
    if args.quick:
        defaults.update(QUICK)
        defaults["generator_config"] = {name: _quick_generator(name) for name in GENERATORS.names()}
    settings = merged_settings(args, defaults)
    if settings.get("generator_config"):
        settings["generator_config"] = _spread_flat_options(settings["generator_config"])
    if getattr(args, "extra_srs", None) is not None:
        settings["extra_srs"] = args.extra_srs
    return settings


def _spread_flat_options(gen_cfg: dict[str, Any]) -> dict[str, Any]:
    """``{sigma: {...}, cathode: {...}, epochs: 5}`` (``--quick`` per generator plus ``--generator-option``) ->
    the flat keys merged into every generator that knows them; a key no generator knows is a :class:`ConfigError`."""
    from ..errors import ConfigError
    from ..models.base import GENERATORS

    named = {k: v for k, v in gen_cfg.items() if k in GENERATORS and isinstance(v, dict)}
    flat = {k: v for k, v in gen_cfg.items() if k not in named}
    if not named or not flat:
        return gen_cfg
    known = {name: set(getattr(GENERATORS.get(name), "DEFAULTS", {}) or {}) for name in GENERATORS.names()}
    unknown = sorted(k for k in flat if not any(k in keys for keys in known.values()))
    if unknown:
        raise ConfigError(f"generator option(s) {unknown} are known to no generator ({', '.join(GENERATORS.names())})")
    return {name: {**named.get(name, {}), **{k: v for k, v in flat.items() if k in known[name]}}
            for name in GENERATORS.names()}


def _quick_generator(name: str) -> dict[str, Any]:
    from ..models.base import GENERATORS

    known = getattr(GENERATORS.get(name), "DEFAULTS", {}) or {}
    return {k: v for k, v in QUICK_GENERATORS.items() if not known or k in known}


def _median(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def extra_windows(sr: Sequence[float], n: int) -> list[tuple[float, float]]:
    """``n`` SRs of the width of ``sr`` shifted by -w/2, +w/2, -w, +w, ... (rounded to 1 MeV)."""
    lo, hi = float(sr[0]), float(sr[1])
    w = hi - lo
    out = []
    for k in range(n):
        shift = (k // 2 + 1) * 0.5 * w * (-1 if k % 2 == 0 else 1)
        out.append((round(lo + shift, 6), round(hi + shift, 6)))
    return out


def _is_template(method: str) -> bool:
    """A method with a generated template (a generator or a variant); False for baselines and constituent methods."""
    from ..analysis.search import resolve_method
    from ..errors import ConfigError

    try:
        return resolve_method(method) is not None
    except ConfigError:  # constituent-level methods are not feature-level generators
        return False


def _template_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if _is_template(m)]


def _generator_config_for(settings: dict[str, Any], method: str) -> dict[str, Any]:
    """The generator config ``expand`` would give the base generator of a variant (``sigma-cr`` -> ``sigma``)."""
    from ..analysis.search import resolve_method
    from ..models.base import GENERATORS

    gen_cfg = settings.get("generator_config") or {}
    per_method = bool(gen_cfg) and all(k in GENERATORS for k in gen_cfg)
    base = resolve_method(method)[0]
    return dict(gen_cfg.get(base, {}) if per_method else gen_cfg)


def plan_bench(settings: dict[str, Any], out: str | Path) -> tuple[list[Any], list[Any], list[str]]:
    """(main runs, extra-SR runs, notes) of a search benchmark.

    Extra SRs reuse the data of the first SR: with ``significance`` injection N is fixed from the first SR and
    seed (a note says so), so that SIGMA's one training can serve every SR as in a real scan.
    """
    import dataclasses

    from ..analysis.search import VARIANTS, make_sample
    from .search import expand

    s = dict(settings)
    n_extra = int(s.pop("extra_srs", 0) or 0)
    notes: list[str] = []
    methods = s.get("methods") or []
    methods = [methods] if isinstance(methods, str) else list(methods)
    if n_extra and _template_methods(methods) and s.get("n_signal") is None:
        probe = expand({**s, "methods": ["idealized"]}, out)[0]
        n = make_sample(probe).n_injected
        s["n_signal"] = n
        s.pop("significance", None)
        notes.append(f"S/sqrt(B) = {probe.significance:g} in SR {probe.sr[0]:g}-{probe.sr[1]:g} TeV (seed "
                     f"{probe.seed}) is N = {n} injected events; every seed and SR uses N = {n}, so that the data "
                     "do not depend on the SR")
    main = expand(s, out)
    for cfg in main:
        if cfg.method in VARIANTS:
            cfg.generator_config = _generator_config_for(s, cfg.method)
    extra = []
    if n_extra and main:
        first_sr, first_seed = main[0].sr, main[0].seed
        for cfg in main:
            if cfg.sr != first_sr or cfg.seed != first_seed or not _is_template(cfg.method):
                continue
            for window in extra_windows(first_sr, n_extra):
                e = dataclasses.replace(cfg, sr=window, template_auc=False, plots=False, out=None)
                e.out = str(Path(out) / "extra_srs" / e.name)
                extra.append(e)
    return main, extra, notes


def _per_sr_cost(r: dict[str, Any]) -> tuple[float, float]:
    """(template seconds, total seconds) a run spent on its SR: fit unless shared, sampling, classifier."""
    template = (r.get("seconds_fit") or 0.0) + (r.get("seconds_sample") or 0.0)
    return template, template + (r.get("seconds_train") or 0.0)


def summarize_bench(results: list[dict[str, Any]], extra: list[dict[str, Any]] | None = None) -> list[dict]:
    """Per method: median training seconds (generator fit + classifier), seconds per additional SR (measured on
    the extra-SR runs when there are any: fit unless shared, sampling and classifier; template part separately),
    median max SIC (with spread) over seeds, and its ratio to the idealized detector."""
    from ..analysis.metrics import spread
    from ..analysis.search import make_search_generator
    from ..analysis.templates import shares_training

    methods: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        methods.setdefault(r["method"], []).append(r)
    extras: dict[str, list[dict[str, Any]]] = {}
    for r in extra or []:
        extras.setdefault(r["method"], []).append(r)
    ideal = spread(r.get("max_sic") for r in methods.get("idealized", []))["median"]
    rows = []
    for method, rs in methods.items():
        template = _is_template(method)
        fit = _median(r.get("seconds_fit_model", r.get("seconds_fit")) for r in rs)
        clf = _median(r.get("seconds_train") for r in rs)
        sample = _median(r.get("seconds_sample") for r in rs) or 0.0
        if extras.get(method):
            per_template = _median(_per_sr_cost(r)[0] for r in extras[method])
            per_sr = _median(_per_sr_cost(r)[1] for r in extras[method])
            measured = True
        else:
            # No extra SRs: a generator that shares its fit (SIGMA) would only sample again; others retrain.
            shared = template and shares_training(make_search_generator(_config_of(rs[0])))
            per_template = (0.0 if shared else (fit or 0.0)) + sample if template else 0.0
            per_sr = per_template + (clf or 0.0)
            measured = False
        sic = spread(r.get("max_sic") for r in rs)
        rows.append({
            "method": method,
            "seeds": len(rs),
            "seconds_train": (fit or 0.0) + (clf or 0.0),
            "seconds_fit": fit,
            "seconds_classifier": clf,
            "seconds_sample": sample if template else None,
            "seconds_template_per_sr": per_template,
            "seconds_per_sr": per_sr,
            "per_sr_measured": measured,
            "n_extra_srs": len(extras.get(method, [])),
            "fit_shared_in_extra_srs": all(r.get("fit_shared") for r in extras[method]) if extras.get(method) else None,
            "n_template": _median(r.get("n_reference") for r in rs) if template else None,
            "max_sic": sic,
            "ratio_to_idealized": (sic["median"] / ideal) if (ideal and sic["median"] is not None) else None,
            "max_sic_equal_size": spread(r.get("max_sic_equal_size") for r in rs),
            "ratio_equal_size": _ratio(spread(r.get("max_sic_equal_size") for r in rs)["median"], ideal),
            "template_auc": spread(r.get("template_auc") for r in rs),
            "sic_at_0.2_lower": spread(r.get("sic_at_0.2_lower") for r in rs),
            "S/sqrt(B)": _median(r.get("S/sqrt(B)") for r in rs),
        })
    return rows


def _ratio(value: float | None, ideal: float | None) -> float | None:
    return value / ideal if (value is not None and ideal) else None


def _config_of(result: dict[str, Any]) -> Any:
    from ..analysis.search import SearchConfig

    return SearchConfig.from_dict(result["config"])


def cost_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every method that trains once for all SRs: its cost per additional SR over that of each method that
    retrains per SR (:data:`RETRAINING_REFERENCES`, when run), template part alone and with the classifier."""
    by = {r["method"]: r for r in rows}
    out = []
    for r in rows:
        if r.get("fit_shared_in_extra_srs") is not True:
            continue
        for ref in RETRAINING_REFERENCES:
            q = by.get(ref)
            if q is None or not q.get("per_sr_measured") or not q.get("seconds_template_per_sr"):
                continue
            out.append({
                "method": r["method"],
                "reference": ref,
                "template_seconds": r["seconds_template_per_sr"],
                "reference_template_seconds": q["seconds_template_per_sr"],
                "template_ratio": r["seconds_template_per_sr"] / q["seconds_template_per_sr"],
                "total_seconds": r["seconds_per_sr"],
                "reference_total_seconds": q["seconds_per_sr"],
                "total_ratio": r["seconds_per_sr"] / q["seconds_per_sr"],
            })
    return out


def study_claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DRAPES and SIGMA talks' claims about the methods they compare against, each as measured by this run
    (only those whose methods ran): raw simulation as a template is visibly off (SR template AUC >= 0.58); FETA and
    SALAD remove >= 50% of its (AUC - 0.5); CURTAINs-for-flows costs less per further SR than CURTAINs with a
    template AUC no more than 0.01 above it; R-ANODE beats ANODE in SIC at eps_S = 0.2 (84% lower bounds)."""
    by = {r["method"]: r for r in rows}

    def med(method: str, key: str) -> float | None:
        v = by.get(method, {}).get(key)
        return v.get("median") if isinstance(v, dict) else v

    claims = []
    raw = med("raw-simulation", "template_auc")
    if raw is not None:
        claims.append({"claim": "raw simulation template AUC >= 0.58", "value": raw, "holds": raw >= 0.58})
        for m in ("feta", "salad"):
            auc = med(m, "template_auc")
            if auc is not None and raw > 0.5:
                removed = 1.0 - (auc - 0.5) / (raw - 0.5)
                claims.append({"claim": f"{m} removes >= 50% of raw simulation's (template AUC - 0.5)",
                               "value": removed, "holds": removed >= 0.5})  # fmt: skip
    ref_auc, ref_cost = med("curtains", "template_auc"), med("curtains", "seconds_per_sr")
    for m in sorted(k for k in by if k.startswith("curtains-f4f")):
        auc, cost = med(m, "template_auc"), med(m, "seconds_per_sr")
        if None not in (ref_auc, ref_cost, auc, cost) and ref_cost > 0:
            claims.append({"claim": f"{m} costs less per further SR than curtains, template AUC <= curtains' + 0.01",
                           "value": cost / ref_cost, "auc_difference": auc - ref_auc,
                           "holds": cost < ref_cost and auc <= ref_auc + 0.01})  # fmt: skip
    r_anode, anode = med("r-anode", "sic_at_0.2_lower"), med("anode", "sic_at_0.2_lower")
    if r_anode is not None and anode is not None:
        claims.append({"claim": "r-anode beats anode in SIC at eps_S = 0.2 (84% lower bound, median)",
                       "value": r_anode / anode if anode else float("inf"), "holds": r_anode > anode})
    return claims


def _fraction(x: float) -> str:
    return f"1/{1 / x:.0f}" if 0 < x < 0.5 else f"{x:.2f}"


def print_bench(rows: list[dict[str, Any]], results: list[dict[str, Any]],
                ratios: list[dict[str, Any]] | None = None, notes: Sequence[str] = (),
                claims: Sequence[dict[str, Any]] = ()) -> None:
    from rich.table import Table

    from ..console import console_for_tables
    from .search import _fmt

    r0 = results[0]
    title = (
        f"bench search: SR {r0['sr'][0]:g}-{r0['sr'][1]:g} TeV, {r0['n_data']:,} data events, "
        f"S = {_median([r['S'] for r in results]):.0f}, B = {_median([r['B'] for r in results]):.0f}, "
        f"S/sqrt(B) = {_median([r['S/sqrt(B)'] for r in results]):.2f}, classifier {r0['classifier']}"
    )
    table = Table(title=title)
    for col in ("method", "seeds", "train s", "template s / extra SR", "s / extra SR", "template events",
                "max SIC median [16%, 84%]", "SIC at eps_S 0.2, 84% lower bound", "vs idealized",
                "vs idealized, equal size", "template AUC"):
        table.add_column(col)
    for row in rows:
        star = "" if row["per_sr_measured"] else "*"
        table.add_row(
            row["method"], str(row["seeds"]), f"{row['seconds_train']:.1f}",
            f"{row['seconds_template_per_sr']:.1f}{star}", f"{row['seconds_per_sr']:.1f}{star}",
            f"{row['n_template']:.0f}" if row["n_template"] is not None else "-",
            _fmt(row["max_sic"]), _fmt(row.get("sic_at_0.2_lower")),
            f"{row['ratio_to_idealized']:.2f}" if row["ratio_to_idealized"] is not None else "-",
            f"{row['ratio_equal_size']:.2f}" if row.get("ratio_equal_size") is not None else "-",
            _fmt(row["template_auc"], 3),
        )
    console = console_for_tables()
    console.print(table)
    if any(not row["per_sr_measured"] for row in rows):
        console.print("* per-SR cost estimated from the first SR (no extra SRs run for this method)")
    for q in ratios or []:
        console.print(
            f"{q['method']} per additional SR: template {q['template_seconds']:.2f} s = "
            f"{_fraction(q['template_ratio'])} of {q['reference']} retraining ({q['reference_template_seconds']:.1f} s;"
            f" target <= 1/50); with the classifier {q['total_seconds']:.1f} s vs {q['reference_total_seconds']:.1f} s"
            f" = {_fraction(q['total_ratio'])}"
        )
    for c in claims:
        extra = f", template AUC {c['auc_difference']:+.3f} against curtains" if "auc_difference" in c else ""
        console.print(f"claim: {c['claim']}: {c['value']:.3f}{extra} -> {'holds' if c['holds'] else 'NOT shown'}")
    for note in notes:
        console.print(f"note: {note}")


def run_search_bench(args: argparse.Namespace) -> int:
    from ..analysis.metrics import spread
    from ..analysis.search import _jsonable
    from .search import _fmt, report, run_all

    settings = bench_settings(args)
    out = settings.get("out") or "bench_results/search"
    main, extra, notes = plan_bench(settings, out)
    settings = {**{k: v for k, v in settings.items() if k != "extra_srs"}, "bench_notes": notes,
                "extra_srs": sorted({tuple(c.sr) for c in extra})}
    # Resumable: runs recorded in OUT's task log with exactly their configuration are kept, so a long comparison
    # may be run in parts (one method after another) into one OUT.
    results = run_all(main + extra, scheduler=settings.get("scheduler"), workers=settings.get("workers"),
                      progress=not args.quiet, resume=out)
    results, extra_results = results[: len(main)], results[len(main):]
    report(results, out, settings, plots=settings.get("plots", True))
    if settings.get("constituents"):
        return _constituent_bench(results, out, notes)
    rows = summarize_bench(results, extra_results)
    ratios = cost_ratios(rows)
    control = spread(r.get("control_template_auc") for r in results if r.get("method") == "idealized")
    if control["median"] is not None:
        width = next(r for r in results if r.get("method") == "idealized")["config"].get("cwola_sideband_width")
        where = f"within {width:g} TeV of the SR" if width else "outside the SR"
        notes.append(f"negative control of the template AUC (data {where} moved into it as the template): "
                     f"{_fmt(control, 3)} (> 0.55: the check has power)")
    claims = study_claims(rows)
    payload = {"methods": rows, "cost_ratios": ratios, "control_template_auc": control, "claims": claims,
               "extra_sr_runs": extra_results, "notes": notes}
    Path(out, "bench.json").write_text(json.dumps(_jsonable(payload), indent=2))
    print_bench(rows, results, ratios, notes, claims)
    return 0


def _constituent_bench(results: list[dict[str, Any]], out: str | Path, notes: list[str]) -> int:
    """``bench search --constituents``: every method per injection side by side, and the talks' claims."""
    from rich.table import Table

    from ..analysis.constituent_bench import constituent_claims, summarize_constituents
    from ..analysis.search import _jsonable
    from ..console import console_for_tables
    from .search import _fmt

    ok = [r for r in results if not r.get("failed")]
    if not ok:
        return 1
    rows, claims = summarize_constituents(ok), constituent_claims(ok)
    Path(out, "bench.json").write_text(json.dumps(_jsonable({"methods": rows, "claims": claims, "notes": notes}),
                                                  indent=2))  # fmt: skip
    r0 = ok[0]
    table = Table(title=f"bench search --constituents: SR {r0['sr'][0]:g}-{r0['sr'][1]:g} TeV, "
                        f"{r0['n_data']:,} data events (median over seeds, [16%, 84%])")  # fmt: skip
    for col in ("method", "injection", "S/sqrt(B)", "seeds", "train s", "AUC", "max SIC", "vs idealized",
                "1/eps_B at eps_S 0.2", "template AUC", "sideband control"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["method"], row["injection"], f"{row['S/sqrt(B)']:.2f}", str(row["seeds"]),
                      f"{row['seconds_train']:.0f}" if row["seconds_train"] is not None else "-",
                      _fmt(row["auc"], 3), _fmt(row["max_sic"]),
                      f"{row['ratio_to_idealized']:.2f}" if row["ratio_to_idealized"] is not None else "-",
                      _fmt(row["rejection_at_0.2"], 1),
                      _fmt(row["template_auc"], 3), _fmt(row["control_template_auc"], 3))  # fmt: skip
    console = console_for_tables()
    console.print(table)
    for c in claims:
        console.print(f"claim: {c['claim']}: {c['value']:.3f} -> {'holds' if c['holds'] else 'NOT shown'}")
    for note in notes:
        console.print(f"note: {note}")
    return 1 if len(ok) < len(results) else 0


register_benchmark(
    "search",
    help="per method: training seconds, seconds per additional SR (measured on extra SRs), median max SIC over "
         "seeds and its ratio to the idealized detector, and SIGMA's per-SR cost against retraining (LHCO-level "
         "statistics by default; --quick for a small run)",
    add_arguments=_search_arguments,
    run=run_search_bench,
)


# ----------------------------------------------------------------------------------------------------------------
# bench drapes-scan
# ----------------------------------------------------------------------------------------------------------------


def _drapes_scan_arguments(p: argparse.ArgumentParser) -> None:
    from ..analysis.drapes_scan import DEFAULT_SIGMA_PRIMES
    from .search import add_search_arguments

    add_search_arguments(p)
    p.add_argument("--sigma-prime", action="append", type=float, metavar="S",
                   help=f"partial-diffusion depth (repeatable; default {', '.join(map(str, DEFAULT_SIGMA_PRIMES))})")
    p.add_argument("--seed-source", choices=("sidebands", "sr", "simulation"),
                   help="where the partial-diffusion seed events come from (default sidebands)")
    p.add_argument("--quick", action="store_true",
                   help="100k background, 2 seeds, S/sqrt(B) = 4, 3 folds, 3 trees, 15 generator epochs")


def run_drapes_scan_bench(args: argparse.Namespace) -> int:
    from ..analysis.drapes_scan import DEFAULT_SIGMA_PRIMES, drapes_scans, plot_scan, scan_summary
    from ..analysis.search import _jsonable
    from ..runconfig import write_run_config
    from ..console import console_for_tables
    from .search import _fmt, expand, merged_settings

    defaults: dict[str, Any] = {"n_seeds": 5, "significance": 2.2, "sr": [3.3, 3.7]}
    if args.quick:
        defaults.update(QUICK)
        defaults["generator_config"] = _quick_generator("drapes")
    settings = merged_settings(args, defaults)
    gen_cfg = settings.get("generator_config") or {}
    if isinstance(gen_cfg.get("drapes"), dict):  # keyed by generator, as in a search config
        gen_cfg = gen_cfg["drapes"]
    if args.seed_source:
        gen_cfg = {**gen_cfg, "seed_source": args.seed_source}
    settings.update(methods=["drapes"], generator_config=gen_cfg)
    out = Path(settings.get("out") or "bench_results/drapes_scan")
    sigma_primes = args.sigma_prime or list(DEFAULT_SIGMA_PRIMES)
    configs = expand(settings, out)
    for c in configs:
        c.out, c.plots = None, False
    scans = drapes_scans(configs, sigma_primes, scheduler=settings.get("scheduler"), workers=settings.get("workers"),
                         progress=not args.quiet)
    rows = scan_summary(scans)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drapes_scan.json").write_text(json.dumps(_jsonable({"summary": rows, "scans": scans}), indent=2))
    write_run_config(out, _jsonable({**settings, "sigma_primes": sigma_primes}))
    if settings.get("plots", True):
        plot_scan(scans, out / "drapes_scan")

    from rich.table import Table

    s0 = scans[0]
    table = Table(title=(
        f"DRAPES sigma' scan: SR {s0['sr'][0]:g}-{s0['sr'][1]:g} TeV, seeds from {s0['seed_source']}, "
        f"S/sqrt(B) = {_median(s['S/sqrt(B)'] for s in scans):.2f}, {len(scans)} seed(s), "
        f"DRAPES fit {_median(s['seconds_fit'] for s in scans):.0f} s"
    ))
    for col in ("sigma'", "template AUC median [16%, 84%]", "max SIC median [16%, 84%]", "sampling s"):
        table.add_column(col)
    for row in rows:
        table.add_row(f"{row['sigma_prime']:g}", _fmt(row["template_auc"], 3), _fmt(row["max_sic"]),
                      f"{row['seconds_sample']:.1f}")
    console_for_tables().print(table)
    print(f"results in {out}/drapes_scan.json" + (f", plot {out}/drapes_scan.png" if settings.get("plots", True)
                                                   else ""))
    return 0


register_benchmark(
    "drapes-scan",
    help="DRAPES partial-diffusion depth scan: template AUC and max SIC against sigma' (median and spread over seeds)",
    add_arguments=_drapes_scan_arguments,
    run=run_drapes_scan_bench,
)


# ----------------------------------------------------------------------------------------------------------------
# bench process
# ----------------------------------------------------------------------------------------------------------------

#: The particle-level file ``bench process`` reads by default, in the data directory of ``search``.
DEFAULT_PARTICLES = "rnd_qcd_seed1001.particles.h5"


def default_particle_file() -> Path:
    """``../shared/data/lhco-like/rnd_qcd_seed1001.particles.h5``, found as the search's default data;
    :class:`InputError` when it is not there."""
    from ..analysis.search import default_data_dir
    from ..errors import InputError

    d = default_data_dir()
    path = d / DEFAULT_PARTICLES if d is not None else None
    if path is None or not path.is_file():
        raise InputError(f"../shared/data/lhco-like/{DEFAULT_PARTICLES}",
                         "no default particle file: give one with --file PARTICLES_H5 (LHCO R&D particle layout)")
    return path


def _process_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", metavar="PARTICLES_H5",
                   help=f"LHCO-layout particle file (default ../shared/data/lhco-like/{DEFAULT_PARTICLES})")
    p.add_argument("--events", type=int, default=5000, metavar="N", help="events to process (default 5000)")
    p.add_argument("--chunksize", type=int, default=2500, metavar="N", help="events per chunk (default 2500)")
    p.add_argument("--axes", default="kt", choices=("kt", "wta_kt", "onepass_kt"),
                   help="N-subjettiness axes (default kt)")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="interleaved rounds timing every stage, bare clustering and the processor; medians count "
                        "(default 5)")
    p.add_argument("--json", metavar="OUT", help="write the measurements to this JSON file")


def run_process_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Measure, print and (``--json``) save the processor benchmark; returns the measurements."""
    from ..errors import InputError
    from ..processors.bench import benchmark_process, print_benchmark

    path = Path(args.file) if args.file else default_particle_file()
    if not path.is_file():
        raise InputError(path, "file does not exist")
    for name in ("events", "chunksize", "repeats"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name}", f"must be >= 1, got {getattr(args, name)}")
    result = benchmark_process(path, n_events=args.events, chunksize=args.chunksize, axes=args.axes,
                               repeats=args.repeats)
    result["file"] = str(path)
    print_benchmark(result)
    if args.json:
        out = Path(args.json)
        if out.parent != Path(""):
            out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def _process_main(args: argparse.Namespace) -> int:
    run_process_bench(args)
    return 0


register_benchmark(
    "process",
    help="processor speed (events/s on one core) against bare fastjet anti-kT clustering, per stage, and memory",
    add_arguments=_process_arguments,
    run=_process_main,
)


# ----------------------------------------------------------------------------------------------------------------
# bench toys
# ----------------------------------------------------------------------------------------------------------------


def _toys_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="idealized", help="template method hunted in every toy (default idealized)")
    p.add_argument("--toys", type=int, default=8, help="background-only full-pipeline toys (default 8)")
    p.add_argument("--fraction", type=float, default=0.25,
                   help="fraction of the shipped 350k QCD events in the observation and in each toy (default 0.25)")
    p.add_argument("--signal-events", type=int, metavar="N",
                   help="W' events injected into the observation (default 600 x sqrt(fraction): the demo's S/sqrt(B))")
    p.add_argument("--fit-toys", type=int, default=30, help="fit-only toys for the same observation (default 30)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench_results/toys", help="output directory (default bench_results/toys)")


def run_toys_bench(args: argparse.Namespace) -> int:
    import math

    import torch
    from rich.table import Table

    from ..analysis.hunt_toys import describe, pipeline_toys
    from ..demo import (CLASSIFIER_CONFIG, EFFICIENCIES, FEATURES, GENERATOR_CONFIG, SIDEBAND_WIDTH, WINDOWS,
                        shipped_features)  # fmt: skip
    from ..runconfig import seed_everything, write_run_config

    torch.set_num_threads(1)
    seed_everything(args.seed)
    n_signal = args.signal_events if args.signal_events is not None else round(600 * math.sqrt(args.fraction))
    table = shipped_features()
    bkg, sig = table[table.label == 0].reset_index(drop=True), table[table.label == 1].reset_index(drop=True)
    config = {"method": args.method, "toys": args.toys, "fraction": args.fraction, "n_signal": n_signal,
              "fit_toys": args.fit_toys, "seed": args.seed, "windows": [list(w) for w in WINDOWS],
              "efficiencies": list(EFFICIENCIES), "features": list(FEATURES), "generator_config": GENERATOR_CONFIG,
              "classifier_config": CLASSIFIER_CONFIG, "sideband_width": SIDEBAND_WIDTH}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, config)
    res = pipeline_toys(bkg, sig, method=args.method, n_toys=args.toys, fraction=args.fraction, n_signal=n_signal,
                        windows=WINDOWS, features=FEATURES, seed=args.seed, fit_toys=args.fit_toys,
                        efficiencies=EFFICIENCIES, generator_config=GENERATOR_CONFIG,
                        classifier_config=CLASSIFIER_CONFIG, sideband_width=SIDEBAND_WIDTH)  # fmt: skip
    both = {k: describe(res[k]) for k in ("fit_only", "full_pipeline")}
    (out / "toys.json").write_text(json.dumps({"config": config, **both}, indent=2))
    t = Table(title=(f"{args.method}: {len(WINDOWS)} windows x {len(EFFICIENCIES)} cuts, "
                     f"{args.fraction:g} of the QCD per sample, {n_signal} W' events in the observation"))
    for col in ("toys", "n", "observed max local Z", "toys' median max Z", "global Z (toy count)",
                "effective trials", "global Z (extrapolated)"):  # fmt: skip
        t.add_column(col, justify="right")
    for name, d in both.items():
        t.add_row(name.replace("_", "-"), str(d["n_toys"]), f"{d['observed_max_z']:.2f}",
                  f"{d['toy_max_z_median']:.2f}", f"{d['z_toys']:.2f}", f"{d['n_eff_trials']:.1f}",
                  f"{d['z_extrapolated']:.2f}")  # fmt: skip
    from ..console import console_for_tables

    console_for_tables().print(t)
    print("full-pipeline toys' max local Z:", " ".join(f"{z:.2f}" for z in both["full_pipeline"]["toy_max_z"]))
    print(f"results in {out}/toys.json")
    return 0


register_benchmark(
    "toys",
    help="global significance of a sliding-window hunt from full-pipeline background-only toys (generator and "
         "classifiers retrained in every toy), side by side with fit-only toys of the same observation",
    add_arguments=_toys_arguments,
    run=run_toys_bench,
)


# ----------------------------------------------------------------------------------------------------------------
# bench hunt: calibration of the local significance under background only
# ----------------------------------------------------------------------------------------------------------------

#: Non-overlapping windows of the calibration study (TeV).
CALIBRATION_WINDOWS = ((3.0, 3.4), (3.4, 3.8), (3.8, 4.2))


def _hunt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", action="append", help="methods (repeatable; default idealized, cwola, cathode)")
    p.add_argument("--samples", type=int, default=8, help="background-only samples per method (default 8)")
    p.add_argument("--fraction", type=float, default=0.25,
                   help="fraction of the QCD in each sample; disjoint within blocks of 1/fraction (default 0.25)")
    p.add_argument("--replicas", action="store_true",
                   help="every sample is the full QCD with Poisson(1) event counts (replica weights; no row "
                        "duplicated) instead of a disjoint subsample; needs --fraction 1")
    p.add_argument("--features", action="append", metavar="FILE_OR_DIR",
                   help="background feature tables (label 0 rows; default: the QCD shipped with the package)")
    p.add_argument("--feature", action="append", metavar="COLUMN", help="classifier input (repeatable; default "
                                                                        "mj1 delta_mj tau21_j1 tau21_j2 delta_r)")
    p.add_argument("--sr", action="append", metavar="LO:HI", help="signal region in TeV (repeatable; default "
                                                                  "3.0-3.4, 3.4-3.8, 3.8-4.2)")
    p.add_argument("--windows", metavar="LO:HI:WIDTH:STEP", help="sliding signal regions in TeV")
    p.add_argument("--summary-sr", action="append", metavar="LO:HI",
                   help="summarise only these of the study's windows (repeatable; e.g. those above the turn-on)")
    p.add_argument("--signal-events", type=int, default=0, metavar="N",
                   help="inject N W' events into every sample: the sensitivity on the same machinery (default 0)")
    p.add_argument("--train-on", choices=("sr", "window"), default="sr",
                   help="the classifier's data: the SR (default) or the SR and its sidebands")
    p.add_argument("--template-ensemble", type=int, default=1, metavar="K",
                   help="train each template generator K times (other seeds); the template is their union "
                        "(default 1)")
    p.add_argument("--generator-option", action="append", metavar="[METHOD.]KEY=VALUE",
                   help="over the demo's generator settings, e.g. cathode.epochs=20 (the hunt's default)")
    p.add_argument("--classifier-option", action="append", metavar="KEY=VALUE",
                   help="over the demo's classifier settings, e.g. n_ensemble=5 (the hunt's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_results/hunt", help="output directory; a re-run resumes (default "
                                                               "bench_results/hunt)")


def run_hunt_bench(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    import torch
    from rich.table import Table

    from ..analysis.hunt import significance_column
    from ..analysis.hunt_calibration import calibration_values, sensitivity, summarize_calibration
    from ..analysis.injection import split_by_label
    from ..demo import CLASSIFIER_CONFIG, EFFICIENCIES, FEATURES, GENERATOR_CONFIG, SIDEBAND_WIDTH, shipped_features
    from ..features import check_unique_events, load_feature_table
    from ..runconfig import seed_everything, write_run_config
    from ..console import console_for_tables
    from .hunt import generator_options, windows_from_args
    from .search import _options

    if args.template_ensemble < 1:
        from ..errors import InputError

        raise InputError("--template-ensemble", f"must be >= 1, got {args.template_ensemble}")
    torch.set_num_threads(1)
    seed_everything(args.seed)
    windows = windows_from_args(args.sr, args.windows) if (args.sr or args.windows) else CALIBRATION_WINDOWS
    features = tuple(args.feature or FEATURES)
    shipped = shipped_features()
    sig = shipped[shipped.label == 1].reset_index(drop=True)  # only needed by the injection split (0 injected)
    if args.features:
        tables = [load_feature_table(f) for f in args.features]
        check_unique_events(pd.concat(tables, ignore_index=True), ", ".join(args.features))
        bkg = pd.concat([split_by_label(t, f)[0] for t, f in zip(tables, args.features)], ignore_index=True)
    else:
        bkg = shipped[shipped.label == 0].reset_index(drop=True)
    methods = args.method or ["idealized", "cwola", "cathode"]
    extra = generator_options(args.generator_option, methods)
    generator_config = {m: {**GENERATOR_CONFIG.get(m, {}), **extra.get(m, {})}
                        for m in set(GENERATOR_CONFIG) | {m for m in extra if extra[m]}}  # fmt: skip
    classifier_config = {**CLASSIFIER_CONFIG, **_options(args.classifier_option, "--classifier-option")}
    settings = {"efficiencies": list(EFFICIENCIES), "generator_config": generator_config,
                "classifier_config": classifier_config, "sideband_width": SIDEBAND_WIDTH,
                "features_files": args.features, **({"train_on": args.train_on} if args.train_on != "sr" else {}),
                **({"template_ensemble": args.template_ensemble} if args.template_ensemble != 1 else {})}
    write_run_config(args.out, {**vars(args), "func": None, "methods": methods, **settings})
    values = calibration_values(
        bkg, sig, args.out, methods=methods, n_samples=args.samples, fraction=args.fraction,
        windows=windows, features=features, seed=args.seed, n_signal=args.signal_events, settings=settings,
        efficiencies=EFFICIENCIES, generator_config=generator_config, classifier_config=classifier_config,
        sideband_width=SIDEBAND_WIDTH, train_on=args.train_on, replicas=args.replicas,
        template_ensemble=args.template_ensemble,
    )  # fmt: skip
    if args.signal_events:
        sens = sensitivity(values)
        (Path(args.out) / "sensitivity.json").write_text(json.dumps(sens.to_dict(orient="records"), indent=2))
        t = Table(title=f"{args.signal_events} W' events injected into samples of {args.fraction:g} of "
                        f"{len(bkg):,} QCD events: largest local Z (fit-fixed) over the cuts per window")
        for col in ("method", "window [TeV]", "median local Z", "samples", "samples with Z >= 3"):
            t.add_column(col, justify="right")
        for _, r in sens.iterrows():
            t.add_row(r.method, f"{r.sr_lo:g}-{r.sr_hi:g}", f"{r['median']:.2f}", str(r.n_samples), str(r.n_above_3))
        console_for_tables().print(t)
        return 0
    summary_name = "summary.json"
    if args.summary_sr:
        from ..analysis.regions import parse_window

        chosen = [parse_window(w) for w in args.summary_sr]
        missing = [w for w in chosen if not any(np.allclose(w, v) for v in windows)]  # as the filter below
        if missing:
            from ..errors import InputError

            raise InputError("--summary-sr", f"{missing} are not windows of this study ({list(windows)})")
        keep = np.zeros(len(values), bool)
        for lo, hi in chosen:
            keep |= np.isclose(values.sr_lo, lo) & np.isclose(values.sr_hi, hi)
        values, windows = values[keep], chosen
        summary_name = "summary_" + "_".join(f"{lo:g}-{hi:g}" for lo, hi in chosen) + ".json"
    summary = summarize_calibration(values, per_block=max(int(1 / args.fraction), 1))
    (Path(args.out) / summary_name).write_text(json.dumps(summary.to_dict(orient="records"), indent=2))
    kind = "Poisson replicas of all" if args.replicas else f"samples of {args.fraction:g}"
    t = Table(title=f"background-only hunts: {len(bkg):,} QCD events, {kind}, "
                    f"{len(windows)} windows x {len(EFFICIENCIES)} cuts")
    for col in ("method", "local Z", "values", "pooled SD", "window means", "largest", "global p: median",
                "KS p (uniform)"):  # fmt: skip
        t.add_column(col, justify="right")
    for _, r in summary.iterrows():
        default = " (hunt's default)" if r.statistic == significance_column(r.method) else ""
        t.add_row(r.method, r.statistic + default, str(r.n_values), f"{r.pooled_sd:.2f}", f"{r.mean_min:+.2f} .. "
                  f"{r.mean_max:+.2f}", f"{r['max']:.2f}", f"{r.median_global_p:.2f} ({r.n_global})",
                  f"{r.ks_p:.2f}")  # fmt: skip
    console_for_tables().print(t)
    print(f"values in {args.out}/tasks.jsonl, summary in {args.out}/{summary_name}")
    return 0


register_benchmark(
    "hunt",
    help="calibration of the hunt's local significance: background-only hunts (generators and classifiers "
         "retrained) on disjoint subsamples, the spread of three significance definitions side by side (resumable)",
    add_arguments=_hunt_arguments,
    run=run_hunt_bench,
)
