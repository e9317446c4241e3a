"""An approximate posterior's bands against NUTS's, on the same grid.

Fits one grid with NUTS (``fit``'s defaults) and with each approximate method
(``fit --method advi|pathfinder``), or reads posteriors already fitted, then scores every
posterior's 90 % prediction bands on the grid's points (in sample) and on a held-out grid
(an extrapolation set): coverage, median |delta| of the median, and the band width relative
to NUTS's (median over points of the ratio of log upper/lower). Prints one row per method, and
the fit's seconds and Pareto k.

Usage: python benchmarks/approximate_bands.py GRID [--holdout HELD] [--methods advi,pathfinder]
       [--nuts NUTS.nc] [--out DIR]
(default: experiments/results/mnist1d_mlp.csv against its extrapolation set)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bayes_prune.grid import read_grid
from bayes_prune.lsq import observed_errors
from bayes_prune.posterior import Posterior

ROOT = Path(__file__).resolve().parents[1] / "experiments" / "results"


def bands(post: Posterior, grid):
    draws = post.predict_draws(grid, band="prediction")
    lo, med, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=1)
    return lo, med, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", nargs="?", default=str(ROOT / "mnist1d_mlp.csv"))
    ap.add_argument("--holdout", default=str(ROOT / "mnist1d_mlp_extrapolation.csv"))
    ap.add_argument("--methods", default="advi,pathfinder")
    ap.add_argument("--nuts", default=None, help="a NUTS posterior of GRID already fitted")
    ap.add_argument("--out", default="/tmp", help="where the fitted posteriors go")
    args = ap.parse_args()
    grid, held = read_grid(args.grid), read_grid(args.holdout)
    posts = {}
    for method in ["nuts"] + args.methods.split(","):
        path = Path(args.nuts) if method == "nuts" and args.nuts else \
            Path(args.out) / f"{Path(args.grid).stem}.{method}.nc"
        if not path.is_file():
            from bayes_prune.fit import fit

            fit(grid, method=method, progress=False, source=args.grid).save(path)
        posts[method] = Posterior.load(path)
    ref = {name: bands(posts["nuts"], g) for name, g in (("in", grid), ("held", held))}
    print(f"{'method':<11} {'seconds':>7} {'pareto_k':>8} {'cov90 in':>8} {'cov90 held':>10} "
          f"{'|delta| held':>12} {'width vs NUTS in':>16} {'held':>6}")
    for method, post in posts.items():
        row = []
        for name, g in (("in", grid), ("held", held)):
            lo, med, hi = bands(post, g)
            obs = observed_errors(g)
            r_lo, _, r_hi = ref[name]
            row += [np.mean((obs >= lo) & (obs <= hi)), np.median(np.abs(med - obs) / obs),
                    np.median(np.log(hi / lo) / np.log(r_hi / r_lo))]
        k = post.diagnostics.get("pareto_k", float("nan"))
        print(f"{method:<11} {post.meta['settings']['seconds']:>7.0f} {k:>8.2f} {row[0]:>8.3f} "
              f"{row[3]:>10.3f} {row[4]:>12.3f} {row[2]:>16.2f} {row[5]:>6.2f}")


if __name__ == "__main__":
    main()
