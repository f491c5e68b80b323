"""Build the background "simulation" shipped for the simulation-assisted methods (FETA, SALAD, DRAPES with simulation
seeds, the raw-simulation baseline): anomalyhunt/data/simulation_a14.parquet.

Source: a QCD campaign of `anomalyhunt generate` with another Pythia tune than the data's (A14 instead of Monash),

    WORKERS=1 scripts/generate_campaign.sh GEN qcd 4001 4008 25000 --tune 21
    anomalyhunt process datasets.yaml --dataset sim_a14 --out PROCESSED      # format: lhco-particles, label: 0

and its processor output read with anomalyhunt's own reader; the columns the searches use are stored as float32. The
data it stands beside is the recorded LHCO-like sample (Monash; its features from massive particle 4-vectors), so
the simulation differs from the data as a real one would, in two stated ways: the parton-shower tune, and jets
reclustered from massless particles (the LHCO particle layout), which lowers the lighter jet's mass by ~16%.

    python scripts/make_simulation_sample.py PROCESSED/sim_a14 anomalyhunt/data/simulation_a14.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from anomalyhunt.features import load_feature_table

COLUMNS = ["mjj", "mj1", "mj2", "delta_mj", "tau21_j1", "tau21_j2", "delta_r"]
#: What a generator run configuration records that the provenance repeats (the block seeds are left out).
GENERATE_KEYS = ("process", "n_events", "seed", "pthat_min", "trigger_pt", "jet_radius", "eta_max", "tune",
                 "pythia8mc", "pythia_settings")


def main(processed: str, out: str) -> None:
    src = Path(processed)
    table = load_feature_table(src)
    compact = table[COLUMNS].astype(np.float32)
    compact["label"] = np.zeros(len(compact), np.int8)
    compact.to_parquet(out, index=False, compression="zstd")
    run = json.loads((src.parent / "config.json").read_text())["config"]
    files = run["datasets_resolved"][src.name]["files"]
    generated = []
    for f in files:
        cfg = json.loads(Path(f).with_suffix(".config.json").read_text())["config"]
        generated.append({"file": Path(f).name, **{k: cfg.get(k) for k in GENERATE_KEYS}})
    cutflow = json.loads((src.parent / "cutflow.json").read_text())[src.name]
    Path(out).with_suffix(".json").write_text(json.dumps({
        "command": f"python scripts/make_simulation_sample.py {processed} {out}",
        "generated": generated,
        "cutflow": cutflow,
        "events": len(compact),
        "columns": list(compact.columns),
        "differs_from_the_data_by": ["Pythia Tune:pp = 21 (A14) where the data used 14 (Monash)",
                                     "jets reclustered from massless particles (LHCO particle layout) where the "
                                     "data's features used massive 4-vectors"],
    }, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
