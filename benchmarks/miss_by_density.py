"""Where along the curve the held-out points of a split miss their bands, and in which way.

Fits a split of the reference grids (experiments/README) at ``fit``'s defaults, seed 0, or
reads the fits already in ``--fits`` (named ``{split}_{stem}.nc``, as the other split
benchmarks save them), and prints per group, for the held-out points' prediction bands:

- per interval of density (dense point; 0.6-1; 0.2-0.6; 0.05-0.2; 0.01-0.05; below 0.01): the
  mean of ``log(measured) - log(median predicted)`` (negative: the network erred less than
  predicted), the 90 % band's coverage and its median width in log error
  (:func:`bayes_prune.evaluate.by_density`, what ``evaluate`` prints under its table);
- the probability integral transform in tenths (the share of points whose measured error falls
  in each tenth of its predictive distribution: 10 % each for a calibrated band) and the mean
  and sd of ``z = (log measured - median) / sd``: a biased band has a mean away from 0, an
  over-wide one an sd below 1.

Every posterior's extrapolation discrepancy is re-measured with today's rule on its fitting
set, as in the other split benchmarks.

Usage: python benchmarks/miss_by_density.py [--split top|lgo] [--fits DIR]
(four fits, 5-15 minutes on 2 cores the first time; about a minute when they exist)
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from drift_rules import leave_group_out_splits
from signed_drift import GROUPS, fitted, top_corner_splits

from bayes_prune import evaluate
from bayes_prune.discrepancy import extrapolation_discrepancy


def calibration(held: pd.DataFrame, log_draws: np.ndarray) -> dict:
    """The PIT tenths and z's mean and sd of all held-out points."""
    y = np.log(held["test_error"].to_numpy(float))
    pit = (log_draws < y[:, None]).mean(axis=1)
    z = (y - np.median(log_draws, axis=1)) / log_draws.std(axis=1)
    return {"pit": np.histogram(pit, bins=10, range=(0, 1))[0] / len(pit),
            "z_mean": float(z.mean()), "z_sd": float(z.std())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("top", "lgo"), default="top")
    ap.add_argument("--fits", default="split_fits", help="where the posteriors are, or go")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.fits, exist_ok=True)
    splits = {"top": top_corner_splits, "lgo": leave_group_out_splits}[args.split]()
    for stem, fit_grid, held in splits:
        group = GROUPS[stem]
        post = copy.copy(fitted(Path(args.fits) / f"{args.split}_{stem}.nc", fit_grid,
                                f"{args.split} {group}"))
        post.meta = dict(post.meta, discrepancy=extrapolation_discrepancy(fit_grid))
        log_draws = np.log(post.predict_draws(held, band="prediction"))
        calib = calibration(held, log_draws)
        print(f"{args.split} {group}: PIT tenths "
              + " ".join(f"{100 * v:.0f}" for v in calib["pit"])
              + f" %; z mean {calib['z_mean']:+.2f}, sd {calib['z_sd']:.2f}")
        for r in evaluate.by_density(held, log_draws):
            print(f"    density {r['density']:9s} {r['points']:4d} points  mean log miss "
                  f"{r['log_miss']:+.2f}  90 % covers {100 * r['coverage_90']:5.1f} %  band "
                  f"width {r['width_90']:.2f}", flush=True)


if __name__ == "__main__":
    main()
