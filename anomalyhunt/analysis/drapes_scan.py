"""DRAPES sigma' scan: how deep the partial diffusion must go for a faithful template.

Per seed one DRAPES model is trained on the sidebands; for each sigma' its partial-diffusion template (seed events
noised to sigma' and denoised at SR masses) is judged twice with the search machinery: the template AUC against the
true SR background (0.5 is perfect) and the max SIC of the CWoLa classifier SR data vs that template. Small sigma'
keeps the seed events nearly unchanged (sideband events carry the wrong mjj dependence: AUC well above 0.5); large
sigma' regenerates them from the model (the DRAPES paper saw the AUC saturate at <= 0.52 near sigma' = 2.24).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..tasks import run_tasks
from . import metrics
from .cwola import cwola
from .regions import Regions
from .search import (
    SearchConfig,
    _jsonable,
    _oversample,
    _sub_seed,
    classifier_options,
    make_sample,
    make_search_generator,
    template_fidelity,
)

#: sigma' values of the default scan (standardised feature units; 80 = sigma_max is full generation).
DEFAULT_SIGMA_PRIMES = (0.1, 0.3, 1.0, 2.24, 5.0, 80.0)


def drapes_scan(config: SearchConfig | dict[str, Any], sigma_primes: Sequence[float] = DEFAULT_SIGMA_PRIMES) -> dict:
    """One seed of the scan: train DRAPES (``config.generator_config``, forced to ``mode="partial"``; its
    ``seed_source`` says where the seed events come from) on the sidebands, then per sigma' the template AUC and the
    SR-data-vs-template max SIC on the held-out test set. Every sigma' uses the same seed events and noise draws.

    Returns JSON-able lists aligned with ``sigma_prime``: ``template_auc``, ``max_sic``, ``auc``, ``sic_at_0.2``,
    ``seconds_sample``, ``seconds_classifier``; plus ``seconds_fit``, the injection stats and the config.
    """
    cfg = config if isinstance(config, SearchConfig) else SearchConfig.from_dict(config)
    if cfg.method != "drapes":
        raise ConfigError(f"drapes scan: method must be 'drapes', got {cfg.method!r}")
    primes = [float(s) for s in sigma_primes]
    if not primes or min(primes) <= 0:
        raise ConfigError(f"drapes scan: sigma' values must be > 0, got {primes}")
    cfg.generator_config = {**cfg.generator_config, "mode": "partial"}
    gen = make_search_generator(cfg)
    if max(primes) > float(gen.config["sigma_max"]):
        raise ConfigError(f"drapes scan: sigma' {max(primes)} above the model's sigma_max {gen.config['sigma_max']}")

    from ..models.cathode import sample_sr_masses
    from ..models.drapes import sigma_prime_scan
    from .templates import fit_generator

    regions = Regions(cfg.sr, cfg.sideband_width, cfg.scan)
    sample = make_sample(cfg, regions)
    sr = regions.select_sr(sample.m, "data")
    x_sr, m_sr = sample.x[sr], sample.m[sr]
    t0 = time.perf_counter()
    fit_generator(gen, sample.x, sample.m, regions)
    seconds_fit = time.perf_counter() - t0
    gen.condition_on_region(x_sr, m_sr)
    n = int(gen.config.get("n_template") or _oversample(cfg, gen) * len(m_sr))
    masses = sample_sr_masses(m_sr, n, seed=_sub_seed(cfg.seed, 11), bandwidth=gen.config.get("kde_bandwidth"),
                              bounds=cfg.sr)

    out: dict[str, Any] = {k: [] for k in ("template_auc", "max_sic", "auc", "sic_at_0.2", "seconds_sample",
                                           "seconds_classifier", "n_template")}
    for s in primes:
        t0 = time.perf_counter()
        x_t = np.asarray(sigma_prime_scan(gen, masses, [s], seed=_sub_seed(cfg.seed, 13))[s], dtype=np.float64)
        finite = np.isfinite(x_t).all(axis=1)
        if finite.mean() < 0.99:
            raise InputError(f"drapes template at sigma'={s:g}", f"{int((~finite).sum())} of {len(x_t)} events "
                                                                 "are not finite")
        x_t = x_t[finite]
        out["seconds_sample"].append(time.perf_counter() - t0)
        kf = cwola(x_sr, x_t, sample.x_test, **classifier_options(cfg))
        summary = metrics.summarize(sample.y_test, kf.test_scores, cfg.min_background)
        out["seconds_classifier"].append(kf.seconds)
        out["max_sic"].append(summary["max_sic"])
        out["auc"].append(summary["auc"])
        out["sic_at_0.2"].append(summary.get("sic_at_0.2"))
        out["template_auc"].append(template_fidelity(cfg, sample, x_t))
        out["n_template"].append(len(x_t))
    stats = sample.stats()
    return _jsonable({
        "sigma_prime": primes, **out, "seconds_fit": seconds_fit, "seed": cfg.seed, "sr": list(cfg.sr),
        "seed_source": gen.config["seed_source"], "injection": cfg.injection, "S": stats["S"], "B": stats["B"],
        "S/sqrt(B)": stats["S/sqrt(B)"], "n_data_sr": int(len(m_sr)), "config": cfg.to_dict(),
    })


def drapes_scans(
    configs: Sequence[SearchConfig | dict[str, Any]],
    sigma_primes: Sequence[float] = DEFAULT_SIGMA_PRIMES,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """:func:`drapes_scan` for several configs (seeds) as Dask tasks (``scheduler`` as in
    :func:`~anomalyhunt.tasks.run_tasks`)."""
    cfgs = [c if isinstance(c, SearchConfig) else SearchConfig.from_dict(c) for c in configs]
    payloads = [(c.to_dict(), [float(s) for s in sigma_primes]) for c in cfgs]
    return run_tasks(_scan_task, payloads, scheduler=scheduler, workers=workers, progress=progress,
                     gpu=[str(c.device).startswith("cuda") for c in cfgs], desc="drapes scans")


def _scan_task(payload: tuple[dict[str, Any], list[float]]) -> dict[str, Any]:
    return drapes_scan(*payload)


def scan_summary(scans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sigma': median and 16-84 % spread over seeds of template AUC and max SIC."""
    rows = []
    for j, s in enumerate(scans[0]["sigma_prime"]):
        rows.append({
            "sigma_prime": s,
            "template_auc": metrics.spread(r["template_auc"][j] for r in scans),
            "max_sic": metrics.spread(r["max_sic"][j] for r in scans),
            "seconds_sample": float(np.median([r["seconds_sample"][j] for r in scans])),
        })
    return rows


def plot_scan(scans: Sequence[dict[str, Any]], path: Any) -> Any:
    """:func:`~anomalyhunt.analysis.plots.plot_drapes_scan` of the scans (median and 16-84 % band over seeds)."""
    from .plots import plot_drapes_scan

    sigma = np.asarray(scans[0]["sigma_prime"], float)
    auc = np.array([[np.nan if v is None else v for v in r["template_auc"]] for r in scans], float)
    sic = np.array([[np.nan if v is None else v for v in r["max_sic"]] for r in scans], float)
    return plot_drapes_scan(sigma, auc, sic, path=path)
