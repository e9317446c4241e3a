"""Would a signed drift beyond the grid help? Scored on the top-corner split, where the
discrepancy's choices are settled (experiments/README, "A signed drift").

For each reference group: hold out its fitting grid's configurations at its largest depth or
largest width, leave its extrapolation set out, and fit (``fit``'s defaults, seed 0) on the rest
of its grid plus every other group's fitting grid and extrapolation set. Then predict the held-out
points with the invariant ``log m*`` shifted by ``sum_a b_a d_a``. Here ``d_a`` is a point's
log excess over its group's grid on axis ``a``. ``b_a`` is a signed rate, pooled from the groups'
top-cut slopes ``sum((h - mean h_in) d) / sum(d^2)`` (least squares on the fitting side only,
as :mod:`bayes_prune.discrepancy` measures ``h``) in one of four ways. A shift of ``log m*``
equals a density times ``exp(b d)``, which is how it is applied here. The band's variance is
unchanged. Prints 90 % / 50 % coverage, lpd and median |delta| per group and form.

Usage: python benchmarks/signed_drift.py [--out DIR]  (four fits, about 15 minutes on 2 cores;
the posteriors are kept in DIR, so a second run only scores)
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_prune import evaluate
from bayes_prune import posterior as P
from bayes_prune.discrepancy import signed_slope, split_cuts, split_misses
from bayes_prune.grid import GROUP_KEY, SIZE_AXES, read_grids

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
GROUPS = {"mnist1d_mlp": "mlp/mnist1d", "fashion_mlp": "mlp/fashion-mnist",
          "mnist1d_cnn": "cnn/mnist1d", "fashion_cnn": "cnn/fashion-mnist"}


def top_corner_splits():
    """``(file stem, fitting set, held-out set)`` per reference group."""
    fitting = {g: read_grids([RESULTS / f"{g}.csv"]) for g in GROUPS}
    extra = {g: read_grids([RESULTS / f"{g}_extrapolation.csv"]) for g in GROUPS}
    for g, own in fitting.items():
        others = [fitting[o] for o in GROUPS if o != g] + [extra[o] for o in GROUPS if o != g]
        top = (own["depth"] == own["depth"].max()) | (own["width"] == own["width"].max())
        yield g, pd.concat([own[~top]] + others, ignore_index=True), \
            own[top].reset_index(drop=True)


def top_slopes(grid: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per group and axis, the signed slope of the invariant's shift at the axis' top cut."""
    out = {}
    for key, rows in grid.groupby(GROUP_KEY, sort=True):
        res = {}
        for axis in SIZE_AXES:
            cuts = split_cuts(np.unique(rows[axis].to_numpy(float)))
            misses = split_misses(rows, axis, cuts[-1]) if len(cuts) else None
            if misses is not None:
                h_in, _, h, _, d = misses
                res[axis] = signed_slope(h_in, h, d)
        out["/".join(key)] = res
    return out


def forms(slopes: dict, group: str) -> dict[str, dict[str, float]]:
    """The pooled signed rates ``{form: {axis: b}}`` for ``group``."""
    arch = group.split("/")[0]
    pick = {"mean of all groups": lambda k: True,
            "mean of the other groups": lambda k: k != group,
            "same-architecture groups": lambda k: k.split("/")[0] == arch,
            "the other same-architecture group": lambda k: k != group and
            k.split("/")[0] == arch}
    out = {"zero-mean (today)": {}}
    for name, keep in pick.items():
        out[name] = {a: float(np.mean(v)) for a in SIZE_AXES
                     if (v := [s[a] for k, s in slopes.items() if keep(k) and a in s])}
    return out


def fitted(path: Path, grid: pd.DataFrame, label: str, **options) -> P.Posterior:
    """The posterior saved at ``path``, or ``grid`` fitted at ``fit``'s defaults (seed 0; with
    ``options``, ``fit``'s keyword arguments, changed) and saved there first: a second run of
    a benchmark only scores."""
    if not path.exists():
        from bayes_prune.fit import fit

        post = fit(grid, seed=0, progress=False, **options)
        post.save(path)
        print(f"{label}: fit {post.diagnostics}", flush=True)
    return P.Posterior.load(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="signed_drift_fits", help="where the four posteriors go")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)

    for stem, fit_grid, held in top_corner_splits():
        group = GROUPS[stem]
        post = fitted(Path(args.out) / f"top_{stem}.nc", fit_grid, group)
        info = post.meta["discrepancy"][group]
        d = {a: np.log(np.maximum(held[a].to_numpy(float) / info[f"max_{a}"], 1.0))
             for a in SIZE_AXES}
        for name, b in forms(top_slopes(fit_grid), group).items():
            rows = held.copy()
            rows["density"] *= np.exp(sum(b.get(a, 0.0) * d[a] for a in SIZE_AXES))
            check, P._check_rows = P._check_rows, lambda r: r  # densities above 1: the shift
            try:
                draws = post.predict_draws(rows, band="prediction")
            finally:
                P._check_rows = check
            s = evaluate.score(held, np.log(draws))
            print(f"{group:18s} {name:34s} 90 % {100 * s['coverage_90']:5.1f}  50 % "
                  f"{100 * s['coverage_50']:5.1f}  lpd {s['lpd']:5.2f}  median |delta| "
                  f"{100 * s['median_abs_delta']:5.1f} %  b "
                  + ", ".join(f"{a} {v:+.2f}" for a, v in b.items()), flush=True)


if __name__ == "__main__":
    main()
