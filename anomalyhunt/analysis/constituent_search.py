"""One search with a constituent-level method (``autoencoder``, ``tnt``, ``clr``, ``darkclr``, ``constituent-cwola``).

The processor output ``constituents`` (``anomalyhunt process ... --clouds --images``) holds background (label 0)
and signal (label 1) datasets. Their feature tables go through the same :func:`~.injection.inject_signal` as a
feature-level search, with the same seed and settings, so a ``cwola`` run on ``--features DIR`` and a ``tnt`` run
on ``--constituents DIR`` see the same events; the constituent clouds/images of those events are then handed to the
registered :class:`~anomalyhunt.models.constituents.ConstituentMethod`. Its test scores give the same metrics and results keys
as :func:`~.search.run_search` (so both kinds compare in one table), plus:

* ``info``: what the method records (TNT's tag purities, CLR's linear-classifier tests on the representation and on
  the raw constituents, ...);
* ``best_single_feature``: the feature-table column that best separates the test events on its own (truth-chosen, a
  reference, not a search);
* ``reference_scores``: metrics of the method's other scores on the same test events (TNT's starting autoencoder);
* ``mjj_sculpting``: whether the selection (top ``sculpting_efficiency`` of the data scores) changes the QCD m_jj
  shape of the data, next to a cut on the lighter jet's pT at the same efficiency (a positive control that must).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from . import metrics
from ..io.constituents import load_constituents
from ..models.constituents import (
    BOOST_INVARIANT_FEATURES,
    CONSTITUENT_METHODS,
    ConstituentData,
    ConstituentResult,
    ConstituentTemplate,
    run_out_of_fold,
)
from .constituent_data import best_single_feature, injected_constituents, mjj_sculpting
from .regions import Regions
from .search import (
    SearchConfig, _jsonable, _sub_seed, inject_for, plot_performance, result_header, small_statistics_warnings,
)

__all__ = [
    "ConstituentSearchConfig",
    "is_constituent_method",
    "is_constituent_config",
    "load_labelled_constituents",
    "run_constituent_search",
    "run_constituent_searches",
    "write_constituent_outputs",
]


def is_constituent_method(name: str) -> bool:
    """Whether ``name`` is a registered constituent-level method (not a feature-level one)."""
    return name in CONSTITUENT_METHODS


def is_constituent_config(config: Any) -> bool:
    """Whether a search config (object or mapping) is for a constituent-level method.

    The dispatch test for a pipeline that accepts both kinds (``run_search`` can hand such configs to
    :func:`run_constituent_search`).
    """
    if isinstance(config, ConstituentSearchConfig):
        return True
    method = config.get("method") if isinstance(config, dict) else getattr(config, "method", None)
    return isinstance(method, str) and is_constituent_method(method)


@dataclass
class ConstituentSearchConfig(SearchConfig):
    """A :class:`~.search.SearchConfig` for a constituent-level method.

    ``constituents``: processor output directory with clouds and/or images (background and signal datasets, truth
    from the feature table's ``label``). ``constituent_config``/``constituent_preset``: the method's configuration
    (its ``defaults`` keys) and named preset (e.g. ``"paper"``). ``device`` is given to every ``device`` key of the
    method that ``constituent_config`` does not set. ``sculpting_efficiency``: the fraction of data events kept for
    the m_jj sculpting check. The classifier, folds, generator and template options of the base class do not apply
    (constituent CWoLa takes its folds from its own config, and its sidebands from ``cwola_sideband_width``).
    """

    constituents: str | None = None
    constituent_config: dict[str, Any] = field(default_factory=dict)
    constituent_preset: str | None = None
    sculpting_efficiency: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_constituent_method(self.method):
            raise ConfigError(
                f"constituent search: unknown constituent method {self.method!r}; available: "
                f"{', '.join(CONSTITUENT_METHODS.names())}"
            )
        if not self.constituents:
            raise ConfigError(
                f"{self.method} is a constituent-level method: give the processor output with --constituents DIR "
                "(written by `anomalyhunt process ... --clouds --images`)"
            )
        self.constituents = str(self.constituents)
        self.constituent_config = dict(self.constituent_config or {})
        if not 0 < self.sculpting_efficiency < 1:
            raise ConfigError(f"sculpting_efficiency={self.sculpting_efficiency}: must be in (0, 1)")
        self.method_config()  # unknown keys or preset fail here, before any work

    def method_config(self) -> dict[str, Any]:
        """The method's resolved configuration: defaults, preset, ``constituent_config``, then ``device``."""
        method = CONSTITUENT_METHODS.get(self.method)
        conf = method.config(self.constituent_config, self.constituent_preset)
        for key in conf:
            if (key == "device" or key.endswith("_device")) and key not in self.constituent_config:
                conf[key] = self.device
        return conf

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["constituent_config"] = _plain(d["constituent_config"])
        return d


def _plain(obj: Any) -> Any:
    """Tuples -> lists, so that configs written as JSON read back equal."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------


def dataset_names(out_dir: str | Path) -> list[str | None]:
    """The datasets of a processor output (sub-directories with ``features/*.parquet``), sorted; ``[None]`` when
    ``out_dir`` is itself one dataset's directory."""
    base = Path(out_dir)
    if not base.is_dir():
        raise InputError(base, "constituent directory does not exist")
    if any((base / "features").glob("*.parquet")):
        return [None]
    names = sorted(p.name for p in base.iterdir() if p.is_dir() and any((p / "features").glob("*.parquet")))
    if not names:
        raise InputError(base, "no datasets with features/*.parquet: not an output directory of `anomalyhunt process`")
    return names


_CACHE: dict[tuple, tuple[ConstituentData, ConstituentData]] = {}


def load_labelled_constituents(
    out_dir: str | Path, *, clouds: bool, images: bool, allow_partial: bool = False,
    cloud_features: Sequence[str] = BOOST_INVARIANT_FEATURES,
) -> tuple[ConstituentData, ConstituentData]:
    """(background, signal) events of every dataset in a processor output, split by the feature table's truth
    ``label`` (0 / 1), in the order of :func:`~anomalyhunt.features.load_feature_table` on the same directory.

    Cached per process (several seeds in one worker load once).
    """
    key = (str(Path(out_dir).resolve()), bool(clouds), bool(images), bool(allow_partial), tuple(cloud_features))
    if key in _CACHE:
        return _CACHE[key]
    names = dataset_names(out_dir)
    everything = load_constituents(
        out_dir, names if names != [None] else None, clouds=clouds, images=images, allow_partial=allow_partial,
        cloud_features=cloud_features,
    )
    label = everything.table["label"].to_numpy() if "label" in everything.table.columns else None
    if label is None:
        raise InputError(out_dir, "feature tables have no 'label' column: cannot tell background from signal")
    other = ~np.isin(label, (0, 1))
    if other.any():
        raise InputError(
            out_dir, f"{int(other.sum())} events without truth label (label not 0/1): a search with signal injection "
            "needs simulated background (label 0) and signal (label 1) datasets",
        )  # fmt: skip
    bkg, sig = everything.subset(label == 0), everything.subset(label == 1)
    if len(bkg) == 0:
        raise InputError(out_dir, "no background (label 0) events")
    if len(sig) == 0:
        raise InputError(out_dir, "no signal (label 1) events to inject")
    _CACHE.clear()  # one directory at a time: images of a full sample take gigabytes
    _CACHE[key] = (bkg, sig)
    return bkg, sig


# ----------------------------------------------------------------------------------------------------------------
# one search
# ----------------------------------------------------------------------------------------------------------------


def run_constituent_search(
    config: ConstituentSearchConfig | dict[str, Any], return_details: bool = False
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
    """Run one constituent-level search; the results dict (also written to ``config.out`` when set).

    With ``return_details`` also ``{"sample", "data", "test", "result"}``: the injected sample, the data and test
    :class:`ConstituentData` and the method's :class:`ConstituentResult`.
    """
    cfg = config if isinstance(config, ConstituentSearchConfig) else ConstituentSearchConfig.from_dict(config)
    start = time.perf_counter()
    method = CONSTITUENT_METHODS.get(cfg.method)
    mconf = cfg.method_config()
    need = method.inputs(mconf)
    regions = Regions(cfg.sr, cfg.sideband_width, cfg.scan)
    bkg, sig = load_labelled_constituents(
        cfg.constituents, clouds="clouds" in need, images="images" in need, allow_partial=cfg.allow_partial,
        cloud_features=method.cloud_features(mconf),
    )
    sample = inject_for(cfg, bkg.table, sig.table, regions)
    data, test = injected_constituents(bkg, sig, sample.rows, cfg.seed)
    y = test.label
    if not np.array_equal(y, sample.y_test):
        raise InputError(cfg.constituents, "test events of the constituents do not match the injected sample")
    # Constituent CWoLa uses the narrow sidebands of feature-level CWoLa hunting; the others the generator sidebands.
    cwola = cfg.method == "constituent-cwola"
    method_regions = Regions(cfg.sr, cfg.cwola_sideband_width, cfg.scan) if cwola else regions
    t0 = time.perf_counter()
    # every data score (the bump hunt's input) from a run that never saw the event: the k-fold wraps the method
    result = run_out_of_fold(method, data, test, folds=cfg.folds, regions=method_regions, config=mconf,
                             seed=_sub_seed(cfg.seed, 3), progress=cfg.progress)  # fmt: skip
    seconds_train = time.perf_counter() - t0
    _check_scores(result, data, test, cfg.method)

    sr = regions.sr_mask(data.mjj)
    res = result_header(cfg, sample, cfg.method)
    res["n_data_sr"] = int(sr.sum())
    res["n_reference"] = result.info.get("n_sb") if cwola else None
    res.update(metrics.summarize(y, result.test_scores, cfg.min_background))
    res["warnings"] = small_statistics_warnings(res)
    res.update({"template_auc": None, "seconds_template_auc": None, "seconds_train": seconds_train,
                "seconds_fit": None, "seconds_sample": None, "seconds_template": None,
                "n_template_dropped": None, "fit_shared": None, "seconds_fit_model": None})  # fmt: skip
    if result.template is not None and cfg.template_auc:
        t0 = time.perf_counter()
        res["template_auc"], res["control_template_auc"] = template_fidelity(cfg, result.template, data, test)
        res["seconds_template_auc"] = time.perf_counter() - t0
    res["level"] = "constituent"
    res["inputs"] = list(need)
    res["info"] = _jsonable(result.info)
    name, feat_metrics = best_single_feature(test.table, y)
    res["best_single_feature"] = {"feature": name, **feat_metrics}
    res["reference_scores"] = {
        key[len("test_") :]: metrics.summarize(y, arr, cfg.min_background)
        for key, arr in _reference_scores(result, test)
    }
    res["mjj_sculpting"] = _sculpting(data, result.data_scores, cfg.sculpting_efficiency)
    res["seconds_total"] = time.perf_counter() - start
    res["config"] = cfg.to_dict()
    if cfg.out:
        write_constituent_outputs(cfg, res, data, test, result)
    if return_details:
        return res, {"sample": sample, "data": data, "test": test, "result": result}
    return res


def template_fidelity(
    cfg: ConstituentSearchConfig, template: ConstituentTemplate, data: ConstituentData, test: ConstituentData
) -> tuple[float, float]:
    """(template AUC, its negative control) with the method's own classifier, in a k-fold against the true SR
    background of the test set, as many template events as true ones (as the feature-level
    :func:`~.search.template_fidelity`). The control: data from the generator's sidebands (``sideband_width``;
    all masses outside the SR by default), where a partial-diffusion template takes its seeds, moved unchanged into
    the SR: the template without its transport. A check with power scores it clearly above 0.5 (with
    boost-invariant constituent inputs it may not: the sidebands then differ little from the SR)."""
    from .fidelity import template_auc

    truth = template.encode(test.subset(test.label == 0))
    rng = np.random.default_rng(_sub_seed(cfg.seed, 19))
    sub = template.events[np.sort(rng.permutation(len(template.events))[: len(truth)])]
    sb = np.flatnonzero(Regions(cfg.sr, cfg.sideband_width, cfg.scan).sb_mask(data.mjj))
    control = template.encode(data.subset(np.sort(np.random.default_rng(_sub_seed(cfg.seed, 23)).permutation(sb)[
        : len(truth)])))
    return tuple(template_auc(x, truth, classifier=template.classifier, folds=cfg.folds, seed=_sub_seed(cfg.seed, 17))
                 for x in (sub, control))  # type: ignore[return-value]


def _check_scores(result: ConstituentResult, data: ConstituentData, test: ConstituentData, method: str) -> None:
    for name, scores, events in (("test", result.test_scores, test), ("data", result.data_scores, data)):
        if scores is None:
            continue
        s = np.asarray(scores)
        if s.shape != (len(events),):
            raise InputError(method, f"{name} scores have shape {s.shape}, expected ({len(events)},)")
        if not np.isfinite(s).all():
            raise InputError(method, f"{int((~np.isfinite(s)).sum())} non-finite {name} scores")


def _reference_scores(result: ConstituentResult, test: ConstituentData) -> list[tuple[str, np.ndarray]]:
    """The method's other per-event test scores (``test_*_scores``, e.g. TNT's starting autoencoder), when they
    differ from its main score."""
    out = []
    for key, arr in result.arrays.items():
        a = np.asarray(arr)
        if key.startswith("test_") and key.endswith("_scores") and a.shape == (len(test),):
            if not np.array_equal(a, result.test_scores) and np.isfinite(a).all():
                out.append((key, a.astype(np.float64)))
    return out


def _sculpting(data: ConstituentData, scores: np.ndarray | None, efficiency: float) -> dict[str, Any] | None:
    """KS test of selected against rejected QCD data events in m_jj, for the method's selection and for a cut on
    the lighter jet's pT at the same efficiency (truth used for bookkeeping only)."""
    if scores is None:
        return None
    qcd = data.label == 0
    if qcd.sum() < 20:
        return None
    out: dict[str, Any] = {"efficiency": efficiency}
    for name, values in (("selection", np.asarray(scores)), ("control_pt_j1", data.table["pt_j1"].to_numpy())):
        selected = values > np.quantile(values, 1 - efficiency)
        if selected[qcd].all() or not selected[qcd].any():
            out[name] = None
            continue
        out[name] = mjj_sculpting(data.mjj[qcd], selected[qcd])
    return out


#: Plot labels of the methods' other scores (``test_<name>_scores``).
_CURVE_NAMES = {"ae": "autoencoder", "norm": "norm of z"}


def write_constituent_outputs(
    cfg: ConstituentSearchConfig,
    res: dict[str, Any],
    data: ConstituentData,
    test: ConstituentData,
    result: ConstituentResult,
) -> Path:
    """What :func:`~.search.write_outputs` writes for a feature-level search (``results.json``, ``config.json``,
    ``scores.parquet``, ``performance.png``/``.pdf``), plus the jet selection plot ``selection.png``/``.pdf``.

    ``scores.parquet`` has the same columns; its ``data`` rows are the SR data events as in a feature-level search,
    and the data events outside the SR follow as ``data_outside_sr`` (all masses, for a bump hunt).
    """
    from ..runconfig import write_run_config

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_jsonable(res), indent=2))
    write_run_config(out, cfg.to_dict())
    y = test.label
    parts = [pd.DataFrame({"set": "test", "score": result.test_scores, "label": y.astype(np.int8), "mjj": test.mjj})]
    if result.data_scores is not None:
        sr = Regions(cfg.sr).sr_mask(data.mjj)
        ds = np.asarray(result.data_scores, dtype=np.float64)
        for name, keep in (("data", sr), ("data_outside_sr", ~sr)):
            parts.append(pd.DataFrame({"set": name, "score": ds[keep], "label": data.label[keep].astype(np.int8),
                                       "mjj": data.mjj[keep]}))  # fmt: skip
    pd.concat(parts, ignore_index=True).to_parquet(out / "scores.parquet", index=False)
    if cfg.plots:
        curves = {cfg.method: (y, result.test_scores)}
        for key, arr in _reference_scores(result, test):
            name = key[len("test_") : -len("_scores")]
            curves[f"{cfg.method} ({_CURVE_NAMES.get(name, name)})"] = (y, arr)
        best = res["best_single_feature"]["feature"]
        col = test.table[best.lstrip("-")].to_numpy(np.float64)
        curves[f"best feature: {best}"] = (y, -col if best.startswith("-") else col)
        plot_performance(curves, out / "performance", cfg.min_background)
        plot_selection(test, result.test_scores, out / "selection", efficiency=cfg.sculpting_efficiency,
                       title=cfg.method)  # fmt: skip
    return out


def plot_selection(
    test: ConstituentData, scores: np.ndarray, path: str | Path, efficiency: float = 0.2, title: str = ""
) -> list[Path]:
    """What a cut keeping the top ``efficiency`` of the test events picks: lighter- and heavier-jet mass of the
    selected events against truth QCD and signal (unit-normalised), PNG and PDF at ``path``."""
    import matplotlib.style as mstyle
    import mplhep as hep
    from matplotlib.figure import Figure

    from .plots import experiment_label, save_figure

    y = test.label
    selected = np.asarray(scores) > np.quantile(scores, 1 - efficiency)
    with mstyle.context(hep.style.CMS):
        fig = Figure(figsize=(18, 8))
        axes = fig.subplots(1, 2, gridspec_kw={"wspace": 0.3})
        for ax, col, name in zip(axes, ("mj1", "mj2"), ("lighter", "heavier")):
            m = test.table[col].to_numpy(np.float64)
            edges = np.linspace(0.0, max(float(np.quantile(m, 0.99)), 1.0), 41)
            for label, keep, style in (
                ("QCD (truth)", y == 0, {"color": "C0"}),
                ("signal (truth)", y == 1, {"color": "C1"}),
                (f"selected (top {efficiency:.0%})", selected, {"color": "k", "ls": "--"}),
            ):
                if keep.any():
                    ax.hist(np.clip(m[keep], edges[0], edges[-1]), bins=edges, density=True, histtype="step",
                            lw=2, label=f"{label}: {int(keep.sum())}", **style)  # fmt: skip
            ax.set_xlabel(f"{name} jet mass [GeV]")
            ax.set_ylabel("a.u.")
            ax.legend(loc="upper right", title=title or None)
            experiment_label(ax)
        return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# many searches
# ----------------------------------------------------------------------------------------------------------------


def _run_task(config: dict[str, Any]) -> dict[str, Any]:
    """Dask task: one constituent search."""
    return _jsonable(run_constituent_search(config))


def run_constituent_searches(
    configs: Iterable[ConstituentSearchConfig | dict[str, Any]],
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run constituent searches and return their results in the order of ``configs``.

    ``scheduler``: ``None`` or ``"sync"`` runs them one after another in this process: torch already trains on every
    core (or the GPU), and the runs share the loaded constituents, which a process per run would each hold in memory.
    ``"local"`` starts a local cluster (:func:`~anomalyhunt.local_cluster.local_cluster`); an address uses that
    cluster. CUDA runs ask for worker resource ``{"GPU": 1}``.
    """
    cfgs = [c if isinstance(c, ConstituentSearchConfig) else ConstituentSearchConfig.from_dict(c) for c in configs]
    if not cfgs:
        return []
    if scheduler in (None, "sync"):
        it: Sequence[ConstituentSearchConfig] = cfgs
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(cfgs, desc="constituent searches", unit="run")
        return [_jsonable(run_constituent_search(c)) for c in it]

    from ..tasks import run_tasks

    return run_tasks(
        _run_task, [c.to_dict() for c in cfgs], scheduler=None if scheduler == "local" else scheduler,
        workers=workers, progress=progress, gpu=[str(c.device).startswith("cuda") for c in cfgs],
        names=[f"constituent-search-{c.name}" for c in cfgs], desc="constituent searches",
    )
