"""DijetProcessor under coffea's dask mode (`apply_to_fileset`) against the eager `Runner` on the same files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot

try:
    import dask
    import dask_awkward as dak
except ImportError as err:  # the [dask] and [test] extras (setup.cfg); a plain install lacks it
    if os.environ.get("CI"):
        raise
    pytest.skip(f"coffea's dask mode needs dask-awkward and dask-histogram ({err})", allow_module_level=True)

from coffea import processor
from coffea.dataset_tools import apply_to_fileset
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory, PFNanoAODSchema, PHYSLITESchema

from anomalyhunt.datasets import Dataset
from anomalyhunt.errors import InputError
from anomalyhunt.processors import DijetProcessor
from anomalyhunt.processors.formats import BRANCHES
from anomalyhunt.processors.run import generator_sum_of_weights

TEST_DATA = Path(__file__).resolve().parent / "data"
PFNANO = str(TEST_DATA / "cms-nanoaod" / "pfnano.root")
NANO_DY = str(TEST_DATA / "cms-nanoaod" / "nano_dy.root")
PHYSLITE = str(TEST_DATA / "atlas-physlite" / "PHYSLITE_example.root")
XSEC, LUMI = 6077.22, 59830.0  # pb, pb^-1


def _weighted_nano(path: Path) -> str:
    """PFNano's FatJets and event ids as a NanoAOD file with mixed-sign generator weights and a Runs tree."""
    with uproot.open(PFNANO) as f:
        names = [f"FatJet_{b}" for b in ("pt", "eta", "phi", "mass", "rawFactor", "tau1", "tau2", "tau3")]
        arrays = f["Events"].arrays(names + ["run", "luminosityBlock", "event"])
    gen = np.linspace(-0.5, 2.0, len(arrays)).astype(np.float32)
    with uproot.recreate(path) as out:
        out.mktree("Events", {b: arrays[b].type for b in arrays.fields} | {"genWeight": np.float32},
                   counter_name=lambda _: "nFatJet")  # fmt: skip
        out["Events"].extend({b: arrays[b] for b in arrays.fields} | {"genWeight": gen})
        out["Runs"] = {"genEventSumw": np.array([2.5e9, 1.5e9])}
    return str(path)


