"""A user's small grid of one group, fitted alone, predicting larger networks: the case the
toolkit exists for, scored on two splits.

- ``corner``, a settling split of the reference grids: per reference group, its fitting grid's
  small corner (depth <= 2, the three smallest widths, n_train <= 2,000: what a user affords)
  predicting the same grid's depth-3 networks at n_train 4,000, every width. The corner lies
  below the larger configurations on two or three axes at once.
- ``fresh``, reported: the fresh grids of ``experiments/results/fresh`` (trained after every
  choice, never fitted by anything shipped), each small grid predicting its large one.

Each small grid is fitted alone at ``fit``'s defaults (seed 0; borrowing the reference groups'
drift; ``--dense-depth`` adds fit's option of that name), the posteriors kept in ``--out`` so
that a second run only scores. Scores, as ``bayes-prune evaluate`` gives them: without the
reference measurement of the group's own drift where the held-out rows lie inside the
reference grids' sizes (it may have seen them: the corner split's rows are its own). Least
squares (the paper's fit, on the same rows) beside it. Each coverage carries its rank among
what a band calibrated for those rows would cover (``evaluate``'s ``coverage_*_rank``: near 0
too narrow, near 1 too wide). Last line: ``split=<s> groups=<n> min_coverage90=<lowest 90 %
coverage> lpd=<summed> min_rank90=<lowest rank> max_rank90=<highest>``.

Usage: python benchmarks/small_grids.py [--split corner|fresh|both] [--dense-depth] [--out DIR]
(four fits of about a minute for ``corner``, two for ``fresh``, on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from bayes_prune.evaluate import as_scored, predict_lsq, score
from bayes_prune.fit import fit
from bayes_prune.grid import read_grid
from bayes_prune.posterior import Posterior

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
GROUPS = ("mnist1d_mlp", "fashion_mlp", "mnist1d_cnn", "fashion_cnn")
FRESH = ("mnist1d_mlp", "mnist1d_cnn")


def corner_split(stem: str):
    """The reference group's small corner and the depth-3, n_train 4,000 networks it predicts."""
    grid = read_grid(RESULTS / f"{stem}.csv")
    widths = sorted(grid["width"].unique())
    small = grid[(grid["depth"] <= 2) & (grid["width"] <= widths[2])
                 & (grid["n_train"] <= 2000)].reset_index(drop=True)
    return small, grid[(grid["depth"] == 3) & (grid["n_train"] == 4000)].reset_index(drop=True)


def fresh_split(stem: str):
    """A fresh small grid and the larger fresh networks it predicts."""
    return tuple(read_grid(RESULTS / "fresh" / f"fresh_{stem}_{size}.csv")
                 for size in ("small", "large"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("corner", "fresh", "both"), default="both")
    ap.add_argument("--dense-depth", action=argparse.BooleanOptionalAction, default=True,
                    help="fit with the dense envelope sized by weights x depth^zeta (fit's "
                         "default; --no-dense-depth for the envelope in weights alone)")
    ap.add_argument("--out", type=Path, default=Path("small_grid_fits"),
                    help="where the posteriors go (reused when there)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    tag = "_dense_depth" if args.dense_depth else "_no_dense_depth"
    for split in ("corner", "fresh") if args.split == "both" else (args.split,):
        cov, rank, lpd = [], [], 0.0
        for stem in GROUPS if split == "corner" else FRESH:
            small, large = (corner_split if split == "corner" else fresh_split)(stem)
            path = args.out / f"{split}_{stem}{tag}.nc"
            if not path.is_file():
                fit(small, seed=0, progress=False, source=stem,
                    dense_depth=args.dense_depth).save(path)
            post = Posterior.load(path)
            s = score(large, np.log(as_scored(post, large).predict_draws(large,
                                                                          band="prediction")))
            ls = score(large, predict_lsq(small, large))
            d = post.diagnostics
            cov.append(100 * s["coverage_90"])
            rank.append(s["coverage_90_rank"])
            lpd += s["lpd"]
            print(f"{split:6s} {stem:12s} {len(small):5d} points -> {len(large):4d}: 90 % "
                  f"{100 * s['coverage_90']:5.1f} (rank {s['coverage_90_rank']:.2f})  50 % "
                  f"{100 * s['coverage_50']:5.1f} (rank {s['coverage_50_rank']:.2f})  median "
                  f"|delta| {100 * s['median_abs_delta']:5.1f} % (lsq "
                  f"{100 * ls['median_abs_delta']:5.1f} %)  lpd {s['lpd']:5.2f}  (fit: R-hat "
                  f"{d['max_rhat']:.4f}, bulk ESS {d['min_ess_bulk']:.0f}, divergences "
                  f"{d['divergences']})", flush=True)
        print(f"split={split} groups={len(cov)} min_coverage90={min(cov):.1f} lpd={lpd:.2f} "
              f"min_rank90={min(rank):.2f} max_rank90={max(rank):.2f}", flush=True)


if __name__ == "__main__":
    main()
