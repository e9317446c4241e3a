"""Each configuration's own shift of the curve (``fit --invariant-scatter``) against the default.

Or, with ``--model dense-depth``, the dense envelope in weights alone (``fit
--no-dense-depth``; the default sizes it by weights times a power of depth). Fits both models
on a split of the reference grids (experiments/README) at ``fit``'s defaults,
seed 0, keeps them in ``--out`` (``--baseline`` may point at existing default fits of the same
split, named ``{split}_{stem}.nc``), and prints per group 90 % / 50 % coverage, lpd and median
|delta| of the held-out points under each:

- ``top``, the top-corner split where the model's choices are settled;
- ``lgo``, leave-group-out, what is reported.

Every posterior's extrapolation discrepancy is re-measured with today's rule on its fitting
set, so that both models carry the same.

Usage: python benchmarks/invariant_scatter.py [--split top|lgo] [--model scatter|dense-depth]
       [--out DIR] [--baseline DIR]
(eight fits, about 20-30 minutes on 2 cores the first time; scoring about a minute)
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from pathlib import Path

import numpy as np
from drift_rules import leave_group_out_splits
from signed_drift import GROUPS, fitted, top_corner_splits

from bayes_prune import evaluate
from bayes_prune.discrepancy import extrapolation_discrepancy

# the model compared with the default: its label, fit's options, the suffix of its fits' names
MODELS = {"scatter": ("invariant scatter", {"invariant_scatter": True}, "_scatter"),
          "dense-depth": ("no dense depth", {"dense_depth": False}, "_nozeta")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("top", "lgo"), default="top")
    ap.add_argument("--model", choices=tuple(MODELS), default="scatter")
    ap.add_argument("--out", default="invariant_scatter_fits", help="where the posteriors go")
    ap.add_argument("--baseline", help="a folder of the default model's fits of the split")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    splits = {"top": top_corner_splits, "lgo": leave_group_out_splits}[args.split]()
    label, opts, suffix = MODELS[args.model]
    models = {"default": ({}, ""), label: (opts, suffix)}
    lpd = dict.fromkeys(models, 0.0)
    for stem, fit_grid, held in splits:
        group = GROUPS[stem]
        rates = extrapolation_discrepancy(fit_grid)
        for model, (options, tag) in models.items():
            where = Path(args.out if options else args.baseline or args.out)
            name = f"{args.split}_{stem}{tag}.nc"
            post = copy.copy(fitted(where / name, fit_grid, f"{args.split} {group} {model}",
                                    **options))
            post.meta = dict(post.meta, discrepancy=rates)
            s = evaluate.score(held, np.log(post.predict_draws(held, band="prediction")))
            lpd[model] += s["lpd"]
            d = post.diagnostics
            print(f"{args.split:3s} {group:18s} {model:17s} 90 % {100 * s['coverage_90']:5.1f}  "
                  f"50 % {100 * s['coverage_50']:5.1f}  lpd {s['lpd']:5.2f}  median |delta| "
                  f"{100 * s['median_abs_delta']:5.1f} %  mean delta "
                  f"{100 * s['delta_mean']:+5.1f} %  (R-hat {d.get('max_rhat', float('nan')):.3f},"
                  f" ESS {d.get('min_ess_bulk', float('nan')):.0f}, "
                  f"{d.get('divergences', 0)} div, {post.meta['settings']['seconds']:.0f} s)",
                  flush=True)
    print(f"{args.split}: lpd summed over the groups " +
          ", ".join(f"{m} {v:.2f}" for m, v in lpd.items()), flush=True)


if __name__ == "__main__":
    main()
