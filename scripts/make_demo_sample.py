"""Build the compact feature sample shipped for `anomalyhunt demo` (anomalyhunt/data/demo_features.parquet).

Source: the project's recorded Pythia 8 sample (../shared/data/lhco-like, made with pythia8mc 8.317 in exactly the
settings of `anomalyhunt generate`: QCD HardQCD:all pTHatMin 1100 GeV with the 1.2 TeV R&D trigger, and
W'(3500) -> X(500) Y(100); anti-kT R = 1.0, exclusive-kT tau_N). Its LHCO v2 feature files are read with
anomalyhunt's own reader (jets reordered by mass) and the columns the demo needs are stored as float32.

    python scripts/make_demo_sample.py ../shared/data/lhco-like anomalyhunt/data/demo_features.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from anomalyhunt.io.lhco import read_lhco_features

COLUMNS = ["mjj", "mj1", "mj2", "delta_mj", "tau21_j1", "tau21_j2", "delta_r"]


def main(src: str, out: str) -> None:
    files = sorted(Path(src).glob("rnd_qcd_seed*.features.h5")) + [Path(src) / "rnd_sig_3500_500_100.features.h5"]
    frames = []
    for f in files:
        df = read_lhco_features(f)
        part = df[COLUMNS].astype(np.float32)
        part["label"] = df["label"].astype(np.int8)
        frames.append(part)
    table = pd.concat(frames, ignore_index=True)
    table.to_parquet(out, index=False, compression="zstd")
    Path(out).with_suffix(".json").write_text(json.dumps({
        "command": "python scripts/make_demo_sample.py ../shared/data/lhco-like " + out,
        "source_files": [f.name for f in files],
        "events": {"qcd": int((table.label == 0).sum()), "signal": int((table.label == 1).sum())},
        "columns": list(table.columns),
    }, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
