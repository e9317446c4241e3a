"""A fit of one group, with and without the reference groups' drift borrowed.

A user's grid is often one (arch, task) group. Its extrapolation discrepancy then pools with
the shipped reference groups it does not hold (``discrepancy.REFERENCE_GROUPS``) when asked
(``fit --borrow-drift``, ``extrapolation_discrepancy(borrow=True)``). Scored on
two splits of the reference grids, each group fitted alone at ``fit``'s defaults (seed 0; the
posteriors kept in ``--out``, so a second run only scores), the group borrowing the other three
reference groups (its own name is in the fit):

- ``top``, where the choice was settled: the group's fitting grid without its top corner
  (largest depth or width), predicting that corner;
- ``ext``, reported: the whole fitting grid, predicting its extrapolation set.

The rates are least squares, not sampled, so both rules score the same posterior. Prints 90 % /
50 % coverage, lpd and median |delta| per split, group and rule.

Usage: python benchmarks/borrowed_drift.py [--out DIR] [--split top|ext|both]
(eight fits of one group, about 3-5 minutes on 2 cores the first time)
"""

from __future__ import annotations

import argparse
import os
import warnings

from drift_rules import score_rules
from signed_drift import GROUPS, RESULTS

from bayes_prune.grid import read_grids

RULES = {"alone": {}, "borrowed": {"borrow": True}}


def single_group_splits(split: str):
    """``(file stem, fitting set, held-out set)`` per reference group, the group alone."""
    for stem in GROUPS:
        own = read_grids([RESULTS / f"{stem}.csv"])
        if split == "top":
            top = (own["depth"] == own["depth"].max()) | (own["width"] == own["width"].max())
            yield stem, own[~top].reset_index(drop=True), own[top].reset_index(drop=True)
        else:
            yield stem, own, read_grids([RESULTS / f"{stem}_extrapolation.csv"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="borrowed_drift_fits", help="where the posteriors go")
    ap.add_argument("--split", choices=("top", "ext", "both"), default="both")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    for split in ("top", "ext") if args.split == "both" else (args.split,):
        score_rules(split, single_group_splits(split), RULES, args.out)


if __name__ == "__main__":
    main()
