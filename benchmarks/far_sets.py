"""The bands one step beyond everything fitted: the far sets (experiments/results/far).

Each far set is one depth and a width beyond its group's extrapolation set (depth 5, widths
48-64 channels for the CNNs and 384-512 units for the MLPs, n_train 4,000), trained by this code
and never fitted by anything shipped, so it scores choices no one could have tuned on it. Three
fits predict it, each at ``fit``'s defaults (seed 0; the posteriors kept in ``--out``, so a
second run only scores):

- ``reference``: the shipped reference posterior (all eight reference CSVs), one step short of
  the far sets (``evaluate --posterior reference``);
- ``fitting grids``: the four fitting grids without their extrapolation sets, two steps short
  (the extrapolation sets are scored as well, as the first step);
- ``group alone``: each group's fitting grid and extrapolation set fitted alone, borrowing the
  other reference groups' drift, as a user's one-group grid is fitted.

Least squares (the paper's fit, on the same fitting set) is scored beside each. Prints, per
fit, held-out set and group: points, median |delta| (Bayes, least squares), mean delta, 50 % /
90 % coverage, the 90 % coverage's rank among what a band calibrated for those rows would
cover (``evaluate``'s ``coverage_90_rank``: near 0 too narrow, near 1 too wide) and lpd. Last
line: ``far_sets=<n> fits=3 min_coverage90=<lowest> in_85_95=<k>/<sets> rank90_in_5_95=<k>/<sets>
min_rank90=<lowest rank>``.

Usage: python benchmarks/far_sets.py [--out DIR]   (six fits, about 5-8 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import pandas as pd

from bayes_prune.evaluate import predict_lsq, score, score_posterior
from bayes_prune.fit import fit
from bayes_prune.grid import read_grids
from bayes_prune.posterior import Posterior

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
GROUPS = ("mnist1d_mlp", "fashion_mlp", "mnist1d_cnn", "fashion_cnn")


def far_sets() -> dict[str, Path]:
    """The far sets that are trained, by group stem."""
    return {g: RESULTS / "far" / f"{g}_far.csv" for g in GROUPS
            if (RESULTS / "far" / f"{g}_far.csv").is_file()}


def posterior(out: Path, name: str, grid: pd.DataFrame) -> Posterior:
    """The fit ``name`` of ``grid``, from ``out`` when it was made before."""
    path = out / f"{name}.nc"
    if path.is_file():
        return Posterior.load(path)
    post = fit(grid, progress=False, seed=0, source=name)
    post.save(path)
    d = post.diagnostics
    print(f"  fit {name}: {len(grid)} points, max R-hat {d['max_rhat']:.4f}, min bulk ESS "
          f"{d['min_ess_bulk']:.0f}, divergences {d['divergences']}", flush=True)
    return post


def rows_for(label: str, post: Posterior, fit_grid: pd.DataFrame, held: dict[str, Path]):
    """Per held-out set (each predicted on its own, as ``evaluate --posterior`` does) and
    group: the scores of ``post``'s prediction band and least squares' median miss."""
    out = []
    for kind, path in held.items():
        h = read_grids([path]).reset_index(drop=True)
        b = score_posterior(post, h)[0]
        out.append({"fit": label, "held out": kind, "group": f"{b['arch']}/{b['task']}",
                    "points": b["n_holdout"], "median |delta|": b["median_abs_delta"],
                    "lsq": score(h, predict_lsq(fit_grid, h))["median_abs_delta"],
                    "mean delta": b["delta_mean"], "50 %": b["coverage_50"],
                    "90 %": b["coverage_90"], "rank 90": b["coverage_90_rank"],
                    "lpd": b["lpd"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("far_sets_fits"),
                    help="where the posteriors go (reused when there)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    far = far_sets()
    if not far:
        raise SystemExit("no far set is trained yet: experiments/README, 'Beyond the "
                         "reference posterior'")
    every = read_grids([RESULTS / f"{g}{p}.csv" for g in GROUPS
                        for p in ("", "_extrapolation")])
    rows = rows_for("reference", Posterior.load("reference"), every,
                    {f"far ({g})": p for g, p in far.items()})
    fitting = read_grids([RESULTS / f"{g}.csv" for g in GROUPS])
    post = posterior(args.out, "fitting_grids", fitting)
    rows += rows_for("fitting grids", post, fitting,
                     {f"{k} ({g})": p for g, p in far.items()
                      for k, p in (("extrapolation set", RESULTS / f"{g}_extrapolation.csv"),
                                   ("far", p))})
    for g, p in far.items():
        own = read_grids([RESULTS / f"{g}.csv", RESULTS / f"{g}_extrapolation.csv"])
        rows += rows_for("group alone", posterior(args.out, f"{g}_alone", own), own,
                         {f"far ({g})": p})
    table = pd.DataFrame(rows)
    percent = ["median |delta|", "lsq", "mean delta", "50 %", "90 %"]
    print(table.to_string(index=False, formatters={
        **{c: (lambda x: f"{100 * x:+.1f} %") if c == "mean delta" else
           (lambda x: f"{100 * x:.1f} %") for c in percent}, "lpd": "{:.2f}".format,
        "rank 90": "{:.2f}".format}))
    cov = 100 * table["90 %"].to_numpy()
    rank = table["rank 90"].to_numpy()
    print(f"far_sets={len(far)} fits=3 min_coverage90={cov.min():.1f} "
          f"in_85_95={int(((cov >= 85) & (cov <= 95)).sum())}/{len(cov)} "
          f"rank90_in_5_95={int(((rank >= 0.05) & (rank <= 0.95)).sum())}/{len(rank)} "
          f"min_rank90={rank.min():.2f}")

if __name__ == "__main__":
    main()
