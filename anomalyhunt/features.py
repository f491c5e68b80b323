"""The per-event feature table shared by every reader and processor.

One row per event, jets ordered by mass (j1 is the lighter jet), GeV and radians.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

JET_COLUMNS = ("pt", "eta", "phi", "m", "tau1", "tau2", "tau3", "n_const")

#: Columns of the feature table in their canonical order.
FEATURE_COLUMNS = (
    "event", "mjj", "mj1", "mj2", "delta_mj",
    "tau1_j1", "tau2_j1", "tau3_j1", "tau21_j1", "tau32_j1",
    "tau1_j2", "tau2_j2", "tau3_j2", "tau21_j2", "tau32_j2",
    "pt_j1", "eta_j1", "phi_j1", "pt_j2", "eta_j2", "phi_j2",
    "delta_r", "n_const_j1", "n_const_j2", "label",
)  # fmt: skip

#: The experiment's event identifiers the processor keeps where the input has them (CMS NanoAOD ``run
#: luminosityBlock event``; ATLAS EventInfo ``runNumber lumiBlock eventNumber``), beside ``event``, the entry.
EVENT_ID_COLUMNS = ("run", "luminosityBlock", "event_number")
#: Columns that identify an event or its truth and must never be classifier inputs.
NON_INPUT_COLUMNS = ("event", "label", "mjj", "source", "gen_weight", "weight", *EVENT_ID_COLUMNS)


#: Units of the table's columns, written into every Parquet file the processor writes (schema metadata key
#: ``anomalyhunt.units``); unlisted columns are dimensionless or counts.
UNITS = {
    **{c: "GeV" for c in ("mjj", "mj1", "mj2", "delta_mj", "pt_j1", "pt_j2")},
    **{c: "rad" for c in ("phi_j1", "phi_j2")},
    "delta_r": "sqrt(delta eta^2 + delta phi^2), phi in rad",
    "weight": "events: gen_weight * xsec [pb] * luminosity [pb^-1] / sum_w",
}
#: Units of the normalisation recorded beside the event weights (schema metadata key ``anomalyhunt.normalisation``).
NORMALISATION_UNITS = {"xsec": "pb", "luminosity": "pb^-1", "sum_w": "sum of generator weights of all generated events"}


def write_feature_parquet(
    table: pd.DataFrame, path: str | Path, normalisation: Mapping[str, float] | None = None
) -> None:
    """Write a feature table as Parquet with its units in the schema metadata (``anomalyhunt.units``) and, for
    weighted events, the ``xsec``, ``luminosity`` and ``sum_w`` behind ``weight`` (``anomalyhunt.normalisation``)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {**(arrow.schema.metadata or {})}
    meta[b"anomalyhunt.units"] = json.dumps({c: UNITS[c] for c in table.columns if c in UNITS}).encode()
    if normalisation is not None:
        meta[b"anomalyhunt.normalisation"] = json.dumps({**normalisation, "units": NORMALISATION_UNITS}).encode()
    pq.write_table(arrow.replace_schema_metadata(meta), path)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # A jet with tau_N = 0 (too few constituents) is maximally "N-prong-like": ratio 0, never NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def dijet_table(
    jet_a: Mapping[str, np.ndarray],
    jet_b: Mapping[str, np.ndarray],
    label: np.ndarray | float | None = None,
    event: np.ndarray | None = None,
) -> pd.DataFrame:
    """Build the feature table from the two leading jets, given in any order.

    ``jet_a``/``jet_b`` map ``pt eta phi m tau1 tau2 tau3`` (and optionally ``n_const``) to arrays of equal length.
    The jets are reordered (with their substructure) so that j1 is the lighter jet.
    """
    n = len(np.asarray(jet_a["pt"]))
    a = {k: np.asarray(jet_a.get(k, np.full(n, -1)), dtype=np.float64) for k in JET_COLUMNS}
    b = {k: np.asarray(jet_b.get(k, np.full(n, -1)), dtype=np.float64) for k in JET_COLUMNS}
    swap = a["m"] > b["m"]
    j1 = {k: np.where(swap, b[k], a[k]) for k in JET_COLUMNS}
    j2 = {k: np.where(swap, a[k], b[k]) for k in JET_COLUMNS}

    def p4(j: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        px, py = j["pt"] * np.cos(j["phi"]), j["pt"] * np.sin(j["phi"])
        pz = j["pt"] * np.sinh(j["eta"])
        e = np.sqrt(px**2 + py**2 + pz**2 + j["m"] ** 2)
        return e, px, py, pz

    e1, x1, y1, z1 = p4(j1)
    e2, x2, y2, z2 = p4(j2)
    mjj = np.sqrt(np.maximum((e1 + e2) ** 2 - (x1 + x2) ** 2 - (y1 + y2) ** 2 - (z1 + z2) ** 2, 0.0))
    dphi = (j1["phi"] - j2["phi"] + np.pi) % (2 * np.pi) - np.pi
    cols = {
        "event": np.arange(n, dtype=np.int64) if event is None else np.asarray(event, dtype=np.int64),
        "mjj": mjj,
        "mj1": j1["m"],
        "mj2": j2["m"],
        "delta_mj": j2["m"] - j1["m"],
    }
    for tag, j in (("j1", j1), ("j2", j2)):
        cols[f"tau1_{tag}"], cols[f"tau2_{tag}"], cols[f"tau3_{tag}"] = j["tau1"], j["tau2"], j["tau3"]
        cols[f"tau21_{tag}"] = _ratio(j["tau2"], j["tau1"])
        cols[f"tau32_{tag}"] = _ratio(j["tau3"], j["tau2"])
    for tag, j in (("j1", j1), ("j2", j2)):
        cols[f"pt_{tag}"], cols[f"eta_{tag}"], cols[f"phi_{tag}"] = j["pt"], j["eta"], j["phi"]
    cols["delta_r"] = np.hypot(j1["eta"] - j2["eta"], dphi)
    cols["n_const_j1"] = j1["n_const"].astype(np.int64)
    cols["n_const_j2"] = j2["n_const"].astype(np.int64)
    if label is None:
        cols["label"] = np.full(n, -1, dtype=np.int64)  # -1: data, truth unknown
    else:
        cols["label"] = np.broadcast_to(np.asarray(label), (n,)).astype(np.int64)
    return pd.DataFrame(cols, columns=list(FEATURE_COLUMNS))


def load_feature_table(path: str | Path, allow_partial: bool = False) -> pd.DataFrame:
    """Load a feature table: a processor output directory (``OUT/<dataset>/features/*.parquet``, or a directory of
    such datasets), a single Parquet file, or an LHCO v2 high-level features HDF5 file.

    Processor outputs are checked against their ``manifest.json``: a partial or mixed directory is refused unless
    ``allow_partial`` (then read with a warning). ``table.attrs["inputs"]`` says what was read (path, status, rows).
    Every row carries ``source`` (dataset and input file), which with ``event`` identifies it.
    """
    from .errors import InputError
    from .io.manifest import check_dataset_dir, file_tag

    p = Path(path)
    inputs: list[dict] = []
    if p.is_dir():
        if (p / "features").is_dir():
            dataset_dirs = [p]
        else:
            dataset_dirs = sorted(d for d in p.iterdir() if (d / "features").is_dir())
        files = [f for d in dataset_dirs for f in sorted((d / "features").glob("*.parquet"))]
        if dataset_dirs:
            inputs = [check_dataset_dir(d, allow_partial) for d in dataset_dirs]
        else:  # a plain folder of tables, not processor output
            files = sorted(p.glob("*.parquet"))
        if not files:
            raise InputError(p, "no feature Parquet files found (expected features/*.parquet from `anomalyhunt process`)")
        frames = []
        for f in files:
            df = _with_entries(_read_parquet(f))
            if "source" not in df.columns:
                df["source"] = f"{f.parent.parent.name}/{file_tag(str(f))}"
            frames.append(df)
        table = pd.concat(frames, ignore_index=True)
    elif not p.exists():
        raise InputError(p, "file does not exist")
    elif p.suffix == ".parquet":
        table = _with_entries(_read_parquet(p))
    elif p.suffix in (".h5", ".hdf5", ".hdf"):
        from .io.lhco import read_lhco_features

        table = _with_entries(read_lhco_features(p))
    else:
        raise InputError(p, f"unknown feature-table format {p.suffix!r} (expected a directory, .parquet or .h5)")
    if len(table) == 0:
        raise InputError(p, "feature table holds no events")
    if "mjj" in table.columns:
        bad = ~np.isfinite(table["mjj"].to_numpy(np.float64))
        if bad.any():  # such events would silently fall out of every SR and sideband
            raise InputError(p, f"non-finite mjj in {int(bad.sum())} events")
    if "source" not in table.columns:
        table["source"] = file_tag(str(p))
    table["source"] = table["source"].astype("category")
    table.attrs["inputs"] = inputs or [{"path": str(p), "status": "complete", "rows": len(table)}]
    return table


def _with_entries(df: pd.DataFrame) -> pd.DataFrame:
    """A table without event identifiers gets each row's entry in its file as ``event`` (what duplicate checks key
    on, with the file)."""
    if "event" not in df.columns:
        df["event"] = np.arange(len(df), dtype=np.int64)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    from .errors import InputError

    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several kinds for damaged files; the user needs the file and reason
        raise InputError(path, f"not a readable Parquet file (truncated or corrupt?): {type(err).__name__}") from None


def event_keys(table: pd.DataFrame) -> pd.DataFrame:
    """The columns that identify an event: the experiment's (run, luminosityBlock, event_number) where the table has
    them (or a table's own run, luminosityBlock, event), else the input file (the tag in ``source``, without the
    dataset) and ``event`` (its entry in that file)."""
    if set(EVENT_ID_COLUMNS) <= set(table.columns):
        return table[list(EVENT_ID_COLUMNS)]
    if {"run", "luminosityBlock", "event"} <= set(table.columns):
        return table[["run", "luminosityBlock", "event"]]
    source = table["source"].astype(str).str.rsplit("/", n=1).str[-1] if "source" in table.columns else ""
    return pd.DataFrame({"file": source, "event": table["event"].to_numpy()})


def check_unit_weights(table: pd.DataFrame, where: str) -> None:
    """Refuse weighted events (a ``gen_weight`` column, the generator weight of simulation, or a normalised
    ``weight`` column that is not one positive constant): templates, classifiers and fits count events, so weights
    would be silently ignored."""
    from .errors import InputError

    for column in ("gen_weight", "weight"):
        if column not in table.columns or table.empty:
            continue
        w = table[column].to_numpy(dtype=np.float64)
        missing = int(np.isnan(w).sum())
        if 0 < missing < len(w):  # tables of weighted and unweighted datasets read together
            raise InputError(where, f"{missing} of {len(w)} events have no {column} while the others have one: "
                                    "weighted and unweighted datasets mixed; hunt them separately")  # fmt: skip
        if missing:
            continue
        if (w <= 0).any() or w.max() > w.min() * (1 + 1e-6):
            raise InputError(where, f"events carry generator weights ({column} {w.min():.4g} to {w.max():.4g}"
                                    f"{', some not positive' if (w <= 0).any() else ''}): search and hunt count "
                                    "events and do not use weights; give unweighted events")  # fmt: skip


def check_unique_events(table: pd.DataFrame, where: str) -> None:
    """Refuse a table in which one event appears twice (the same input given twice, or overlapping inputs)."""
    from .errors import InputError

    dup = event_keys(table).duplicated()
    if dup.any():
        first = event_keys(table)[dup].iloc[0].to_dict()
        raise InputError(where, f"{int(dup.sum())} events appear twice (e.g. {first}): the same input given twice?")
