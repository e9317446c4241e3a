"""``bayes-prune evaluate``: fit on some configurations and score the predictions of the others
(:mod:`bayes_prune.evaluate`), or score a saved posterior's bands on configurations it was not
fitted on (``--posterior``). Registered by :mod:`bayes_prune.cli`."""

from __future__ import annotations

import json
import sys

from .cli_answer import _load_posterior, _plain
from .cli_options import _add_budget, _add_variants, _changed_fit_options, _variants
from .errors import UserError


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="extrapolation: fit on some configurations, score the others",
        description="Fit on the fitting set and predict the held-out set with the Bayesian "
                    "model and two baselines (the paper's least squares; least squares with "
                    "bootstrap intervals over configurations); score median |delta|, mean and "
                    "std of delta, coverage of the 50 % and 90 % bands and the log predictive "
                    "density per (arch, task) group. Also prints the paper's fit-quality table. "
                    "With --posterior, nothing is fitted for the Bayesian rows: a saved "
                    "posterior's prediction band is scored on --holdout (e.g. runs trained "
                    "after the fit, larger than its grid).")
    p.add_argument("grid", metavar="GRID", nargs="*",
                   help="error grid(s) to fit on (optional with --posterior: then only the "
                        "baselines are fitted on them)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--holdout", nargs="+", metavar="FILE",
                     help="held-out grid(s) (e.g. an extrapolation set); GRID is all fitted")
    how.add_argument("--split", metavar="params<=X",
                     help="fit the configurations with at most X weights, hold out the rest")
    how.add_argument("--leave-configs-out", type=int, metavar="K",
                     help="interpolation: hold out K interior configurations per group (between "
                          "trained ones on every axis with 3+ values), drawn with --seed")
    p.add_argument("--leave-group-out", action="store_true",
                   help="with --holdout: for each held-out group, fit GRID plus the other "
                        "groups' held-out rows and predict its own (what a new group sees)")
    p.add_argument("--posterior", metavar="POSTERIOR.nc",
                   help="with --holdout: score this saved posterior ('reference': the shipped "
                        "one) instead of fitting one; its row's diagnostics are the saved "
                        "fit's. Methods default to bayes alone, or all three when GRID is given "
                        "(the baselines fitted on GRID); fit options are refused with it "
                        "(the saved fit's hold)")
    p.add_argument("--methods", nargs="+", choices=("bayes", "lsq", "bootstrap"),
                   default=None, help="methods (default: all three)")
    _add_budget(p)
    p.add_argument("--chains", type=int, default=4, help="Bayesian chains (4)")
    _add_variants(p)
    p.add_argument("--n-boot", type=int, default=40, help="bootstrap refits (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, an object per group and method with keys arch, "
                        "task, method, n_holdout, median_abs_delta, delta_mean, delta_std, "
                        "coverage_50, coverage_90 (null for lsq), coverage_50_range and "
                        "coverage_90_range (the 5th-95th percentile of what a band calibrated "
                        "for these rows would cover of them: each predictive draw taken as the "
                        "truth in turn), coverage_50_rank and coverage_90_rank (the observed "
                        "coverage's rank among those: near 0 too narrow, near 1 too wide), "
                        "lpd, seconds, for bayes "
                        "the fit's max_rhat, min_ess_bulk, divergences, and by_density: per "
                        "interval of density (< 0.01 ... 0.6-1, dense), points, log_miss (mean "
                        "log measured - log predicted median), coverage_90, width_90")
    p.set_defaults(func=_run_evaluate)


def _methods(args) -> list[str]:
    """The methods to score: as asked; by default all three, or bayes alone when a saved
    posterior is scored without a grid for the baselines."""
    if args.methods is None:
        return ["bayes"] if args.posterior and not args.grid else ["bayes", "lsq", "bootstrap"]
    if args.posterior and not args.grid and {"lsq", "bootstrap"} & set(args.methods):
        raise UserError("--methods lsq/bootstrap with --posterior need GRID, the grid(s) the "
                        "baselines are fitted on")
    return args.methods


