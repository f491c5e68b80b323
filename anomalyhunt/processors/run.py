"""Run the dijet processor over a fileset on coffea's executors (iterative, futures, Dask).

ROOT datasets go through ``coffea.processor.Runner``. LHCO particle HDF5 files go through the same executors as a
chunked source that builds NanoEvents from the HDF5 rows (``NanoEventsFactory.from_preloaded``), so the processor
sees the same ``events.PFCands`` either way. LHCO v2 feature files need no clustering and are converted directly.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import awkward as ak
import numpy as np
import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory, PFNanoAODSchema, PHYSLITESchema

from ..errors import InputError
from ..features import write_feature_parquet
from ..io.lhco import lhco_particle_events, read_lhco_features, read_lhco_particles
from ..io.manifest import begin_dataset, chunk_name, file_identity
from .dijet import DijetProcessor, empty_histograms, fill_histograms, normalisation, source_name

if TYPE_CHECKING:  # datasets.py imports the format list from this package
    from ..datasets import Dataset


def check_unique_files(datasets: dict[str, "Dataset"]) -> None:
    """Refuse a file that appears twice (in one dataset, or in two): its events would be counted twice."""
    seen: dict[str, str] = {}
    for ds in datasets.values():
        for f in ds.files:
            key = file_identity(os.path.realpath(f) if "://" not in f else f)
            if key in seen:
                where = f"dataset {ds.name!r}" + ("" if seen[key] == ds.name else f" and dataset {seen[key]!r}")
                raise InputError(f, f"listed twice ({where}; a path and a glob matching it count twice): its "
                                    "events would be doubled")  # fmt: skip
            seen[key] = ds.name

_REQUIRED = {
    "pfnanoaod": ("nPFCands", "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "PFCands_charge"),
    "nanoaod": ("nFatJet", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_tau1", "FatJet_tau2",
                "FatJet_tau3"),
    "physlite": tuple(f"AnalysisLargeRJetsAuxDyn.{b}" for b in ("pt", "eta", "phi", "m", "Tau1_wta", "Tau2_wta",
                                                                  "Tau3_wta")),
}  # fmt: skip


class _Preloaded(dict):
    """A dict of branches with the ``metadata`` that ``from_preloaded`` expects."""


@dataclass(frozen=True)
class Hdf5Chunk:
    dataset: str
    filename: str
    entrystart: int
    entrystop: int
    metadata: tuple  # sorted (key, value) pairs, hashable for the executors


def hdf5_events(chunk: Hdf5Chunk):
    """NanoEvents (PFNanoAOD-like ``PFCands``) for one chunk of an LHCO particle file. Damaged particles are passed
    on: the processor refuses them, or skips and counts them when asked to."""
    block = read_lhco_particles(chunk.filename, chunk.entrystart, chunk.entrystop, check=False)
    parts = block.to_awkward()
    counts = ak.num(parts)
    n = len(parts)
    src = _Preloaded(
        run=ak.Array(np.ones(n, np.uint32)),
        luminosityBlock=ak.Array(np.ones(n, np.uint32)),
        event=ak.Array(np.arange(chunk.entrystart, chunk.entrystop, dtype=np.uint64)),
        label=ak.Array(block.label),
        nPFCands=ak.Array(ak.to_numpy(counts).astype(np.uint32)),
        PFCands_pt=parts.pt, PFCands_eta=parts.eta, PFCands_phi=parts.phi, PFCands_mass=parts.mass,
        PFCands_charge=ak.values_astype(ak.zeros_like(parts.pt), np.int32),
    )  # fmt: skip
    src.metadata = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, chunk.filename)), "num_rows": n, "object_path": "df"}
    meta = dict(chunk.metadata)
    meta.update(dataset=chunk.dataset, filename=chunk.filename, entrystart=chunk.entrystart, entrystop=chunk.entrystop)
    return NanoEventsFactory.from_preloaded(src, schemaclass=PFNanoAODSchema, metadata=meta).events()


class _Hdf5Task:
    """Picklable work function for the executors."""

    def __init__(self, proc: DijetProcessor) -> None:
        self.proc = proc

    def __call__(self, chunk: Hdf5Chunk) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.proc.process(hdf5_events(chunk))


def open_root(path: str) -> uproot.ReadOnlyDirectory:
    """``uproot.open``, with a missing or unreadable file as one :class:`InputError` line."""
    try:
        return uproot.open(path)
    except FileNotFoundError:
        raise InputError(path, "file does not exist") from None
    except Exception as err:  # uproot raises many kinds for corrupt files; the user needs the file and the reason
        raise InputError(path, f"not a readable ROOT file (truncated or corrupt?): {type(err).__name__}: {err}") from None


#: Run-level sum of generator weights of CMS NanoAOD (``Runs`` tree), by its current and its older name.
SUMW_BRANCHES = ("genEventSumw", "genEventSumw_")
#: Where each ROOT format keeps the per-event generator weight (absent in data).
GEN_WEIGHT_BRANCHES = {"nanoaod": "genWeight", "pfnanoaod": "genWeight", "physlite": "EventInfoAuxDyn.mcEventWeights"}


def generator_sum_of_weights(ds: "Dataset") -> float:
    """The sum of generator weights over all generated events of all of ``ds``'s files: the dataset's own ``sum_w``
    where ``datasets.yaml`` gives it (PHYSLITE: from ATLAS's CutBookkeepers or AMI; skims without a run-level tree),
    else from the run-level tree (CMS NanoAOD ``Runs``, ``genEventSumw``; ``genEventSumw_`` in older NanoAOD),
    summed over its entries and the files.

    Read once per dataset before processing, so that a chunk's weights do not depend on the other chunks; the sum
    over the file's own events would be that of skimmed events. Data, and formats without such a record, are refused.
    """
    first = ds.files[0] if ds.files else f"dataset {ds.name}"
    if ds.format not in GEN_WEIGHT_BRANCHES:
        raise InputError(first, f"dataset {ds.name!r} sets xsec and luminosity, but format {ds.format} carries no "
                                "generator weights to normalise: remove them")  # fmt: skip
    if ds.format == "physlite" and ds.sum_w is None:
        raise InputError(first, f"dataset {ds.name!r} sets xsec and luminosity, but PHYSLITE files here carry no "
                                "run-level sum of generator weights (ATLAS keeps it in the CutBookkeepers metadata, "
                                "which is not read); summing the skimmed events' weights would be wrong: give the "
                                "sum over all generated events as the dataset's sum_w (from the CutBookkeepers or "
                                "AMI), or remove xsec and luminosity")  # fmt: skip
    weight_branch = GEN_WEIGHT_BRANCHES[ds.format]
    total = 0.0
    for path in ds.files:
        with open_root(path) as f:
            if ds.treename in f and weight_branch not in f[ds.treename]:
                raise InputError(path, f"no {weight_branch} branch in tree {ds.treename!r} (data?): dataset "
                                       f"{ds.name!r} sets xsec and luminosity, which normalise simulation only; "
                                       "remove them")  # fmt: skip
            if ds.sum_w is not None:
                continue
            runs = f["Runs"] if "Runs" in f else {}
            branch = next((b for b in SUMW_BRANCHES if b in runs), None)
            if branch is None:
                raise InputError(path, f"no Runs tree with {' or '.join(SUMW_BRANCHES)} (the sum of generator weights "
                                       "of all generated events): xsec and luminosity cannot be normalised; give it "
                                       "as the dataset's sum_w")  # fmt: skip
            total += float(runs[branch].array(library="np").sum())
    if ds.sum_w is not None:
        return float(ds.sum_w)
    if not total > 0:
        raise InputError(first, f"dataset {ds.name!r}: the sum of generator weights of its files is {total}, not "
                                "positive: xsec and luminosity cannot be normalised")  # fmt: skip
    return total


def validate_root(path: str, fmt: str, treename: str) -> int:
    """Open a ROOT file and check tree, branches and that it can be read to its end; returns the entry count."""
    with open_root(path) as f:
        if treename not in f:
            raise InputError(path, f"no tree {treename!r} (found {sorted(k.split(';')[0] for k in f.keys())[:10]})")
        tree = f[treename]
        missing = [b for b in _REQUIRED[fmt] if b not in tree]
        if missing:
            raise InputError(path, f"missing branch(es) {missing} needed for format {fmt}")
        n = int(tree.num_entries)
        if n == 0:
            raise InputError(path, "file holds no events")
        try:
            tree[_REQUIRED[fmt][1]].array(entry_start=n - 1, entry_stop=n, library="np")
        except Exception as err:
            raise InputError(path, f"cannot read to the last event (truncated?): {type(err).__name__}: {err}") from None
    return n


def validate_hdf5(path: str) -> int:
    n = lhco_particle_events(path)
    if n == 0:
        raise InputError(path, "file holds no events")
    read_lhco_particles(path, n - 1, n, check=False)  # truncated files fail here, before any work is scheduled
    return n


def exit_with_parent(parent: int) -> None:
    """In a pool worker: exit when the process ``parent`` that started it is gone (also after a SIGKILL, which gives
    the parent no chance to stop its pool), instead of living on as an orphan. The parent's pid comes from the
    parent: a worker still starting up when the parent died would otherwise take its new parent (init) for it."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def make_executor(kind: str, workers: int = 1, scheduler: str | None = None, status: bool = True):
    """A coffea executor; ``dask`` connects to ``scheduler`` or starts a LocalCluster of ``workers`` processes."""
    if kind == "iterative":
        return processor.IterativeExecutor(status=status)
    if kind == "futures":
        from functools import partial

        from loky import ProcessPoolExecutor

        pool = partial(ProcessPoolExecutor, initializer=exit_with_parent, initargs=(os.getpid(),))
        return processor.FuturesExecutor(workers=workers, status=status, pool=pool)
    if kind == "dask":
        from distributed import Client

        from ..local_cluster import local_cluster

        if scheduler:
            client = Client(scheduler)
        else:
            cluster = local_cluster(workers, quiet=False)
            client = Client(cluster)
        return processor.DaskExecutor(client=client, status=status)
    raise ValueError(f"unknown executor {kind!r}: use iterative, futures or dask")


def resolve_generated(ds: Dataset) -> None:
    """Make (or take from the cache) the sample a ``generated`` dataset describes."""
    if ds.generate and not ds.files:
        from ..generation import cached_sample

        params = dict(ds.generate)
        ds.files = [str(cached_sample(params.pop("process"), int(params.pop("events")), int(params.pop("seed", 1)),
                                      **params))]  # fmt: skip


def run_process(
    datasets: dict[str, Dataset],
    out_dir: str | Path,
    *,
    executor: str = "iterative",
    workers: int = 1,
    scheduler: str | None = None,
    chunksize: int = 10_000,
    status: bool = True,
    **processor_options: Any,
) -> dict[str, Any]:
    """Process every dataset; writes features (and clouds/images if asked), ``hists.pkl`` and ``cutflow.json``.

    Returns ``{"hists": ..., "cutflow": {dataset: {...}}, "files": {dataset: {...}}, "normalisation": {dataset:
    {xsec, luminosity, sum_w}}}``. Every input event is counted: input = passed + failed. Datasets with ``xsec`` and
    ``luminosity`` are weighted to ``xsec * luminosity`` (:func:`generator_sum_of_weights` gives ``sum_w``). Each
    dataset's earlier outputs in ``out_dir`` are replaced, the others kept; ``OUT/<dataset>/manifest.json`` says
    partial until the dataset's outputs are complete.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out, f"output directory is not writable ({err.strerror})") from None
    proc = DijetProcessor(out, **processor_options)
    for ds in datasets.values():
        resolve_generated(ds)
        if ds.missing:
            raise InputError(ds.missing[0], f"dataset {ds.name!r}: file does not exist (no match for this path)")
    check_unique_files(datasets)
    # Before any output is touched: a dataset that cannot be normalised stops the run with its earlier outputs kept.
    sums = {ds.name: generator_sum_of_weights(ds) for ds in datasets.values() if ds.weighted}
    for ds in datasets.values():
        try:
            begin_dataset(out / ds.name, ds.files, proc.settings())
        except OSError as err:
            raise InputError(out / ds.name, f"output directory is not writable ({err.strerror})") from None
    ex = make_executor(executor, workers, scheduler, status)
    try:
        output = _run(datasets, out, proc, ex, chunksize, sums)
    except Exception as err:
        # coffea's executors wrap a chunk's error in their own ("Failed processing file: ..."): the user needs ours.
        cause = _input_error(err)
        if cause is None:
            raise
        raise cause from None
    finally:
        client = getattr(ex, "client", None)
        if client is not None:
            cluster = None if scheduler else client.cluster  # a LocalCluster we started ends with the run
            client.close()
            if cluster is not None:
                cluster.close()
    output["normalisation"] = {ds.name: normalisation(_metadata(ds, sums)) for ds in datasets.values() if ds.weighted}
    (out / "hists.pkl").write_bytes(pickle.dumps(output.get("hists", {})))
    write_root_hists(output.get("hists", {}), list(output.get("cutflow", {})), out / "hists.root")
    (out / "cutflow.json").write_text(json.dumps(output.get("cutflow", {}), indent=2))
    return output


def write_root_hists(hists: dict[str, Any], datasets: Sequence[str], path: Path) -> None:
    """The processor's histograms as ROOT TH1s, one directory per dataset (``<dataset>/mjj``, ``<dataset>/tau21_j1``):
    ROOT has no string axis, so the dataset and jet categories become directories and names, not bins 0..n. A
    dataset with no event passing gets empty histograms (a category axis only grows on entries)."""
    import uproot

    with uproot.recreate(path) as f:
        for name, h in hists.items():
            for dataset in datasets:
                if dataset in h.axes["dataset"]:
                    one = h[{"dataset": dataset}]
                else:
                    one = h[{"dataset": sum}].copy()
                    one.reset()
                if "jet" in one.axes.name:
                    for jet in one.axes["jet"]:
                        f[f"{dataset}/{name}_{jet}"] = one[{"jet": jet}]
                else:
                    f[f"{dataset}/{name}"] = one


def _input_error(err: BaseException | None) -> InputError | None:
    """The :class:`InputError` behind an executor's wrapped exception, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, InputError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _metadata(ds: "Dataset", sums: dict[str, float]) -> dict[str, Any]:
    """A dataset's metadata for the processor, with ``sum_w`` where it is weighted."""
    meta = ds.metadata()
    if ds.name in sums:
        meta["sum_w"] = sums[ds.name]
    return meta


def _run(
    datasets: dict[str, "Dataset"], out: Path, proc: DijetProcessor, ex, chunksize: int, sums: dict[str, float]
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    chunks: list[Hdf5Chunk] = []
    root_sets: dict[str, dict[str, Any]] = {}
    for ds in datasets.values():
        if ds.format == "lhco-features":
            results.append(proc.postprocess(_convert_features(ds, out)))
        elif ds.is_root:
            for f in ds.files:
                validate_root(f, ds.format, ds.treename)
            root_sets[ds.name] = {"files": {f: ds.treename for f in ds.files}, "metadata": _metadata(ds, sums)}
        else:
            meta = tuple(sorted(_metadata(ds, sums).items()))
            for f in ds.files:
                n = validate_hdf5(f)
                chunks += [Hdf5Chunk(ds.name, f, s, min(s + chunksize, n), meta) for s in range(0, n, chunksize)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, spec in root_sets.items():
            schema = {"pfnanoaod": PFNanoAODSchema, "physlite": PHYSLITESchema}.get(spec["metadata"]["format"],
                                                                                   NanoAODSchema)  # fmt: skip
            # a fresh metadata cache: coffea's default one is per process and would reuse an earlier run's metadata
            runner = processor.Runner(executor=ex, schema=schema, chunksize=chunksize, metadata_cache={})
            results.append(runner({name: spec}, processor_instance=proc))  # the Runner calls postprocess itself
        if chunks:
            acc, _ = ex(chunks, _Hdf5Task(proc), None)
            results.append(proc.postprocess(acc))
    return processor.accumulate([r for r in results if r])


def _convert_features(ds: Dataset, out: Path) -> dict[str, Any]:
    """LHCO v2 features -> the feature table Parquet files and histograms, as the processor would write them."""
    hists = empty_histograms()
    record: dict[str, dict[str, int]] = {"inputs": {}, "chunks": {}}
    try:
        (out / ds.name / "features").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out / ds.name, f"output directory is not writable ({err.strerror})") from None
    for f in ds.files:
        table = read_lhco_features(f)
        if ds.label is not None:
            table["label"] = ds.label
        table["source"] = source_name(ds.name, f)
        name = chunk_name(f, 0, len(table))
        try:
            write_feature_parquet(table, out / ds.name / "features" / f"{name}.parquet")
        except OSError as err:
            raise InputError(out / ds.name, f"cannot write outputs ({err.strerror})") from None
        record["inputs"][file_identity(f)] = len(table)
        record["chunks"][name] = len(table)
        hists = processor.accumulate([hists, fill_histograms(ds.name, table)])
    n = sum(record["inputs"].values())
    cutflow = {"input": n, "passed": n, "failed_bad_input": 0, "failed_two_jets": 0, "failed_trigger": 0}
    return {"hists": hists, "cutflow": {ds.name: cutflow}, "files": {ds.name: record}}
