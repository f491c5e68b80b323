"""Background templates for a signal region from any registered template generator."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from ..models.base import GENERATORS, TemplateGenerator
from .regions import Regions


def make_generator(method: str, config: dict[str, Any] | None = None, **auto: Any) -> TemplateGenerator:
    """A fresh generator by registry name; ``auto`` values (seed, device, progress, sr) fill keys the generator
    knows and the caller's ``config`` does not set. ``config['preset']`` selects a published configuration."""
    if method not in GENERATORS:
        raise ConfigError(f"unknown template generator {method!r}; available: {', '.join(GENERATORS.names())}")
    cls = GENERATORS.get(method)
    cfg = dict(config or {})
    defaults = getattr(cls, "DEFAULTS", {}) or {}
    preset = cfg.pop("preset", None)
    for key, value in auto.items():
        if key not in cfg and key in defaults and (key != "sr" or defaults[key] is None):
            cfg[key] = value
    return cls.from_preset(preset, **cfg) if preset else cls(**cfg)


def shares_training(gen: TemplateGenerator) -> bool:
    """True when one fit serves every SR: trained on all data with no SR masked out (SIGMA, not its v^CR)."""
    return gen.trains_on == "all" and not gen.config.get("mask_sr", False)


#: A background simulation sample: features (n, d) and masses (n,), the data's features and units.
Simulation = tuple[np.ndarray, np.ndarray]


def hand_simulation(gen: TemplateGenerator, simulation: Simulation | None) -> None:
    """Give ``gen`` the simulation sample when it wants one (:meth:`TemplateGenerator.wants_simulation`); a generator
    that wants one and has none stops with one line naming ``set_simulation``. All of the simulation goes over, SR
    masses included (simulation, not data: the SR data rows stay out as before)."""
    if not gen.wants_simulation():
        return
    if simulation is not None:
        gen.set_simulation(*simulation)
    elif not gen.has_simulation():
        raise InputError(gen.method_name(), "needs a background simulation sample: call "
                         "set_simulation(x, m) before fit (anomalyhunt hunt / search: --simulation FILE)")  # fmt: skip


def require_simulation(needing: Sequence[str], simulation: str | None) -> None:
    """One line, before any work, when methods that learn from a background simulation (``needing``) get none."""
    names = list(dict.fromkeys(needing))
    if names and not simulation:
        raise ConfigError(f"{', '.join(names)} {'learns' if len(names) == 1 else 'learn'} from a background "
                          "simulation: give --simulation FILE (a feature table with the data's features and mjj)")


def read_simulation(path: str, features: Sequence[str], data: pd.DataFrame, data_source: str,
                    allow_partial: bool = False) -> tuple[Simulation, pd.DataFrame]:
    """The background simulation at ``path`` (a feature table read like the data: the same feature columns, GeV
    columns and mjj in TeV) and its table. Weighted events, or events the data ``data`` (read from
    ``data_source``) also hold, stop with one line: the data's own events as "simulation" would morph the data onto
    itself."""
    from ..features import check_unique_events, check_unit_weights, load_feature_table
    from .injection import feature_matrix, mjj_tev

    table = load_feature_table(path, allow_partial)
    simulation = (feature_matrix(table, features, path), mjj_tev(table, path))
    check_unit_weights(table, path)
    check_unique_events(pd.concat([data, table], ignore_index=True), f"{data_source} and the simulation {path}")
    return simulation, table


def fit_generator(gen: TemplateGenerator, x: np.ndarray, m: np.ndarray, regions: Regions,
                  w: np.ndarray | None = None, simulation: Simulation | None = None) -> TemplateGenerator:
    """Fit on the sidebands or on all data, as the generator's ``trains_on`` asks; a generator that wants a
    simulation sample gets ``simulation`` first (:func:`hand_simulation`). With event counts ``w``
    (:mod:`~anomalyhunt.analysis.replicas`) each event counts ``w`` times in the loss: the events are split into
    training and validation first (the generator's ``val_fraction`` and ``seed``), then repeated, so that the
    copies of an event never sit on both sides of the split."""
    from .replicas import repeat_rows

    if gen.trains_on == "sidebands":
        keep = regions.select_sb(m, "data")
    elif gen.trains_on == "all":
        keep = np.ones(len(m), bool)
    else:
        raise ConfigError(f"{type(gen).__name__}: trains_on must be 'sidebands' or 'all', got {gen.trains_on!r}")
    hand_simulation(gen, simulation)
    if w is None:
        return gen.fit(x[keep], m[keep])
    from ..models.preprocessing import validation_split

    x, m, w = x[keep], m[keep], w[keep]
    tr, va = validation_split(len(x), float(gen.config.get("val_fraction", 0.2)), int(gen.config.get("seed", 0)))
    return gen.fit(repeat_rows(x[tr], w[tr]), repeat_rows(m[tr], w[tr]), repeat_rows(x[va], w[va]),
                   repeat_rows(m[va], w[va]))


def sample_template(
    gen: TemplateGenerator, x_sr: np.ndarray, m_sr: np.ndarray, sr: tuple[float, float], n: int, seed: int,
    name: str = "template", span: tuple[tuple[float, float], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` template events and their masses, drawn from a KDE of the SR data -- or, with ``span`` = (mass range,
    the data's masses there), of the data's masses over that range around the SR (finite events only; a generator
    that produces more than 1% non-finite events is an error, not silently thinned)."""
    from ..models.cathode import sample_sr_masses

    gen.condition_on_region(x_sr, m_sr)
    bounds, m_kde = (tuple(sr), m_sr) if span is None else (tuple(span[0]), span[1])
    masses = sample_sr_masses(m_kde, int(n), seed=seed, bandwidth=gen.config.get("kde_bandwidth"), bounds=bounds)
    x_t = np.asarray(gen.sample(masses, region=tuple(sr), seed=seed + 1), dtype=np.float64)
    finite = np.isfinite(x_t).all(axis=1)
    if finite.mean() < 0.99:
        raise InputError(name, f"{int((~finite).sum())} of {len(x_t)} sampled events are not finite")
    return x_t[finite], masses[finite]
