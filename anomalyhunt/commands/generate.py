"""``anomalyhunt generate``: Pythia 8 QCD dijets, W' -> X(qq) Y(qq) or semi-visible-jet signals in the LHCO R&D
particle layout."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..generation.config import DEFAULT_BLOCK_SIZE, PROCESSES, TUNES, GenerationConfig

_DEFAULTS = {f.name: f.default for f in fields(GenerationConfig) if f.name != "process"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="generate QCD, W' or semi-visible-jet signal events with Pythia 8 (LHCO R&D layout)",
        description="Generate triggered 13 TeV events with Pythia 8 and write them in the LHC Olympics R&D particle "
        "layout (700 particles x pT, eta, phi + label). Output depends only on the seed and parameters, not on "
        "--workers.",
    )
    p.add_argument("--process", choices=PROCESSES, required=True, help="qcd (dijets), signal (W' -> X(qq) Y(qq)) or svj "
                   "(Hidden Valley Z' -> dark quarks -> semi-visible jets)")
    p.add_argument("--events", type=int, required=True, help="number of accepted (triggered) events")
    p.add_argument("--seed", type=int, required=True, help="random seed (>= 0)")
    p.add_argument("--out", required=True, help="output HDF5 file (the run config is written beside it)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--mwprime", type=float, default=_DEFAULTS["m_wprime"], help="W' mass in GeV (signal)")
    p.add_argument("--mx", type=float, default=_DEFAULTS["m_x"], help="X mass in GeV (signal; X -> qq)")
    p.add_argument("--my", type=float, default=_DEFAULTS["m_y"], help="Y mass in GeV (signal; Y -> qq)")
    p.add_argument("--mzprime", type=float, default=_DEFAULTS["m_zprime"], help="Z' mass in GeV (svj)")
    p.add_argument("--rinv", type=float, default=_DEFAULTS["r_inv"],
                   help="invisible fraction of dark-meson decays (svj)")
    p.add_argument("--mdark-quark", type=float, default=_DEFAULTS["m_dark_quark"], help="dark quark mass in GeV (svj)")
    p.add_argument("--mdark-pion", type=float, default=_DEFAULTS["m_dark_pion"], help="dark pion mass in GeV (svj)")
    p.add_argument("--mdark-rho", type=float, default=_DEFAULTS["m_dark_rho"], help="dark rho mass in GeV (svj)")
    p.add_argument("--pthat-min", type=float, default=_DEFAULTS["pthat_min"], help="PhaseSpace:pTHatMin in GeV (qcd)")
    p.add_argument("--trigger-pt", type=float, default=None,
                   help="leading-jet pT trigger in GeV (default: 1200 for qcd and signal, 150 for svj)")
    p.add_argument("--jet-radius", type=float, default=_DEFAULTS["jet_radius"], help="anti-kT radius of trigger jets")
    p.add_argument("--eta-max", type=float, default=_DEFAULTS["eta_max"], help="particle acceptance |eta| < eta_max")
    p.add_argument("--tune", type=int, default=_DEFAULTS["tune"], choices=sorted(TUNES),
                   help="Pythia Tune:pp: " + ", ".join(f"{k} {v}" for k, v in TUNES.items()) + " (default 14)")
    p.add_argument(
        "--block-size", type=int, default=DEFAULT_BLOCK_SIZE, help="accepted events per seeded Pythia run"
    )
    p.add_argument("--nanoaod", action="store_true", help="also write a NanoAOD-like ROOT file (PFCands_*) beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``generate`` with the parsed arguments."""
    from ..generation.pythia import CLI_FLAGS, generate

    params = {name: getattr(args, flag.replace("-", "_")) for name, flag in CLI_FLAGS.items()}
    out = generate(
        args.process,
        args.events,
        args.seed,
        args.out,
        **params,
        workers=args.workers,
        nanoaod=args.nanoaod,
        progress=not args.no_progress,
        block_size=args.block_size,
    )
    also = f" and {out.with_suffix('.root')}" if args.nanoaod else ""
    print(f"wrote {args.events} {args.process} events to {out}{also}")
    return 0
