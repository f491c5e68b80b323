#!/usr/bin/env bash
# More background-only QCD for the hunt's global-p-value study (issue: >= 40 independent tables).
# Resumable: one file per seed, written atomically; a file is done once its run configuration sits beside it
# (written last), so a run stopped between the two makes that seed again.
# Usage: scripts/generate_qcd_campaign.sh OUTDIR [FIRST_SEED] [LAST_SEED] [EVENTS_PER_FILE]
set -euo pipefail
out=${1:?output directory}; first=${2:-2001}; last=${3:-2016}; events=${4:-25000}
mkdir -p "$out"
for seed in $(seq "$first" "$last"); do
  file="$out/qcd_seed$seed.h5"
  [ -e "$file" ] && [ -e "$out/qcd_seed$seed.config.json" ] && { echo "seed $seed: done"; continue; }
  echo "seed $seed: generating $events events"
  anomalyhunt generate --process qcd --events "$events" --seed "$seed" --out "$file" --workers 2 --no-progress
done