def _run_evaluate(args) -> None:
    from . import evaluate
    from .grid import read_grids
    from .inputs import check_least_squares

    if args.leave_group_out and not args.holdout:
        raise UserError("--leave-group-out needs --holdout (the groups' held-out sets)")
    if args.posterior and (not args.holdout or args.leave_group_out):
        raise UserError("--posterior scores a saved posterior on --holdout FILE ...; it cannot "
                        "split a grid or leave a group out (those need fits)")
    if args.posterior and (changed := _changed_fit_options(args)):
        raise UserError(f"{', '.join(changed)}: fit options do nothing with --posterior (the "
                        "saved posterior was fitted with its own); drop them, or fit GRID "
                        "without --posterior")
    if not args.grid and not args.posterior:
        raise UserError("give the error grid(s) to fit on (GRID), or --posterior to score a "
                        "saved one")
    methods = _methods(args)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    grid = read_grids(args.grid) if args.grid else None
    if args.split:
        fit_grid, held = evaluate.split_grid(grid, evaluate.parse_split(args.split))
        fit_source = f"{' + '.join(args.grid)} (--split {args.split})"
    elif args.leave_configs_out is not None:
        fit_grid, held = evaluate.interior_configs(grid, args.leave_configs_out, args.seed)
        fit_source = f"{' + '.join(args.grid)} (--leave-configs-out)"
        from .grid import CONFIG_KEY

        out = held[CONFIG_KEY].drop_duplicates()
        log(f"held out ({len(out)} interior configuration(s), --seed {args.seed}): "
            + "; ".join(f"{r.arch}/{r.task} depth {r.depth} width {r.width} n_train "
                        f"{r.n_train}" for r in out.itertuples(index=False)))
    else:
        fit_grid, held = grid, read_grids(args.holdout)
        fit_source = " + ".join(args.grid)
    if {"lsq", "bootstrap"} & set(methods):
        check_least_squares(fit_grid, fit_source)
    rows = []
    if args.posterior:
        post = _load_posterior(args.posterior)
        rows = evaluate.score_posterior(post, held, seed=args.seed, log=log)
        methods = [m for m in methods if m != "bayes"]
    if methods:
        run = evaluate.leave_group_out if args.leave_group_out else evaluate.evaluate
        rows += run(fit_grid, held, methods=methods, n_boot=args.n_boot, seed=args.seed,
                    draws=args.draws, tune=args.tune, chains=args.chains, progress=False,
                    log=log, **_variants(args))
    if args.json:
        print(json.dumps(rows, indent=1, default=_plain))
        return
    import pandas as pd

    print((f"fitted {len(fit_grid)} points, " if fit_grid is not None else
           f"posterior {args.posterior}, ") + f"held out {len(held)}")
    table = pd.DataFrame(rows)
    # (what a calibrated band would cover has its own block below)
    print(table.drop(columns=["by_density", *(c for c in table
                                              if c.endswith(("_range", "_rank")))])
          .to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.4g}"))
    _print_if_calibrated(rows)
    _print_by_density(rows)
    if fit_grid is not None:
        _print_fit_quality(fit_grid)


def _print_if_calibrated(rows: list[dict]) -> None:
    """Per banded row, the coverage against what a band calibrated for those rows would
    show (:func:`bayes_prune.evaluate.score`)."""
    banded = [r for r in rows if r.get("coverage_90_range")]
    if not banded:
        return
    print("\nthe coverage against what a band calibrated for these very rows would cover of "
          "them (5-95 % of its own draws, each taken as the truth; rank near 0: too narrow, "
          "near 1: too wide)")
    for r in banded:
        print(f"  {r['arch']}/{r['task']} {r['method']}: " + ", ".join(
            f"{level} % band {100 * r[f'coverage_{level}']:.1f} % (calibrated "
            f"{100 * r[f'coverage_{level}_range'][0]:.0f}-"
            f"{100 * r[f'coverage_{level}_range'][1]:.0f} %, rank "
            f"{r[f'coverage_{level}_rank']:.2f})" for level in (50, 90)))


def _print_by_density(rows: list[dict]) -> None:
    """Where along the curve each banded method misses: per group and interval of density,
    the mean log miss and the 90 % band's coverage."""
    import pandas as pd

    from .evaluate import DENSITY_INTERVALS

    cells = [{"group": f"{r['arch']}/{r['task']}", "method": r["method"],
              "density": d["density"],
              "cell": f"{d['log_miss']:+.2f} / {100 * d['coverage_90']:.0f} %"}
             for r in rows if r["method"] != "lsq" for d in r["by_density"]]
    if not cells:
        return
    table = pd.DataFrame(cells).pivot(index=["group", "method"], columns="density",
                                      values="cell")
    order = [c for c in DENSITY_INTERVALS[::-1] if c in table.columns]  # dense first
    print("\nwhere along the curve the held-out points miss, per interval of density: mean "
          "log(measured / predicted median) / 90 % band covers (negative: erred less than "
          "predicted)")
    print(table[order].fillna("-").to_string())


def _print_fit_quality(fit_grid) -> None:
    from . import evaluate
    from .inputs import least_squares_groups

    fittable, refused = least_squares_groups(fit_grid)
    if fittable:
        keep = fit_grid.set_index(["arch", "task"]).index.isin(fittable)
        try:
            quality = evaluate.fit_quality(fit_grid[keep]).fillna("-")
        except UserError as exc:  # runs without a dense point: least squares cannot fit them
            print(f"\n(no least-squares fit quality: {exc})")
        else:
            print("\nfit quality of the paper's least squares on the fitting set:")
            print(quality.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for text in refused:
        print(f"(no least-squares fit quality for {text}: too few shapes)")