def _forbidden_compute(*args, **kwargs):
    raise AssertionError("the processor computed something while building its graph")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same datasets through the eager Runner (PFNano in chunks of 4 events) and through apply_to_fileset (PFNano in
    steps of 4, the two NanoAOD files without steps: uproot's own partitions), each writing Parquet into its own
    OUT."""
    d = tmp_path_factory.mktemp("dask")
    weighted = _weighted_nano(d / "weighted.root")
    sum_w = generator_sum_of_weights(Dataset("mc", "nanoaod", [NANO_DY, weighted], xsec=XSEC, luminosity=LUMI))
    mc_meta = {"format": "nanoaod", "xsec": XSEC, "luminosity": LUMI, "sum_w": sum_w}
    datasets = {  # name: (schema, metadata, files as apply_to_fileset takes them)
        "pf": (PFNanoAODSchema, {"format": "pfnanoaod"},
               {PFNANO: {"object_path": "Events", "steps": [[0, 4], [4, 8], [8, 10]]}}),
        "mc": (NanoAODSchema, mc_meta,
               {NANO_DY: "Events", weighted: "Events"}),  # uproot: steps for all files or for none
    }  # fmt: skip
    eager, lazy, sec = {}, {}, {}
    import time

    for name, (schema, meta, files) in datasets.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=schema,
                                      chunksize=4 if name == "pf" else 20, metadata_cache={})  # fmt: skip
            eager[name] = runner({name: {"files": {f: "Events" for f in files}, "metadata": meta}},
                                 processor_instance=DijetProcessor(d / "eager"))  # fmt: skip
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dask.config.set(scheduler=_forbidden_compute):  # building the graph computes nothing
                lazy[name] = apply_to_fileset(DijetProcessor(d / "dask"), {name: {"files": files, "metadata": meta}},
                                              schemaclass=schema)[name]  # fmt: skip
            t2 = time.perf_counter()
            (computed,) = dask.compute(lazy[name], scheduler="sync")
        sec[name] = {"eager": t1 - t0, "build": t2 - t1, "compute": time.perf_counter() - t2}
        lazy[name] = (lazy[name], computed)
    print("seconds:", sec)
    return d, eager, lazy


def _table(path: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(f) for f in sorted(path.glob("*.parquet"))]
    t = pd.concat(frames, ignore_index=True)
    t["source"] = t["source"].astype(str)
    return t.sort_values(["source", "event"]).reset_index(drop=True)


@pytest.mark.parametrize("name", ["pf", "mc"])
def test_dask_mode_returns_lazy_objects_only(runs, name):
    _, _, lazy = runs
    out, _ = lazy[name]
    leaves = [*out["hists"].values(), *out["features"].values(), *out["parquet"].values()]
    cutflow = out["cutflow"][name]
    leaves += [v for k, v in cutflow.items() if k != "sumw"] + list(cutflow.get("sumw", {}).values())
    assert leaves and all(dask.is_dask_collection(x) for x in leaves)


@pytest.mark.parametrize("name", ["pf", "mc"])
def test_dask_mode_gives_the_eager_features_hists_and_cutflow(runs, name):
    d, eager, lazy = runs
    _, computed = lazy[name]
    # the cut flow: every step, and the sums of weights of the weighted dataset
    ref = eager[name]["cutflow"][name]
    got = computed["cutflow"][name]
    assert {k: int(v) for k, v in got.items() if k != "sumw"} == {k: v for k, v in ref.items() if k != "sumw"}
    assert ("sumw" in got) == ("sumw" in ref) == (name == "mc")
    if name == "mc":
        assert got["sumw"] == pytest.approx(ref["sumw"], rel=1e-12)
        assert ref["input"] == 50 and ref["passed"] == 10  # DY's 40 events have no FatJets
    # the feature table, as written by each (dask: dask_awkward.to_parquet) and as returned
    a = _table(d / "eager" / name / "features")
    b = _table(d / "dask" / name / "features")
    assert list(a.columns) == list(b.columns)
    for column in ("run", "luminosityBlock", "event_number", "event", "source", "gen_weight"):
        assert column in b.columns
    assert ("weight" in b.columns) == (name == "mc")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    mem = computed["features"][name]
    mem = pd.DataFrame({c: mem[c].to_numpy() if c != "source" else mem[c].to_list() for c in mem.fields})
    pd.testing.assert_frame_equal(a, mem.sort_values(["source", "event"]).reset_index(drop=True), check_exact=False,
                                  rtol=1e-12)  # fmt: skip
    assert len(a) == ref["passed"]
    # the histograms (Weight storage: sums of weights and of their squares)
    for h_name, h_eager in eager[name]["hists"].items():
        h_dask = computed["hists"][h_name]
        assert h_dask.storage_type is h_eager.storage_type
        one = {"dataset": name}
        np.testing.assert_allclose(h_dask[one].values(flow=True), h_eager[one].values(flow=True), rtol=1e-12)
        np.testing.assert_allclose(h_dask[one].variances(flow=True), h_eager[one].variances(flow=True), rtol=1e-12)


@pytest.mark.parametrize("name, fmt", [("pf", "pfnanoaod"), ("mc", "nanoaod")])
def test_dask_mode_reads_only_the_format_tables_branches(runs, name, fmt):
    _, _, lazy = runs
    out, _ = lazy[name]
    cutflow = out["cutflow"][name]
    collections = [*out["features"].values(), *out["parquet"].values(), *(v for k, v in cutflow.items() if k != "sumw")]
    for collection in collections:
        columns = dak.necessary_columns(collection)
        read = set().union(*columns.values())
        assert read and read <= set(BRANCHES[fmt]), read - set(BRANCHES[fmt])
    # the reclustering reads the candidates (and PUPPI weights), never CMS's own jets; plain NanoAOD the reverse
    read = set().union(*dak.necessary_columns(out["features"][name]).values())
    if fmt == "pfnanoaod":
        assert {"PFCands_pt", "PFCands_puppiWeight"} <= read and not any(c.startswith("FatJet") for c in read)
    else:
        assert {"FatJet_tau2", "FatJet_rawFactor", "genWeight"} <= read and not any(c.startswith("PFCands") for c in read)


def test_eager_only_formats_and_selected_events_are_refused_in_one_line():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fileset = {"atlas": {"files": {PHYSLITE: "CollectionTree"}, "metadata": {"format": "physlite"}}}
        with pytest.raises(InputError, match=r"dataset atlas: format physlite runs in coffea's eager mode only"):
            apply_to_fileset(DijetProcessor(), fileset, schemaclass=PHYSLITESchema)
        events = NanoEventsFactory.from_root({PFNANO: "Events"}, mode="dask", schemaclass=PFNanoAODSchema,
                                             metadata={"dataset": "pf", "format": "pfnanoaod"}).events()  # fmt: skip
        with pytest.raises(InputError, match="named by its input file and entry"):
            DijetProcessor().process(events[events.run > 0])
        with pytest.raises(InputError, match="clouds and jet images are written in eager mode only"):
            DijetProcessor(write_images=True).process(events)
