"""One weakly supervised search: inject signal, build a reference for the SR, k-fold CWoLa, score a held-out test set.

:func:`run_search` runs one (method, SR, seed, n_signal). Methods:

* ``cwola``: SR data vs sideband data next to the SR (CWoLa hunting; no template);
* any name in :data:`~anomalyhunt.models.base.GENERATORS` (``cathode``, ``drapes``, ``sigma``, ...): SR data vs a
  template sampled at masses drawn from a KDE of the SR data (``oversample`` x the SR size), from a generator fitted
  on the sidebands or on all data according to its ``trains_on``; :data:`VARIANTS` names generator variants
  (``sigma-cr``: SIGMA's v^CR; ``sigma-data``, ``sigma-layer``, ``sigma-context``: its other interpolations;
  ``curtains-f4f-light``: CURTAINs-for-flows at a lighter training);
* ``idealized``: SR data vs held-out true SR background, same classifier, folds and seeds (the ceiling of template
  methods);
* ``supervised``: truth labels: an independent sample of ``supervised_signal_events`` SR signal events (neither
  injected nor in the test set) vs the SR data's background, same classifier, folds and test set (the ceiling of
  any classifier on these features).

:func:`run_searches` runs many as Dask tasks (a ``distributed.LocalCluster`` by default). A generator trained on all
data with nothing masked (SIGMA) is fitted once per data set and seed and only sampled for every further SR of the
same run, so that its cost per additional SR is sampling plus the classifier (give ``n_signal``: with
``significance`` the injected N, hence the data, follow each SR's background).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from ..resume import TaskLog
from ..tasks import run_tasks
from . import metrics
from ..models.base import DENSITY_RATIOS, DensityRatioModel
from ..models.kfold import KFoldResult, kfold_classify, kfold_density_ratio
from .cwola import cwola
from .injection import DEFAULT_FEATURES, InjectedSample, check_feature_columns, inject_signal, split_by_label
from .regions import Regions
from .references import (
    Reference,
    SharedFits,
    idealized_reference,
    latent_reference,
    sideband_reference,
    template_reference,
)
from .templates import Simulation, make_generator, read_simulation, require_simulation, shares_training

#: Methods that are not template generators (LaCATHODE trains CATHODE's flow but classifies in its latent space).
BASELINES = ("cwola", "idealized", "supervised", "lacathode")


def default_data_dir() -> Path | None:
    """``../shared/data/lhco-like`` beside the repository (or beside the working directory), if present."""
    rel = Path("shared") / "data" / "lhco-like"
    for cand in (Path(__file__).resolve().parents[3] / rel, Path.cwd().parent / rel, Path.cwd() / rel):
        if cand.is_dir():
            return cand
    return None


def default_feature_files() -> list[str]:
    """The feature files of the default data directory; :class:`InputError` when there is none."""
    d = default_data_dir()
    files = sorted(d.glob("*.features.h5")) if d is not None else []
    if not files:
        raise InputError(
            "../shared/data/lhco-like",
            "no default data: give feature tables with --features FILE_OR_DIR (processor Parquet output or LHCO "
            "v2 features .h5) or a --config file",
        )
    return [str(f) for f in files]


@dataclass
class SearchConfig:
    """Everything that defines one search run (JSON-able; see the module doc for ``method``).

    Data: ``background`` files/dirs (label 0 rows are background, label 1 rows signal) and optional ``signal``
    files (all rows signal); empty ``background`` means the default data. Injection: ``n_signal`` events, or
    ``significance`` = S/sqrt(B) in the data SR when ``n_signal`` is None; see :func:`inject_signal` for the rest.
    ``sideband_width``/``scan`` define the sidebands generators train on (all masses outside the SR by default);
    ``cwola_sideband_width`` those of CWoLa hunting (narrow, so that the features barely change across them).
    ``oversample`` (template size / SR size; None: the generator's own ``oversample`` or 4) also sets the idealized
    reference size, capped by the held-out background available. ``supervised_signal_events``: SR signal events
    reserved for the supervised reference (neither injected nor tested; at most half of the SR signal left after
    injection); every method of the configuration reserves them, so that all share one test set, except where the
    pool cannot spare them (then only ``supervised`` fails, and the others keep the full test set).
    ``simulation``: a background simulation feature table (the data's feature columns and mjj) for the generators
    that learn from one (FETA, SALAD, DRAPES with simulation seeds); none of the data's events may be in it.
    """

    method: str = "idealized"
    sr: tuple[float, float] = (3.3, 3.7)
    seed: int = 0
    n_signal: int | None = None
    significance: float | None = 2.2
    features: tuple[str, ...] = DEFAULT_FEATURES
    background: tuple[str, ...] = ()
    signal: tuple[str, ...] = ()
    background_events: int | None = None
    test_fraction: float = 0.2
    idealized_fraction: float = 0.2
    test_signal_events: int | None = None
    supervised_signal_events: int = 5000
    sideband_width: float | None = None
    cwola_sideband_width: float | None = 0.2
    scan: tuple[float, float] | None = None
    classifier: str = "hgb"
    classifier_config: dict[str, Any] = field(default_factory=dict)
    folds: int = 5
    oversample: int | None = None
    generator_config: dict[str, Any] = field(default_factory=dict)
    simulation: str | None = None
    device: str = "cpu"
    min_background: int = 50
    template_auc: bool = True
    #: also score a template method with its template subsampled to the idealized reference's size (the yardstick
    #: at equal reference size; ``max_sic_equal_size`` in results.json)
    equal_size: bool = False
    allow_partial: bool = False
    out: str | None = None
    plots: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        self.sr = (float(self.sr[0]), float(self.sr[1]))
        self.features = tuple(self.features)
        self.background = tuple(str(p) for p in self.background)
        self.signal = tuple(str(p) for p in self.signal)
        if self.scan is not None:
            self.scan = (float(self.scan[0]), float(self.scan[1]))
        if self.n_signal is not None:
            self.significance = None
        elif self.significance is None:
            raise ConfigError("search config: give n_signal or significance")
        if self.folds < 2:
            raise ConfigError(f"search config: folds={self.folds}, need >= 2")
        if self.seed < 0:
            raise ConfigError(f"search config: seed={self.seed}, need >= 0")
        least = self.folds if self.method == "supervised" else 0  # the supervised reference: >= 1 per fold
        if self.supervised_signal_events < least:
            raise ConfigError(f"search config: supervised_signal_events={self.supervised_signal_events}, need >= "
                              f"{least} for method {self.method!r}")  # fmt: skip
        self._check_classifier()
        check_feature_columns(self.features, source="search config 'features'")

    def _check_classifier(self) -> None:
        """Unknown classifiers and classifier options fail here, in one line, before any work."""
        from ..models.base import DISCRIMINATORS

        if self.classifier not in DISCRIMINATORS.names():
            raise ConfigError(f"search config: unknown classifier {self.classifier!r}; available: "
                              f"{', '.join(DISCRIMINATORS.names())}")  # fmt: skip
        allowed = set(getattr(DISCRIMINATORS.get(self.classifier), "DEFAULTS", {})) | {"device", "preset"}
        unknown = sorted(set(self.classifier_config) - allowed)
        if unknown:
            raise ConfigError(f"search config: unknown {self.classifier} classifier option(s) {unknown}; available: "
                              f"{sorted(allowed - {'seed'})}")  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        """Build from a mapping (YAML/JSON); an unknown key is a :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"search config: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("sr", "features", "background", "signal", "scan"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @property
    def injection(self) -> str:
        """How much signal is injected, as written in results: ``"n=700"`` or ``"S/sqrt(B)=2.2"``."""
        return f"n={self.n_signal}" if self.n_signal is not None else f"S/sqrt(B)={self.significance:g}"

    @property
    def name(self) -> str:
        """A directory-safe run name."""
        inj = f"n{self.n_signal}" if self.n_signal is not None else f"z{self.significance:g}"
        return f"{self.method}_sr{self.sr[0]:g}-{self.sr[1]:g}_{inj}_seed{self.seed}"


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------

_TABLES: dict[tuple, tuple[pd.DataFrame, pd.DataFrame]] = {}


def load_tables(
    background: Sequence[str] = (), signal: Sequence[str] = (), allow_partial: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(background, signal) feature tables from files/dirs, cached per process (searches in one worker share them).

    An event that appears twice among all inputs is refused (it would be in training and test at once); partial
    processor outputs only with ``allow_partial``. ``bkg.attrs["inputs"]`` lists what was read.
    """
    from ..features import check_unique_events, check_unit_weights, load_feature_table

    background = tuple(str(p) for p in background) or tuple(default_feature_files())
    key = (background, tuple(str(p) for p in signal), allow_partial)
    if key in _TABLES:
        return _TABLES[key]
    bkgs, sigs, inputs = [], [], []
    for path in background:
        t = load_feature_table(path, allow_partial)
        inputs += t.attrs["inputs"]
        b, s = split_by_label(t, path)
        bkgs.append(b)
        sigs.append(s)
    for path in key[1]:
        t = load_feature_table(path, allow_partial)
        inputs += t.attrs["inputs"]
        if "label" in t.columns and (t["label"].to_numpy() == 0).any():
            raise InputError(path, "signal file holds background-labelled (label 0) events; pass it with --features")
        sigs.append(t)
    check_unique_events(pd.concat([*bkgs, *sigs], ignore_index=True), ", ".join(background + key[1]))
    check_unit_weights(pd.concat([*bkgs, *sigs], ignore_index=True), ", ".join(background + key[1]))
    bkg = pd.concat(bkgs, ignore_index=True)
    sig = pd.concat(sigs, ignore_index=True) if sigs else bkg.iloc[:0]
    bkg.attrs["inputs"] = inputs
    if len(bkg) == 0:
        raise InputError(", ".join(background), "no background (label 0) events")
    if len(sig) == 0:
        raise InputError(", ".join(background + key[1]), "no signal (label 1) events to inject")
    if len(_TABLES) >= 4:
        _TABLES.clear()
    _TABLES[key] = (bkg, sig)
    return bkg, sig


def make_sample(cfg: SearchConfig, regions: Regions | None = None) -> InjectedSample:
    """The injected data set of ``cfg`` (same for every method with the same seed and injection settings)."""
    bkg, sig = load_tables(cfg.background, cfg.signal, cfg.allow_partial)
    return inject_for(cfg, bkg, sig, regions or Regions(cfg.sr, cfg.sideband_width, cfg.scan))


def inject_for(cfg: SearchConfig, bkg: pd.DataFrame, sig: pd.DataFrame, regions: Regions) -> InjectedSample:
    """:func:`inject_signal` with the injection settings of ``cfg`` (shared by every kind of search)."""
    return inject_signal(
        bkg,
        sig,
        regions=regions,
        n_signal=cfg.n_signal,
        significance=cfg.significance,
        seed=cfg.seed,
        features=cfg.features,
        background_events=cfg.background_events,
        test_fraction=cfg.test_fraction,
        idealized_fraction=cfg.idealized_fraction,
        test_signal_events=cfg.test_signal_events,
        reserve_signal_events=cfg.supervised_signal_events,
        reserve_optional=cfg.method != "supervised",
    )


# ----------------------------------------------------------------------------------------------------------------
# one search
# ----------------------------------------------------------------------------------------------------------------


def _sub_seed(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(seed), tag]).generate_state(1)[0] % (2**31 - 1))


#: Named variants of a generator: method -> (generator, config keys the variant forces). ``sigma-cr`` is SIGMA's
#: v^CR: retrained for every SR with the SR masked, and evaluated at the SR masses themselves (the network's own
#: extrapolation, as CATHODE's flow); the others are SIGMA's interpolation choices (``sigma`` itself uses the
#: configured one, ``context`` by default). ``curtains-f4f-light`` is CURTAINs-for-flows at a lighter training (a base
#: flow of 4 x 64 units, 8 epochs each for base and transport): the per-SR cost the paper's efficient configuration
#: is about, measured against CURTAINs' template AUC in ``bench search``.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sigma-cr": ("sigma", {"mask_sr": True, "interpolation": "none"}),
    "sigma-data": ("sigma", {"interpolation": "none"}),
    "sigma-layer": ("sigma", {"interpolation": "layer"}),
    "sigma-context": ("sigma", {"interpolation": "context"}),
    "curtains-f4f-light": ("curtains-f4f", {"base_transforms": 4, "base_hidden_features": [64, 64], "base_epochs": 8,
                                            "epochs": 8}),
}


def resolve_method(method: str) -> tuple[str, dict[str, Any]] | None:
    """``(generator name, forced config)`` of a template method, ``None`` for a baseline or a density-ratio method;
    :class:`ConfigError` for an unknown name."""
    from ..models.base import GENERATORS

    if method in BASELINES or method in DENSITY_RATIOS:
        return None
    if method in VARIANTS and VARIANTS[method][0] in GENERATORS:
        return VARIANTS[method]
    if method in GENERATORS:
        return method, {}
    known = (list(BASELINES) + GENERATORS.names() + [v for v, (g, _) in VARIANTS.items() if g in GENERATORS]
             + DENSITY_RATIOS.names())  # fmt: skip
    raise ConfigError(f"unknown search method {method!r}; available: {', '.join(known)}")


def make_search_generator(cfg: SearchConfig) -> Any:
    """The (unfitted) generator of a template method, configured as ``cfg`` asks."""
    from .templates import make_generator

    name, forced = resolve_method(cfg.method)
    return make_generator(
        name, {**cfg.generator_config, **forced}, seed=_sub_seed(cfg.seed, 7), device=cfg.device,
        progress=cfg.progress, sr=list(cfg.sr),
    )


def density_ratio_background(
    cfg: SearchConfig, x: np.ndarray, m: np.ndarray, regions: Regions
) -> tuple[DensityRatioModel, float]:
    """A density-ratio model (by registry name, configured as ``cfg`` asks) with its background part fitted on the
    sidebands, and the seconds that fit took."""
    cls = DENSITY_RATIOS.get(cfg.method)
    auto = {"seed": _sub_seed(cfg.seed, 7), "device": cfg.device, "progress": cfg.progress}
    model = cls(**{**{k: v for k, v in auto.items() if k in cls.DEFAULTS}, **cfg.generator_config})
    sb = regions.select_sb(m, "data")
    t0 = time.perf_counter()
    model.fit_background(x[sb], m[sb])
    return model, time.perf_counter() - t0


def _oversample(cfg: SearchConfig, gen: Any = None) -> int:
    if cfg.oversample is not None:
        return int(cfg.oversample)
    if gen is not None and gen.config.get("oversample"):
        return int(gen.config["oversample"])
    return 4


def classifier_options(cfg: SearchConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`~anomalyhunt.analysis.cwola.cwola` / ``kfold_classify`` for ``cfg``: the same
    classifier, folds and seed for every method, so that differences come from the reference alone."""
    return dict(
        classifier=cfg.classifier,
        classifier_config={**cfg.classifier_config, **({"device": cfg.device} if cfg.classifier == "mlp" else {})},
        folds=cfg.folds,
        seed=_sub_seed(cfg.seed, 3),
        progress=cfg.progress,
    )


def template_fidelity(cfg: SearchConfig, sample: InjectedSample, template: np.ndarray) -> float:
    """Template AUC against the true SR background of the test set (0.5: indistinguishable)."""
    from .fidelity import template_auc

    # Always the boosted-tree ensemble, so that template AUCs compare across classifiers; as many template
    # events as true ones (an oversampled template adds cost, not power, to this check).
    truth = sample.x_test[sample.y_test == 0]
    rng = np.random.default_rng(_sub_seed(cfg.seed, 19))
    sub = template[np.sort(rng.permutation(len(template))[: len(truth)])]
    return template_auc(
        sub, truth, folds=cfg.folds, seed=_sub_seed(cfg.seed, 17),
        classifier_config=cfg.classifier_config if cfg.classifier == "hgb" else None,
    )


def control_fidelity(cfg: SearchConfig, sample: InjectedSample) -> float:
    """The template AUC's negative control: data from CWoLa hunting's sidebands (``cwola_sideband_width`` either side
    of the SR) moved unchanged into the SR as the "template", scored against the true SR background exactly as the
    templates are (:func:`template_fidelity`). Their features follow mjj, so a check with power must score it
    clearly above 0.5."""
    from .fidelity import sideband_control

    n_truth = int((sample.y_test == 0).sum())  # as many as template_fidelity's true SR background events
    sb = Regions(cfg.sr, cfg.cwola_sideband_width, cfg.scan).sb_mask(sample.m)
    return template_fidelity(cfg, sample, sideband_control(sample.x, sb, n=n_truth, seed=_sub_seed(cfg.seed, 23)))


def run_search(config: SearchConfig | dict[str, Any], shared: SharedFits | None = None) -> dict[str, Any]:
    """Run one search; returns the results dict (also written to ``config.out`` when set).

    ``shared``: a cache kept by the caller across the SRs of one data set; a generator whose training does not
    depend on the SR (:func:`shares_training`) is then fitted once and only sampled for later SRs (their results
    say ``fit_shared`` with ``seconds_fit`` 0; ``seconds_fit_model`` is the fit time of the model used)."""
    cfg = config if isinstance(config, SearchConfig) else SearchConfig.from_dict(config)
    if resolve_method(cfg.method) is not None:
        make_search_generator(cfg)  # fail on an unknown method or generator option before any work
    start = time.perf_counter()
    regions = Regions(cfg.sr, cfg.sideband_width, cfg.scan)
    sample = make_sample(cfg, regions)
    sr = regions.select_sr(sample.m, "data")
    x_sr = sample.x[sr]
    common = classifier_options(cfg)
    template, ref, equal_size = None, None, None
    if cfg.method == "cwola":
        reference = sideband_reference(sample.x, sample.m, Regions(cfg.sr, cfg.cwola_sideband_width, cfg.scan)).x
        kf = cwola(x_sr, reference, sample.x_test, **common)
    elif cfg.method == "supervised":
        # Signal: the reserved independent sample; background: the SR data's own (truth-labelled) background. The
        # injected SR signal is not trained on: it is scored like events outside the folds.
        truth = sample.is_signal[sr].astype(bool)
        reference = x_sr[~truth]
        kf = kfold_classify(sample.x_reserved, reference, sample.x_test, x_other=x_sr[truth], **common)
        # Back to one score per SR data event, in data order, like the other methods.
        # (fold -1: an injected event, scored by the model of a fold drawn for it)
        scores, folds = np.empty(len(x_sr)), np.full(len(x_sr), -1, np.int64)
        scores[truth], scores[~truth] = kf.other_scores, kf.scores_0
        folds[~truth] = kf.fold_0
        kf = KFoldResult(scores, kf.scores_0, folds, kf.fold_0, kf.test_scores, kf.seconds)
    elif cfg.method in DENSITY_RATIOS:  # ANODE, R-ANODE: a density ratio scores the SR events, no classifier
        model, t_fit = density_ratio_background(cfg, sample.x, sample.m, regions)
        ref = Reference(sample.x[:0], sample.m[:0], None, t_fit, 0.0, t_fit)
        reference = sample.x[regions.select_sb(sample.m, "data")]
        kf = kfold_density_ratio(model, x_sr, sample.m[sr], sample.x_test, sample.m_test, folds=cfg.folds,
                                 seed=_sub_seed(cfg.seed, 13))  # fmt: skip
    else:
        n_ref = _oversample(cfg) * int(sr.sum())
        x_test = sample.x_test
        if cfg.method == "lacathode":  # the classifier works in the flow's latent space; no template to judge
            gen = make_generator("cathode", cfg.generator_config, seed=_sub_seed(cfg.seed, 7), device=cfg.device,
                                 progress=cfg.progress)  # fmt: skip
            ref = latent_reference(gen, sample.x, sample.m, regions, n_ref, _sub_seed(cfg.seed, 11))
            x_sr, x_test = ref.features(x_sr, sample.m[sr]), ref.features(x_test, sample.m_test)
        elif cfg.method == "idealized":
            template = idealized_reference(sample.x_ideal, sample.m_ideal, regions, n_ref, _sub_seed(cfg.seed, 5)).x
        else:
            gen = make_search_generator(cfg)
            simulation = search_simulation(cfg) if cfg.simulation and gen.wants_simulation() else None
            ref = template_reference(gen, sample.x, sample.m, regions, _oversample(cfg, gen) * int(sr.sum()),
                                     _sub_seed(cfg.seed, 11), f"{cfg.method} template", shared,
                                     simulation=simulation)  # fmt: skip
            template = ref.x
        reference = ref.x if template is None else template
        kf = cwola(x_sr, reference, x_test, **common)
        if cfg.equal_size and ref is not None and template is not None and sample.x_ideal is not None:
            n_ideal = len(idealized_reference(sample.x_ideal, sample.m_ideal, regions, n_ref, 0).x)
            pick = np.random.default_rng(_sub_seed(cfg.seed, 19)).permutation(len(template))[:n_ideal]
            kf_eq = cwola(x_sr, template[pick], x_test, **common)
            equal_size = {"n_reference": int(len(pick)),
                          "max_sic": metrics.summarize(sample.y_test, kf_eq.test_scores, cfg.min_background)["max_sic"]}

    res = result_header(cfg, sample, cfg.classifier)
    res["n_data_sr"], res["n_reference"] = int(len(x_sr)), int(len(reference))
    if equal_size is not None:
        res["n_reference_equal_size"], res["max_sic_equal_size"] = equal_size["n_reference"], equal_size["max_sic"]
    res.update(metrics.summarize(sample.y_test, kf.test_scores, cfg.min_background))
    res["warnings"] = small_statistics_warnings(res)
    res["template_auc"] = None
    res["seconds_template_auc"] = None
    if template is not None and cfg.template_auc:
        t0 = time.perf_counter()
        res["template_auc"] = template_fidelity(cfg, sample, template)
        res["seconds_template_auc"] = time.perf_counter() - t0
        if cfg.method == "idealized":
            res["control_template_auc"] = control_fidelity(cfg, sample)
    res["seconds_train"] = kf.seconds
    res["seconds_fit"] = ref.seconds_fit if ref else None
    res["seconds_sample"] = ref.seconds_sample if ref else None
    res["seconds_template"] = ref.seconds_template if ref else None
    res["n_template_dropped"] = ref.n_dropped if ref else None
    res["fit_shared"] = ref.fit_shared if ref else None
    res["seconds_fit_model"] = ref.seconds_fit_model if ref else None
    res["seconds_total"] = time.perf_counter() - start
    res["config"] = cfg.to_dict()
    if cfg.out:
        write_outputs(cfg, res, sample, sr, kf)
    return res


def result_header(cfg: SearchConfig, sample: InjectedSample, classifier: str) -> dict[str, Any]:
    """The keys every ``results.json`` starts with: what ran, on which injection, and the sample's statistics, and
    torch's thread count (multi-threaded sums round differently: a rerun reproduces a result with the same seed
    *and* thread count)."""
    import torch

    res: dict[str, Any] = {"method": cfg.method, "sr": list(cfg.sr), "seed": cfg.seed, "injection": cfg.injection,
                           "classifier": classifier, "torch_threads": torch.get_num_threads()}  # fmt: skip
    res.update(sample.stats())
    res["n_signal"] = res.pop("n_injected")
    # What was read, with the rows and status of each input (a partial one only with allow_partial).
    res["inputs"] = load_tables(cfg.background, cfg.signal, cfg.allow_partial)[0].attrs.get("inputs", [])
    return res


def write_outputs(
    cfg: SearchConfig, res: dict[str, Any], sample: InjectedSample, sr: np.ndarray, kf: KFoldResult
) -> Path:
    """``results.json``, ``config.json``, ``scores.parquet`` (test set and out-of-fold SR data scores) and the
    ROC/SIC plot (``performance.png``/``.pdf``) in ``cfg.out``."""
    from ..runconfig import write_run_config

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_jsonable(res), indent=2))
    write_run_config(out, cfg.to_dict())
    scores = pd.DataFrame(
        {
            "set": np.concatenate([np.full(len(sample.y_test), "test"), np.full(int(sr.sum()), "data")]),
            "score": np.concatenate([kf.test_scores, kf.scores_1]),
            "label": np.concatenate([sample.y_test, sample.is_signal[sr]]).astype(np.int8),
            "mjj": np.concatenate([sample.m_test, sample.m[sr]]),
        }
    )
    scores.to_parquet(out / "scores.parquet", index=False)
    if cfg.plots:
        plot_performance({cfg.method: (sample.y_test, kf.test_scores)}, out / "performance", cfg.min_background)
    return out


def plot_performance(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, min_background: int = 50
) -> list[Path]:
    """ROC and SIC curves (PNG and PDF at ``path``) of ``label -> (y_test, scores)``; points keeping fewer than
    ``min_background`` background test events are not drawn."""
    from .plots import plot_roc_sic

    methods, n_b = {}, None
    for name, (y, s) in curves.items():
        eps_s, eps_b, _ = metrics.roc(y, s)
        methods[name] = (eps_s, eps_b)
        n_b = int((np.asarray(y) == 0).sum()) if n_b is None else min(n_b, int((np.asarray(y) == 0).sum()))
    return plot_roc_sic(methods, path=path, min_eps_b=max(min_background, 1) / max(n_b or 1, 1)).files


def _jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values and non-finite floats as ``None`` (JSON-safe)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# ----------------------------------------------------------------------------------------------------------------
# many searches: Dask
# ----------------------------------------------------------------------------------------------------------------


def _run_group(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task: searches that may share one generator fit (the SRs of one data set), in order, in one process. A run
    that fails is recorded with its reason and the others go on."""
    shared: SharedFits = {}
    out = []
    for c in configs:
        try:
            out.append(_jsonable(run_search(c, shared)))
        except Exception as err:  # one SR or seed must not take the others down; the reason goes into results.json
            out.append(failed_run(SearchConfig.from_dict(c), err))
    return out


def failed_run(cfg: SearchConfig, err: BaseException) -> dict[str, Any]:
    """The results entry of a run that failed: what it was and why, in one line."""
    reason = f"{type(err).__name__}: {err}".splitlines()[0]
    return {"method": cfg.method, "sr": list(cfg.sr), "seed": cfg.seed, "injection": cfg.injection,
            "failed": reason, "config": _jsonable(cfg.to_dict())}  # fmt: skip


def small_statistics_warnings(res: dict[str, Any]) -> list[str]:
    """Warnings for headline metrics that rest on few test events: max SIC on < 50 background or < 20 signal test
    events, AUC on < 100 per class."""
    nb, ns = res.get("n_test_background", 0), res.get("n_test_signal", 0)
    out = []
    if nb < 50 or ns < 20:
        out.append(f"max SIC rests on {nb} background and {ns} signal test events (< 50 / < 20)")
    if nb < 100 or ns < 100:
        out.append(f"AUC rests on {nb} background and {ns} signal test events (< 100 per class)")
    return out


def check_inputs(cfgs: Sequence[SearchConfig]) -> None:
    """Load every run's tables once here: bad input (a missing file, events twice, an empty table, a simulation
    that holds data events or is missing for a method that learns from one) is every run's problem and stops with
    one line before any task; what fails inside a task after this is that run's own (an SR with too few events) and
    is recorded with it."""
    for key in {(c.background, c.signal, c.allow_partial) for c in cfgs}:
        load_tables(*key)
    for c in cfgs:
        wants = resolve_method(c.method) is not None and make_search_generator(c).wants_simulation()
        require_simulation([c.method] if wants else [], c.simulation)
        if wants:
            search_simulation(c)


_SIMULATIONS: dict[tuple, Simulation] = {}


def search_simulation(cfg: SearchConfig) -> Simulation:
    """The background simulation of ``cfg`` (features and mjj in the data's units), read once per process and
    checked against the run's data (:func:`~anomalyhunt.analysis.templates.read_simulation`)."""
    key = (str(cfg.simulation), cfg.features, cfg.background, cfg.signal, cfg.allow_partial)
    if key not in _SIMULATIONS:
        bkg, sig = load_tables(cfg.background, cfg.signal, cfg.allow_partial)
        data_source = ", ".join(cfg.background or ("the default data",)) + "".join(f", {p}" for p in cfg.signal)
        _SIMULATIONS.clear()  # one simulation at a time: they are as large as the data
        _SIMULATIONS[key] = read_simulation(cfg.simulation, cfg.features, pd.concat([bkg, sig], ignore_index=True),
                                            data_source, cfg.allow_partial)[0]  # fmt: skip
    return _SIMULATIONS[key]


def share_key(cfg: SearchConfig) -> str | None:
    """Runs with the same key can share one generator fit: a generator that trains once for all SRs
    (:func:`shares_training`) on the same data, i.e. everything but the SR and the outputs equal. ``None`` when the
    run cannot share; with ``significance`` injection N follows each SR's background, so the data differ per SR."""
    if cfg.n_signal is None or resolve_method(cfg.method) is None:
        return None
    if not shares_training(make_search_generator(cfg)):
        return None
    d = cfg.to_dict()
    for k in ("sr", "out", "plots", "template_auc"):
        d.pop(k)
    return json.dumps(d, sort_keys=True, default=str)


def group_runs(cfgs: Sequence[SearchConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped into tasks: runs with one :func:`share_key` together (in order), others alone."""
    groups: dict[Any, list[int]] = {}
    for i, c in enumerate(cfgs):
        key = share_key(c)
        groups.setdefault(("shared", key) if key is not None else ("alone", i), []).append(i)
    return list(groups.values())


def run_searches(
    configs: Iterable[SearchConfig | dict[str, Any]],
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run searches as Dask tasks (see :func:`run_tasks` for ``scheduler`` and ``workers``) and return their
    results in the order of ``configs``.

    ``resume``: a directory whose task log (:class:`~anomalyhunt.resume.TaskLog`) records each run as it finishes;
    a re-run keeps every run recorded there with exactly its configuration and runs the rest (failed runs again).

    Runs that can share a generator fit (:func:`group_runs`: SIGMA over several SRs of one data set) form one task
    that fits once and samples every SR; every other run is a task of its own. Tasks on a CUDA device ask for the
    worker resource ``GPU``.
    """
    all_cfgs = [c if isinstance(c, SearchConfig) else SearchConfig.from_dict(c) for c in configs]
    if not all_cfgs:
        return []
    log = TaskLog(Path(resume) / "tasks", {"kind": "search runs"}, "search") if resume is not None else None
    done = {}
    for i, c in enumerate(all_cfgs):
        kept = log.done.get(c.name, []) if log is not None else []
        if kept and kept[0].get("config") == json.loads(json.dumps(_jsonable(c.to_dict()))):
            done[i] = kept[0]
    if done:
        print(f"resuming: {len(done)} of {len(all_cfgs)} runs already finished with the same configuration (kept)")
    todo = [i for i in range(len(all_cfgs)) if i not in done]
    cfgs = [all_cfgs[i] for i in todo]
    if not cfgs:
        return [done[i] for i in range(len(all_cfgs))]
    groups = group_runs(cfgs)
    per_sr = [c for c in cfgs if c.n_signal is None and resolve_method(c.method) is not None
              and shares_training(make_search_generator(c))]
    if len({c.sr for c in per_sr}) > 1:
        import warnings

        warnings.warn(
            f"{', '.join(sorted({c.method for c in per_sr}))}: injection by S/sqrt(B) gives every SR its own N and so "
            "its own data: the model is trained again for each SR; give n_signal (--signal-events) to train once",
            stacklevel=2,
        )
    check_inputs(cfgs)

    def record(k: int, out: list[dict[str, Any]]) -> None:  # as each task finishes: a stopped search keeps it
        for i, r in zip(groups[k], out):
            if log is not None and "failed" not in r:
                log.record(cfgs[i].name, [r])

    outs = run_tasks(
        _run_group, [[cfgs[i].to_dict() for i in g] for g in groups], scheduler=scheduler, workers=workers,
        progress=progress, gpu=[any(str(cfgs[i].device).startswith("cuda") for i in g) for g in groups],
        names=[f"search-{cfgs[g[0]].name}" for g in groups], desc="searches", on_result=record,
    )
    results: list[dict[str, Any]] = [{}] * len(all_cfgs)
    for i, r in done.items():
        results[i] = r
    for g, out in zip(groups, outs):
        for i, r in zip(g, out):
            results[todo[i]] = r
    return results
