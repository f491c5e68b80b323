"""The constituent-level methods' contract: the events they read, what they return, and their registry.

A :class:`ConstituentData` holds events with their feature-table row, constituent clouds and/or jet images, jets
ordered by mass (index 0 the lighter jet, ``j1`` of the feature table); :mod:`anomalyhunt.io.constituents` reads
them from processor output. Every constituent-level method registers a :class:`ConstituentMethod` in
:data:`CONSTITUENT_METHODS`; the search pipeline calls
``CONSTITUENT_METHODS.get(name).run(data, test, regions=..., config=..., seed=...)``.

Only boost-invariant constituent features are the default inputs (angles relative to the jet axis, momenta relative
to the jet), so that no constituent model can learn m_jj from absolute momenta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..registry import Registry

#: Per-constituent features written by the processor (``anomalyhunt.processors.constituents.CLOUD_FEATURES``).
ALL_CLOUD_FEATURES = ("deta", "dphi", "log_pt", "log_e", "log_pt_rel", "log_e_rel", "dr")
#: The default inputs: relative to the jet, hence free of the absolute momentum scale (and of m_jj).
BOOST_INVARIANT_FEATURES = ("deta", "dphi", "log_pt_rel", "log_e_rel", "dr")
#: Per-jet high-level features available for every jet (``{name}_j1`` / ``{name}_j2`` in the feature table, except
#: ``m`` which is ``mj1``/``mj2``).
JET_FEATURES = ("m", "tau21", "tau32", "n_const")


@dataclass
class ConstituentData:
    """Events with their feature-table row, constituent clouds and/or jet images, jets ordered by mass.

    ``table``: feature-table rows (index 0..n-1). ``clouds``: (n, 2, N, F) float32 with the ``cloud_features``;
    ``mask``: (n, 2, N) bool, True for real constituents (padded slots are zero). ``images``: (n, 2, P, P) float32,
    unit pixel sum. Jet index 0 is the lighter jet (j1), 1 the heavier (j2).
    """

    table: pd.DataFrame
    clouds: np.ndarray | None = None
    mask: np.ndarray | None = None
    images: np.ndarray | None = None
    cloud_features: tuple[str, ...] = BOOST_INVARIANT_FEATURES
    source: str = "constituent data"

    def __post_init__(self) -> None:
        self.table = self.table.reset_index(drop=True)
        n = len(self.table)
        for name, arr in (("clouds", self.clouds), ("mask", self.mask), ("images", self.images)):
            if arr is not None and len(arr) != n:
                raise InputError(self.source, f"{name} hold {len(arr)} events but the feature table {n}")
        if (self.clouds is None) != (self.mask is None):
            raise InputError(self.source, "clouds and mask must be given together")
        if self.clouds is not None and self.clouds.shape[-1] != len(self.cloud_features):
            raise InputError(
                self.source, f"clouds have {self.clouds.shape[-1]} features, names given: {self.cloud_features}"
            )

    def __len__(self) -> int:
        return len(self.table)

    @property
    def mjj(self) -> np.ndarray:
        """m_jj in TeV."""
        return self.table["mjj"].to_numpy(np.float64) / 1000.0

    @property
    def label(self) -> np.ndarray:
        """Truth label per event (0 background, 1 signal, -1 unknown)."""
        if "label" not in self.table.columns:
            return np.full(len(self), -1, dtype=np.int64)
        return self.table["label"].to_numpy().astype(np.int64)

    def require(self, *parts: str) -> None:
        """Raise :class:`InputError` when ``"clouds"`` or ``"images"`` are asked for but were not loaded."""
        for part in parts:
            if part not in ("clouds", "images", "features"):
                raise ValueError(f"unknown input part {part!r}")
            if part != "features" and getattr(self, part) is None:
                raise InputError(
                    self.source,
                    f"no {part} loaded: load them with load_constituents(..., {part}=True) from a processor output "
                    f"written with write_{part}=True",
                )

    def feature_index(self, name: str) -> int:
        """Position of constituent feature ``name`` in ``clouds``."""
        if name not in self.cloud_features:
            raise InputError(self.source, f"constituent feature {name!r} not loaded (have {self.cloud_features})")
        return self.cloud_features.index(name)

    def jet_features(self, names: Sequence[str] = JET_FEATURES) -> np.ndarray:
        """(n, 2, len(names)) per-jet high-level features from the table (masses in TeV), jet 0 = lighter."""
        cols = []
        for jet in ("j1", "j2"):
            per_jet = []
            for name in names:
                col = f"m{jet}" if name == "m" else f"{name}_{jet}"
                if col not in self.table.columns:
                    raise InputError(self.source, f"no column {col!r} for jet feature {name!r}")
                v = self.table[col].to_numpy(np.float64)
                per_jet.append(v / 1000.0 if name == "m" else v)
            cols.append(np.stack(per_jet, axis=-1))
        return np.stack(cols, axis=1)

    def subset(self, idx: np.ndarray) -> "ConstituentData":
        """The events at positions (or boolean mask) ``idx``, in that order."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return ConstituentData(
            self.table.iloc[idx], take(self.clouds), take(self.mask), take(self.images), self.cloud_features,
            self.source,
        )

    @classmethod
    def concat(cls, parts: Sequence["ConstituentData"], source: str | None = None) -> "ConstituentData":
        """Events of all ``parts`` in order (they must hold the same inputs and features)."""
        if not parts:
            raise ValueError("concat needs at least one part")
        first = parts[0]
        for p in parts[1:]:
            if p.cloud_features != first.cloud_features or (p.clouds is None) != (first.clouds is None) or (
                p.images is None
            ) != (first.images is None):
                raise InputError(p.source, f"cannot join with {first.source}: different inputs or features")

        def cat(name: str) -> np.ndarray | None:
            arrs = [getattr(p, name) for p in parts]
            return None if arrs[0] is None else np.concatenate(arrs)

        return cls(
            pd.concat([p.table for p in parts], ignore_index=True),
            cat("clouds"),
            cat("mask"),
            cat("images"),
            first.cloud_features,
            source or "+".join(dict.fromkeys(p.source for p in parts)),
        )


