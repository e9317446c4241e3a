"""The ``bayes-prune`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments, with
their help text beside them, and sets ``func`` to the function that runs it. Bad input raises
:class:`~bayes_prune.errors.UserError`, printed here as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli_answer import (
    _add_compare,
    _add_design,
    _add_plot,
    _add_query,
    _add_reference,
)
from .cli_demo import _add_demo
from .cli_evaluate import _add_evaluate
from .cli_grid import _add_grid, _add_import
from .cli_options import _add_budget, _add_variants, _variants
from .cli_suggest import _add_suggest
from .errors import UserError
from .sampler import ESCALATED_ACCEPT, SMALL_GRID, TARGET_ACCEPT, Target

DESCRIPTION = """\
Pruning scaling laws as a Bayesian, predictive instrument.

Iterative magnitude pruning (IMP) over a grid of depth x width x dataset size x seed gives an
error grid (one row per run and pruning round); the law of Rosenfeld et al. (ICML 2021) is fitted
to it, by the paper's least squares or by a hierarchical Bayesian model, and queried for
configurations nobody trained. Run `bayes-prune COMMAND --help` for each command."""


def _add_lsq(sub) -> None:
    p = sub.add_parser(
        "lsq", help="fit the law by least squares (the paper's baseline)",
        description="Fit the pruning law by least squares on the relative deviation "
                    "delta = (pred - obs) / obs, each point conditioned on its own run's dense "
                    "error, as Rosenfeld et al. (ICML 2021) did; print coefficients and the mean "
                    "and std of delta per group.")
    p.add_argument("grid", metavar="GRID", help="error grid, .csv or .parquet (schema: "
                   "python -c 'import bayes_prune.grid as g; help(g)')")
    p.add_argument("--form", choices=("single", "joint"), default="joint",
                   help="'joint': one fit per (arch, task) group with the invariant "
                        "m* = depth^phi width^psi density (coefficients gamma, p_prime, phi, psi, "
                        "eps_up); 'single': Eq. 1 per network (arch, task, depth, width, n_train; "
                        "seeds pooled), coefficients gamma, p, eps_up (default: joint)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON list, an object per group with keys arch, task, "
                        "coefficients, delta_mean, delta_std, n_points (and depth, width, "
                        "n_train for --form single)")
    p.set_defaults(func=_run_lsq)


def _run_lsq(args) -> None:
    from . import lsq
    from .grid import read_grid
    from .inputs import check_least_squares

    grid = read_grid(args.grid)
    check_least_squares(grid, args.grid, args.form)
    fits = lsq.fit(grid, form=args.form)
    rows = [f.to_json() for f in fits]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        head = " ".join(f"{k}={row[k]}" for k in row if k not in
                        ("coefficients", "delta_mean", "delta_std", "n_points"))
        coefs = " ".join(f"{k}={v:.4g}" for k, v in row["coefficients"].items())
        print(f"{head}  {coefs}  delta mean={row['delta_mean']:+.2%} "
              f"std={row['delta_std']:.2%}  points={row['n_points']}")


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", help="write a SYNTHETIC error grid drawn from known coefficients",
        description="Draw a synthetic error grid from the law with known coefficients (4 groups: "
                    "archs syn-a/syn-b x tasks syn-x/syn-y), with per-run seed offsets, relative "
                    "noise and binomial test-set noise. For demos and tests; rows are marked "
                    "source=synthetic.")
    p.add_argument("-o", "--output", required=True, metavar="GRID",
                   help="where to write the grid (.csv or .parquet)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--seed-sd", type=float, default=0.03,
                   help="sd of the per-run log dense-error offset (default: 0.03)")
    p.add_argument("--rel-noise", type=float, default=0.0,
                   help="sd of the per-point log-error noise (default: 0)")
    p.add_argument("--n-test", type=int, default=1000,
                   help="test-set size for the binomial noise (default: 1000)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> None:
    from .grid import write_grid
    from .synthetic import simulate_grid

    grid = simulate_grid(seed_sd=args.seed_sd, rel_noise=args.rel_noise, n_test=args.n_test,
                         rng=args.seed)
    write_grid(grid, args.output)
    print(f"wrote {len(grid)} rows of a SYNTHETIC grid to {args.output}")


def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit the hierarchical Bayesian model to an error grid",
        description="Sample the posterior of the hierarchical model (law coefficients per "
                    "(arch, task) group, crossed pooling over archs and tasks, a latent dense "
                    "error per configuration, each run's own offset, relative + binomial "
                    "noise) and save it as ArviZ InferenceData NetCDF. R-hat, ESS and "
                    "divergences are checked, stored in the file and printed; a fit that fails "
                    "them is reported as such.")
    p.add_argument("grid", metavar="GRID", nargs="+",
                   help="error grid(s), .csv or .parquet; several are concatenated")
    p.add_argument("-o", "--output", required=True, metavar="POSTERIOR.nc",
                   help="where to write the posterior (NetCDF)")
    p.add_argument("--sampler", choices=("auto", "nutpie", "pymc"), default="auto",
                   help="'auto': nutpie when installed, else PyMC's NUTS (default: auto)")
    _add_budget(p)
    p.add_argument("--target-accept", type=float, default=None, metavar="P",
                   help=f"NUTS's target acceptance rate, in (0, 1) (default: {TARGET_ACCEPT}, "
                        f"and {ESCALATED_ACCEPT} again if the chains diverge at it, then 0.99 "
                        f"with 2,000 tuning steps if they still do; 0.99 for a grid under "
                        f"{SMALL_GRID} points)")
    p.add_argument("--ess-target", type=float, default=Target.ess, metavar="ESS",
                   help="stop drawing once every variable's bulk and tail ESS reach ESS and "
                        "R-hat is <= 1.01, checked every 50 draws (nutpie; 0: exactly --draws; "
                        f"default: {Target.ess:g})")
    p.add_argument("--chains", type=int, default=4, help="chains (default: 4)")
    p.add_argument("--method", choices=("nuts", "advi", "pathfinder"), default="nuts",
                   help="'advi' or 'pathfinder' (needs pymc-extras): an APPROXIMATE "
                        "posterior (--draws draws), stored with its method and Pareto k; every "
                        "command reading it says it is approximate; on this model k was > 0.7 "
                        "where measured: not yet a substitute for NUTS (default: nuts)")
    p.add_argument("--backend", choices=("auto", "jax", "numba"), default="auto",
                   help="nutpie's backend: 'auto' is JAX when installed, else numba "
                        "(default: auto)")
    p.add_argument("--precision", choices=("auto", "float32", "float64"), default="auto",
                   help="precision of the log density: 'auto' is float64; float32 (JAX "
                        "only) is faster per step but left the reference fit unmixed "
                        "(default: auto)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where JAX evaluates the log density: 'cuda' for a large grid on an "
                        "NVIDIA GPU (needs jax[cuda12]; default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    p.add_argument("--cores", type=int, default=None,
                   help="chains sampled at once (default: every chain with nutpie, so that "
                        "they stop together; the machine's CPU count with --sampler pymc)")
    p.add_argument("--likelihood", choices=("normal", "student"), default="normal",
                   help="observation model on log error (default: normal; student: a "
                        "Student-t with 4 degrees of freedom, which the prediction band's "
                        "point noise then follows too)")
    _add_variants(p)
    p.add_argument("--loo", action="store_true",
                   help="store the pointwise log likelihood and print PSIS-LOO")
    p.add_argument("--priors", metavar="JSON", default=None,
                   help="JSON file overriding priors, e.g. "
                        "{\"mu\": {\"mean\": {\"log_gamma\": 0.5}}, \"sigma\": 0.03}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit)


def _run_fit(args) -> None:
    import json as _json
    from pathlib import Path

    if args.target_accept is not None and not 0 < args.target_accept < 1:
        raise UserError(f"--target-accept must be in (0, 1), got {args.target_accept}")
    for name in ("draws", "tune", "chains"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.ess_target < 0:
        raise UserError(f"--ess-target must be >= 0, got {args.ess_target:g}")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such directory for the posterior file")
    priors = None
    if args.priors:
        from .model import Priors

        try:
            priors = Priors.from_dict(_json.loads(Path(args.priors).read_text()))
        except (OSError, ValueError) as exc:
            raise UserError(f"--priors {args.priors}: {exc}") from None
    from .fit import fit
    from .grid import read_grids

    grid = read_grids(args.grid)

    post = fit(grid, sampler=args.sampler, draws=args.draws, tune=args.tune,
               target_accept=args.target_accept, chains=args.chains, seed=args.seed,
               cores=args.cores,
               likelihood=args.likelihood, priors=priors, **_variants(args),
               log_likelihood=args.loo, progress=not args.quiet, source=" + ".join(args.grid),
               backend=args.backend, precision=args.precision, device=args.device,
               ess_target=args.ess_target or None, method=args.method)
    from .workers import sweep

    sweep(out)  # temp files of fits killed before their rename
    post.save(out)
    d, s = post.diagnostics, post.meta["settings"]
    print(f"fitted {len(grid)} points, {len(post.groups)} group(s) with {s['sampler']} "
          f"({s['backend']}, {s['precision']}) in {s['seconds']:.0f} s, {s['chains']} chain(s) x "
          f"{s['draws']} draws ({'ESS target met' if s['stopped'] == 'target' else 'all'}) "
          f"-> {out}")
    if post.approximate:
        print(post.approximate)
    else:
        print(f"diagnostics: max R-hat {d['max_rhat']:.3f}, min ESS bulk "
              f"{d['min_ess_bulk']:.0f} tail {d['min_ess_tail']:.0f}, divergences "
              f"{d['divergences']}: " + ("ok" if d["ok"] else "FAILED (see the warning above)"))
    disc = post.meta.get("discrepancy") or {}
    borrowed = [g for g, k in disc.items() if k.get("borrowed")]
    if borrowed:
        print(f"extrapolation discrepancy: the drift measured on {len(borrowed)} reference "
              f"group(s) joins the population ({', '.join(borrowed)}; a group this grid holds "
              "joins as '(reference)' where the reference grids go beyond this grid's sizes)")
    if any(not k.get("borrowed") for k in disc.values()):
        from .discrepancy import rates_table

        print("extrapolation discrepancy per unit of log excess over the nearest trained "
              "configuration (sd of log dense error, of log m*, and log m*'s lean towards "
              "pruning better):")
        print(rates_table(disc).to_string(
            index=False, formatters={"largest": "{:.0f}".format,
                                     **dict.fromkeys(("dense", "invariant", "lean"),
                                                     "{:.3g}".format)}))
    for group, c in post.meta["prior_predictive"].items():
        print(f"prior predictive {group}: {100 * c['coverage_90']:.0f} % of the measured errors "
              f"inside the prior's 90 % band, {100 * c['inside_unit_interval']:.0f} % of its "
              "errors in (0, 1); pivot density (5/50/95 %) "
              + "/".join(f"{x:.2g}" for x in c["pivot_density"])
              + f" for grid densities {c['grid_density'][0]:.2g}..{c['grid_density'][1]:.2g}")
    if args.loo:
        import arviz as az

        print(az.loo(post.idata))
    table = post.coefficient_table()
    for (arch, task), rows in table.groupby(["arch", "task"], sort=False):
        print(f"what the grid identifies for {arch}/{task} (posterior 90 % width vs the "
              "prior's): " + "; ".join(
                  f"{kind} {', '.join(rows.loc[rows['identified'] == kind, 'coef'])}"
                  for kind in ("data", "partly", "prior")
                  if (rows["identified"] == kind).any()))
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))



COMMANDS = (_add_lsq, _add_synth, _add_demo, _add_grid, _add_fit, _add_query, _add_design,
            _add_plot, _add_compare, _add_suggest, _add_evaluate, _add_import, _add_reference)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-prune", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"bayes-prune: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("bayes-prune: interrupted; finished work is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
