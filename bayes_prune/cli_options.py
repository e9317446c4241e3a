"""Options that ``bayes-prune fit`` and ``bayes-prune evaluate`` share: the sampler's budget,
the law's variants and the extrapolation discrepancy. Registered by :mod:`bayes_prune.cli` and
:mod:`bayes_prune.cli_evaluate`."""

from __future__ import annotations

import argparse

from .sampler import MAX_DRAWS, SMALL_GRID, TUNE


def _add_budget(p) -> None:
    """The sampler's budget, for `fit` and `evaluate` (None: :func:`bayes_prune.sampler.
    defaults_for` the grid's size)."""
    p.add_argument("--draws", type=int, default=None,
                   help="most draws per chain; the chains stop sooner once the ESS target "
                        f"(fit's --ess-target) is met (default: {MAX_DRAWS})")
    p.add_argument("--tune", type=int, default=None,
                   help=f"tuning steps per chain (default: {TUNE}; 2000 for a grid under "
                        f"{SMALL_GRID} points)")


def _add_variants(p) -> None:
    """The law's variants, for `fit` and `evaluate` (all four on by default; `--paper-law` turns
    them off), and the extrapolation discrepancy (on)."""
    on = argparse.BooleanOptionalAction
    p.add_argument("--p-depends-on-n", action=on, default=True,
                   help="variant: log p' gets a slope in log n_train (on by default)")
    p.add_argument("--gamma-depends-on-n", action=on, default=True,
                   help="variant: log gamma gets a slope in log n_train (on by default)")
    p.add_argument("--curved", action=on, default=True,
                   help="variant: the invariant log m* gets curvature terms in log depth and "
                        "log width (phi2, psi2; prior centred at 0): bands that widen with "
                        "the distance of an extrapolation (on by default)")
    p.add_argument("--dense-depth", action=on, default=True,
                   help="variant: the dense envelope sizes a network by its weights times "
                        "(depth / the group's mean depth)^zeta (zeta per group, prior centred "
                        "at 0): at equal weights a deeper network may err less or more. Better "
                        "on the settling splits, and on a user's fresh small CNN grid (90 %% "
                        "band 74 -> 92 %%) (on by default; experiments/README, 'The envelope's "
                        "depth term, the default')")
    p.add_argument("--paper-law", action="store_true",
                   help="the paper's law as published: every variant off (they score "
                        "better beyond the grid, experiments/README.md)")
    p.add_argument("--no-discrepancy", action="store_true",
                   help="do not widen the bands of configurations outside the grid (deeper, "
                        "wider, more data) by the law's extrapolation miss, as measured by "
                        "nested splits of the grid (fit up to a depth, width or n_train, predict "
                        "beyond it), leaning towards lower error where larger networks pruned "
                        "better than the law fitted below them; on by default")
    p.add_argument("--borrow-drift", action=argparse.BooleanOptionalAction, default=True,
                   help="pool the extrapolation discrepancy's drift with the shipped reference "
                        "groups' as measured on the reference grids, as if fitted beside it: "
                        "each reference group this grid does not hold, and each it holds but "
                        "stops below the reference grids' sizes, beside its own measurement; a "
                        "grid then carries their drift beyond its sizes (reference groups "
                        "fitted alone: 90 %% coverage of their extrapolation sets 60-92 -> "
                        "97-99 %%, none too narrow, all wider than needed); on by default, "
                        "--no-borrow-drift for the grid's own drift alone")
    p.add_argument("--ar1", action="store_true",
                   help="correlate the residuals of a run's successive rounds (AR(1) per "
                        "group): a trajectory then counts for fewer independent points, and "
                        "the coefficients' bands widen accordingly")
    p.add_argument("--invariant-scatter", action="store_true",
                   help="give every configuration its own shift of the curve along density "
                        "(an offset of its log invariant, scatter tau_m per group), shared by "
                        "its runs: a trajectory's misses are then one configuration's, not "
                        "30 independent points', and a new configuration's band carries "
                        "the scatter (opt-in: it evens the in-sample bands a little but "
                        "extrapolated worse on the settling split, experiments/README)")
    p.add_argument("--runs-mode", choices=("latent", "auto", "measured"), default="latent",
                   help="each run's dense error: latent (default) samples every run's; auto "
                        "takes a run's measured dense point (round 0), with its test set's "
                        "noise, where it has one and samples it where it has none: 2-3x "
                        "faster on the reference grids, but worse held-out bands for the "
                        "Fashion-MNIST groups (README, 'Fit speed'); measured refuses a run "
                        "without a dense point")


def _variants(args) -> dict:
    return {**{k: getattr(args, k) and not args.paper_law
               for k in ("p_depends_on_n", "gamma_depends_on_n", "curved", "dense_depth")},
            "discrepancy": not args.no_discrepancy, "borrow_drift": args.borrow_drift,
            "ar1": args.ar1, "invariant_scatter": args.invariant_scatter,
            "runs_mode": args.runs_mode}


def _changed_fit_options(args) -> list[str]:
    """The fit options (budget, variants, discrepancy, runs) set away from their defaults in
    ``args``, as a user would have typed them."""
    p = argparse.ArgumentParser(add_help=False)
    _add_budget(p)
    _add_variants(p)
    out = []
    for k, default in vars(p.parse_args([])).items():
        value = getattr(args, k, default)
        if value != default:
            flag = k.replace("_", "-")
            out.append(f"--no-{flag}" if default is True and value is False else f"--{flag}")
    return out
