"""Fit speed: nutpie vs PyMC's default NUTS vs the least-squares baseline, and query latency.

One process, the same model and the same synthetic grid (4 groups, 2 archs x 2 tasks, about
2,000 points). Prints, per method, the wall time including compilation and the minimum
ESS/s over the sampled variables, then the latency of a query of 10,000 configurations x
1,000 draws, and a last line that scripts can read:

    fit_nutpie_s=<s> fit_pymc_s=<s> lsq_s=<s> nutpie_min_ess_per_s=<x> query_s=<s>

Usage: python benchmarks/fit_speed.py [--draws 1000] [--tune 1000] [--chains 4] [--skip-pymc]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bayes_prune import lsq
from bayes_prune.fit import fit
from bayes_prune.synthetic import simulate_grid, synthetic_params


def benchmark_grid(rng: int = 1) -> pd.DataFrame:
    """~2,000 points: 24 configurations x 2 seeds x 11 densities (0.4^r) per group, 4 groups."""
    return simulate_grid(depths=(2, 3, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0, 1), rounds=10, prune_fraction=0.6, seed_sd=0.03,
                         rel_noise=0.03, n_test=2000, rng=rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--skip-pymc", action="store_true", help="only nutpie and least squares")
    ap.add_argument("--query-only", action="store_true",
                    help="a short fit (250 draws x 4 chains) only to time the query")
    args = ap.parse_args()
    grid = benchmark_grid()
    print(f"grid: {len(grid)} points, 4 groups; {args.chains} chains x {args.draws} draws "
          f"(+{args.tune} tune)")
    out = {}
    if args.query_only:
        args.draws, args.tune, args.skip_pymc = 250, 300, True
    for sampler in ("nutpie", "pymc"):
        if sampler == "pymc" and args.skip_pymc:
            continue
        t = time.perf_counter()
        post = fit(grid, sampler=sampler, draws=args.draws, tune=args.tune, chains=args.chains,
                   progress=False)
        wall = time.perf_counter() - t
        d = post.diagnostics
        ess_s = d["min_ess_bulk"] / wall
        out[sampler] = (wall, ess_s)
        print(f"{sampler:7s} wall {wall:7.1f} s (sampling {post.meta['settings']['seconds']:.1f} s)"
              f"  min bulk ESS {d['min_ess_bulk']:.0f} ({ess_s:.2f}/s)  max R-hat "
              f"{d['max_rhat']:.3f}  divergences {d['divergences']}  ok={d['ok']}")
    t = time.perf_counter()
    lsq.fit(grid, form="joint")
    lsq_s = time.perf_counter() - t
    print(f"lsq     wall {lsq_s:7.2f} s")

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x",
                         "depth": rng.integers(1, 9, 10_000),
                         "width": rng.integers(8, 1024, 10_000),
                         "n_train": rng.integers(500, 60_000, 10_000),
                         "density": np.exp(rng.uniform(np.log(1e-4), 0, 10_000))})
    rows["params_total"] = synthetic_params(rows["depth"], rows["width"])
    thin = post.n_draws // 1000
    post.draws = {k: v[::max(thin, 1)][:1000] for k, v in post.draws.items()}
    post.n_draws = post.draws["theta"].shape[0]
    t = time.perf_counter()
    post.summary(rows, level=0.9)
    query_s = time.perf_counter() - t
    print(f"query   {len(rows)} configurations x {post.n_draws} draws: {query_s:.3f} s")
    nut = out.get("nutpie", (float("nan"), float("nan")))
    pym = out.get("pymc", (float("nan"), float("nan")))
    print(f"fit_nutpie_s={nut[0]:.1f} fit_pymc_s={pym[0]:.1f} lsq_s={lsq_s:.2f} "
          f"nutpie_min_ess_per_s={nut[1]:.2f} query_s={query_s:.3f}")


if __name__ == "__main__":
    main()
