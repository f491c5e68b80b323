"""``anomalyhunt process``: run the dijet coffea processor over the datasets of a ``datasets.yaml``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "process",
        help="cluster jets and write feature tables (coffea processor)",
        description="Run the DijetProcessor over datasets.yaml on coffea's executors. Writes OUT/<dataset>/features/"
        "*.parquet (one file per chunk), optional clouds/ and images/, hists.pkl (hist.Hist), hists.root (one "
        "directory per dataset), cutflow.json and config.json. Datasets with xsec and luminosity get event weights "
        "(column weight, weighted histograms, sums of weights in the cut flow). "
        "On a cluster OUT must be on a filesystem every worker can write.",
    )
    p.add_argument("datasets", help="datasets.yaml")
    p.add_argument("--dataset", action="append", dest="names", metavar="NAME", help="only these datasets (repeatable)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--executor", choices=("iterative", "futures", "dask"), default="iterative")
    p.add_argument("--workers", type=int, default=1, help="processes for futures/dask (LocalCluster)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (instead of a LocalCluster)")
    p.add_argument("--chunksize", type=int, default=10_000, help="events per chunk")
    p.add_argument("--jet-radius", type=float, default=None, help="override every dataset's jet radius")
    p.add_argument("--axes", choices=("onepass_kt", "kt", "wta_kt"), default=None, help="N-subjettiness axes")
    p.add_argument("--trigger-pt", type=float, default=None, help="require a leading jet above this pT (GeV)")
    p.add_argument("--n-constituents", type=int, default=50, help="constituents per jet in the point clouds")
    p.add_argument("--clouds", action="store_true", help="write constituent point clouds (float16)")
    p.add_argument("--images", action="store_true", help="write 40x40 jet images (sparse)")
    p.add_argument("--skip-bad-input", action="store_true",
                   help="skip events with a non-finite or negative-pT particle and count them in the cut flow "
                        "(default: stop with one line naming file and entries)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_datasets
    from ..processors import run_process
    from ..runconfig import write_run_config

    from ..errors import ConfigError

    for flag, value in (("--chunksize", args.chunksize), ("--workers", args.workers),
                        ("--n-constituents", args.n_constituents)):  # fmt: skip
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    if args.jet_radius is not None and not args.jet_radius > 0:
        raise ConfigError(f"--jet-radius {args.jet_radius}: must be > 0")
    datasets = load_datasets(args.datasets, args.names)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    output = run_process(
        datasets, args.out, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
        chunksize=args.chunksize, status=not args.no_progress, jet_radius=args.jet_radius, axes=args.axes,
        trigger_pt=args.trigger_pt, n_constituents=args.n_constituents, write_clouds=args.clouds,
        write_images=args.images, skip_bad_input=args.skip_bad_input,
    )  # fmt: skip
    weights = output.get("normalisation", {})
    config["datasets_resolved"] = {
        n: {"format": d.format, "files": d.files, "xsec": d.xsec, "luminosity": d.luminosity,
            "sum_w": weights.get(n, {}).get("sum_w"),
            **({"sum_w_from": "datasets.yaml" if d.sum_w is not None else "Runs tree"} if d.weighted else {})}
        for n, d in datasets.items()
    }  # fmt: skip
    write_run_config(args.out, config)
    print_summary(output)
    return 0


def print_summary(output: dict) -> None:
    """Cut flow per dataset (processed + skipped = input) and the mjj histogram."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Cut flow")
    weighted = any("sumw" in cf for cf in output["cutflow"].values())
    for col in ("dataset", "input", "processed", "skipped (bad input)", "skipped (<2 jets)", "skipped (trigger)"):
        table.add_column(col, justify="right")
    if weighted:
        table.add_column("processed (sum of weights)", justify="right")
    for name, cf in output["cutflow"].items():
        row = [name, str(cf["input"]), str(cf["passed"]), str(cf.get("failed_bad_input", 0)),
               str(cf["failed_two_jets"]), str(cf["failed_trigger"])]  # fmt: skip
        if weighted:
            row.append(f"{cf['sumw']['passed']:.6g}" if "sumw" in cf else "-")
        table.add_row(*row)
    console = Console()
    console.print(table)
    if "mjj" in output.get("hists", {}):
        console.print(output["hists"]["mjj"])
