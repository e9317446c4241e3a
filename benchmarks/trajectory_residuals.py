"""Are the points of one IMP trajectory independent facts, given the fit? Evidence from a posterior.

For every measured point of the grids a posterior was fitted on (default: the shipped reference
posterior and the reference grids), this prints:

- the in-sample coverage of the 90 % and 50 % prediction bands per density band of the curve:
  dense plateau, lower knee, power law, high plateau (by where the posterior median sits between
  the configuration's dense error and its high plateau, in log error: below 5 %, 5-25 %, 25-85 %,
  above 85 % of the rise);
- the lag-1 autocorrelation of the residuals along each run, after removing the run's mean
  residual (its luck, which the model carries as the run's latent dense error): what an AR(1)
  term in the round would have to explain. Independent residuals give about ``-1/len(run)``;
- per group, in the power-law region, how the runs' mean residuals split into a
  configuration's (the sd of the configurations' means) and a seed's (the sd of the runs about
  their configuration's mean): what ``fit --invariant-scatter`` would have to explain.

Usage: python benchmarks/trajectory_residuals.py [POSTERIOR.nc|reference] [GRID ...]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from bayes_prune import reference
from bayes_prune.grid import read_grid, validate
from bayes_prune.lsq import observed_errors
from bayes_prune.posterior import Posterior

BANDS = (("dense plateau", -np.inf, 0.05), ("lower knee", 0.05, 0.25),
         ("power law", 0.25, 0.85), ("high plateau", 0.85, np.inf))
RUN = ["arch", "task", "depth", "width", "n_train", "seed"]


def main(argv: list[str]) -> None:
    post = Posterior.load(argv[0] if argv else "reference")
    grid = validate(pd.concat([read_grid(p) for p in argv[1:]], ignore_index=True)) \
        if len(argv) > 1 else reference.read_grid()
    grid = grid.sort_values(RUN + ["round"]).reset_index(drop=True)
    obs = np.log(observed_errors(grid))
    draws = np.log(post.predict_draws(grid, band="prediction"))
    lo90, hi90 = np.quantile(draws, [0.05, 0.95], axis=1)
    lo50, hi50 = np.quantile(draws, [0.25, 0.75], axis=1)
    med = np.median(draws, axis=1)
    def expected_at(density):
        rows = grid if density is None else grid.assign(density=density)
        return np.median(np.log(post.predict_draws(rows, band="expected")), axis=1)

    med0, up = expected_at(1.0), expected_at(1e-12)  # the dense error and the high plateau
    rise = (expected_at(None) - med0) / np.maximum(up - med0, 1e-6)
    inside90, inside50 = (obs >= lo90) & (obs <= hi90), (obs >= lo50) & (obs <= hi50)
    print(f"{len(grid)} points, {grid.groupby(RUN).ngroups} runs; prediction bands, in sample")
    print(f"{'density band':<14} {'points':>7} {'cov90':>6} {'cov50':>6}")
    for name, a, b in BANDS:
        m = (rise >= a) & (rise < b)
        print(f"{name:<14} {m.sum():>7} {inside90[m].mean():>6.3f} {inside50[m].mean():>6.3f}")
    print(f"{'all':<14} {len(grid):>7} {inside90.mean():>6.3f} {inside50.mean():>6.3f}")
    res = pd.Series(obs - med)
    dev = res - res.groupby([grid[c] for c in RUN]).transform("mean")
    nxt = dev.groupby([grid[c] for c in RUN]).shift(-1)
    ok = nxt.notna()
    lag1 = np.corrcoef(dev[ok], nxt[ok])[0, 1]
    per_run = grid.groupby(RUN).size()
    print(f"lag-1 autocorrelation of within-run residuals: {lag1:.3f} (independent: about "
          f"{-1 / per_run.mean():.3f}; {per_run.mean():.0f} points per run)")
    by_group = {f"{k[0]}/{k[1]}": np.corrcoef(dev[ok & m], nxt[ok & m])[0, 1]
                for k, m in ((k, (grid["arch"] == k[0]) & (grid["task"] == k[1]))
                             for k in grid[["arch", "task"]].drop_duplicates().itertuples(
                                 index=False))}
    print("per group: " + ", ".join(f"{g} {v:.3f}" for g, v in by_group.items()))
    print(f"run-level share of the residual variance: {1 - dev.var() / res.var():.3f}")
    power = (rise >= 0.25) & (rise < 0.85)
    runs = grid[power].assign(res=res[power].to_numpy()).groupby(RUN, as_index=False)["res"]\
        .mean()
    config = runs.groupby(RUN[:-1])["res"].transform("mean")
    print("power-law region, sd of the runs' mean residual: configuration / seed within it")
    for (arch, task), m in runs.groupby(["arch", "task"]).groups.items():
        means = runs.loc[m].groupby(RUN[:-1])["res"].mean()
        print(f"  {arch}/{task}: {means.std():.3f} / "
              f"{(runs.loc[m, 'res'] - config[m]).std():.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
