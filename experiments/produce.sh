#!/usr/bin/env bash
# Produce the reference error grids: run each spec into its own store (resumable: re-run this
# script after an interruption), then export the grid CSV and a provenance sidecar.
# Usage: experiments/produce.sh SPEC.toml [SPEC.toml ...]
# Extra `grid run` options go in GRID_ARGS, e.g. GRID_ARGS="--workers 2"; OUT is the directory
# the store, CSV and sidecar go to (default results/; the far sets go to results/far/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/results}
mkdir -p "$out"
for spec in "$@"; do
  name=$(basename "$spec" .toml)
  store="$out/$name.sqlite"
  start=$(date +%s)
  bayes-prune grid run "$spec" --store "$store" --device cpu ${GRID_ARGS:-}
  bayes-prune grid export --store "$store" -o "$out/$name.csv"
  python - "$spec" "$store" "$out/$name.json" "$start" <<'PY'
import json, platform, sqlite3, subprocess, sys, time
import torch
spec, store, out, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
db = sqlite3.connect(store)
seconds = db.execute("SELECT SUM(seconds) FROM rounds").fetchone()[0]
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
json.dump({"spec": open(spec).read(), "code_version": commit.strip(),
           "hardware": f"{platform.processor() or platform.machine()}, "
                       f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
           "train_seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                          time.gmtime())},
          open(out, "w"), indent=1)
PY
  echo "$name done in $(( $(date +%s) - start )) s (this sitting)"
done
