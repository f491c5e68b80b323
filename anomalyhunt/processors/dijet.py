"""The dijet processor: two leading large-R jets, their substructure, constituent clouds and images."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import pandas as pd
from coffea import processor

from ..errors import InputError
from ..features import EVENT_ID_COLUMNS, JET_COLUMNS, dijet_table, write_feature_parquet
from ..io.manifest import chunk_name, file_identity, file_tag, finish_dataset
from .constituents import CLOUD_FEATURES, jet_images, point_clouds
from .formats import BRANCHES, CONVENTIONS, DASK_FORMATS
from .jets import cluster_leading_jets, nsubjettiness, to_pseudojets

CUTS = ("two_jets", "trigger")
#: The cut-flow steps every event ends in (``input`` = their sum), in the order of their codes in dask mode.
CUT_STEPS = ("passed", "failed_bad_input", "failed_two_jets", "failed_trigger")


def empty_histograms(lazy: bool = False) -> dict[str, hist.Hist]:
    """The histograms the processor fills (dataset category axis; masses in GeV), with ``hist.storage.Weight()``
    (sums of weights and of their squares; counts and variance = count for unweighted events), so that weighted and
    unweighted datasets add up in any coffea accumulation. ``lazy``: ``hist.dask.Hist`` (coffea's dask mode)."""
    if lazy:
        import hist.dask as hist_dask

        make = hist_dask.Hist
    else:
        make = hist.Hist
    ds = hist.axis.StrCategory([], growth=True, name="dataset", label="Dataset")
    storage = hist.storage.Weight()
    return {
        "mjj": make(ds, hist.axis.Regular(140, 0, 7000, name="mjj", label=r"$m_{JJ}$ [GeV]"), storage=storage),
        "mj1": make(ds, hist.axis.Regular(100, 0, 1000, name="mj1", label=r"$m_{J_1}$ [GeV]"), storage=storage),
        "mj2": make(ds, hist.axis.Regular(100, 0, 1000, name="mj2", label=r"$m_{J_2}$ [GeV]"), storage=storage),
        "tau21": make(
            ds,
            hist.axis.StrCategory(["j1", "j2"], name="jet", label="Jet"),
            hist.axis.Regular(50, 0, 1, name="tau21", label=r"$\tau_{21}$"),
            storage=storage,
        ),
    }


def fill_histograms(dataset: str, table, lazy: bool = False) -> dict[str, hist.Hist]:
    """The histograms of one feature table, weighted by its ``weight`` column where it has one: a pandas table, or
    with ``lazy`` a dask-awkward array of table records, filling ``hist.dask.Hist`` objects."""
    if lazy:
        columns, column = table.fields, (lambda c: table[c])
    else:
        columns, column = table.columns, (lambda c: table[c].to_numpy())
    weight = column("weight") if "weight" in columns else None
    hists = empty_histograms(lazy)
    for name in ("mjj", "mj1", "mj2"):
        hists[name].fill(dataset=dataset, **{name: column(name)}, weight=weight)
    for j in ("j1", "j2"):
        hists["tau21"].fill(dataset=dataset, jet=j, tau21=column(f"tau21_{j}"), weight=weight)
    return hists


def assemble_table(
    jet_a: dict[str, np.ndarray],
    jet_b: dict[str, np.ndarray],
    *,
    label,
    event: np.ndarray,
    source: str,
    ids: dict[str, np.ndarray],
    gen_weight: np.ndarray | None,
    weight: np.ndarray | None,
) -> pd.DataFrame:
    """The feature table of the events passing: :func:`~anomalyhunt.features.dijet_table`, then ``source``, the
    experiment's identifiers, ``gen_weight`` and ``weight`` where the input has them (in that order)."""
    table = dijet_table(jet_a, jet_b, label=label, event=event)
    table["source"] = source
    for column, values in ids.items():
        table[column] = values
    if gen_weight is not None:
        table["gen_weight"] = gen_weight
    if weight is not None:
        table["weight"] = weight
    return table


@dataclass
class ChunkResult:
    """What one chunk gives: the feature table of the events passing, the cut-flow masks over all of the chunk's
    events (``input``, ``passed``, ``failed_*``), their weights (None unweighted), clouds and images (or None)."""

    table: pd.DataFrame
    steps: dict[str, np.ndarray]
    weight: np.ndarray | None
    clouds: tuple[np.ndarray, np.ndarray] | None = None
    images: np.ndarray | None = None

    def to_awkward(self) -> ak.Array:
        """One record per input event: ``cut`` (the index of its step in :data:`CUT_STEPS`), ``row`` (a list of
        the event's table row, empty unless it passed) and, weighted, ``weight``: the partition output in dask mode."""
        columns = {}
        for c in self.table.columns:
            values = self.table[c].to_numpy()
            columns[c] = ak.from_numpy(values.astype(str) if values.dtype == object else values)
        rows = ak.zip(columns, depth_limit=1)
        cut = np.zeros(len(self.steps["input"]), np.int8)
        for code, step in enumerate(CUT_STEPS):
            cut[self.steps[step]] = code
        fields = {"cut": ak.from_numpy(cut), "row": ak.unflatten(rows, self.steps["passed"].astype(np.int64))}
        if self.weight is not None:
            fields["weight"] = ak.from_numpy(np.asarray(self.weight, np.float64))
        return ak.zip(fields, depth_limit=1)


def source_name(dataset: str, filename: str | None) -> str:
    """The ``source`` column: dataset and a tag unique per input file (with ``event``, the key of an event)."""
    return f"{dataset}/{file_tag(filename)}" if filename else str(dataset)


def normalisation(meta: dict[str, Any]) -> dict[str, float] | None:
    """A dataset's ``xsec`` (pb), ``luminosity`` (pb^-1) and ``sum_w`` where its events are weighted, else None."""
    if meta.get("luminosity") is None:
        return None
    return {k: meta.get(k) for k in ("xsec", "luminosity", "sum_w")}


def _pad_two(a: ak.Array, scale: float = 1.0) -> np.ndarray:
    """A per-event jet quantity of the two leading jets as an (events, 2) array, a missing jet as 0."""
    return ak.to_numpy(ak.fill_none(ak.pad_none(a, 2, clip=True), 0.0)).astype(np.float64) * scale


class DijetProcessor(processor.ProcessorABC):
    """Clusters (or takes) the two leading large-R jets and computes the feature table.

    Per dataset, ``events.metadata`` may carry ``format`` (see :mod:`.formats`), ``jet_radius``, ``axes`` and
    ``label``; constructor arguments override the format's defaults for every dataset. With ``luminosity`` (pb^-1),
    ``xsec`` (pb) and ``sum_w`` (the sum of generator weights over all generated events of the dataset) it weights
    simulated events by ``gen_weight * xsec * luminosity / sum_w``: a ``weight`` column, histograms with
    ``hist.storage.Weight()`` (every dataset, so that all add up), and the cut flow's sums of weights per step (``sumw``). Events with a non-finite or
    negative-pT particle stop the run, or with ``skip_bad_input`` are skipped and counted (``failed_bad_input``). With ``out_dir`` set, each
    chunk's feature table is written to ``out_dir/<dataset>/features/<chunk>.parquet`` (and clouds/images alongside
    when asked), named uniquely per input file and entry range (:func:`~anomalyhunt.io.manifest.chunk_name`), so a
    retried chunk overwrites its own file and two files never share one. The returned accumulator holds ``hist.Hist`` objects and the
    cut flow per dataset: ``input = passed + sum(failed_*)``.

    In coffea's dask mode (``NanoEventsFactory.from_root(..., mode="dask")``, ``apply_to_fileset``) the same
    per-chunk work is mapped over the partitions and everything returned is lazy (:meth:`_process_dask`); the CMS
    formats of :data:`~.formats.DASK_FORMATS` only, without clouds, images or manifest.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike | None = None,
        *,
        jet_radius: float | None = None,
        axes: str | None = None,
        min_jet_pt: float = 20.0,
        trigger_pt: float | None = None,
        n_constituents: int = 50,
        write_clouds: bool = False,
        write_images: bool = False,
        default_format: str = "pfnanoaod",
        skip_bad_input: bool = False,
    ) -> None:
        self.out_dir = None if out_dir is None else str(out_dir)
        self.jet_radius = jet_radius
        self.axes = axes
        self.min_jet_pt = min_jet_pt
        self.trigger_pt = trigger_pt
        self.n_constituents = n_constituents
        self.write_clouds = write_clouds
        self.write_images = write_images
        self.default_format = default_format
        self.skip_bad_input = skip_bad_input

    # -- helpers ---------------------------------------------------------------------------------------------
    def _settings(self, meta: dict[str, Any]) -> tuple[str, float, str, bool, bool]:
        fmt = meta.get("format") or self.default_format
        if fmt not in CONVENTIONS:
            raise InputError(meta.get("filename", "?"), f"format {fmt!r} cannot be processed from particles")
        conv = CONVENTIONS[fmt]
        radius = float(self.jet_radius or meta.get("jet_radius") or conv.jet_radius)
        axes = self.axes or meta.get("axes") or conv.axes
        puppi = conv.puppi if meta.get("puppi") is None else bool(meta["puppi"])
        return fmt, radius, axes, puppi, conv.recluster

    def _constituents(self, events, fmt: str, puppi: bool, fname: str):
        if "PFCands" not in events.fields:
            raise InputError(fname, f"format {fmt}: no PFCands collection (missing branch)")
        cands = events.PFCands
        weight = None
        if puppi and "puppiWeight" not in cands.fields:
            raise InputError(fname, "no PFCands_puppiWeight: PUPPI weights missing (jet masses would change by tens "
                                    "of %); set `puppi: false` for this dataset to cluster without them")
        if puppi:
            # PUPPI-rejected candidates are not part of any CMS jet: drop them rather than cluster zero vectors.
            cands = cands[cands.puppiWeight > 0]
            weight = cands.puppiWeight
        parts = ak.zip({f: cands[f] for f in ("pt", "eta", "phi", "mass")})
        return to_pseudojets(parts, weight)

    def _bad_events(self, events, fmt: str, meta: dict[str, Any]) -> np.ndarray:
        """Events with a particle of non-finite pt/eta/phi or negative pt (zero pT is the LHCO layout's padding).
        Without ``skip_bad_input`` they stop the run with one line naming file and entries."""
        if "PFCands" not in events.fields:
            raise InputError(meta.get("filename") or "?", f"format {fmt}: no PFCands collection (missing branch)")
        c = events.PFCands
        bad = ak.to_numpy(ak.any(~np.isfinite(c.pt) | (c.pt < 0) | ~np.isfinite(c.eta) | ~np.isfinite(c.phi), axis=1))
        if bad.any() and not self.skip_bad_input:
            first = (int(meta.get("entrystart") or 0) + np.nonzero(bad)[0][:5]).tolist()
            raise InputError(meta.get("filename") or "?", f"non-finite values or negative pT in "
                             f"{int(bad.sum())} events (entries {first}); --skip-bad-input skips and counts them")
        return bad

    def _cms_fatjets(self, events, fname: str) -> dict[str, np.ndarray]:
        """Plain NanoAOD: CMS's own FatJets (raw kinematics and tau_N) as the two leading jets."""
        if "FatJet" not in events.fields:
            raise InputError(fname, "format nanoaod: no FatJet collection (missing branch)")
        fj = events.FatJet
        fj = fj[ak.argsort(fj["pt"], axis=1, ascending=False)][:, :2]

        raw = 1.0 - fj["rawFactor"] if "rawFactor" in fj.fields else 1.0
        # Fields by item, not attribute: on PFNanoAOD, coffea's FatJet.tau2 attribute returned another quantity
        # (values ~1e4) while fj["tau2"] is the branch FatJet_tau2.
        return {
            "pt": _pad_two(fj["pt"] * raw), "eta": _pad_two(fj["eta"]), "phi": _pad_two(fj["phi"]), "m": _pad_two(fj["mass"] * raw),
            "tau1": _pad_two(fj["tau1"]), "tau2": _pad_two(fj["tau2"]), "tau3": _pad_two(fj["tau3"]),
            "n_found": ak.to_numpy(ak.num(fj)),
        }  # fmt: skip

    @staticmethod
    def _event_ids(events, fmt: str) -> dict[str, np.ndarray]:
        """The experiment's event identifiers where the input has them (ROOT formats): CMS ``run luminosityBlock
        event``, ATLAS EventInfo ``runNumber lumiBlock eventNumber``, as ``run luminosityBlock event_number``."""
        if fmt == "physlite":
            info = events.EventInfo if "EventInfo" in events.fields else None
            names = ("runNumber", "lumiBlock", "eventNumber")
            if info is None or not all(n in info.fields for n in names):
                return {}
            arrays = [info[n] for n in names]
        elif fmt in ("nanoaod", "pfnanoaod") and all(n in events.fields for n in ("run", "luminosityBlock", "event")):
            arrays = [events.run, events.luminosityBlock, events.event]
        else:  # LHCO layouts and generated HDF5: no identifiers but the entry
            return {}
        return {c: ak.to_numpy(a).astype(np.int64) for c, a in zip(EVENT_ID_COLUMNS, arrays)}

    @staticmethod
    def _gen_weight(events, fmt: str) -> np.ndarray | None:
        """The generator weight of simulated events where the input has one: CMS ``genWeight``, ATLAS EventInfo
        ``mcEventWeights`` (its first, nominal entry). Data and the LHCO layouts have none."""
        if fmt in ("nanoaod", "pfnanoaod") and "genWeight" in events.fields:
            return ak.to_numpy(events.genWeight).astype(np.float64)
        if fmt == "physlite" and "EventInfo" in events.fields and "mcEventWeights" in events.EventInfo.fields:
            return ak.to_numpy(ak.fill_none(ak.firsts(events.EventInfo.mcEventWeights), 1.0)).astype(np.float64)
        return None

    @staticmethod
    def _event_weight(gen_weight: np.ndarray | None, fmt: str, meta: dict[str, Any]) -> np.ndarray | None:
        """``gen_weight * xsec * luminosity / sum_w`` where the metadata set ``luminosity`` (``sum_w``: the sum of
        generator weights over all generated events of the dataset, read before processing, so that no chunk depends
        on another); None without ``luminosity``."""
        if meta.get("luminosity") is None:
            return None
        fname = meta.get("filename", "?")
        missing = [k for k in ("xsec", "sum_w") if meta.get(k) is None]
        if missing:
            raise InputError(fname, f"dataset metadata sets luminosity but not {missing}: the weights gen_weight * "
                                    "xsec * luminosity / sum_w need all (run_process reads sum_w before processing)")
        if gen_weight is None:
            raise InputError(fname, f"format {fmt}: no generator weight (data?): xsec and luminosity normalise "
                                    "simulation only; remove them from this dataset")  # fmt: skip
        return gen_weight * (float(meta["xsec"]) * float(meta["luminosity"]) / float(meta["sum_w"]))

    def _atlas_large_r_jets(self, events, fname: str) -> dict[str, np.ndarray]:
        """PHYSLITE: ATLAS's own large-R jets (AnalysisLargeRJets, coffea's ``LargeRJets``), the two of highest pT,
        in GeV (stored in MeV), with N-subjettiness on winner-take-all axes."""
        if "LargeRJets" not in events.fields:
            raise InputError(fname, "format physlite: no AnalysisLargeRJets collection (missing branch)")
        lj = events.LargeRJets
        missing = [f for f in ("pt", "eta", "phi", "m", "Tau1_wta", "Tau2_wta", "Tau3_wta") if f not in lj.fields]
        if missing:
            raise InputError(fname, f"format physlite: AnalysisLargeRJets lacks {missing}")
        lj = lj[ak.argsort(lj["pt"], axis=1, ascending=False)][:, :2]

        return {
            "pt": _pad_two(lj["pt"], 1e-3), "eta": _pad_two(lj["eta"]), "phi": _pad_two(lj["phi"]), "m": _pad_two(lj["m"], 1e-3),
            "tau1": _pad_two(lj["Tau1_wta"]), "tau2": _pad_two(lj["Tau2_wta"]), "tau3": _pad_two(lj["Tau3_wta"]),
            "n_found": ak.to_numpy(ak.num(lj)),
        }  # fmt: skip

    # -- the processor ---------------------------------------------------------------------------------------
    def _chunk(self, events, meta: dict[str, Any]) -> "ChunkResult":
        """The per-chunk work, a function of the chunk's events and metadata (``dataset``, ``format``, ...,
        ``filename``, ``entrystart``): the feature table of the events passing, the cut-flow masks over all of the
        chunk's events, their weights, and clouds/images where asked. The eager :meth:`process` calls it on each
        chunk; in coffea's dask mode it is mapped over the partitions (:class:`_DaskPartition`)."""
        dataset = meta.get("dataset", "dataset")
        fname = meta.get("filename") or "?"
        fmt, radius, axes, puppi, recluster = self._settings(meta)
        n_all = len(events)
        # of every input event (bad ones too), for the cut flow's sums of weights
        gen_weight = self._gen_weight(events, fmt)
        weight = self._event_weight(gen_weight, fmt, meta)
        good = ~self._bad_events(events, fmt, meta) if recluster else np.ones(n_all, bool)
        if not good.all():
            events = events[good]
        entries = int(meta.get("entrystart") or 0) + np.nonzero(good)[0]  # each kept event's entry in its file
        n_in = len(events)
        clouds = images = None
        if recluster:
            jets = cluster_leading_jets(self._constituents(events, fmt, puppi, fname), radius, 2, self.min_jet_pt)
            n_found = jets.n_jets_found
            taus = nsubjettiness(jets.constituents, radius, 3, axes=axes).reshape(n_in, 2, 3)
            n_const = ak.to_numpy(ak.num(jets.constituents)).reshape(n_in, 2)
            kin = {"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "m": jets.mass}
            kin.update({f"tau{k + 1}": taus[:, :, k] for k in range(3)})
            kin["n_const"] = n_const
        else:
            kin = self._atlas_large_r_jets(events, fname) if fmt == "physlite" else self._cms_fatjets(events, fname)
            n_found = kin.pop("n_found")

        two_jets = n_found >= 2
        trigger = np.ones(n_in, bool) if self.trigger_pt is None else kin["pt"][:, 0] >= self.trigger_pt
        keep = two_jets & trigger
        label = meta.get("label")
        if "label" in events.fields:
            label = ak.to_numpy(events.label)[keep]
        table = assemble_table(
            {k: v[keep, 0] for k, v in kin.items()},
            {k: v[keep, 1] for k, v in kin.items()},
            label=label,
            event=entries[keep],
            source=source_name(dataset, meta.get("filename")),
            ids={column: values[keep] for column, values in self._event_ids(events, fmt).items()},
            gen_weight=None if gen_weight is None else gen_weight[good][keep],
            weight=None if weight is None else weight[good][keep],
        )

        if recluster and (self.write_clouds or self.write_images) and keep.any():
            sel = np.repeat(keep, 2)
            cj = jets.constituents[sel]
            jpt, jeta, jphi, je = (a[keep].ravel() for a in (jets.pt, jets.eta, jets.phi, jets.energy))
            if self.write_clouds:
                clouds = point_clouds(cj, jpt, jeta, jphi, je, self.n_constituents)
            if self.write_images:
                images = jet_images(cj, jeta, jphi)

        # Each step as a mask over the file's events, so that counts and sums of weights come from the same masks.
        steps = {"input": np.ones(n_all, bool), "passed": np.zeros(n_all, bool), "failed_bad_input": ~good,
                 "failed_two_jets": np.zeros(n_all, bool), "failed_trigger": np.zeros(n_all, bool)}  # fmt: skip
        steps["passed"][good] = keep
        steps["failed_two_jets"][good] = ~two_jets
        steps["failed_trigger"][good] = two_jets & ~trigger
        return ChunkResult(table, steps, weight, clouds, images)

    def process(self, events) -> dict[str, Any]:
        """One chunk's histograms, cut flow and output record (eager: coffea's ``Runner``), or, given a dask-awkward
        collection (coffea's dask mode, ``apply_to_fileset``), the same as lazy dask objects (:meth:`_process_dask`)."""
        if _is_dask_collection(events):
            return self._process_dask(events)
        meta = dict(events.metadata)
        dataset = meta.get("dataset", "dataset")
        chunk = self._chunk(events, meta)
        table, steps, weight = chunk.table, chunk.steps, chunk.weight
        n_all = len(steps["input"])

        record: dict[str, dict[str, int]] = {"inputs": {file_identity(meta.get("filename") or "?"): n_all}}
        if self.out_dir is not None:
            record["chunks"] = {self._write(dataset, meta, table, chunk.clouds, chunk.images): len(table)}

        hists = fill_histograms(dataset, table)
        cutflow: dict[str, Any] = {step: int(mask.sum()) for step, mask in steps.items()}
        if weight is not None:
            cutflow["sumw"] = {step: float(weight[mask].sum()) for step, mask in steps.items()}
        return {"hists": hists, "cutflow": {dataset: cutflow}, "files": {dataset: record}}

    def _process_dask(self, events) -> dict[str, Any]:
        """coffea's dask mode: the per-chunk work (:meth:`_chunk`) mapped over the partitions with
        ``dask_awkward.map_partitions``; returns lazy objects only (nothing is computed here): ``hists`` (dask
        histograms), ``cutflow`` (dask scalars; ``sumw`` for weighted datasets), ``features`` (the feature table, a
        dask-awkward array of records) and, with ``out_dir``, ``parquet`` (``dask_awkward.to_parquet`` of the table
        into ``out_dir/<dataset>/features``, written when computed). No manifest, no clouds or images."""
        import dask_awkward as dak

        meta = dict(events.metadata or {})
        dataset = meta.get("dataset", "dataset")
        fmt, _radius, _axes, puppi, _recluster = self._settings(meta)
        where = f"dataset {dataset}"
        if fmt not in DASK_FORMATS:
            raise InputError(where, f"format {fmt} runs in coffea's eager mode only (processor.Runner, `anomalyhunt "
                                    f"process`), not in dask mode; dask mode takes {', '.join(DASK_FORMATS)}")  # fmt: skip
        if self.write_clouds or self.write_images:
            raise InputError(where, "constituent clouds and jet images are written in eager mode only (processor."
                                    "Runner, `anomalyhunt process`), not in dask mode")  # fmt: skip
        # The checks the eager path makes per chunk, made here on the events' form, before anything is computed.
        fields = events.fields
        collection = "PFCands" if fmt == "pfnanoaod" else "FatJet"
        if collection not in fields:
            raise InputError(where, f"format {fmt}: no {collection} collection (missing branch)")
        if fmt == "pfnanoaod" and puppi and "puppiWeight" not in events[collection].fields:
            raise InputError(where, "no PFCands_puppiWeight: PUPPI weights missing; set `puppi: false` for this "
                                    "dataset to cluster without them")  # fmt: skip
        has_gen = "genWeight" in fields
        weighted = self._event_weight(np.zeros(0) if has_gen else None, fmt, {"filename": where, **meta}) is not None

        sources = partition_sources(events, where)
        out = dak.map_partitions(_DaskPartition(self, meta), events, sources, label="anomalyhunt-dijet")
        table = dak.flatten(out.row, axis=1)
        hists = fill_histograms(dataset, table, lazy=True)
        cutflow: dict[str, Any] = {"input": dak.num(out, axis=0)}
        cutflow.update({step: dak.sum(out.cut == code) for code, step in enumerate(CUT_STEPS)})
        if weighted:
            cutflow["sumw"] = {"input": dak.sum(out.weight)}
            cutflow["sumw"].update({step: dak.sum(out.weight[out.cut == code]) for code, step in enumerate(CUT_STEPS)})
        result: dict[str, Any] = {"hists": hists, "cutflow": {dataset: cutflow}, "features": {dataset: table}}
        if self.out_dir is not None:
            path = Path(self.out_dir) / dataset / "features"
            result["parquet"] = {dataset: dak.to_parquet(table, str(path), compute=False)}
        return result

    def settings(self) -> dict[str, Any]:
        """The constructor's settings (recorded in every manifest)."""
        return {k: v for k, v in vars(self).items() if k != "out_dir"}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """With ``out_dir``: write each dataset's manifest (complete only if rows on disk == cut flow)."""
        if self.out_dir is not None:
            for dataset, record in accumulator.get("files", {}).items():
                cutflow = accumulator.get("cutflow", {}).get(dataset, {})
                finish_dataset(Path(self.out_dir) / dataset, record, cutflow, self.settings())
        return accumulator

    # -- output ----------------------------------------------------------------------------------------------
    def _write(self, dataset: str, meta: dict[str, Any], table, clouds, images) -> str:
        """Write one chunk's outputs; returns the chunk's name."""
        base = Path(self.out_dir) / dataset
        if meta.get("filename") is None or meta.get("entrystart") is None or meta.get("entrystop") is None:
            raise InputError(
                f"dataset {dataset}", "events.metadata lacks filename/entrystart/entrystop (coffea's Runner sets "
                "them): without them output chunks cannot be named uniquely",
            )
        name = chunk_name(meta["filename"], meta["entrystart"], meta["entrystop"])
        try:
            (base / "features").mkdir(parents=True, exist_ok=True)
            write_feature_parquet(table, base / "features" / f"{name}.parquet", normalisation(meta))
            if clouds is not None:
                (base / "clouds").mkdir(exist_ok=True)
                feats, mask = clouds
                n_ev = len(table)
                np.savez(
                    base / "clouds" / f"{name}.npz",
                    features=feats.reshape(n_ev, 2, *feats.shape[1:]).astype(np.float16),
                    mask=mask.reshape(n_ev, 2, -1),
                    event=table["event"].to_numpy(),
                    names=np.array(CLOUD_FEATURES),
                )
            if images is not None:
                (base / "images").mkdir(exist_ok=True)
                save_sparse_images(base / "images" / f"{name}.npz", images, table["event"].to_numpy())
        except OSError as err:
            raise InputError(
                self.out_dir, f"cannot write outputs ({err.strerror}); on a cluster OUT must be shared by all workers"
            ) from None
        return name


# -- coffea's dask mode -------------------------------------------------------------------------------------------
def _is_dask_collection(events) -> bool:
    return type(events).__module__.startswith("dask_awkward")


class _PartitionSource:
    """For each partition of coffea's events, the input file and entry range it reads (one record): what the eager
    ``Runner`` puts into ``events.metadata`` (``filename``, ``entrystart``, ``entrystop``), which in dask mode only
    the input layer knows. Takes uproot's per-partition argument ``(file, tree, start, stop, True)``, or ``(file,
    tree, step, n_steps, False)`` where the files were given without steps (then the file's entries are read)."""

    def __call__(self, arg) -> ak.Array:
        file_path, object_path, a, b, is_chunk = arg
        if is_chunk:
            start, stop = int(a), int(b)
        else:  # uproot's own split of a file into n_steps (uproot._dask._UprootOpenAndRead)
            import uproot

            with uproot.open(file_path) as f:
                n = int(f[object_path].num_entries)
            per_step = math.ceil(n / b)
            start, stop = min(a * per_step, n), min((a + 1) * per_step, n)
        return ak.Array([{"file": str(file_path), "start": start, "stop": stop}])


def partition_sources(events, where: str):
    """A dask-awkward array partitioned like ``events``, one record per partition: file, entry start and stop."""
    import dask_awkward as dak
    from dask_awkward.layers import AwkwardInputLayer

    layer = events.dask.layers.get(events.name)
    inputs = list(getattr(layer, "inputs", None) or [])
    if not (isinstance(layer, AwkwardInputLayer) and len(inputs) == events.npartitions
            and all(isinstance(i, tuple) and len(i) == 5 for i in inputs)):  # fmt: skip
        raise InputError(where, "dask mode takes the events as NanoEventsFactory.from_root(..., mode='dask') or "
                                "coffea.dataset_tools.apply_to_fileset give them (not selected or with a read-error "
                                "report): each event is named by its input file and entry")  # fmt: skip
    meta = ak.Array(ak.Array([{"file": "", "start": 0, "stop": 0}]).layout.to_typetracer(forget_length=True))
    return dak.from_map(_PartitionSource(), inputs, label="anomalyhunt-sources", meta=meta)


def touch_branches(events, fmt: str, puppi: bool) -> None:
    """Mark as read (on coffea's typetracer events) the branches of :data:`~.formats.BRANCHES` the eager path reads
    from these events: so dask-awkward's column projection reads exactly those."""
    fields = events.fields
    ids = ("run", "luminosityBlock", "event")
    for branch in BRANCHES[fmt]:
        if branch.startswith("n") and branch[1:] in fields:  # counts, read with their collection
            continue
        if branch in ids and not all(i in fields for i in ids):  # identifiers are kept only all together
            continue
        if "_" in branch:
            collection, field = branch.split("_", 1)
            if field == "puppiWeight" and not puppi:
                continue
            if collection in fields and field in events[collection].fields:
                ak.typetracer.touch_data(events[collection][field])
        elif branch in fields:
            ak.typetracer.touch_data(events[branch])
    if "label" in fields:
        ak.typetracer.touch_data(events["label"])


class _DaskPartition:
    """The function dask-awkward maps over the partitions: one partition of events (and its file and entry range)
    -> :meth:`ChunkResult.to_awkward` of :meth:`DijetProcessor._chunk`. On dask-awkward's typetracers (graph building,
    column optimisation) it marks the branches it reads and returns the output's type without computing."""

    def __init__(self, proc: "DijetProcessor", meta: dict[str, Any]) -> None:
        self.proc = proc
        self.meta = meta

    def _empty(self, events) -> ChunkResult:
        fields = events.fields
        zeros = {k: np.zeros(0) for k in JET_COLUMNS}
        has_ids = all(i in fields for i in ("run", "luminosityBlock", "event"))
        has_gen = "genWeight" in fields
        weighted = self.meta.get("luminosity") is not None
        table = assemble_table(
            zeros, zeros, label=None, event=np.zeros(0, np.int64), source="",
            ids={c: np.zeros(0, np.int64) for c in EVENT_ID_COLUMNS} if has_ids else {},
            gen_weight=np.zeros(0) if has_gen else None, weight=np.zeros(0) if weighted else None,
        )  # fmt: skip
        steps = {step: np.zeros(0, bool) for step in ("input", *CUT_STEPS)}
        return ChunkResult(table, steps, np.zeros(0) if weighted else None)

    def __call__(self, events, sources) -> ak.Array:
        if ak.backend(events) == "typetracer":
            fmt, _, _, puppi, _ = self.proc._settings(self.meta)
            touch_branches(events, fmt, puppi)
            out = self._empty(events).to_awkward()
            return ak.Array(out.layout.to_typetracer(forget_length=True))
        (source,) = sources.to_list()
        meta = dict(self.meta, filename=source["file"], entrystart=source["start"], entrystop=source["stop"])
        return self.proc._chunk(events, meta).to_awkward()


def save_sparse_images(path: Path, images: np.ndarray, event: np.ndarray) -> None:
    """Store (jets, n, n) images sparsely: pixel index (uint16), value (float16), per-jet offsets."""
    n_jets, n_pix = images.shape[0], images.shape[1]
    flat = images.reshape(n_jets, -1)
    jet, pix = np.nonzero(flat)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(jet, minlength=n_jets))])
    np.savez(
        path, pixel=pix.astype(np.uint16), value=flat[jet, pix].astype(np.float16), offsets=offsets,
        n_pixels=n_pix, event=event,
    )  # fmt: skip


def load_images(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Dense (events, 2, n, n) float32 images and event ids from one sparse chunk file."""
    with np.load(path) as f:
        n_pix, offsets = int(f["n_pixels"]), f["offsets"]
        n_jets = len(offsets) - 1
        dense = np.zeros((n_jets, n_pix * n_pix), dtype=np.float32)
        jet = np.repeat(np.arange(n_jets), np.diff(offsets))
        dense[jet, f["pixel"]] = f["value"]
        return dense.reshape(-1, 2, n_pix, n_pix), f["event"]
