"""Constituent-level inputs written by the dijet processor, and the registry of constituent-level methods.

The processor writes, per dataset and chunk, ``features/<chunk>.parquet`` (the feature table, jets ordered by mass),
``clouds/<chunk>.npz`` (the 50 hardest constituents of each jet, jets in *pT* order) and ``images/<chunk>.npz``
(sparse 40 x 40 jet images, jets in pT order). :func:`load_constituents` joins them chunk by chunk on the event id
and reorders the clouds and images by jet *mass*, so that everywhere in a :class:`ConstituentData` jet index 0 is
the lighter jet (``j1`` of the feature table) and 1 the heavier (``j2``). :func:`iter_chunks` streams the same
thing one chunk at a time for data sets that do not fit in memory.

Only boost-invariant constituent features are loaded by default (angles relative to the jet axis, momenta relative
to the jet), so that no constituent model can learn m_jj from absolute momenta; the absolute ``log_pt``/``log_e``
the processor also stores can be asked for explicitly (e.g. for a positive control).

Every constituent-level method registers a :class:`ConstituentMethod` in :data:`CONSTITUENT_METHODS`; the search
pipeline calls ``CONSTITUENT_METHODS.get(name).run(data, test, regions=..., config=..., seed=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.manifest import check_dataset_dir
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


def _chunk_files(directory: Path, allow_partial: bool = False) -> list[Path]:
    check_dataset_dir(directory, allow_partial)
    files = sorted((directory / "features").glob("*.parquet"))
    if not files:
        raise InputError(directory, "no features/*.parquet: not a dataset directory written by `anomalyhunt process`")
    return files


def _dataset_dir(out_dir: str | Path, dataset: str | None) -> Path:
    base = Path(out_dir)
    path = base if dataset is None else base / dataset
    if not path.is_dir():
        raise InputError(path, "directory does not exist")
    return path


def _mass_order(table: pd.DataFrame) -> np.ndarray:
    """Per event, the pT-ordered index (0 leading, 1 subleading) of the lighter jet.

    The feature table keeps the jets' pT with the mass ordering, so the lighter jet is the leading one exactly when
    its pT is the larger.
    """
    return np.where(table["pt_j1"].to_numpy() >= table["pt_j2"].to_numpy(), 0, 1)


def _reorder(arr: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(n, 2, ...) in pT order -> mass order (lighter first)."""
    idx = np.arange(len(arr))
    return np.stack([arr[idx, light], arr[idx, 1 - light]], axis=1)


def _check_events(path: Path, event: np.ndarray, table_event: np.ndarray) -> None:
    if len(event) != len(table_event) or not np.array_equal(event, table_event):
        raise InputError(path, f"event ids do not match the feature table ({len(event)} vs {len(table_event)} events)")


def _load_chunk(
    dataset_dir: Path,
    feature_file: Path,
    *,
    clouds: bool,
    images: bool,
    cloud_features: tuple[str, ...],
    n_constituents: int | None,
) -> ConstituentData:
    from ..processors import load_images

    table = pd.read_parquet(feature_file)
    if "source" not in table.columns:
        table["source"] = dataset_dir.name
    light = _mass_order(table)
    name = feature_file.stem
    cl = mk = im = None
    if clouds:
        path = dataset_dir / "clouds" / f"{name}.npz"
        if not path.exists():
            raise InputError(path, "no constituent clouds for this chunk: run the processor with write_clouds=True")
        with np.load(path) as f:
            names = tuple(str(s) for s in f["names"]) if "names" in f.files else ALL_CLOUD_FEATURES
            missing = [c for c in cloud_features if c not in names]
            if missing:
                raise InputError(path, f"constituent features {missing} not stored (have {names})")
            _check_events(path, f["event"], table["event"].to_numpy())
            cols = [names.index(c) for c in cloud_features]
            raw, full_mask = f["features"], f["mask"].astype(bool)
        n_stored = raw.shape[2]
        n_keep = n_stored if n_constituents is None else min(int(n_constituents), n_stored)
        cl = _reorder(raw[:, :, :n_keep][..., cols].astype(np.float32), light)
        mk = _reorder(full_mask[:, :, :n_keep], light)
        # The processor stores the hardest constituents, so each jet's count is min(n_const, N): a cheap check that
        # the reordering matched the feature table's jets.
        want = np.minimum(table[["n_const_j1", "n_const_j2"]].to_numpy(), n_stored)
        have = _reorder(full_mask.sum(axis=-1), light)
        bad = (want != have).any(axis=1)
        if bad.mean() > 0.01:
            raise InputError(path, f"{int(bad.sum())} events whose constituent counts disagree with the feature table")
        if not np.isfinite(cl).all():
            raise InputError(path, "non-finite constituent features")
    if images:
        path = dataset_dir / "images" / f"{name}.npz"
        if not path.exists():
            raise InputError(path, "no jet images for this chunk: run the processor with write_images=True")
        dense, event = load_images(path)
        _check_events(path, event, table["event"].to_numpy())
        im = _reorder(dense, light)
    return ConstituentData(table, cl, mk, im, cloud_features, f"{dataset_dir.name}/{name}")


