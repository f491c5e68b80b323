"""One interface per kind of model.

* :class:`TemplateGenerator` learns p(x | m) from data and samples a background template at given masses.
* :class:`Discriminator` is a (weakly) supervised classifier that scores events.
* :class:`DensityRatioModel` scores signal-region events by a learned density ratio against a background density
  fitted on the sidebands (ANODE, R-ANODE).
All are configured by keyword from a JSON-able ``config``; generators keep everything needed to restore them in a
plain ``state_dict``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError, InputError
from ..registry import Registry

GENERATORS: Registry[type["TemplateGenerator"]] = Registry("template generator", "anomalyhunt.models")
DISCRIMINATORS: Registry[type["Discriminator"]] = Registry("discriminator", "anomalyhunt.models")
DENSITY_RATIOS: Registry[type["DensityRatioModel"]] = Registry("density-ratio model", "anomalyhunt.models")


class Configurable:
    """A model configured by keyword: ``DEFAULTS`` holds every key with its (CPU-sized) default."""

    #: Every configuration key with its default (CPU-sized); empty means "accept anything" (no validation).
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def resolve_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``DEFAULTS`` updated with ``config``; an unknown key is a :class:`ConfigError` (catches typos)."""
        if not cls.DEFAULTS:
            return dict(config)
        unknown = sorted(set(config) - set(cls.DEFAULTS))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown config key(s) {unknown}; known keys: {sorted(cls.DEFAULTS)}"
            )
        return {**cls.DEFAULTS, **config}


#: Settings every trained template generator shares: its preprocessing, the training loop's
#: (:func:`~anomalyhunt.models.nn.train_loop`), the validation split, device, seed and sampling batch.
TRAINING_DEFAULTS: dict[str, Any] = dict(
    preprocessing="logit", margin=0.01, weight_decay=0.0, scheduler="cosine", patience=10, val_fraction=0.2,
    device="auto", seed=0, progress=False, sample_batch=100_000,
)  # fmt: skip
#: Read by the pipeline, not the generator: the template masses come from a KDE of the SR data (``kde_bandwidth``;
#: None: Scott's rule), ``oversample`` x the SR size of them unless ``n_template`` is set.
TEMPLATE_DEFAULTS: dict[str, Any] = dict(kde_bandwidth=None, oversample=4, n_template=None)


