"""``anomalyhunt demo``: the whole chain on a built-in default, with no option needed."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the full chain on the built-in default sample",
        description="Generate (or take from the cache) a small Pythia sample and run the coffea processor on a local "
        "Dask cluster; then, on the search-sized sample shipped with the package, inject a W' -> X Y signal and run a "
        "sliding-window bump hunt with SIGMA, CATHODE and the idealized reference; write plots, histograms and "
        "report.md, and print the summary table.",
    )
    p.add_argument("--out", default="anomalyhunt-demo", help="output directory (default: ./anomalyhunt-demo)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="local Dask workers")
    p.add_argument("--signal-events", type=int, default=600, help="W' events injected into the search sample")
    p.add_argument("--method", action="append", help="methods to run (default: sigma, cathode, idealized)")
    p.add_argument("--style", choices=("CMS", "ATLAS", "LHCb"), default="CMS")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    from ..demo import METHODS

    run_demo(args.out, seed=args.seed, workers=args.workers, n_signal=args.signal_events,
             methods=args.method or METHODS, style=args.style)  # fmt: skip
    return 0
