"""``anomalyhunt demo``: the whole chain on a built-in default, with no option needed."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the full chain on the built-in default sample",
        description="Generate (or take from the cache) a small Pythia sample, run the coffea processor on a local "
        "Dask cluster, and print the feature summary and the histograms it made.",
    )
    p.add_argument("--out", default="anomalyhunt-demo", help="output directory (default: ./anomalyhunt-demo)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="local Dask workers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, seed=args.seed, workers=args.workers)
    return 0