class TemplateGenerator(Configurable, abc.ABC):
    """Learns the background density p(x | m) and samples a template.

    ``trains_on`` tells the pipeline which events to fit on: ``"sidebands"`` (CATHODE, DRAPES) or ``"all"``
    (SIGMA, which handles the signal region itself, e.g. by interpolation).
    """

    trains_on: ClassVar[Literal["sidebands", "all"]] = "sidebands"
    #: True for a generator whose fit needs a background simulation sample (FETA, SALAD): the pipeline hands it over
    #: with :meth:`set_simulation` before :meth:`fit`. :meth:`wants_simulation` may say so per configuration.
    needs_simulation: ClassVar[bool] = False
    #: Named configurations, e.g. ``"paper"``: the published full-size (GPU) setup; see :meth:`from_preset`.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **config: Any) -> None:
        self.config = dict(config)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TemplateGenerator":
        """An instance configured with ``PRESETS[name]`` updated by ``overrides``."""
        if name not in cls.PRESETS:
            raise ConfigError(f"{cls.__name__}: unknown preset {name!r}; available: {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def condition_on_region(self, x_sr: np.ndarray, m_sr: np.ndarray) -> None:
        """Hook called by the pipeline with the signal-region data before :meth:`sample`.

        The default ignores it; a generator that seeds its samples with SR events (DRAPES partial diffusion with
        ``seed_source="sr"``) keeps them here.
        """

    def wants_simulation(self) -> bool:
        """Whether this configured generator uses a simulation sample (default: :attr:`needs_simulation`; DRAPES
        with ``seed_source="simulation"`` wants one for its seeds)."""
        return self.needs_simulation

    def has_simulation(self) -> bool:
        """Whether a simulation sample has been handed over (or the generator can find one itself)."""
        return getattr(self, "_simulation", None) is not None

    def set_simulation(self, x: np.ndarray, m: np.ndarray) -> None:
        """A background simulation sample: features ``x`` (n, d) and masses ``m`` (n,) in the same features and
        units as the data given to :meth:`fit`, at any masses (the signal region's included: it is simulation, not
        data). Checked like fit input; called before :meth:`fit`."""
        from .preprocessing import check_events

        self._simulation = check_events(x, m, f"{self.method_name()}.set_simulation")

    @classmethod
    def method_name(cls) -> str:
        """The name the generator is registered (and chosen) by, e.g. ``raw-simulation``."""
        return getattr(cls, "registered_name", cls.__name__.lower())

    def simulation(self, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The simulation sample given to :meth:`set_simulation`; without one, or (``n_features``: the data's) with
        another number of features, an :class:`InputError` naming it."""
        sim = getattr(self, "_simulation", None)
        if sim is None:
            raise InputError(f"{self.method_name()} simulation",
                             "no background simulation sample: call set_simulation(x, m) before fit "
                             "(anomalyhunt hunt: --simulation FILE)")  # fmt: skip
        if n_features is not None and sim[0].shape[1] != n_features:
            raise InputError(f"{self.method_name()} simulation",
                             f"{sim[0].shape[1]} features, the data have {n_features}")
        return sim

    @abc.abstractmethod
    def fit(
        self,
        x: np.ndarray,
        m: np.ndarray,
        x_val: np.ndarray | None = None,
        m_val: np.ndarray | None = None,
    ) -> "TemplateGenerator":
        """Fit on features ``x`` (n, d) conditioned on masses ``m`` (n,)."""

    @abc.abstractmethod
    def sample(self, m: np.ndarray, *, region: tuple[float, float] | None = None, seed: int = 0) -> np.ndarray:
        """One template event per mass in ``m``; ``region`` is the SR the template is for (used by interpolating
        methods)."""

    def latent(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Events ``x`` at masses ``m`` mapped onto the model's standard-normal latent space, where background is
        N(0, I) at every mass the model describes (LaCATHODE). Only generators with an invertible map have it."""
        raise NotImplementedError(f"{type(self).__name__} has no latent space (a normalizing flow has one)")

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything learned (tensors/arrays), restorable by :meth:`load_state_dict`."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save(self, path: str | Path) -> None:
        import torch

        torch.save({"class": type(self).__name__, "config": self.config, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> "TemplateGenerator":
        import torch

        blob = torch.load(path, weights_only=False)
        obj = cls(**blob["config"])
        obj.load_state_dict(blob["state"])
        return obj


class Discriminator(abc.ABC):
    """A classifier: ``fit(x, y, sample_weight)`` then ``score(x)`` (higher = more signal-like)."""

    def __init__(self, **config: Any) -> None:
        self.config = dict(config)

    @abc.abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "Discriminator": ...

    @abc.abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray: ...


class DensityRatioModel(Configurable, abc.ABC):
    """Scores signal-region events by log p_data(x | m) / p_background(x | m), the background density fitted on the
    sidebands only (it never sees an SR row). The SR part is fitted per fold, so that the pipeline scores every SR
    event with a part that never saw it: ``fit_background`` once, then ``fit_sr`` on the training folds, returning
    that fold's SR part, and ``score(part, x, m)``."""

    def __init__(self, **config: Any) -> None:
        self.config = self.resolve_config(config)

    @abc.abstractmethod
    def fit_background(self, x: np.ndarray, m: np.ndarray) -> "DensityRatioModel":
        """Fit the background density on sideband events ``x`` (n, d) at masses ``m``."""

    @abc.abstractmethod
    def fit_sr(self, x: np.ndarray, m: np.ndarray) -> Any:
        """Fit the SR part on SR events (a fold's training part); returns it for :meth:`score`."""

    @abc.abstractmethod
    def score(self, part: Any, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The log density ratio of events ``x`` at masses ``m`` under the SR part ``part`` (higher: more
        signal-like)."""