def iter_chunks(
    out_dir: str | Path,
    dataset: str | None = None,
    *,
    clouds: bool = True,
    images: bool = False,
    cloud_features: Sequence[str] = BOOST_INVARIANT_FEATURES,
    n_constituents: int | None = None,
    allow_partial: bool = False,
) -> Iterator[ConstituentData]:
    """Stream one processor chunk at a time as :class:`ConstituentData` (for scoring data sets bigger than memory).

    ``out_dir`` is the processor output directory and ``dataset`` a dataset name in it (or ``out_dir`` is the
    dataset directory itself when ``dataset`` is None). ``n_constituents`` keeps only the hardest ones. A partial
    or mixed output (see :mod:`anomalyhunt.io.manifest`) is refused unless ``allow_partial``.
    """
    directory = _dataset_dir(out_dir, dataset)
    feats = tuple(cloud_features)
    for f in _chunk_files(directory, allow_partial):
        yield _load_chunk(
            directory, f, clouds=clouds, images=images, cloud_features=feats, n_constituents=n_constituents
        )


def load_constituents(
    out_dir: str | Path,
    dataset: str | Sequence[str] | None = None,
    *,
    clouds: bool = True,
    images: bool = False,
    cloud_features: Sequence[str] = BOOST_INVARIANT_FEATURES,
    n_constituents: int | None = None,
    max_events: int | None = None,
    allow_partial: bool = False,
) -> ConstituentData:
    """All chunks of one or several datasets of a processor output, in memory (first ``max_events`` if given)."""
    names = [dataset] if dataset is None or isinstance(dataset, str) else list(dataset)
    parts: list[ConstituentData] = []
    n = 0
    for name in names:
        for chunk in iter_chunks(
            out_dir, name, clouds=clouds, images=images, cloud_features=cloud_features,
            n_constituents=n_constituents, allow_partial=allow_partial,
        ):  # fmt: skip
            if max_events is not None and n + len(chunk) > max_events:
                chunk = chunk.subset(np.arange(max_events - n))
            parts.append(chunk)
            n += len(chunk)
            if max_events is not None and n >= max_events:
                break
        if max_events is not None and n >= max_events:
            break
    if not parts or n == 0:
        raise InputError(out_dir, f"no events in dataset(s) {names}")
    return ConstituentData.concat(parts, source=str(Path(out_dir) / "+".join(str(x) for x in names if x)))


def iter_batches(n: int, batch_size: int, seed: int | None = None) -> Iterator[np.ndarray]:
    """Index batches over ``n`` events (shuffled with ``seed``; in order when ``seed`` is None)."""
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def injected_constituents(
    background: ConstituentData, signal: ConstituentData, rows: dict[str, np.ndarray], seed: int = 0
) -> tuple[ConstituentData, ConstituentData]:
    """(data, test) from the row bookkeeping of :class:`anomalyhunt.analysis.injection.InjectedSample`.

    ``background``/``signal`` must hold the same events, in the same order, as the tables given to
    ``inject_signal``. The data are ``data_bkg`` + ``data_sig`` shuffled with ``seed`` (truth stays in the table's
    ``label`` column for bookkeeping only); the test set is ``test_bkg`` + ``test_sig``.
    """
    data = ConstituentData.concat([background.subset(rows["data_bkg"]), signal.subset(rows["data_sig"])], "data")
    data = data.subset(np.random.default_rng(np.random.SeedSequence([int(seed), 0xDA7A])).permutation(len(data)))
    test = ConstituentData.concat([background.subset(rows["test_bkg"]), signal.subset(rows["test_sig"])], "test")
    return data, test