# -- method registry ---------------------------------------------------------------------------------------------


@dataclass
class ConstituentTemplate:
    """A template method's SR background template, in the inputs of its own classifier, for truth studies of its
    fidelity: ``events`` the template, ``encode`` turns other events into the same inputs, ``classifier`` makes the
    method's classifier for a seed (so that a fidelity check uses the classifier the method itself uses)."""

    events: np.ndarray
    encode: Callable[["ConstituentData"], np.ndarray]
    classifier: Callable[[int], Any]


@dataclass
class ConstituentResult:
    """What a constituent-level method returns.

    ``test_scores``: one score per test event (higher = more signal-like). ``data_scores``: one per data event
    (out-of-fold where the method trains on labels derived from the data), for the bump hunt; ``info``: numbers worth
    recording (losses, timings, selections), JSON-able.
    """

    test_scores: np.ndarray
    data_scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: Scores of the ``held_out`` events a run was given (never trained on), like the test set's.
    held_out_scores: np.ndarray | None = None
    #: Per-event arrays for plots (e.g. per-jet scores, TNT's selections), keyed ``test_*`` / ``data_*``; not JSON.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: A template method's template (:class:`ConstituentTemplate`), for the search's template-fidelity check.
    template: ConstituentTemplate | None = None


@dataclass(frozen=True)
class ConstituentMethod:
    """A registered constituent-level method: ``run(data, test, *, regions, config, seed, progress, held_out)``.

    It trains on ``data`` and scores ``test`` and ``held_out`` (events it must not train on) alike. ``needs``: which
    inputs it reads (``"clouds"``, ``"images"``, ``"features"``), so the pipeline loads only those;
    ``defaults``/``presets``: its configuration keys (CPU-sized) and named configurations (``"paper"``);
    ``own_folds``: its ``data_scores`` are already out of fold (it runs its own k-fold), so
    :func:`run_out_of_fold` runs it once.
    """

    name: str
    run: Callable[..., ConstituentResult]
    needs: tuple[str, ...]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    #: Inputs needed under a given (resolved) configuration, when that depends on it; ``needs`` otherwise.
    needs_for: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    own_folds: bool = False
    #: Constituent features it reads under a given (resolved) configuration, when not the boost-invariant default.
    cloud_features_for: Callable[[dict[str, Any]], tuple[str, ...]] | None = None

    def inputs(self, config: dict[str, Any] | None = None, preset: str | None = None) -> tuple[str, ...]:
        """The inputs (``"clouds"``, ``"images"``, ``"features"``) this method reads with this configuration."""
        return self.needs if self.needs_for is None else self.needs_for(self.config(config, preset))

    def cloud_features(self, config: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The constituent features to load for this method with this (resolved) configuration."""
        if self.cloud_features_for is None:
            return BOOST_INVARIANT_FEATURES
        return tuple(dict.fromkeys((*BOOST_INVARIANT_FEATURES, *self.cloud_features_for(self.config(config)))))

    def config(self, config: dict[str, Any] | None = None, preset: str | None = None) -> dict[str, Any]:
        """Defaults, updated by ``presets[preset]`` and then ``config``; unknown keys raise ``ConfigError``."""
        from ..errors import ConfigError

        base = dict(self.defaults)
        if preset is not None:
            if preset not in self.presets:
                raise ConfigError(f"{self.name}: unknown preset {preset!r}; available: {sorted(self.presets)}")
            base.update(self.presets[preset])
        unknown = sorted(set(config or {}) - set(base))
        if unknown:
            raise ConfigError(f"{self.name}: unknown config key(s) {unknown}; known keys: {sorted(base)}")
        return {**base, **(config or {})}


#: Constituent-level methods by name (``autoencoder``, ``tnt``, ``clr``, ``constituent-cwola``, ...).
CONSTITUENT_METHODS: Registry[ConstituentMethod] = Registry("constituent method", "anomalyhunt.models")


def register_method(method: ConstituentMethod) -> ConstituentMethod:
    """Add ``method`` to :data:`CONSTITUENT_METHODS` under its name."""
    return CONSTITUENT_METHODS.register(method.name)(method)


def run_out_of_fold(
    method: ConstituentMethod, data: ConstituentData, test: ConstituentData, *, folds: int, seed: int = 0,
    **kwargs: Any,
) -> ConstituentResult:
    """``method`` run so that every data score comes from a run that never saw the event (the k-fold wraps the
    whole method: for Tag N' Train its autoencoder and every iteration): the data are split into ``folds`` parts,
    and the run trained on all others scores each part as ``held_out``. Test scores and the ``test_*`` arrays are
    the mean over the runs; ``info`` is the first run's, with the number of folds. A method with ``own_folds`` runs
    once."""
    if method.own_folds:
        return method.run(data, test, seed=seed, **kwargs)
    if folds < 2 or len(data) < folds:
        raise InputError(method.name, f"out-of-fold scores need >= 2 folds and as many events ({folds}, {len(data)})")
    from .kfold import fold_assignment

    fold = fold_assignment(len(data), folds, np.random.default_rng(np.random.SeedSequence([int(seed), 0x0F0D])))
    data_scores = np.empty(len(data))
    test_scores = np.zeros(len(test))
    arrays: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    for k in range(folds):
        held = fold == k
        r = method.run(data.subset(~held), test, seed=seed, held_out=data.subset(held), **kwargs)
        if r.held_out_scores is None or len(r.held_out_scores) != int(held.sum()):
            raise InputError(method.name, "the method returned no score per held-out event")
        data_scores[held] = r.held_out_scores
        test_scores += np.asarray(r.test_scores, np.float64) / folds
        for key, arr in r.arrays.items():
            if key.startswith("test_") and len(arr) == len(test):
                arrays[key] = arrays.get(key, 0) + np.asarray(arr, np.float64) / folds
        info = info or {**r.info, "folds": folds}
    return ConstituentResult(test_scores, data_scores, info, arrays={**arrays, "data_fold": fold})
