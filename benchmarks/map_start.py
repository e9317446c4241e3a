"""Does NUTS tune faster from a good start? The reference fit from nutpie's start and from an
optimised one, in one process.

``fit`` starts every chain where PyMC's initial point puts it (the run latents at their
measured dense errors, every variable jittered by U(-1, 1) on the unconstrained scale) and tunes
300 steps. Here the same compiled model (JAX float64, the reference grids, ``fit``'s defaults)
is sampled three ways, each to the same ESS target (``sampler.sample``):

- ``default``: as ``fit`` does (tune 300);
- ``lbfgs``: every chain starts at its own initial point moved by L-BFGS on the log density
  (``--iters`` iterations, at most; the path's end, as Pathfinder starts from its path) and
  tunes ``--tune`` steps;
- the same with the tuning halved.

The optimisation's seconds are counted in its rows. A start that only lowers the tuning
steps pays off if the wall time (optimisation included) falls at equal diagnostics.

Usage: python benchmarks/map_start.py [--iters 200] [--tune 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
from scipy.optimize import minimize

from bayes_prune.coords import layout
from bayes_prune.fit import _KEEP, diagnose
from bayes_prune.model import build_model
from bayes_prune.priors import Priors
from bayes_prune.reference import read_grid
from bayes_prune.sampler import TARGET_ACCEPT, Target, compile_model, sample


def optimised_start(compiled, iters: int):
    """``compiled`` with each chain's initial point moved uphill by L-BFGS (at most
    ``iters`` iterations), and the seconds that took for four chains."""
    logp = compiled._make_logp_func()
    shared = compiled._shared_data
    initial = compiled._make_initial_points
    seconds = [0.0]

    def neg(x):
        value, grad = logp(x, **shared)
        return -value, -grad

    def start(seed):
        x0 = np.asarray(initial(seed), float)
        t = time.perf_counter()
        res = minimize(neg, x0, jac=True, method="L-BFGS-B", options={"maxiter": iters})
        seconds[0] += time.perf_counter() - t
        print(f"  chain start: log density {-neg(x0)[0]:.0f} -> {-res.fun:.0f} in "
              f"{res.nit} iterations", flush=True)
        return res.x

    return dataclasses.replace(compiled, _make_initial_points=start), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200, help="L-BFGS iterations per chain")
    ap.add_argument("--tune", type=int, default=300, help="tuning steps from the start")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    grid = read_grid()
    lay = layout(grid)
    t = time.perf_counter()
    # fit's default model: the law's variants on
    model = build_model(lay, Priors().follow(lay), p_depends_on_n=True, gamma_depends_on_n=True,
                        curved=True, dense_depth=True)
    compiled = compile_model(model, "jax")
    print(f"build + compile {time.perf_counter() - t:.1f} s", flush=True)
    target = Target(variables=tuple(_KEEP))
    runs = [("default", compiled, 300, None)]
    for tune in (args.tune, args.tune // 2):
        start, seconds = optimised_start(compiled, args.iters)
        runs.append((f"lbfgs, tune {tune}", start, tune, seconds))
    for name, model, tune, seconds in runs:
        t = time.perf_counter()
        idata, info = sample(model, tune=tune, max_draws=1000, chains=4, seed=args.seed,
                             target=target, progress=False, low_rank=True,
                             target_accept=TARGET_ACCEPT)
        wall, d = time.perf_counter() - t, diagnose(idata)
        opt = f" ({seconds[0]:.1f} s of it optimising)" if seconds else ""
        print(f"{name:16s} wall {wall:6.1f} s{opt}, {info['draws']} draws ({info['stopped']}), "
              f"max R-hat {d['max_rhat']:.4f}, min ESS bulk {d['min_ess_bulk']:.0f} tail "
              f"{d['min_ess_tail']:.0f}, divergences {d['divergences']}", flush=True)


if __name__ == "__main__":
    main()
