#!/usr/bin/env bash
# Run the reproduction's grids one after another (cpu profile unless PROFILE is set), resuming:
# finished runs are skipped, so a stopped chain loses at most the run in progress.
#   nohup bash scripts/run_grids.sh > grid.log 2>&1 &
# Order: what the chapters need first (Table II, which holds Table IV), then the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-cpu}"
grids="${GRIDS:-table2 ablation conv8 seeds table3 precision}"
for g in $grids; do
  echo "== $(date -u +%FT%TZ) grid $g ($profile)"
  python -m covid_lib grid run "$g" --profile "$profile" || echo "grid $g: exit $?"
done
echo "== $(date -u +%FT%TZ) done"
