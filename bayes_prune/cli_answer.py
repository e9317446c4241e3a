"""The ``bayes-prune`` commands that answer from a posterior: ``query``, ``design``, ``plot``,
``compare`` and ``reference`` (the shipped reference posterior). Registered by
:mod:`bayes_prune.cli`; each ``_add_<name>(subparsers)`` declares its arguments and sets
``func``."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


def _add_query(sub) -> None:
    p = sub.add_parser(
        "query", help="credible intervals of the error of any configuration",
        description="Posterior error of configurations, trained or not, from a saved fit "
                    "(numpy only: neither torch nor pymc is imported). Several values per "
                    "option give their cross product. An (arch, task) pair never fitted is "
                    "predicted by the crossed pooling when its arch and its task were fitted; "
                    "a configuration larger than its group's grid carries the extrapolation "
                    "discrepancy the fit measured (see `fit --no-discrepancy`).")
    _add_posterior_arg(p)
    for opt, typ, what in (("--arch", str, "architecture family, e.g. mlp"),
                           ("--task", str, "task, e.g. mnist1d"),
                           ("--depth", int, "depth (hidden layers / conv layers)"),
                           ("--width", int, "width (units / base channels)"),
                           ("--n-train", int, "training-set size"),
                           ("--density", float, "fraction of prunable weights left, (0, 1]")):
        p.add_argument(opt, type=typ, nargs="+", metavar=opt.strip("-").upper().replace("-", "_"),
                       help=f"{what}; several values allowed")
    p.add_argument("--params-total", type=float, nargs="+", metavar="M",
                   help="dense weight count, one per (depth, width) pair or one for all; "
                        "needed only for a family the toolkit does not know")
    p.add_argument("--from-csv", metavar="TABLE",
                   help="query the rows of a CSV with columns arch, task, depth, width, "
                        "n_train, density (optional params_total, params_prunable, n_test) "
                        "instead of the options above")
    p.add_argument("--level", type=float, default=0.9,
                   help="credible level of the HDI lower/upper (default: 0.9)")
    p.add_argument("--band", choices=("expected", "prediction"), default="expected",
                   help="'expected': the mean error of such a run; 'prediction': where a next "
                        "measured run falls (adds seed and test-set noise) (default: expected)")
    p.add_argument("--below", type=float, default=None, metavar="X",
                   help="also print P(error <= X)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects with keys arch, task, depth, width, "
                        "n_train, density, mean, median, lower, upper, level, band, beyond "
                        "(the axes on which the row lies beyond its group's grid, '' inside "
                        "it) (and p_below with --below)")
    p.set_defaults(func=_run_query)


def _add_posterior_arg(p) -> None:
    p.add_argument("posterior", metavar="POSTERIOR.nc", nargs="?", default="reference",
                   help="written by `bayes-prune fit`, or 'reference': the shipped posterior "
                        "of the reference grids (default: reference)")


def _load_posterior(path: str):
    """The posterior at ``path`` ('reference': the shipped one), saying on stderr which one
    answers when it is the reference, and that an approximate fit is approximate."""
    from .posterior import Posterior

    post = Posterior.load(path)
    if path == "reference":
        groups = ", ".join(f"{a}/{t}" for a, t in zip(post.groups["arch"], post.groups["task"],
                                                      strict=True))
        print(f"posterior: the shipped reference ({groups}; fitted "
              f"{post.meta['provenance']['created'][:10]}); give POSTERIOR.nc to use your own",
              file=sys.stderr)
    if post.approximate:
        print(post.approximate, file=sys.stderr)
    return post


def _query_rows(args) -> pd.DataFrame:  # noqa: F821
    import itertools

    import pandas as pd

    if args.from_csv:
        try:
            return pd.read_csv(args.from_csv)
        except (OSError, ValueError) as exc:
            raise UserError(f"--from-csv {args.from_csv}: {exc}") from None
    names = ("arch", "task", "depth", "width", "n_train", "density")
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise UserError(f"query needs {', '.join(missing)} (or --from-csv TABLE)")
    rows = pd.DataFrame(list(itertools.product(*(getattr(args, n) for n in names))),
                        columns=list(names))
    if args.params_total:
        shapes = list(itertools.product(args.depth, args.width))
        if len(args.params_total) == 1:
            rows["params_total"] = args.params_total[0]
        elif len(args.params_total) == len(shapes):
            size = dict(zip(shapes, args.params_total, strict=True))
            rows["params_total"] = [size[(d, w)] for d, w in zip(rows["depth"], rows["width"],
                                                                 strict=True)]
        else:
            raise UserError(f"--params-total takes 1 value or one per (depth, width) pair "
                            f"({len(shapes)}), got {len(args.params_total)}")
    return rows


# what held-out data showed of such bands (experiments/README.md: "Leave-group-out", "Beyond
# the reference posterior", "A task no reference grid holds")
_EXTRAPOLATION_CAVEAT = ("held out, such 90 % bands covered 97-99 % of a new group's larger "
                         "networks where other groups had reached those sizes, 91-97 % where "
                         "only the shipped reference grids' drift had (94-100 % two steps "
                         "beyond), 89-100 % one step beyond the reference posterior's grids, "
                         "96-98 % on a task no reference grid holds, and 92 % for a fresh "
                         "small CNN grid (depths 1-2, widths 4-16) asked about depths 3-4, "
                         "widths 24-48, whose median erred high (experiments/README.md)")


def _run_query(args) -> None:
    from .beyond import NEVER_FITTED
    from .inputs import check_query_rows

    rows = check_query_rows(_query_rows(args), args.from_csv)
    post = _load_posterior(args.posterior)
    table = post.summary(rows, level=args.level, band=args.band, below=args.below)
    out = ~table["beyond"].isin(("", NEVER_FITTED))
    if out.any():
        disc = "with" if post.meta.get("discrepancy") else "WITHOUT (fit --no-discrepancy)"
        print(f"note: {int(out.sum())} of {len(table)} row(s) lie beyond their group's grid "
              f"(column 'beyond'): extrapolations, banded {disc} the extrapolation discrepancy "
              f"(measured by splits inside the grids, or inherited where a grid could not be "
              f"split: fit prints which); {_EXTRAPOLATION_CAVEAT}", file=sys.stderr)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=1, default=_plain))
        return
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def _add_design(sub) -> None:
    p = sub.add_parser(
        "design", help="the fewest-weights configurations that meet an error target",
        description="Search the fitted configurations (or a CSV of candidates) at densities "
                    "0.8^r, r = 0..40, for those whose error is at most --target-error with "
                    "probability at least --prob under the posterior prediction band; print "
                    "them fewest non-zero weights first.")
    _add_posterior_arg(p)
    p.add_argument("--target-error", type=float, required=True, metavar="E",
                   help="test error to meet, in (0, 1)")
    p.add_argument("--prob", type=float, required=True, metavar="Q",
                   help="probability of meeting it, in (0, 1)")
    p.add_argument("--candidates", metavar="TABLE",
                   help="CSV of candidate rows (arch, task, depth, width, n_train, density; "
                        "optional params_total, params_prunable); default: the fitted "
                        "configurations at densities 0.8^r")
    p.add_argument("--band", choices=("expected", "prediction"), default="prediction",
                   help="meet the target for a next run ('prediction') or on average "
                        "('expected') (default: prediction)")
    p.add_argument("--top", type=int, default=10, help="rows to print (default: 10)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects with keys arch, task, depth, width, "
                        "n_train, density, params_total, params_nonzero, p_meets, median")
    p.set_defaults(func=_run_design)


def _run_design(args) -> None:
    import pandas as pd

    post = _load_posterior(args.posterior)
    cand = None
    if args.candidates:
        from .inputs import check_query_rows

        try:
            cand = pd.read_csv(args.candidates)
        except (OSError, ValueError) as exc:
            raise UserError(f"--candidates {args.candidates}: {exc}") from None
        cand = check_query_rows(cand, args.candidates)
    best = post.design(args.target_error, args.prob, cand, band=args.band).head(args.top)
    cols = ["arch", "task", "depth", "width", "n_train", "density", "params_total",
            "params_nonzero", "p_meets", "median"]
    if args.json:
        print(json.dumps(best[cols].to_dict(orient="records"), indent=1, default=_plain))
        return
    if best.empty:
        print(f"no candidate reaches error <= {args.target_error} with probability >= "
              f"{args.prob}")
        return
    print(best[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))


def _group_arg(text: str) -> tuple[str, str]:
    arch, sep, task = text.partition("/")
    if not sep or not arch or not task:  # argparse prints this message as it is
        raise argparse.ArgumentTypeError(
            f"{text!r} is not of the form ARCH/TASK (e.g. mlp/mnist1d)")
    return arch, task


def _add_plot(sub) -> None:
    p = sub.add_parser(
        "plot", help="posterior plots: curves, collapse, coefficients, calibration",
        description="Draw a fitted posterior: 'curves' (error vs density per configuration, "
                    "points per seed, posterior median and 50 %/90 % bands), 'collapse' "
                    "(error vs m* = depth^phi width^psi density), 'coefficients' (forest plots "
                    "of gamma, p_prime, phi, psi, eps_up across groups), 'calibration' "
                    "(nominal vs empirical coverage of held-out points, and beside it the "
                    "90 % band's coverage and mean log miss per interval of density: where "
                    "along the curve they miss).")
    _add_posterior_arg(p)
    p.add_argument("--kind", choices=("curves", "collapse", "coefficients", "calibration"),
                   required=True, help="what to draw")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="image to write; the suffix picks the format (.png, .svg, .pdf)")
    p.add_argument("--grid", nargs="+", metavar="GRID",
                   help="the grid(s) whose points to draw (curves, collapse); default: the "
                        "grid(s) the posterior was fitted on, when still where they were")
    p.add_argument("--group", type=_group_arg, metavar="ARCH/TASK",
                   help="group to draw (curves, collapse); default: the first fitted group")
    p.add_argument("--holdout", nargs="+", metavar="GRID",
                   help="held-out grid(s) for --kind calibration")
    p.add_argument("--band", choices=("expected", "prediction"), default="prediction",
                   help="band drawn by --kind curves (default: prediction)")
    p.set_defaults(func=_run_plot)


def _run_plot(args) -> None:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from . import figures
    from .grid import read_grids
    post = _load_posterior(args.posterior)
    arch, task = args.group or (post.groups["arch"][0], post.groups["task"][0])
    if args.kind == "coefficients":
        fig = figures.coefficients(post)
    elif args.kind == "calibration":
        if not args.holdout:
            raise UserError("--kind calibration needs --holdout GRID (points the fit never saw)")
        fig, cover = figures.calibration(post, read_grids(args.holdout))
        print("coverage: " + ", ".join(f"{k:.0%} -> {v:.0%}" for k, v in cover.items()))
    else:
        paths = args.grid or post.meta["provenance"]["source"].split(" + ")
        if not all(Path(g).is_file() for g in paths):
            raise UserError(f"--kind {args.kind} draws the grid's points: give --grid GRID "
                            f"(the fitted grid {' + '.join(paths)} is not there)")
        grid = read_grids(paths)
        fn = figures.curves if args.kind == "curves" else figures.collapse
        fig = fn(post, grid, arch, task, **({"band": args.band} if args.kind == "curves"
                                             else {}))
    try:
        fig.savefig(args.output, dpi=130)
    except (OSError, ValueError) as exc:
        raise UserError(f"-o {args.output}: {exc}") from None
    print(f"wrote {args.output}")


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="P(coefficient of A > coefficient of B) under the posterior",
        description="Compare one coefficient of two (arch, task) groups: medians, HDIs and the "
                    "posterior probability that A's exceeds B's. A steeper gamma means error "
                    "rises faster once pruning bites; a larger p_prime means it bites sooner.")
    _add_posterior_arg(p)
    p.add_argument("--coef", required=True,
                   help="gamma, p_prime, phi, psi, eps_up, or a dense-law coefficient "
                        "(a, alpha, b, beta, c_inf)")
    p.add_argument("--a", required=True, type=_group_arg, metavar="ARCH/TASK")
    p.add_argument("--b", required=True, type=_group_arg, metavar="ARCH/TASK")
    p.add_argument("--level", type=float, default=0.94, help="HDI level (default: 0.94)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: coef, a, b, median_a/b, lower_a/b, upper_a/b, "
                        "level, p_a_greater")
    p.set_defaults(func=_run_compare)


def _run_compare(args) -> None:
    from .inputs import check_pair

    post = _load_posterior(args.posterior)
    for option, pair in (("--a", args.a), ("--b", args.b)):
        check_pair(pair, post.archs, post.tasks, option)
    res = post.compare(args.coef, args.a, args.b, args.level)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for side in ("a", "b"):
        print(f"{res[side]}: {args.coef} = {res['median_' + side]:.4g} "
              f"[{res['lower_' + side]:.4g}, {res['upper_' + side]:.4g}] ({res['level']:.0%} HDI)")
    print(f"P({args.coef} of {res['a']} > {args.coef} of {res['b']}) = {res['p_a_greater']:.3f}")


def _add_reference(sub) -> None:
    p = sub.add_parser(
        "reference", help="the shipped reference posterior: show it, or refit it",
        description="The posterior that query, design, plot and compare use without a "
                    "POSTERIOR.nc: the reference grids (experiments/results: the four "
                    "fitting grids and their extrapolation sets) fitted at fit's default "
                    "settings, thinned to 1,000 float32 draws.")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = rsub.add_parser("show", help="its settings, diagnostics and grid hash")
    show.set_defaults(func=_run_reference_show)
    refresh = rsub.add_parser("refresh", help="refit the reference grids and rewrite it")
    refresh.add_argument("--grids", metavar="DIR", default=None,
                         help="directory of the reference grids' CSVs (default: the source "
                              "checkout's experiments/results)")
    refresh.add_argument("-o", "--output", metavar="FILE", default=None,
                         help="where to write it (default: the shipped file in the package)")
    refresh.add_argument("--quiet", action="store_true", help="no progress bar")
    refresh.set_defaults(func=_run_reference_refresh)


def _run_reference_show(args) -> None:
    from . import reference

    post = reference.load()
    s, d, prov = post.meta["settings"], post.diagnostics, post.meta["provenance"]
    print(f"{prov['source']}: {prov['points']} points, grid sha256 {prov['grid_sha256']}")
    print(f"fitted {prov['created']} with {s['sampler']} ({s.get('backend', '?')}), "
          f"{s['chains']} chains x {s['draws']} draws in {s['seconds']:.0f} s; max R-hat "
          f"{d['max_rhat']:.3f}, min ESS bulk {d['min_ess_bulk']:.0f} tail "
          f"{d['min_ess_tail']:.0f}, divergences {d['divergences']}; {post.n_draws} draws kept")


def _run_reference_refresh(args) -> None:
    from . import reference
    from .posterior import REFERENCE

    out = args.output or REFERENCE
    post = reference.refresh(args.grids, out, progress=not args.quiet)
    d = post.diagnostics
    print(f"wrote {out}: {post.n_draws} draws, max R-hat {d['max_rhat']:.3f}, min ESS bulk "
          f"{d['min_ess_bulk']:.0f}, fit {post.meta['settings']['seconds']:.0f} s")
