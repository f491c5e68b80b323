"""Per-format conventions: which collection holds the constituents, the jet radius, PUPPI weights, N-subjettiness axes."""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("nanoaod", "pfnanoaod", "lhco-particles", "lhco-features", "generated")


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
    # LHC Olympics R&D: anti-kT R = 1.0 on particle-level particles, exclusive-kT tau axes.
    "lhco-particles": FormatConventions(1.0, "kt", puppi=False, recluster=True),
    "generated": FormatConventions(1.0, "kt", puppi=False, recluster=True),
}
