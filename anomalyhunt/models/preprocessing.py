"""Invertible feature transformations that travel with a fitted generator.

Density models train best on unbounded, standardised inputs: :class:`MinMaxLogit` maps each feature's fitted range onto
the real line (bounded features such as tau21 get no mass outside their support), :class:`Standardize` makes zero mean
and unit variance, and :class:`Pipeline` chains steps. Every step is fitted on training data, applied with
``transform``, undone with ``inverse_transform``, and saved as a plain dict of arrays (``state_dict``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import InputError

__all__ = [
    "Step", "MinMaxLogit", "Standardize", "Pipeline", "make_pipeline", "check_events", "validation_split",
    "EventScaler",
]


def _as_2d(x: np.ndarray, source: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InputError(source, f"expected a (n, d) array, got shape {x.shape}")
    return x


class Step:
    """One invertible, column-wise transformation."""

    name: ClassVar[str] = ""
    _arrays: ClassVar[tuple[str, ...]] = ()

    def fit(self, x: np.ndarray) -> "Step":
        raise NotImplementedError

    def transform(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def config(self) -> dict[str, Any]:
        return {}

    @property
    def fitted(self) -> bool:
        return all(getattr(self, a, None) is not None for a in self._arrays)

    def _check(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        x = _as_2d(x, type(self).__name__)
        width = len(getattr(self, self._arrays[0]))
        if x.shape[1] != width:
            raise InputError(type(self).__name__, f"fitted on {width} features, got {x.shape[1]}")
        return x

    def _check_fit_input(self, x: np.ndarray) -> np.ndarray:
        x = _as_2d(x, type(self).__name__)
        if len(x) == 0:
            raise InputError(type(self).__name__, "cannot fit on an empty array")
        if not np.all(np.isfinite(x)):
            raise InputError(type(self).__name__, "cannot fit on NaN or infinite values")
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config(), **{a: np.array(getattr(self, a)) for a in self._arrays}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for a in self._arrays:
            setattr(self, a, np.asarray(state[a], dtype=np.float64))


class MinMaxLogit(Step):
    """Scale each feature from its fitted ``[min, max]`` onto ``[margin, 1 - margin]``, then apply the logit.

    Values outside the fitted range (new data, a shifted mass window) are clipped into the open unit interval before
    the logit, so the result is always finite; the inverse maps every real number back inside the fitted range.
    """

    name = "minmax_logit"
    _arrays = ("lo", "hi")

    def __init__(self, margin: float = 0.01, eps: float = 1e-6) -> None:
        if not 0.0 <= margin < 0.5:
            raise ValueError("MinMaxLogit margin must be in [0, 0.5)")
        if not 0.0 < eps < 0.5:
            raise ValueError("MinMaxLogit eps must be in (0, 0.5)")
        self.margin, self.eps = float(margin), float(eps)
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {"margin": self.margin, "eps": self.eps}

    def fit(self, x: np.ndarray) -> "MinMaxLogit":
        x = self._check_fit_input(x)
        self.lo, self.hi = x.min(axis=0), x.max(axis=0)
        return self

    def _scale(self) -> np.ndarray:
        width = self.hi - self.lo
        return np.where(width > 0, width, 1.0)  # a constant column maps to the margin instead of dividing by zero

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        if np.isnan(x).any():
            raise InputError("MinMaxLogit", "NaN in the features to transform")
        u = self.margin + (1.0 - 2.0 * self.margin) * (x - self.lo) / self._scale()
        u = np.clip(u, self.eps, 1.0 - self.eps)
        return np.log(u) - np.log1p(-u)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        z = self._check(z)
        u = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow warnings for large |z|
        return self.lo + (u - self.margin) / (1.0 - 2.0 * self.margin) * self._scale()


class Standardize(Step):
    """Zero mean and unit variance per feature (constant features keep unit scale)."""

    name = "standardize"
    _arrays = ("mean", "std")

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Standardize":
        x = self._check_fit_input(x)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        return (x - self.mean) / self.std

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        z = self._check(z)
        return z * self.std + self.mean


STEPS: dict[str, type[Step]] = {cls.name: cls for cls in (MinMaxLogit, Standardize)}


class Pipeline:
    """A sequence of :class:`Step` applied in order (and undone in reverse order)."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = list(steps)

    def fit(self, x: np.ndarray) -> "Pipeline":
        z = _as_2d(x, "Pipeline")
        for step in self.steps:
            z = step.fit_transform(z)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = _as_2d(x, "Pipeline")
        for step in self.steps:
            z = step.transform(z)
        return z

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        x = _as_2d(z, "Pipeline")
        for step in reversed(self.steps):
            x = step.inverse_transform(x)
        return x

    @property
    def fitted(self) -> bool:
        return all(step.fitted for step in self.steps)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": [step.state_dict() for step in self.steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the steps from ``state`` (the pipeline's own steps are replaced)."""
        steps = []
        for s in state["steps"]:
            if s["name"] not in STEPS:
                raise InputError("preprocessing state", f"unknown step {s['name']!r}; known: {sorted(STEPS)}")
            step = STEPS[s["name"]](**s.get("config", {}))
            step.load_state_dict(s)
            steps.append(step)
        self.steps = steps

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Pipeline":
        out = cls()
        out.load_state_dict(state)
        return out


def make_pipeline(kind: str, margin: float = 0.01) -> Pipeline:
    """Named preprocessing: ``"logit"`` (MinMaxLogit + Standardize), ``"standard"`` (Standardize) or ``"none"``."""
    if kind == "logit":
        return Pipeline([MinMaxLogit(margin=margin), Standardize()])
    if kind == "standard":
        return Pipeline([Standardize()])
    if kind == "none":
        return Pipeline([])
    raise ValueError(f"unknown preprocessing {kind!r}; use 'logit', 'standard' or 'none'")


def check_events(x: np.ndarray, m: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (features, mass) pair: ``x`` (n, d) and ``m`` (n,), same length, non-empty, all finite."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    if x.ndim != 2:
        raise InputError(source, f"features must be a (n, d) array, got shape {x.shape}")
    if len(x) != len(m):
        raise InputError(source, f"{len(x)} feature rows but {len(m)} masses")
    if len(x) == 0:
        raise InputError(source, "no events")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
        raise InputError(source, "NaN or infinite values in the features or masses")
    return x, m


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, validation) index arrays with ``fraction`` of ``n`` in the validation part."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("validation fraction must be in (0, 1)")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class EventScaler:
    """The fitted preprocessing of a conditional generator: a feature :class:`Pipeline` and a standardisation of the
    conditioning mass, saved together."""

    def __init__(self, features: str = "logit", margin: float = 0.01) -> None:
        self.features = make_pipeline(features, margin=margin)
        self.mass = Pipeline([Standardize()])

    def fit(self, x: np.ndarray, m: np.ndarray) -> "EventScaler":
        self.features.fit(x)
        self.mass.fit(np.asarray(m, dtype=np.float64)[:, None])
        return self

    def transform(self, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.features.transform(x), self.transform_mass(m)

    def transform_mass(self, m: np.ndarray) -> np.ndarray:
        return self.mass.transform(np.asarray(m, dtype=np.float64).reshape(-1, 1))

    def inverse_features(self, z: np.ndarray) -> np.ndarray:
        return self.features.inverse_transform(z)

    def state_dict(self) -> dict[str, Any]:
        return {"features": self.features.state_dict(), "mass": self.mass.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.features.load_state_dict(state["features"])
        self.mass.load_state_dict(state["mass"])
