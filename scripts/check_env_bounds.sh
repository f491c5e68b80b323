#!/usr/bin/env bash
# The package's version ranges, tried at both ends: a fresh virtualenv with the lower bounds of coffea, fastjet,
# uproot and awkward (setup.cfg) and one with their newest releases that install here, each running the test suite.
# torch comes from its CPU wheel (2.13.0), pythia8mc and dask as in CI (.ci/constraints.txt: dask-awkward needs
# dask < 2025.4). The floors, and the release below each that fails tests/test_processor*.py:
#   coffea 2025.12.0  (2025.11.0: no loky, the futures executor's pool; coffea requires it from 2025.12.0)
#   uproot 5.7.7      (5.7.6: jagged branches sharing a counter_name fail to write, struct.error)
#   fastjet 3.5.1.5   (3.5.1.4: wrong one-pass-kT N-subjettiness axes; 3.4.2.1 segfaults on awkward arrays)
#   awkward 2.8.9     (coffea 2025.12.0 requires it), tried with dask-awkward at its floor (2025.9.0): CI's
#                     dask-awkward 2026.2.1 requires awkward >= 2.8.12.
# Not part of CI (it is two more test runs). Usage:
#   bash scripts/check_env_bounds.sh [lower|newest|both] [pytest arguments...]
# Each environment is .venv-bounds-<end>/ beside the checkout; its versions and the test summary go to
# env-bounds-<end>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ends=${1:-both}
shift || true
[ "$ends" = both ] && ends="lower newest"

# The lower bound of a requirement in setup.cfg, install_requires or extras ("coffea>=2025.12.0" -> 2025.12.0).
lower() { sed -n "s/^ *$1>=\([0-9][0-9.]*\).*/\1/p" setup.cfg | head -1; }

for end in $ends; do
  constraints=$(mktemp)
  # what CI pins for this machine, without the packages under test
  grep -v -E '^(coffea|fastjet|uproot|awkward)==' .ci/constraints.txt > "$constraints"
  case "$end" in
    lower)
      # pip's "==X" matches X.0...; fastjet's releases carry a fourth number (3.4.2.1), so ask for the lowest >= X
      echo "coffea==$(lower coffea).*" >> "$constraints"
      echo "uproot==$(lower uproot).*" >> "$constraints"
      echo "fastjet>=$(lower fastjet),<$(lower fastjet).99" >> "$constraints"
      echo "awkward==$(lower awkward).*" >> "$constraints"
      # CI's dask-awkward requires a newer awkward than the floor: take dask-awkward's floor (setup.cfg's extras) too
      sed -i '/^dask-awkward==/d' "$constraints"
      echo "dask-awkward==$(lower dask-awkward).*" >> "$constraints"
      ;;
    newest) ;;  # no pin: pip takes the newest releases that fit the rest
    *) echo "unknown end '$end': use lower, newest or both" >&2; exit 2 ;;
  esac
  venv=".venv-bounds-$end"
  log="env-bounds-$end.log"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  if [ "$end" = lower ]; then
    # the lowest release of each series: pip prefers the newest that matches, so list and pick the first
    for pkg in coffea uproot fastjet awkward dask-awkward; do
      spec=$(grep "^$pkg" "$constraints")
      first=$("$venv/bin/python" -m pip index versions "$pkg" 2>/dev/null | sed -n 's/^Available versions: //p' \
              | tr ',' '\n' | tr -d ' ' | "$venv/bin/python" -c "
import sys
from pip._vendor.packaging.specifiers import SpecifierSet
from pip._vendor.packaging.version import Version
spec = SpecifierSet('$spec'[len('$pkg'):])
ok = sorted(Version(v) for v in sys.stdin.read().split() if Version(v) in spec)
print(ok[0] if ok else '')")
      [ -n "$first" ] || { echo "$end: no release of $pkg matches $spec" >&2; exit 1; }
      sed -i "s/^$pkg.*/$pkg==$first/" "$constraints"
    done
  fi
  echo "== $end: $(grep -E '^(coffea|fastjet|uproot|awkward|dask-awkward)[=<>]' "$constraints" | tr '\n' ' ')" | tee "$log"
  PIP_CONSTRAINT="$constraints" "$venv/bin/python" -m pip install --quiet -e ".[test]" 2>&1 | tail -5 | tee -a "$log"
  "$venv/bin/python" -m pip freeze | grep -i -E '^(coffea|fastjet|uproot|awkward|dask|dask-awkward|distributed|pandas|torch|numpy)==' | tee -a "$log"
  set +e
  MPLBACKEND=Agg "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tail -15 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  echo "== $end: pytest exit status $rc" | tee -a "$log"
  rm -f "$constraints"
done
