#!/usr/bin/env bash
# A background campaign of particle-level events: one file per seed, so a stopped campaign resumes at the seed
# it stopped in. Each file is written atomically; a seed is done once its run configuration sits beside it
# (written last), so a run stopped between the two makes that seed again.
# Usage: [WORKERS=N] scripts/generate_campaign.sh OUTDIR PROCESS FIRST_SEED LAST_SEED EVENTS_PER_FILE [generate options...]
#   (WORKERS: generate's worker processes, default 2)
#   e.g. scripts/generate_campaign.sh /data/gen qcd 2001 2016 25000            (the hunt's global-p-value study)
#        scripts/generate_campaign.sh /data/gen qcd 3001 3004 25000            (constituent studies, 100k QCD)
#        scripts/generate_campaign.sh /data/gen signal 3101 3101 10000
#        scripts/generate_campaign.sh /data/gen svj 3201 3201 10000
#        scripts/generate_campaign.sh /data/gen qcd 3301 3301 20000 --pthat-min 120 --trigger-pt 150
set -euo pipefail
out=${1:?output directory}; process=${2:?qcd, signal or svj}; first=${3:?first seed}; last=${4:?last seed}
events=${5:?events per file}; shift 5
tag=$process; [ $# -gt 0 ] && tag="${process}_$(printf '%s' "$*" | tr -c 'A-Za-z0-9.' '_' | sed 's/__*/_/g; s/^_//; s/_$//')"
mkdir -p "$out"
for seed in $(seq "$first" "$last"); do
  file="$out/${tag}_seed$seed.h5"
  [ -e "$file" ] && [ -e "$out/${tag}_seed$seed.config.json" ] && { echo "$tag seed $seed: done"; continue; }
  echo "$tag seed $seed: generating $events events ($(date -u +%H:%M:%S))"
  anomalyhunt generate --process "$process" --events "$events" --seed "$seed" --out "$file" --workers "${WORKERS:-2}" --no-progress "$@"
done
