"""The demo: generate -> process (local Dask) -> feature summary and histograms."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .datasets import Dataset
from .features import load_feature_table
from .runconfig import seed_everything, write_run_config

DEMO_EVENTS = {"qcd": 100, "signal": 100}


def run_demo(out: str | Path, *, seed: int = 1, workers: int = 2) -> dict:
    """Run the demo chain and return the processor output."""
    from .commands.process import print_summary
    from .generation import cached_sample
    from .processors import run_process

    console = Console()
    out = Path(out)
    seed_everything(seed)
    config = {"seed": seed, "workers": workers, "events": DEMO_EVENTS}
    console.rule("[bold]1. Pythia 8 samples (cached by their parameters)")
    datasets = {}
    for i, (process, n) in enumerate(DEMO_EVENTS.items()):
        path = cached_sample(process, n, seed + i, workers=workers)
        datasets[f"demo_{process}"] = Dataset(f"demo_{process}", "generated", [str(path)], label=int(process != "qcd"))
    console.rule("[bold]2. coffea DijetProcessor on a local Dask cluster")
    output = run_process(datasets, out / "processed", executor="dask", workers=workers, chunksize=50,
                         write_clouds=True, write_images=True)  # fmt: skip
    print_summary(output)
    console.rule("[bold]3. Feature summary")
    for name in datasets:
        table = load_feature_table(out / "processed" / name)
        cols = ["mjj", "mj1", "mj2", "tau21_j1", "tau21_j2", "delta_r", "n_const_j1"]
        console.print(f"[bold]{name}[/bold] ({len(table)} events): medians")
        console.print(table[cols].median().round(3).to_string())
    write_run_config(out, config)
    return output
