"""The extrapolation discrepancy's rate rules, scored on the settling and the reported split.

Two splits of the reference grids (experiments/README), four fits each at ``fit``'s defaults,
seed 0, kept in ``--out`` so that a second run only scores:

- ``top``, the top-corner split where the discrepancy's choices are settled: per group, hold out
  its fitting grid's configurations at its largest depth or width, leave its extrapolation set
  out, fit the rest of its grid and every other group's grids;
- ``lgo``, leave-group-out, what is reported: fit every fitting grid and the other groups'
  extrapolation sets, predict the group's extrapolation set.

The rates are least squares on the fitting side (:mod:`bayes_prune.discrepancy`), not sampled,
so each rule re-measures them on the fit's grid and replaces the stored ones; the posterior's
draws are the same for every rule. Rules: ``all cuts`` (the rate averaged over every nested
cut, ``top_cut=False``), ``with top cut`` (the larger of that and the axis' highest cut's rate,
every cut's evidence weighing the group's own rate in the pooling, ``rate_evidence=False``) and
``rate's evidence`` (the same, the own rate weighing by the evidence of the cuts it came from),
each without the lean, and ``leaning`` (that, and the invariant's offsets wider on the side where
larger networks prune better, by the top cut's signed slope: the default), and ``architecture
first`` (that, each group's population its architecture's other groups before everyone's,
``arch_pool=True``), ``lean by architecture`` (the lean's population alone its architecture's
first, ``arch_pool="lean"``) and ``lean relative`` (the population's lean for a group its
ratio of lean to rate times the group's rate, ``lean_relative=True``) and ``rates by
architecture`` (``arch_pool="rates"``), the last four measured and not adopted. Prints 90 % /
50 % coverage, lpd and median |delta| per split, group and rule.

Usage: python benchmarks/drift_rules.py [--out DIR] [--split top|lgo|both] [--rules R ...]
(eight fits, about 15-25 minutes on 2 cores the first time; scoring about 3 minutes)
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from signed_drift import GROUPS, RESULTS, fitted, top_corner_splits

from bayes_prune import evaluate
from bayes_prune.discrepancy import extrapolation_discrepancy
from bayes_prune.grid import read_grids

RULES = {"all cuts": {"top_cut": False, "skew": False, "arch_pool": False},
         "with top cut": {"rate_evidence": False, "skew": False, "arch_pool": False},
         "rate's evidence": {"skew": False, "arch_pool": False}, "leaning": {"arch_pool": False},
         "architecture first": {"arch_pool": True},
         "lean by architecture": {"arch_pool": "lean"},
         "lean relative": {"lean_relative": True, "arch_pool": False},
         "rates by architecture": {"arch_pool": "rates"}}


def leave_group_out_splits():
    """``(file stem, fitting set, held-out set)`` per reference group."""
    fitting = [read_grids([RESULTS / f"{g}.csv"]) for g in GROUPS]
    extra = {g: read_grids([RESULTS / f"{g}_extrapolation.csv"]) for g in GROUPS}
    for g in GROUPS:
        others = [extra[o] for o in GROUPS if o != g]
        yield g, pd.concat(fitting + others, ignore_index=True), extra[g]


def score_rules(split: str, splits, rules: dict, out: str) -> dict[str, float]:
    """Fit (or load from ``out``) each ``(stem, fitting set, held-out set)`` of ``splits``, score
    its held-out set under each of ``rules`` (``extrapolation_discrepancy``'s keyword arguments,
    the rates re-measured on the fitting set), print a row per group and rule, and return the
    lpd summed over the groups per rule."""
    lpd = dict.fromkeys(rules, 0.0)
    for stem, fit_grid, held in splits:
        group = GROUPS[stem]
        post = fitted(Path(out) / f"{split}_{stem}.nc", fit_grid, f"{split} {group}")
        for rule, kwargs in rules.items():
            ruled = copy.copy(post)
            ruled.meta = dict(post.meta, discrepancy=extrapolation_discrepancy(
                fit_grid, held_out=held, **kwargs))
            s = evaluate.score(held, np.log(ruled.predict_draws(held, band="prediction")))
            lpd[rule] += s["lpd"]
            print(f"{split:3s} {group:18s} {rule:15s} 90 % {100 * s['coverage_90']:5.1f}  "
                  f"50 % {100 * s['coverage_50']:5.1f}  lpd {s['lpd']:5.2f}  median "
                  f"|delta| {100 * s['median_abs_delta']:5.1f} %", flush=True)
    print(f"{split}: lpd summed over the groups " +
          ", ".join(f"{rule} {v:.2f}" for rule, v in lpd.items()), flush=True)
    return lpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="drift_rule_fits", help="where the eight posteriors go")
    ap.add_argument("--split", choices=("top", "lgo", "both"), default="both")
    ap.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES),
                    help="the rules to score (default: every one)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    splits = {"top": top_corner_splits, "lgo": leave_group_out_splits}
    for split in ("top", "lgo") if args.split == "both" else (args.split,):
        score_rules(split, splits[split](), {r: RULES[r] for r in args.rules}, args.out)


if __name__ == "__main__":
    main()
