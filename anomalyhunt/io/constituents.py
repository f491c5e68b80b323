"""Constituent-level inputs written by the dijet processor, read as :class:`~anomalyhunt.models.constituents.ConstituentData`.

The processor writes, per dataset and chunk, ``features/<chunk>.parquet`` (the feature table, jets ordered by mass),
``clouds/<chunk>.npz`` (the 50 hardest constituents of each jet, jets in *pT* order) and ``images/<chunk>.npz``
(sparse 40 x 40 jet images, jets in pT order). :func:`load_constituents` joins them chunk by chunk on the event id
and reorders the clouds and images by jet *mass*, so that jet index 0 is the lighter jet (``j1`` of the feature
table) and 1 the heavier (``j2``). :func:`iter_chunks` streams the same thing one chunk at a time for data sets that
do not fit in memory. The absolute ``log_pt``/``log_e`` the processor also stores can be asked for explicitly (e.g.
for a positive control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..models.constituents import ALL_CLOUD_FEATURES, BOOST_INVARIANT_FEATURES, ConstituentData
from .manifest import check_dataset_dir


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
