"""The background reference a CWoLa classifier separates SR data from: one choice for the search and the hunt.

* ``cwola``: the data in sidebands next to the SR (CWoLa hunting; no generator, no truth);
* ``idealized``: held-out true background in the SR (truth studies: the ceiling of template methods);
* a template generator: fitted on the sidebands or on all data (its ``trains_on``) and sampled at masses drawn from
  a KDE of the SR data. A generator whose training does not depend on the SR (:func:`shares_training`) is fitted
  once per data set and configuration and only sampled for further SRs (the ``shared`` cache);
* ``lacathode`` (arXiv 2210.14924): CATHODE's flow, trained on the sidebands, maps every event at its own mass onto
  its standard-normal latent space, where the classifier separates SR data from N(0, I) draws. Background is N(0, I)
  at every mass there, so a cut on the score keeps the background's mjj shape (no sculpting), whatever the
  features' correlation with mjj.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from .regions import Regions
from .templates import Simulation, fit_generator, sample_template, shares_training

#: CWoLa hunting: the data in narrow sidebands next to the SR are the reference (no generator, no truth).
CWOLA = "cwola"
#: The reference that needs no generator: held-out true SR background (the ceiling of template methods).
IDEALIZED = "idealized"
#: LaCATHODE: the classifier works in CATHODE's latent space.
LACATHODE = "lacathode"

#: A cache of fitted SR-independent generators: fingerprint -> (generator, seconds its fit took).
SharedFits = dict[str, tuple[Any, float]]


@dataclass
class Reference:
    """Reference events and masses; ``rows``: their positions in the data when they are data themselves (CWoLa
    hunting's sidebands), so that the data's scores there come from models that left them out. ``data_map``: the
    map of events (features, masses) into the space the reference lives in, where the classifier works (LaCATHODE's
    latent space); None: the features themselves."""

    x: np.ndarray
    m: np.ndarray
    rows: np.ndarray | None = None
    seconds_fit: float = 0.0
    seconds_sample: float = 0.0
    seconds_fit_model: float = 0.0  # the fit time of the model used (also when the fit was shared)
    fit_shared: bool = False
    n_dropped: int = 0  # template events dropped as non-finite
    data_map: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    member: np.ndarray | None = None  # which generator of an ensemble made each template event
    w: np.ndarray | None = None  # event counts of reference events that are data (replica weights); None: 1 each

    def features(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Events as the classifier sees them."""
        return x if self.data_map is None else self.data_map(x, m)

    @property
    def seconds_template(self) -> float:
        return self.seconds_fit + self.seconds_sample


def sideband_reference(x: np.ndarray, m: np.ndarray, regions: Regions, w: np.ndarray | None = None) -> Reference:
    """CWoLa hunting: the data events in ``regions``' sidebands (pass narrow ones) are the reference."""
    rows = np.nonzero(regions.select_sb(m, "data"))[0]
    return Reference(x[rows], m[rows], rows, w=None if w is None else w[rows])


def idealized_reference(x_ideal: np.ndarray | None, m_ideal: np.ndarray | None, regions: Regions, n: int,
                        seed: int, span: tuple[float, float] | None = None,
                        w_ideal: np.ndarray | None = None) -> Reference:  # fmt: skip
    """Up to ``n`` held-out true background events in the SR (or in the mass range ``span``), picked at random
    (with event counts ``w_ideal``: the fewest picks whose counts reach ``n``)."""
    if x_ideal is None:
        raise InputError("idealized", "the idealized reference needs held-out true background (a truth study)")
    inside = regions.sr_mask(m_ideal) if span is None else (m_ideal >= span[0]) & (m_ideal < span[1])
    if not inside.any():
        raise InputError("idealized", f"no held-out background in the {regions.name} (raise idealized_fraction)")
    x, m = x_ideal[inside], m_ideal[inside]
    perm = np.random.default_rng(seed).permutation(len(x))
    if w_ideal is None:
        pick = np.sort(perm[:n])
        return Reference(x[pick], m[pick])
    w = w_ideal[inside]
    pick = np.sort(perm[: int(np.searchsorted(np.cumsum(w[perm]), n)) + 1])
    return Reference(x[pick], m[pick], w=w[pick])


def array_digest(*arrays: np.ndarray, text: str = "", size: int = 16) -> str:
    """A blake2b fingerprint of the arrays' bytes (and ``text``)."""
    h = hashlib.blake2b(digest_size=size)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(text.encode())
    return h.hexdigest()


def _fingerprint(gen: Any, x: np.ndarray, m: np.ndarray, w: np.ndarray | None = None,
                 simulation: Simulation | None = None) -> str:
    """What a shared fit depends on: the data themselves (and their counts), the simulation it is given, the
    generator and its config (but not the SR)."""
    sim = tuple(simulation) if simulation is not None and gen.wants_simulation() else ()
    conf = {k: v for k, v in gen.config.items() if k not in ("sr", "progress")}
    return array_digest(*((x, m) if w is None else (x, m, w)), *sim,
                        text=json.dumps([type(gen).__name__, conf], sort_keys=True, default=str))


def template_reference(
    gen: Any, x: np.ndarray, m: np.ndarray, regions: Regions, n: int, seed: int, name: str = "template",
    shared: SharedFits | None = None, span: tuple[float, float] | None = None, w: np.ndarray | None = None,
    simulation: Simulation | None = None,
) -> Reference:
    """Fit the (unfitted) generator ``gen`` -- or take an earlier SR's fit from ``shared`` -- and sample ``n``
    template events (``gen.config['n_template']`` overrides ``n``) at masses from a KDE of the SR data, or of the
    data in the mass range ``span`` (TeV) around the SR (a classifier trained across SR and sidebands). Event
    counts ``w`` weight the fit and the KDE (:mod:`~anomalyhunt.analysis.replicas`). ``simulation``: a background
    simulation sample (features, masses) for a generator that wants one (FETA, SALAD, DRAPES simulation seeds)."""
    from .replicas import repeat_rows

    key = _fingerprint(gen, x, m, w, simulation) if (shared is not None and shares_training(gen)) else None
    reused = key is not None and key in shared
    if reused:
        gen, t_model = shared[key]
        t_fit = 0.0
    else:
        t0 = time.perf_counter()
        fit_generator(gen, x, m, regions, w, simulation)
        t_fit = t_model = time.perf_counter() - t0
        if key is not None:
            shared[key] = (gen, t_fit)
    t0 = time.perf_counter()
    n = int(gen.config.get("n_template") or n)
    sr = regions.select_sr(m, "data")
    ws = None if w is None else w[sr]
    inside = None if span is None else (m >= span[0]) & (m < span[1])
    around = None if span is None else (span, repeat_rows(m[inside], None if w is None else w[inside]))
    x_t, m_t = sample_template(gen, repeat_rows(x[sr], ws), repeat_rows(m[sr], ws), regions.sr, n, seed, name,
                               around)  # fmt: skip
    return Reference(x_t, m_t, None, t_fit, time.perf_counter() - t0, t_model, reused, n - len(x_t))


def ensemble_reference(
    make: Callable[[int], Any], k: int, x: np.ndarray, m: np.ndarray, regions: Regions, n: int, seed: int,
    name: str = "template", shared: SharedFits | None = None, span: tuple[float, float] | None = None,
    w: np.ndarray | None = None, simulation: Simulation | None = None,
) -> Reference:
    """``k`` generators ``make(0) ... make(k - 1)`` (independent trainings: other seeds), each fitted and sampled
    as :func:`template_reference` with ``n / k`` events; the reference is their union, each event marked with the
    generator that made it, so that the spread between trainings can be measured on it (direct estimation)."""
    refs = [template_reference(make(i), x, m, regions, -(-int(n) // k), seed + 101 * i, name, shared, span, w,
                               simulation) for i in range(k)]  # fmt: skip
    return Reference(
        np.concatenate([r.x for r in refs]), np.concatenate([r.m for r in refs]), None,
        sum(r.seconds_fit for r in refs), sum(r.seconds_sample for r in refs), sum(r.seconds_fit_model for r in refs),
        all(r.fit_shared for r in refs), sum(r.n_dropped for r in refs),
        member=np.concatenate([np.full(len(r.x), i) for i, r in enumerate(refs)]),
    )  # fmt: skip


def latent_reference(gen: Any, x: np.ndarray, m: np.ndarray, regions: Regions, n: int, seed: int,
                     span: tuple[float, float] | None = None, w: np.ndarray | None = None) -> Reference:  # fmt: skip
    """LaCATHODE: fit the flow ``gen`` on the sidebands; the reference is ``n`` draws of its N(0, I) base (standing
    for background at masses of the SR data, or of the data in ``span``) and the data enter the classifier through
    :meth:`~anomalyhunt.models.base.TemplateGenerator.latent`."""
    from ..models.cathode import sample_sr_masses
    from .replicas import repeat_rows

    t0 = time.perf_counter()
    fit_generator(gen, x, m, regions, w)
    t_fit = time.perf_counter() - t0
    z = np.random.default_rng(seed).standard_normal((int(n), x.shape[1]))
    lo, hi = regions.sr if span is None else span
    inside = (m >= lo) & (m < hi)
    masses = sample_sr_masses(repeat_rows(m[inside], None if w is None else w[inside]), int(n), seed=seed,
                              bounds=(lo, hi))  # where these draws stand for background
    return Reference(z, masses, None, t_fit, 0.0, t_fit, data_map=gen.latent)
