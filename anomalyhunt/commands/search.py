"""``anomalyhunt search``: weakly supervised searches (CWoLa, template methods, idealized, supervised) and
constituent-level methods (autoencoder, nae, tnt, clr, darkclr, constituent-cwola, constituent-drapes) over
methods, signal regions and seeds.

A YAML ``--config`` gives any :class:`~anomalyhunt.analysis.search.SearchConfig` key plus the lists to expand:
``methods``, ``seeds`` (or ``n_seeds``), ``srs`` (list of ``[lo, hi]`` or ``"lo:hi"``) or ``windows``
(``{lo, hi, width, step}``), ``n_signal`` (a number or a list), ``scheduler`` and ``workers``.
``generator_config`` may be keyed by generator name (``{cathode: {...}, sigma: {...}}``). Flags override the file.

Constituent-level methods read ``constituents`` (``--constituents DIR``: the output of ``anomalyhunt process ...
--clouds --images`` with background and signal datasets, truth from the feature table's label); without
``--features`` the feature-level methods of the same run read that directory's feature tables, so that every
method sees the same injected events for a seed. ``constituent_config`` (``--constituent-option``) holds their
options: a key applies to every constituent method that has it, ``{tnt: {...}}`` (``tnt.KEY=VALUE``) to one;
``constituent_preset`` (``--constituent-preset paper``) picks a named configuration. Feature-level runs go to Dask;
constituent runs train with torch one after another in this process (``--scheduler local`` or an address sends
them to Dask too). Results of both kinds share one ``results.json`` and summary table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ..console import console_for_tables
from ..errors import ConfigError

def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The data, injection and classifier options shared by ``search`` and ``bench search``."""
    p.add_argument("--config", metavar="FILE", help="YAML search configuration (flags override it)")
    p.add_argument("--features", action="append", metavar="FILE_OR_DIR",
                   help="feature table(s): processor Parquet output or LHCO v2 features .h5; label 0 = background, "
                        "1 = signal (repeatable; default: ../shared/data/lhco-like)")
    p.add_argument("--signal", action="append", metavar="FILE", help="separate signal feature table (repeatable)")
    p.add_argument("--simulation", metavar="FILE_OR_DIR",
                   help="background simulation (a feature table with the data's features and mjj, none of the data's "
                        "events) for simulation-assisted generators: feta, salad, drapes with seed_source=simulation")
    p.add_argument("--allow-partial", action="store_true", default=None,
                   help="read processor outputs that are partial or mixed (refused by default), with a warning and "
                        "their counts in results.json")
    p.add_argument("--method", action="append",
                   help="cwola, idealized, supervised, a generator, or a constituent method: autoencoder, nae, tnt, "
                        "clr, darkclr, constituent-cwola, constituent-drapes (repeatable)")
    p.add_argument("--constituents", metavar="DIR",
                   help="processor output with clouds/images (anomalyhunt process --clouds --images) for the "
                        "constituent methods; also the feature tables of the run when --features is not given")
    p.add_argument("--constituent-option", action="append", metavar="[METHOD.]KEY=VALUE",
                   help="constituent method option, e.g. ae_epochs=5 (every method that has it) or tnt.cnn_epochs=3")
    p.add_argument("--constituent-preset", metavar="NAME", help="named constituent configuration, e.g. paper (GPU)")
    p.add_argument("--sr", action="append", metavar="LO:HI", help="signal region in TeV (repeatable)")
    p.add_argument("--windows", metavar="LO:HI:WIDTH:STEP", help="sliding signal regions in TeV")
    p.add_argument("--signal-events", action="append", type=int, metavar="N", help="injected signal events")
    p.add_argument("--significance", type=float, metavar="Z", help="inject to S/sqrt(B) = Z in the SR instead")
    p.add_argument("--background-events", type=int, metavar="N", help="use N background events (default all)")
    p.add_argument("--supervised-signal-events", type=int, metavar="N",
                   help="SR signal events reserved (neither injected nor tested) to train the supervised reference "
                        "(default 5000; every method's test set leaves them out)")
    p.add_argument("--seed", action="append", type=int, metavar="S", help="seed (repeatable)")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 (with one --seed S: S..S+N-1)")
    p.add_argument("--classifier", choices=("hgb", "mlp"))
    p.add_argument("--classifier-option", action="append", metavar="KEY=VALUE", help="e.g. n_ensemble=10")
    p.add_argument("--generator-option", action="append", metavar="KEY=VALUE", help="e.g. epochs=20 (all generators)")
    p.add_argument("--folds", type=int)
    p.add_argument("--oversample", type=int)
    p.add_argument("--sideband-width", type=float, metavar="TEV", help="generator sidebands (default: all masses)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="Dask scheduler address; 'sync' runs in this process; 'local' a local cluster (the default "
                        "for feature-level runs; constituent runs otherwise go one after another in this process)")
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
        "supervised_signal_events": args.supervised_signal_events,
        "classifier": args.classifier, "folds": args.folds, "oversample": args.oversample,
        "sideband_width": args.sideband_width, "device": args.device, "scheduler": args.scheduler,
        "workers": args.workers, "out": args.out, "constituents": getattr(args, "constituents", None),
        "constituent_preset": getattr(args, "constituent_preset", None), "allow_partial": args.allow_partial,
        "simulation": args.simulation,
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
        from ..analysis.regions import parse_scan

        lo, hi, width, step = parse_scan(args.windows)
        s["windows"] = {"lo": lo, "hi": hi, "width": width, "step": step}
        s.pop("srs", None)
    if args.classifier_option:
        extra = _options(args.classifier_option, "--classifier-option")
        s["classifier_config"] = {**s.get("classifier_config", {}), **extra}
    if args.generator_option:
        extra = _options(args.generator_option, "--generator-option")
        s["generator_config"] = {**s.get("generator_config", {}), **extra}
    if getattr(args, "constituent_option", None):
        s["constituent_config"] = _merge_constituent_options(s.get("constituent_config") or {},
                                                             args.constituent_option)
    if args.seeds is not None and args.seed is not None:
        if len(args.seed) != 1:
            raise ConfigError("--seeds N goes with at most one --seed S (seeds S..S+N-1), not a list of seeds")
        s["seeds"] = list(range(args.seed[0], args.seed[0] + args.seeds))
        s.pop("n_seeds", None)
    elif args.seeds is not None:
        s.pop("seeds", None)
    elif args.seed is not None:
        s.pop("n_seeds", None)
    if args.quiet:
        s["progress"] = False
    if args.no_plots:
        s["plots"] = False
    return s


def _merge_constituent_options(base: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` (all constituent methods) and ``METHOD.KEY=VALUE`` (one) on top of ``base``."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in _options(items, "--constituent-option").items():
        method, dot, name = key.partition(".")
        if dot:
            out.setdefault(method, {})[name] = value
        else:
            out[key] = value
    return out


#: Settings only constituent-level runs take.
CONSTITUENT_KEYS = ("constituents", "constituent_config", "constituent_preset", "sculpting_efficiency")


def constituent_configs(settings: dict[str, Any], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per constituent method in ``methods``, its ``constituent_config``: the entries keyed by its name, plus the
    flat keys it has. A flat key that none of them has is a :class:`ConfigError` (unknown keys of one method fail
    when its config is built)."""
    from ..models.constituents import CONSTITUENT_METHODS

    raw = dict(settings.get("constituent_config") or {})
    selected = [m for m in methods if m in CONSTITUENT_METHODS]
    per_method = {k: v for k, v in raw.items() if k in CONSTITUENT_METHODS}
    for k, v in per_method.items():
        if not isinstance(v, dict):
            raise ConfigError(f"constituent_config {k!r}: expected a mapping of {k}'s options, got {v!r}")
    flat = {k: v for k, v in raw.items() if k not in CONSTITUENT_METHODS}
    if not selected:
        return {}
    known = {m: set(CONSTITUENT_METHODS.get(m).defaults) for m in selected}
    unused = sorted(k for k in flat if not any(k in keys for keys in known.values()))
    if unused:
        raise ConfigError(
            f"constituent option(s) {unused} belong to none of the constituent methods {selected} "
            f"(write METHOD.KEY=VALUE for one method; see each method's defaults)"
        )
    return {m: {**{k: v for k, v in flat.items() if k in known[m]}, **dict(per_method.get(m, {}))} for m in selected}


def expand(settings: dict[str, Any], out: str | Path) -> list:
    """One :class:`SearchConfig` (a :class:`~anomalyhunt.analysis.constituent_search.ConstituentSearchConfig` for a
    constituent method) per (SR, injection, method, seed); each writes to ``out/<run name>``."""
    from ..analysis.constituent_search import ConstituentSearchConfig
    from ..analysis.regions import parse_window, sliding_windows
    from ..analysis.search import VARIANTS, SearchConfig
    from ..models.base import DENSITY_RATIOS, GENERATORS

    s = dict(settings)
    for k in ("scheduler", "workers"):
        s.pop(k, None)
    methods = s.pop("methods", None) or ["cwola", "idealized"]
    methods = [methods] if isinstance(methods, str) else list(methods)
    per_constituent = constituent_configs(s, methods)
    constituent_settings = {k: s.pop(k) for k in CONSTITUENT_KEYS if k in s}
    simulation = s.pop("simulation", None)  # a template generator's input only
    constituent_settings.pop("constituent_config", None)
    if constituent_settings.get("constituents") and not s.get("background"):
        # Feature-level methods then read the same events, so that a seed injects the same signal for every method.
        s["background"] = [str(constituent_settings["constituents"])]
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
    per_method = bool(gen_cfg) and all(k in GENERATORS or k in DENSITY_RATIOS for k in gen_cfg)
    s.setdefault("progress", False)
    configs = []
    for sr in srs:
        for n in injections:
            for method in methods:
                for seed in seeds:
                    gen_name = VARIANTS[method][0] if method in VARIANTS else method  # sigma-cr -> sigma
                    configurable = gen_name in GENERATORS or gen_name in DENSITY_RATIOS
                    g = (gen_cfg.get(gen_name, {}) if per_method else gen_cfg) if configurable else {}
                    extra = {"n_signal": int(n)} if n is not None else {}
                    common = {**s, **extra, "method": method, "sr": sr, "seed": seed, "out": None}
                    if method in per_constituent:
                        cfg = ConstituentSearchConfig.from_dict({
                            **common, **constituent_settings, "constituent_config": per_constituent[method],
                        })  # fmt: skip
                    else:
                        cfg = SearchConfig.from_dict({**common, "generator_config": dict(g),
                                                   "simulation": simulation if gen_name in GENERATORS else None})
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
    failed = [r for r in results if r.get("failed")]
    results = [r for r in results if not r.get("failed")]
    summary = aggregate(results) if results else []
    payload = {"runs": results, "summary": summary, "failed": failed}
    (out / "results.json").write_text(json.dumps(_jsonable(payload), indent=2))
    write_run_config(out, _jsonable(settings))
    if plots and results:
        _combined_plots(results, out)
    if summary:
        print_summary(summary, results)
    for r in results:
        for w in r.get("warnings", []):
            print(f"warning: {r['method']} SR {r['sr'][0]:g}-{r['sr'][1]:g} seed {r['seed']}: {w}")
    for r in failed:
        print(f"failed: {r['method']} SR {r['sr'][0]:g}-{r['sr'][1]:g} seed {r['seed']}: {r['failed']}")
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
    _injection_plots(results, out)


def _injection_plots(results: list[dict[str, Any]], out: Path) -> dict[tuple, dict[str, tuple]]:
    """Max SIC against the injected signal, one curve per method and per reference score of a method (TNT's
    autoencoder), median and 16-84% over seeds, for every SR scanned at two or more injection levels; returns the
    curves per SR."""
    import pandas as pd

    from ..analysis.plots import plot_max_sic_vs_injection

    by_sr: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("max_sic") is not None:
            by_sr.setdefault(tuple(r["sr"]), []).append(r)
    drawn = {}
    for sr, runs in by_sr.items():
        if len({r["injection"] for r in runs}) < 2:
            continue
        key = next((k for k in ("n_signal", "significance") if all(r["config"].get(k) is not None for r in runs)), None)
        if key is None:  # injections given both ways have no common axis
            continue
        by_events = key == "n_signal"
        rows = []
        for r in runs:
            x = float(r["config"][key])
            rows.append({"method": r["method"], "x": x, "max_sic": r["max_sic"]})
            rows += [{"method": f"{r['method']}: {name}", "x": x, "max_sic": ref["max_sic"]}
                     for name, ref in (r.get("reference_scores") or {}).items() if ref.get("max_sic") is not None]
        table = pd.DataFrame(rows)
        drawn[sr] = plot_max_sic_vs_injection(
            {m: df for m, df in table.groupby("method", sort=False)}, x="x",
            xlabel="Injected signal events" if by_events else "Injected S / √B in the SR",
            path=out / f"max_sic_vs_injection_sr{sr[0]:g}-{sr[1]:g}",
        ).data["curves"]
    return drawn


def _fmt(s: dict[str, Any] | None, digits: int = 2) -> str:
    if not s or s.get("median") is None:
        return "-"
    if s["n"] > 1:
        return f"{s['median']:.{digits}f} [{s['p16']:.{digits}f}, {s['p84']:.{digits}f}]"
    return f"{s['median']:.{digits}f}"


def print_summary(summary: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from ..analysis.metrics import spread

    table = Table(title="anomalyhunt search: median [16%, 84%] over seeds")
    for col in ("method", "SR (TeV)", "injection", "S/sqrt(B)", "seeds", "max SIC", "SIC@0.2", "AUC",
                "1/eps_B@0.2", "template AUC"):  # fmt: skip
        table.add_column(col)
    for row in summary:
        runs = _group(results, row)
        zs = [r["S/sqrt(B)"] for r in runs]
        table.add_row(
            row["method"], f"{row['sr'][0]:g}-{row['sr'][1]:g}", row["injection"],
            f"{sum(zs) / len(zs):.2f}" if zs else "-", str(len(row["seeds"])), _fmt(row["max_sic"]),
            _fmt(row["sic_at_0.2"]), _fmt(row["auc"], 3), _fmt(spread(r.get("rejection_at_0.2") for r in runs), 1),
            _fmt(row["template_auc"], 3),
        )
    console_for_tables().print(table)
    print_constituent_summary(summary, results)


def _group(results: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    key = (row["method"], list(row["sr"]), row["injection"])
    return [r for r in results if (r["method"], list(r["sr"]), r["injection"]) == key]


def print_constituent_summary(summary: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """For constituent-level methods, the references the score is read against: the best single jet feature on
    the same test events, the method's other scores (TNT's starting autoencoder), the linear-classifier test on the
    representation and on the raw constituents (CLR), and the m_jj sculpting KS p-value against a pT-cut control."""
    from rich.table import Table

    from ..analysis.metrics import spread

    rows = [(row, _group(results, row)) for row in summary]
    rows = [(row, runs) for row, runs in rows if runs and runs[0].get("level") == "constituent"]
    if not rows:
        return
    table = Table(title="constituent methods and their references (test events of the same runs)")
    for col in ("method", "SR (TeV)", "AUC", "1/eps_B@0.2", "best single feature: AUC, 1/eps_B@0.2",
                "other scores: AUC", "linear test AUC: repr. / raw", "m_jj KS p: selection / pT cut"):  # fmt: skip
        table.add_column(col)

    def med(values) -> str:
        return _fmt(spread(values), 3)

    for row, runs in rows:
        best = [r["best_single_feature"] for r in runs if r.get("best_single_feature")]
        names = sorted({b["feature"] for b in best})
        refs = sorted({k for r in runs for k in (r.get("reference_scores") or {})})
        other = ", ".join(f"{k}: {med(r['reference_scores'][k]['auc'] for r in runs if k in r['reference_scores'])}"
                          for k in refs)  # fmt: skip
        info = [r.get("info") or {} for r in runs]
        lin = "-"
        if any("linear_test_auc" in i for i in info):
            lin = f"{med(i.get('linear_test_auc') for i in info)} / {med(i.get('raw_linear_test_auc') for i in info)}"
        sc = [r.get("mjj_sculpting") or {} for r in runs]
        sculpt = " / ".join(
            _fmt_p(spread((s.get(k) or {}).get("p_value") for s in sc)) for k in ("selection", "control_pt_j1")
        )
        table.add_row(
            row["method"], f"{row['sr'][0]:g}-{row['sr'][1]:g}", _fmt(row["auc"], 3),
            _fmt(spread(r.get("rejection_at_0.2") for r in runs), 1),
            f"{', '.join(names)}: {med(b['auc'] for b in best)}, "
            f"{_fmt(spread(b['rejection_at_0.2'] for b in best), 1)}",
            other or "-", lin, sculpt,
        )  # fmt: skip
    console_for_tables().print(table)


def _fmt_p(s: dict[str, Any]) -> str:
    """A median p-value in two significant digits (they span many decades)."""
    return "-" if s.get("median") is None else f"{s['median']:.2g}"


def run_all(
    configs: list, scheduler: str | None = None, workers: int | None = None, progress: bool = False,
    resume: str | None = None,
) -> list[dict[str, Any]]:
    """Results of feature-level (:func:`~anomalyhunt.analysis.search.run_searches`, Dask) and constituent-level
    (:func:`~anomalyhunt.analysis.constituent_search.run_constituent_searches`) configs, in the order given.

    Constituent runs go to Dask only with ``scheduler`` ``"local"`` or an address; ``"local"`` means the default
    local cluster for the feature-level runs. ``resume``: the search's OUT, whose task log keeps finished
    feature-level runs across re-runs."""
    from ..analysis.constituent_search import ConstituentSearchConfig, run_constituent_searches
    from ..analysis.search import run_searches

    constituent = [i for i, c in enumerate(configs) if isinstance(c, ConstituentSearchConfig)]
    feature = [i for i, c in enumerate(configs) if not isinstance(c, ConstituentSearchConfig)]
    results: list[dict[str, Any] | None] = [None] * len(configs)
    if feature:
        sched = None if scheduler == "local" else scheduler
        for i, r in zip(feature, run_searches([configs[i] for i in feature], scheduler=sched, workers=workers,
                                              progress=progress, resume=resume)):  # fmt: skip
            results[i] = r
    if constituent:
        for i, r in zip(constituent, run_constituent_searches([configs[i] for i in constituent], scheduler=scheduler,
                                                              workers=workers, progress=progress)):  # fmt: skip
            results[i] = r
    return results  # type: ignore[return-value]


#: Settings that do not change what a search computes (a re-run with other values resumes the same search).
_EXECUTION_KEYS = ("scheduler", "workers", "progress", "plots", "out")


def check_device(device: str | None) -> None:
    """``--device cuda`` on a machine without CUDA: one line before any work (not a traceback from every task)."""
    from ..models.nn import pick_device

    try:
        pick_device(device)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(str(err)) from None


def main(args: argparse.Namespace) -> int:
    settings = merged_settings(args)
    out = settings.get("out") or "search_results"
    check_device(settings.get("device"))
    configs = expand(settings, out)
    from ..analysis.constituent_search import ConstituentSearchConfig
    from ..analysis.search import check_inputs

    check_inputs([c for c in configs if not isinstance(c, ConstituentSearchConfig)])
    from ..analysis.search import _jsonable
    from ..runconfig import check_same_run

    check_same_run(out, _jsonable(settings), "search", ignore=_EXECUTION_KEYS)  # the same settings resume
    results = run_all(
        configs, scheduler=settings.get("scheduler"), workers=settings.get("workers"), progress=not args.quiet,
        resume=out,
    )
    payload = report(results, out, settings, plots=settings.get("plots", True))
    print(f"results in {out}/results.json")
    return 1 if payload["failed"] else 0
