"""Print the reference-grid table of experiments/README.md from the shipped grids.

For each `results/NAME.csv` (and its provenance sidecar `NAME.json`): configurations, runs,
points, the dense error range, the paper's least-squares fit quality (joint law: mean and std
of delta) next to the seed-to-seed std of the same grid, and the training time.

Usage: python experiments/table.py [NAME ...]   (default: every CSV in experiments/results)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bayes_prune.evaluate import fit_quality
from bayes_prune.grid import read_grid

RESULTS = Path(__file__).resolve().parent / "results"


def row(path: Path) -> str:
    grid = read_grid(path)
    q = fit_quality(grid).iloc[0]
    dense = grid.loc[grid["round"] == 0, "test_error"]
    meta = path.with_suffix(".json")
    minutes = (f"{json.loads(meta.read_text())['train_seconds'] / 60:.1f} min"
               if meta.is_file() else "?")
    cells = [f"{q.arch}/{q.task}", f"`{path.stem}`", f"{q.configurations}", f"{q.runs}",
             f"{q.points:,}", f"{dense.min():.2f}-{dense.max():.2f}",
             f"{100 * q.joint_delta_mean:+.2f} % / {100 * q.joint_delta_std:.1f} %",
             f"{100 * q.seed_std:.1f} %", minutes]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    names = sys.argv[1:]
    paths = [RESULTS / f"{n}.csv" for n in names] if names else sorted(RESULTS.glob("*.csv"))
    print("| group | grid | configurations | runs | points | dense error | least squares "
          "(joint): mean / std delta | seed-to-seed std | training time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(row(p))


if __name__ == "__main__":
    main()
