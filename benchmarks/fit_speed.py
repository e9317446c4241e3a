"""Fit speed per sampler backend on one model and one grid, and query latency.

One process, the same model and the same grid (default: the reference grids of
experiments/results, 12,608 points: the four fitting grids and their extrapolation sets;
``--grid synthetic``: ~2,000 synthetic points). Each backend samples the same fixed number
of draws (no ESS target, so the work is equal) and prints its wall time including
compilation, the minimum bulk ESS per second of that wall time over the sampled variables,
and both as a ratio to nutpie's numba backend:

- ``nutpie-numba``: nutpie, log density compiled by numba (the default before JAX);
- ``nutpie-jax64`` / ``nutpie-jax32``: nutpie, log density and gradient by JAX/XLA, float64 /
  float32 (float64 is ``fit``'s default);
- ``numpyro`` / ``blackjax`` (``--pymc-jax``): PyMC's JAX samplers, chains in parallel on
  the CPU's cores.

``--repeat 2`` runs the backends A, B, A, B: compare ratios, the machine is shared. Then
the reference fit at ``fit``'s defaults (``--reference-fit``), and query latency: 10,000
configurations x 1,000 draws in process, with the fused kernel and with numpy alone (the
baseline, and their ratio), the fused path's first query in a fresh process (JAX's import
and compilations included), and ``bayes-prune query`` (reference posterior, one
configuration) as a whole process. ``--compile-cache`` alone: the persistent XLA cache's
saving, the seconds from a fresh process' model to its first log density with the cache off,
cold and warm. A last line that scripts can read:

    <backend>_s=<wall> ... query_s=<s> query_numpy_s=<s> query_speedup=<x> query_first_s=<s>
    query_process_s=<s>

Usage: python benchmarks/fit_speed.py [--grid reference|synthetic] [--draws 300] [--tune 300]
       [--chains 4] [--backends nutpie-numba,nutpie-jax64,nutpie-jax32] [--pymc-jax]
       [--repeat 1] [--reference-fit] [--query-only] [--compile-cache]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

from bayes_prune.sampler import TARGET_ACCEPT

BACKENDS = {"nutpie-numba": ("numba", "float64"), "nutpie-jax64": ("jax", "float64"),
            "nutpie-jax32": ("jax", "float32")}


def benchmark_grid(kind: str) -> pd.DataFrame:
    """The reference grids (12,608 points), or ~2,000 synthetic points (4 groups)."""
    if kind == "reference":
        from bayes_prune.reference import read_grid

        return read_grid()
    from bayes_prune.synthetic import simulate_grid

    return simulate_grid(depths=(2, 3, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0, 1), rounds=10, prune_fraction=0.6, seed_sd=0.03,
                         rel_noise=0.03, n_test=2000, rng=1)


def nutpie_run(grid, name: str, args) -> dict:
    from bayes_prune.fit import fit

    backend, precision = BACKENDS[name]
    t = time.perf_counter()
    # the default acceptance, fixed: a fit that diverged would otherwise sample twice
    post = fit(grid, draws=args.draws, tune=args.tune, chains=args.chains, progress=False,
               discrepancy=False, backend=backend, precision=precision, ess_target=None,
               target_accept=TARGET_ACCEPT)
    return {"wall": time.perf_counter() - t, **post.diagnostics}


def pymc_jax_run(grid, name: str, args) -> dict:
    """PyMC's numpyro or blackjax NUTS on the model ``fit`` builds, chains on parallel CPU
    devices (XLA_FLAGS set before JAX is imported, in :func:`main`)."""
    from pymc.sampling.jax import sample_blackjax_nuts, sample_numpyro_nuts

    from bayes_prune.coords import layout
    from bayes_prune.fit import diagnose
    from bayes_prune.model import build_model
    from bayes_prune.priors import Priors

    t = time.perf_counter()
    lay = layout(grid)
    model = build_model(lay, Priors().follow(lay), p_depends_on_n=True,  # fit's defaults
                        gamma_depends_on_n=True, curved=True, dense_depth=True)
    init = {rv.name: v for rv, v in model.rvs_to_initial_values.items() if v is not None}
    for rv in model.free_RVs:
        model.set_initval(rv, None)
    sampler = sample_numpyro_nuts if name == "numpyro" else sample_blackjax_nuts
    with model:
        idata = sampler(draws=args.draws, tune=args.tune, chains=args.chains,
                        target_accept=TARGET_ACCEPT, random_seed=0, initvals=init,
                        chain_method="parallel", progressbar=False,
                        compute_convergence_checks=False)
    return {"wall": time.perf_counter() - t, **diagnose(idata)}


def query_latency() -> tuple[float, float, float, float]:
    """Seconds for 10,000 configurations x 1,000 draws in process (reference posterior), with
    the fused kernel (``bayes_prune.kernels``, forced on) and with numpy alone (its baseline),
    the fused path's first query in a fresh process (JAX's import and compilations included),
    and ``bayes-prune query`` of one configuration as a whole process."""
    from bayes_prune.posterior import Posterior

    post = Posterior.load("reference")
    rows = _query_rows()
    times = {}
    for name in ("numpy", "fused", "numpy", "fused"):  # alternated: the machine is shared
        os.environ["BAYES_PRUNE_FUSED"] = "1" if name == "fused" else "0"
        post.summary(rows[:100], level=0.9)  # warm the caches: the first call is not the cost
        post.summary(rows, level=0.9)  # and JAX's compilations
        t = time.perf_counter()
        post.summary(rows, level=0.9)
        times.setdefault(name, []).append(time.perf_counter() - t)
    del os.environ["BAYES_PRUNE_FUSED"]
    in_process, numpy_only = min(times["fused"]), min(times["numpy"])
    first = subprocess.run([sys.executable, __file__, "--first-query"], capture_output=True,
                           text=True, check=True, env={**os.environ, "BAYES_PRUNE_FUSED": "1"})
    cmd = [sys.executable, "-m", "bayes_prune.cli", "query", "--arch", "mlp", "--task",
           "mnist1d", "--depth", "4", "--width", "256", "--n-train", "8000", "--density", "0.1"]
    subprocess.run(cmd, capture_output=True, check=True)  # the OS's file cache warm
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return in_process, numpy_only, float(first.stdout.split()[-1]), time.perf_counter() - t


def compile_cache() -> dict[str, float]:
    """Seconds from a fresh process' model to its first log density + gradient (build, JAX
    trace, XLA compile, one call), with the persistent XLA cache off, cold (an empty directory)
    and warm (the same directory again): each in its own process, as a user's refits are."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, where in (("off", ""), ("cold", cache), ("warm", cache)):
            run = subprocess.run([sys.executable, __file__, "--first-logp"], capture_output=True,
                                 text=True, check=True,
                                 env={**os.environ, "BAYES_PRUNE_JAX_CACHE": where})
            out[name] = float(run.stdout.split()[-1])
    return out


