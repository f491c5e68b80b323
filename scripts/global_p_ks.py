"""Global p-values of background-only hunts of independent tables against uniform (the hunt issue's KS check).

Usage: python scripts/global_p_ks.py [--method cathode] [--statistic z_fixed] HUNT_DIR ...
Each HUNT_DIR is the OUT of `anomalyhunt hunt --features TABLE --null-toys N ...` on one background-only table.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from anomalyhunt.analysis.hunt_calibration import independent_global_p


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("hunts", nargs="+")
    p.add_argument("--method", default="cathode")
    p.add_argument("--statistic", default="z_fixed")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomized p-values")
    args = p.parse_args()
    t = independent_global_p(args.hunts, args.method, args.statistic, seed=args.seed)
    print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for col in ("p_count", "p_randomized"):
        v = t[col].to_numpy()
        print(f"{col}: {len(v)} hunts, median {np.median(v):.3f}, KS p against uniform "
              f"{stats.kstest(v, 'uniform').pvalue:.3f}, fraction below 0.1: {np.mean(v < 0.1):.3f}")
    print(f"largest local Z {t.max_z.max():.2f} ({t.hunt[t.max_z.idxmax()]})")


if __name__ == "__main__":
    main()
