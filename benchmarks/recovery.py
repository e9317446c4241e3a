"""Parameter recovery and calibration of the hierarchical model on synthetic grids.

For each generator seed: draw the 4-group synthetic grid of ``fit_speed.py`` (known
coefficients, seed offsets, relative and binomial noise), hold out every configuration of
width 64 (their runs are never shown to the fit), fit the rest, and report

- the fraction of true coefficients inside their 94 % HDI: the joint law's (gamma, p_prime,
  phi, psi, eps_up) and the dense law's (a, alpha, b, beta, c_inf) separately;
- the coverage of the held-out points by the 90 % (and 50 %) prediction band;
- the sampler's diagnostics.

Then grids of the shapes real grids come in, cut from one group of the generator-seed-1 grid:
one width, one n_train, and a single configuration (Eq. 1 for one network). Each is fitted
alone; reported: its diagnostics, whether every prediction is finite, the in-sample coverage
of the 90 % prediction band, and whether the true gamma and eps_up (and phi / psi where depth
/ width vary) lie in their 94 % HDIs.

Last line, for scripts: ``inside_law=<x> inside_dense=<x> coverage_90=<x> coverage_50=<x>
max_rhat=<x> min_ess_bulk=<x> divergences=<n> shapes_ok=<n>/<n>``.

Usage: python benchmarks/recovery.py [--seeds 1 2 3] [--draws 1000] [--tune 1000] [--no-shapes]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fit_speed import benchmark_grid  # noqa: E402

from bayes_prune.fit import fit  # noqa: E402
from bayes_prune.posterior import hdi  # noqa: E402
from bayes_prune.synthetic import default_truths  # noqa: E402

LAW = ("gamma", "p_prime", "phi", "psi", "eps_up")
DENSE = ("a", "alpha", "b", "beta", "c_inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--no-shapes", action="store_true", help="skip the degenerate grid shapes")
    args = ap.parse_args()
    truths = default_truths()
    law_in, dense_in, cov90, cov50, rhat, ess, div = [], [], [], [], [], [], 0
    for seed in args.seeds:
        grid = benchmark_grid(seed)
        held = grid["width"] == 64
        post = fit(grid[~held].reset_index(drop=True), draws=args.draws, tune=args.tune,
                   chains=args.chains, seed=seed, progress=False)
        d = post.diagnostics
        rhat.append(d["max_rhat"])
        ess.append(d["min_ess_bulk"])
        div += d["divergences"]
        misses = []
        for (arch, task), truth in truths.items():
            nat = post.natural(arch, task)
            true = {**truth.law.as_dict(), **truth.dense.as_dict()}
            for names, out in ((LAW, law_in), (DENSE, dense_in)):
                for c in names:
                    (lo,), (hi,) = hdi(nat[c][None, :], 0.94)
                    out.append(lo <= true[c] <= hi)
                    if not out[-1]:
                        misses.append(f"{arch}/{task} {c}: true {true[c]:.3g}, "
                                      f"HDI [{lo:.3g}, {hi:.3g}]")
        rows = grid[held].reset_index(drop=True)
        draws = post.predict_draws(rows, band="prediction", seed=seed)
        obs = rows["test_error"].to_numpy()
        for level, acc in ((0.9, cov90), (0.5, cov50)):
            lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
            acc.append(float(np.mean((obs >= lo) & (obs <= hi))))
        print(f"seed {seed}: {len(grid) - len(rows)} points fitted, {len(rows)} held out; "
              f"fit {post.meta['settings']['seconds']:.0f} s, max R-hat {d['max_rhat']:.3f}, "
              f"min ESS {d['min_ess_bulk']:.0f}, divergences {d['divergences']}; "
              f"coverage 90 % {cov90[-1]:.1%}, 50 % {cov50[-1]:.1%}")
        for m in misses:
            print(f"  outside the 94 % HDI: {m}")
    shapes = [] if args.no_shapes else degenerate_shapes(args)
    print(f"inside_law={np.mean(law_in):.3f} inside_dense={np.mean(dense_in):.3f} "
          f"coverage_90={np.mean(cov90):.3f} coverage_50={np.mean(cov50):.3f} "
          f"max_rhat={max(rhat):.3f} min_ess_bulk={min(ess):.0f} divergences={div} "
          f"shapes_ok={sum(shapes)}/{len(shapes)}")


SHAPES = {"one width": "width == 32", "one n_train": "n_train == 1000",
          "one configuration": "depth == 3 and width == 32 and n_train == 1000"}


def degenerate_shapes(args) -> list[bool]:
    """Fit each of :data:`SHAPES` (group syn-a/syn-x of the seed-1 grid); one line each; a
    shape is ok when diagnostics pass, predictions are finite and the checked truths lie in
    their HDIs."""
    key = ("syn-a", "syn-x")
    base = benchmark_grid(1)
    base = base[(base["arch"] == key[0]) & (base["task"] == key[1])]
    truth = default_truths()[key].law.as_dict()
    ok = []
    for name, query in SHAPES.items():
        grid = base.query(query).reset_index(drop=True)
        post = fit(grid, draws=args.draws, tune=args.tune, chains=args.chains, seed=1,
                   progress=False)
        draws = post.predict_draws(grid, band="prediction", seed=1)
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=1)
        obs = grid["test_error"].to_numpy()
        nat = post.natural(*key)
        check = ["gamma", "eps_up"] + [c for c, a in (("phi", "depth"), ("psi", "width"))
                                       if grid[a].nunique() > 1]
        inside = {c: bool(hdi(nat[c][None, :], 0.94)[0][0] <= truth[c]
                          <= hdi(nat[c][None, :], 0.94)[1][0]) for c in check}
        d = post.diagnostics
        ok.append(d["ok"] and bool(np.isfinite(draws).all()) and all(inside.values()))
        ident = post.identification()
        print(f"{name}: {len(grid)} points; max R-hat {d['max_rhat']:.3f}, min ESS "
              f"{d['min_ess_bulk']:.0f}, divergences {d['divergences']}; finite "
              f"{bool(np.isfinite(draws).all())}; in-sample 90 % coverage "
              f"{np.mean((obs >= lo) & (obs <= hi)):.1%}; truth in 94 % HDI: "
              + ", ".join(f"{c} {v}" for c, v in inside.items())
              + "; resting on the prior: "
              + ", ".join(ident.loc[ident["identified"] == "prior", "coef"]))
    return ok


if __name__ == "__main__":
    main()
