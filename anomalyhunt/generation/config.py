"""What one generation run is: the process, its physics parameters and the Pythia 8 settings they stand for.

Kept free of heavy imports so the CLI can build its parser (and validate arguments) without loading Pythia.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigError

PROCESSES = ("qcd", "signal", "svj")
LABELS = {"qcd": 0, "signal": 1, "svj": 1}
#: Which parameters change the events of which process (the rest are dropped from cache keys and records).
PROCESS_PARAMETERS = {
    "qcd": ("pthat_min",),
    "signal": ("m_wprime", "m_x", "m_y"),
    "svj": ("m_zprime", "r_inv", "m_dark_quark", "m_dark_pion", "m_dark_rho"),
}
SQRT_S_GEV = 13000.0
# Accepted events per independently seeded Pythia run; part of what defines a sample (it changes the events).
DEFAULT_BLOCK_SIZE = 50
# Pythia's Random:seed must lie in 1..900_000_000.
MAX_PYTHIA_SEED = 900_000_000
#: Leading anti-kT jet pT (GeV) an event must pass: the R&D trigger for QCD and the W'; lower for semi-visible jets.
#: The 2 TeV Z' -> semi-visible jets (r_inv = 0.75) has a leading visible jet of median 250 GeV (10-90%: 90-640 GeV);
#: 150 GeV keeps ~3/4 of them (QCD to match: ``--pthat-min 120 --trigger-pt 150``).
TRIGGER_PT = {"qcd": 1200.0, "signal": 1200.0, "svj": 150.0}
# Z -> d u s c b and W -> d u s c (as the R&D benchmark: hadronic X and Y).
X_DECAY_QUARKS = "1 2 3 4 5"
Y_DECAY_QUARKS = "1 2 3 4"
# Hidden Valley: the dark pseudoscalar (pion) and vector (rho) mesons of a one-flavour dark sector, the stable
# dark-matter fermion their invisible decays go to (Pythia's 52, not visible) and the quark of their visible decays
# (with meMode 91 the d dbar pair hadronises as a string).
DARK_PION, DARK_RHO = 4900111, 4900113
DARK_MESONS = (DARK_PION, DARK_RHO)
DM_FERMION = 52
VISIBLE_QUARK = 1
#: Pythia's ``Tune:pp`` presets a sample may use: 14 is Monash 2013 (Pythia's default, our recorded samples), 21 the
#: A14 central tune (NNPDF2.3 LO, Pythia's built-in PDF set), which the simulation-assisted methods take as
#: "simulation" beside Monash "data". Other presets need PDF sets Pythia does not carry or were not checked here.
TUNES = {14: "Monash 2013", 21: "A14 central (NNPDF2.3 LO)"}
DEFAULT_TUNE = 14


def _fmt(x: float) -> str:
    return f"{x:.10g}"


@dataclass(frozen=True)
class GenerationConfig:
    """Physics parameters of a QCD dijet, W' -> X(qq) Y(qq) or semi-visible-jet sample (GeV); validated on
    construction.

    ``svj``: the DarkCLR talk's semi-visible jets (Buss et al., arXiv 2202.00686): a Z' (Pythia's Hidden Valley
    Z_v) of ``m_zprime`` = 2 TeV decays to a pair of dark quarks of ``m_dark_quark`` = 500 MeV, which shower and
    hadronise in a dark SU(3) (one flavour) to dark pions and rho mesons; each dark meson decays invisibly, to a pair
    of dark-matter fermions, with probability ``r_inv`` = 0.75, and otherwise to d dbar, which hadronises into
    visible particles: jets with an invisible share of about ``r_inv``. The talk gives no meson masses:
    ``m_dark_pion`` = 4 GeV and ``m_dark_rho`` = 5 GeV are ours (the rho below the two-pion threshold, so every
    meson decays to the visible or the invisible sector directly), with the confinement scale at half the rho mass,
    as in QCD (Lambda ~ 0.3 GeV, m_rho = 0.77 GeV). The trigger of these events is lower than the R&D one
    (:data:`TRIGGER_PT`): most of a 2 TeV Z' leaves unseen.
    """

    process: str
    m_wprime: float = 3500.0
    m_x: float = 500.0
    m_y: float = 100.0
    pthat_min: float = 1100.0
    m_zprime: float = 2000.0
    r_inv: float = 0.75
    m_dark_quark: float = 0.5
    m_dark_pion: float = 4.0
    m_dark_rho: float = 5.0
    #: ``None``: the process's default, :data:`TRIGGER_PT`.
    trigger_pt: float | None = None
    jet_radius: float = 1.0
    eta_max: float = 4.0
    #: Pythia's ``Tune:pp`` (:data:`TUNES`): shower, MPI and hadronisation parameters of every process.
    tune: int = DEFAULT_TUNE

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ConfigError(f"generate: process must be one of {PROCESSES}, got {self.process!r}")
        if self.trigger_pt is None:
            object.__setattr__(self, "trigger_pt", TRIGGER_PT[self.process])
        for name in ("m_wprime", "m_x", "m_y", "pthat_min", "m_zprime", "r_inv", "m_dark_quark", "m_dark_pion",
                     "m_dark_rho", "trigger_pt", "jet_radius", "eta_max"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"generate: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.tune, float) and self.tune.is_integer():
            object.__setattr__(self, "tune", int(self.tune))
        if self.tune not in TUNES:
            raise ConfigError(f"generate: tune must be one of {sorted(TUNES)} ({', '.join(TUNES.values())}), "
                              f"got {self.tune!r}")  # fmt: skip
        if self.trigger_pt < 0:
            raise ConfigError(f"generate: trigger_pt must be >= 0 GeV, got {self.trigger_pt}")
        if not 0 < self.jet_radius <= 3.0:
            raise ConfigError(f"generate: jet_radius must be in (0, 3], got {self.jet_radius}")
        if self.eta_max <= 0:
            raise ConfigError(f"generate: eta_max must be > 0, got {self.eta_max}")
        if self.process == "qcd" and not 0 < self.pthat_min < SQRT_S_GEV / 2:
            raise ConfigError(f"generate: pthat_min must be in (0, {SQRT_S_GEV / 2:g}) GeV, got {self.pthat_min}")
        if self.process == "signal":
            # Below ~10 GeV the hadronic decays of X and Y are not a resonance Pythia can treat.
            for name in ("m_x", "m_y"):
                if getattr(self, name) < 10.0:
                    raise ConfigError(f"generate: {name} must be >= 10 GeV, got {getattr(self, name)}")
            if self.m_x + self.m_y >= self.m_wprime:
                raise ConfigError(
                    f"generate: m_x + m_y = {self.m_x + self.m_y:g} GeV must be below m_wprime = {self.m_wprime:g} GeV"
                )
            if self.m_wprime >= SQRT_S_GEV:
                raise ConfigError(f"generate: m_wprime must be below sqrt(s) = {SQRT_S_GEV:g} GeV, got {self.m_wprime}")
        if self.process == "svj":
            if not 0.0 <= self.r_inv <= 1.0:
                raise ConfigError(f"generate: r_inv must be in [0, 1], got {self.r_inv}")
            # Pythia's Hidden Valley hadronisation needs a dark quark of >= 0.4 GeV and mesons heavier than two quarks.
            if not 0.4 <= self.m_dark_quark <= 100.0:
                raise ConfigError(f"generate: m_dark_quark must be in [0.4, 100] GeV, got {self.m_dark_quark}")
            for name in ("m_dark_pion", "m_dark_rho"):
                if not 2 * self.m_dark_quark <= getattr(self, name) <= 500.0:
                    raise ConfigError(f"generate: {name} must be in [2 m_dark_quark = {2 * self.m_dark_quark:g}, 500] "
                                      f"GeV, got {getattr(self, name)}")  # fmt: skip
            heaviest = max(self.m_dark_pion, self.m_dark_rho)
            if not 4 * heaviest < self.m_zprime < SQRT_S_GEV:
                raise ConfigError(
                    f"generate: m_zprime must lie between 4 x the heaviest dark meson = {4 * heaviest:g} GeV and "
                    f"sqrt(s) = {SQRT_S_GEV:g} GeV, got {self.m_zprime}"
                )

    @property
    def label(self) -> int:
        """Truth label written with every event: 0 QCD, 1 signal."""
        return LABELS[self.process]

    def physics(self) -> dict[str, Any]:
        """The parameters that change the events of this process (the masses mean nothing for QCD, pTHatMin nothing
        for the s-channel W'), so a cache key built from them is not split by irrelevant values."""
        params = asdict(self)
        params.pop("process")
        for process, names in PROCESS_PARAMETERS.items():
            if process != self.process:
                for name in names:
                    params.pop(name)
        return params

    def pythia_settings(self) -> list[str]:
        """Pythia 8 ``readString`` lines for the hard process, without the seed."""
        # The tune first: Tune:pp resets the parameters it covers, so later lines must not be overwritten by it.
        common = [f"Tune:pp = {self.tune}", f"Beams:eCM = {_fmt(SQRT_S_GEV)}", "Print:quiet = on",
                  "Next:numberCount = 0"]  # fmt: skip
        if self.process == "qcd":
            return common + ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {_fmt(self.pthat_min)}"]
        if self.process == "svj":
            return common + self._hidden_valley()
        # X and Y are the Z (23) and W (24) re-massed. Their widths are recomputed by Pythia at init from the new
        # masses (Gamma_Z(500 GeV) ~ 14 GeV), so only the Breit-Wigner window is set, around the new pole, so
        # that the default mMin = 10 GeV never exceeds a light m0 and far tails are not sampled.
        return common + [
            "NewGaugeBoson:ffbar2Wprime = on",
            "Wprime:coup2WZ = 1",
            f"34:m0 = {_fmt(self.m_wprime)}",
            "34:onMode = off",
            "34:onIfAll = 23 24",
            f"23:m0 = {_fmt(self.m_x)}",
            f"23:mMin = {_fmt(0.5 * self.m_x)}",
            f"23:mMax = {_fmt(1.5 * self.m_x)}",
            "23:onMode = off",
            f"23:onIfAny = {X_DECAY_QUARKS}",
            f"24:m0 = {_fmt(self.m_y)}",
            f"24:mMin = {_fmt(0.5 * self.m_y)}",
            f"24:mMax = {_fmt(1.5 * self.m_y)}",
            "24:onMode = off",
            f"24:onIfAny = {Y_DECAY_QUARKS}",
        ]

    def _hidden_valley(self) -> list[str]:
        """Z_v -> q_v q_v~ with a dark shower and dark hadronisation; dark mesons decay invisibly with r_inv."""
        lam = 0.5 * self.m_dark_rho
        lines = [
            "HiddenValley:ffbar2Zv = on",
            f"4900023:m0 = {_fmt(self.m_zprime)}",
            f"4900023:mMin = {_fmt(0.5 * self.m_zprime)}",
            f"4900023:mMax = {_fmt(1.5 * self.m_zprime)}",
            "4900023:onMode = off",
            "4900023:onIfAny = 4900101",
            "HiddenValley:Ngauge = 3",
            "HiddenValley:nFlav = 1",
            "HiddenValley:spinFv = 0",
            "HiddenValley:FSR = on",
            "HiddenValley:fragment = on",
            "HiddenValley:alphaOrder = 1",
            f"HiddenValley:Lambda = {_fmt(lam)}",
            f"HiddenValley:pTminFSR = {_fmt(1.1 * lam)}",
            f"4900101:m0 = {_fmt(self.m_dark_quark)}",
            f"{DM_FERMION}:m0 = {_fmt(min(0.1, 0.1 * self.m_dark_pion))}",
        ]
        masses = {DARK_PION: self.m_dark_pion, DARK_RHO: self.m_dark_rho}
        for meson in DARK_MESONS:  # pseudoscalar and vector, one flavour: both flavour-diagonal, so both may decay
            lines.append(f"{meson}:m0 = {_fmt(masses[meson])}")
            channels = [(1.0 - self.r_inv, f"91 {VISIBLE_QUARK} -{VISIBLE_QUARK}"),
                        (self.r_inv, f"0 {DM_FERMION} -{DM_FERMION}")]  # fmt: skip
            first = True
            for br, products in channels:
                if br > 0:
                    lines.append(f"{meson}:{'oneChannel' if first else 'addChannel'} = 1 {_fmt(br)} {products}")
                    first = False
        return lines
