"""Per-format conventions: which collection holds the constituents, the jet radius, PUPPI weights, N-subjettiness axes.

Units: every table is in GeV (PHYSLITE's MeV are divided by 1000 on reading)."""

from __future__ import annotations

from dataclasses import dataclass

#: The default tree of each ROOT format.
TREES = {"nanoaod": "Events", "pfnanoaod": "Events", "physlite": "CollectionTree"}
FORMATS = ("nanoaod", "pfnanoaod", "physlite", "lhco-particles", "lhco-features", "generated")


@dataclass(frozen=True)
class FormatConventions:
    jet_radius: float
    axes: str
    puppi: bool
    recluster: bool  # False: take the experiment's own large-R jets as they are (plain NanoAOD has no candidates)


CONVENTIONS: dict[str, FormatConventions] = {
    # CMS: AK8 PUPPI jets, FatJet_tau* with one-pass kT axes.
    "pfnanoaod": FormatConventions(0.8, "onepass_kt", puppi=True, recluster=True),
    "nanoaod": FormatConventions(0.8, "onepass_kt", puppi=True, recluster=False),
    # ATLAS PHYSLITE: the stored large-R jets (AnalysisLargeRJets: anti-kT R = 1.0 UFO CSSK, in Run 3 derivations
    # groomed by soft drop beta = 1, z_cut = 0.1, so m is the groomed mass) with N-subjettiness on winner-take-all
    # axes (Tau*_wta); constituents are stored only as links, so they are taken as they are, not reclustered.
    "physlite": FormatConventions(1.0, "wta_kt", puppi=False, recluster=False),
    # LHC Olympics R&D: anti-kT R = 1.0 on particle-level particles, exclusive-kT tau axes.
    "lhco-particles": FormatConventions(1.0, "kt", puppi=False, recluster=True),
    "generated": FormatConventions(1.0, "kt", puppi=False, recluster=True),
}


#: The branches the dijet processor reads from each ROOT format, the required ones (a file without them is refused)
#: and the ones read where present (``PFCands_puppiWeight`` only with PUPPI, ``FatJet_rawFactor``, the event
#: identifiers, the generator weight). In coffea's dask mode the processor reads nothing else: its necessary columns
#: are a subset of these.
BRANCHES: dict[str, tuple[str, ...]] = {
    "pfnanoaod": ("nPFCands", "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "PFCands_puppiWeight",
                  "run", "luminosityBlock", "event", "genWeight"),
    "nanoaod": ("nFatJet", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_rawFactor", "FatJet_tau1",
                "FatJet_tau2", "FatJet_tau3", "run", "luminosityBlock", "event", "genWeight"),
    "physlite": (*(f"AnalysisLargeRJetsAuxDyn.{b}" for b in ("pt", "eta", "phi", "m", "Tau1_wta", "Tau2_wta",
                                                              "Tau3_wta")),
                 *(f"EventInfoAuxDyn.{b}" for b in ("runNumber", "lumiBlock", "eventNumber", "mcEventWeights"))),
}  # fmt: skip
#: The formats the processor runs in coffea's dask mode (``NanoEventsFactory.from_root(..., mode="dask")``,
#: ``coffea.dataset_tools.apply_to_fileset``); the others are eager only.
DASK_FORMATS = ("nanoaod", "pfnanoaod")