# -- method registry ---------------------------------------------------------------------------------------------


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
    #: Per-event arrays for plots (e.g. per-jet scores, TNT's selections), keyed ``test_*`` / ``data_*``; not JSON.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ConstituentMethod:
    """A registered constituent-level method: ``run(data, test, *, regions, config, seed, progress)``.

    ``needs``: which inputs it reads (``"clouds"``, ``"images"``, ``"features"``), so the pipeline loads only those;
    ``defaults``/``presets``: its configuration keys (CPU-sized) and named configurations (``"paper"``).
    """

    name: str
    run: Callable[..., ConstituentResult]
    needs: tuple[str, ...]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    #: Inputs needed under a given (resolved) configuration, when that depends on it; ``needs`` otherwise.
    needs_for: Callable[[dict[str, Any]], tuple[str, ...]] | None = None

    def inputs(self, config: dict[str, Any] | None = None, preset: str | None = None) -> tuple[str, ...]:
        """The inputs (``"clouds"``, ``"images"``, ``"features"``) this method reads with this configuration."""
        return self.needs if self.needs_for is None else self.needs_for(self.config(config, preset))

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


# -- evaluation on truth-labelled events -------------------------------------------------------------------------


def evaluate_scores(y: np.ndarray, score: np.ndarray, min_background: int = 50) -> dict[str, float | None]:
    """The shared metrics (``anomalyhunt.analysis.metrics.summarize``: AUC, 1/eps_B at eps_S = 0.2, SIC, ...)."""
    from .metrics import summarize

    return summarize(np.asarray(y), np.asarray(score, dtype=np.float64), min_background=min_background)


def best_single_feature(
    table: pd.DataFrame, y: np.ndarray, columns: Sequence[str] | None = None
) -> tuple[str, dict[str, float | None]]:
    """The single feature-table column with the largest AUC, either sign (``-name`` when lower is more signal-like).

    A reference for constituent methods; it looks at the truth, so it is an upper bound for a one-cut search, not a
    search itself.
    """
    from .metrics import auc

    cols = columns or ("mj1", "mj2", "tau21_j1", "tau21_j2", "tau32_j1", "tau32_j2", "n_const_j1", "n_const_j2")
    best: tuple[float, str, np.ndarray] | None = None
    for col in cols:
        v = table[col].to_numpy(np.float64)
        for sign, name in ((1.0, col), (-1.0, f"-{col}")):
            a = auc(y, sign * v)
            if best is None or a > best[0]:
                best = (a, name, sign * v)
    assert best is not None
    return best[1], evaluate_scores(y, best[2])


def mjj_sculpting(
    mjj: np.ndarray, selected: np.ndarray, bins: int | np.ndarray = 20
) -> dict[str, float]:
    """Does a selection change the shape of the background m_jj distribution?

    Two-sample Kolmogorov-Smirnov test of the selected against the rejected events (``p_value`` small: the selection
    sculpts m_jj) and the chi2/ndf of the selected fraction per m_jj bin against a constant.
    """
    from scipy.stats import ks_2samp

    mjj = np.asarray(mjj, dtype=np.float64)
    selected = np.asarray(selected, dtype=bool)
    if selected.all() or not selected.any():
        raise ValueError("mjj_sculpting needs both selected and rejected events")
    ks = ks_2samp(mjj[selected], mjj[~selected])
    edges = np.quantile(mjj, np.linspace(0, 1, bins + 1)) if np.isscalar(bins) else np.asarray(bins)
    idx = np.clip(np.digitize(mjj, edges[1:-1]), 0, len(edges) - 2)
    n_all = np.bincount(idx, minlength=len(edges) - 1).astype(float)
    n_sel = np.bincount(idx, weights=selected.astype(float), minlength=len(edges) - 1)
    ok = n_all > 0
    frac = selected.mean()
    var = n_all[ok] * frac * (1 - frac)
    chi2 = float(((n_sel[ok] - frac * n_all[ok]) ** 2 / var).sum())
    ndf = max(int(ok.sum()) - 1, 1)
    return {"ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue), "chi2_ndf": chi2 / ndf}