def _first_logp() -> None:
    """Print the seconds from the reference grids' layout to the first log density + gradient
    of ``fit``'s default model through nutpie's JAX backend."""
    from bayes_prune.coords import layout
    from bayes_prune.model import build_model
    from bayes_prune.priors import Priors
    from bayes_prune.reference import read_grid
    from bayes_prune.sampler import compile_model

    lay = layout(read_grid())
    t = time.perf_counter()
    compiled = compile_model(build_model(lay, Priors().follow(lay), p_depends_on_n=True,
                                         gamma_depends_on_n=True, curved=True,
                                         dense_depth=True), "jax")
    logp = compiled._make_logp_func()
    logp(np.asarray(compiled._make_initial_points(0), float), **compiled._shared_data)
    print(f"{time.perf_counter() - t:.3f}")


def _query_rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"arch": "mlp", "task": "mnist1d",
                         "depth": rng.integers(1, 5, 10_000),
                         "width": rng.integers(16, 512, 10_000),
                         "n_train": rng.integers(1000, 8000, 10_000),
                         "density": np.exp(rng.uniform(np.log(1e-3), 0, 10_000))})


def _first_query() -> None:
    """Print the seconds of this process' first large query (the posterior already loaded)."""
    from bayes_prune.posterior import Posterior

    post, rows = Posterior.load("reference"), _query_rows()
    t = time.perf_counter()
    post.summary(rows, level=0.9)
    print(f"{time.perf_counter() - t:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=("reference", "synthetic"), default="reference")
    ap.add_argument("--draws", type=int, default=300, help="draws per chain (default: 300)")
    ap.add_argument("--tune", type=int, default=300, help="tuning steps (default: 300)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help=f"comma-separated, of {', '.join(BACKENDS)}")
    ap.add_argument("--pymc-jax", action="store_true", help="also numpyro and blackjax")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over the backends")
    ap.add_argument("--reference-fit", action="store_true",
                    help="also time the reference fit at fit's defaults (ESS target 400)")
    ap.add_argument("--query-only", action="store_true", help="only the query latency")
    ap.add_argument("--compile-cache", action="store_true",
                    help="only the persistent XLA cache: first log density off / cold / warm")
    ap.add_argument("--first-query", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first-logp", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.first_query:
        return _first_query()
    if args.first_logp:
        return _first_logp()
    if args.compile_cache:
        s = compile_cache()
        print("fresh process, model to first log density + gradient: cache off "
              f"{s['off']:.2f} s, cold {s['cold']:.2f} s, warm {s['warm']:.2f} s "
              f"(saves {s['off'] - s['warm']:.2f} s)")
        print(" ".join(f"compile_{k}_s={v:.2f}" for k, v in s.items()))
        return None
    if args.pymc_jax:  # one XLA CPU device per core, before JAX is imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.chains}")
    warnings.filterwarnings("ignore")
    names = [] if args.query_only else [b for b in args.backends.split(",") if b]
    names += ["numpyro", "blackjax"] if args.pymc_jax and not args.query_only else []
    out: dict[str, list[dict]] = {}
    if names:
        grid = benchmark_grid(args.grid)
        print(f"grid: {args.grid}, {len(grid)} points; {args.chains} chains x {args.draws} "
              f"draws (+{args.tune} tune), fixed; load {os.getloadavg()[0]:.1f}", flush=True)
    for _ in range(args.repeat):
        for name in names:
            run = nutpie_run if name in BACKENDS else pymc_jax_run
            try:
                r = run(grid, name, args)
            except Exception as exc:  # a backend that does not install or compile here
                print(f"{name:13s} FAILED: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            r["ess_s"] = r["min_ess_bulk"] / r["wall"]
            out.setdefault(name, []).append(r)
            base = out.get("nutpie-numba", [None])[-1]
            ratio = (f"  x{base['wall'] / r['wall']:.2f} faster, ESS/s x"
                     f"{r['ess_s'] / base['ess_s']:.2f} vs nutpie-numba") if base else ""
            print(f"{name:13s} wall {r['wall']:6.1f} s  min bulk ESS {r['min_ess_bulk']:5.0f} "
                  f"({r['ess_s']:5.2f}/s)  max R-hat {r['max_rhat']:.3f}  divergences "
                  f"{r['divergences']}{ratio}  load {os.getloadavg()[0]:.1f}", flush=True)
    line = [f"{n}_s={np.median([r['wall'] for r in rs]):.1f}" for n, rs in out.items()]
    if args.reference_fit:
        from bayes_prune.fit import fit
        from bayes_prune.reference import read_grid

        t = time.perf_counter()
        post = fit(read_grid(), progress=False)
        wall, d, s = time.perf_counter() - t, post.diagnostics, post.meta["settings"]
        print(f"reference fit (defaults: {s['backend']} {s['precision']}, tune {s['tune']}, "
              f"{s['chains']} chains x {s['draws']} draws, {s['stopped']}): wall {wall:.1f} s, "
              f"max R-hat {d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f} tail "
              f"{d['min_ess_tail']:.0f}, divergences {d['divergences']}; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        line.append(f"reference_fit_s={wall:.1f}")
    q, q_numpy, q_first, qp = query_latency()
    print(f"query: 10,000 configurations x 1,000 draws in process {q:.3f} s (numpy alone "
          f"{q_numpy:.3f} s, ratio {q_numpy / q:.2f}x; fused, as a process' first query, JAX's "
          f"import included, {q_first:.3f} s); `bayes-prune query` (reference, one "
          f"configuration) as a process {qp:.2f} s; load {os.getloadavg()[0]:.1f}")
    print(" ".join(line + [f"query_s={q:.3f}", f"query_numpy_s={q_numpy:.3f}",
                           f"query_speedup={q_numpy / q:.2f}", f"query_first_s={q_first:.3f}",
                           f"query_process_s={qp:.2f}"]))


if __name__ == "__main__":
    main()
