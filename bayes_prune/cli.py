"""The ``bayes-prune`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments, with
their help text beside them, and sets ``func`` to the function that runs it. Bad input raises
:class:`~bayes_prune.errors.UserError`, printed here as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError

TUNE = 1000  # tuning steps per chain of fit and demo (500 not yet shown to be enough)

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


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job on the embedded default, end to end",
        description="Train a small MNIST-1D MLP grid (4 IMP runs, the reference recipe, a new "
                    "seed) into an SQLite store, fit the hierarchical model to it together "
                    "with the reference runs of the same group (mlp/mnist1d in "
                    "experiments/results; --all-groups: every reference group), print credible "
                    "intervals for a configuration nobody trained, and write the comparison "
                    "plots to OUT. Re-running resumes: finished runs are kept. With "
                    "--synthetic: a SYNTHETIC grid fitted by least squares instead (seconds).")
    p.add_argument("--out", default="out", metavar="DIR",
                   help="directory for the store, grid, posterior and plots (default: ./out)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="directory of reference grids (*.csv) to fit along (default: the "
                        "shipped experiments/results, when this is a source checkout)")
    p.add_argument("--all-groups", action="store_true",
                   help="fit along every reference group, not only the demo's own (the "
                        "crossed pooling at work; about 7 more minutes on 2 cores)")
    p.add_argument("--draws", type=int, default=1000, help="draws per chain (default: 1000)")
    p.add_argument("--tune", type=int, default=TUNE, help=f"tuning steps (default: {TUNE})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="training device (default: auto)")
    p.add_argument("--synthetic", action="store_true",
                   help="skip training and the Bayesian fit: least squares on a SYNTHETIC grid")
    p.set_defaults(func=_run_demo)


def _reference_grids(directory) -> list:
    from pathlib import Path

    d = Path(directory) if directory else Path(__file__).resolve().parents[1] / "experiments" / \
        "results"
    if directory and not d.is_dir():
        raise UserError(f"--reference {directory}: no such directory")
    return sorted(d.glob("*.csv")) if d.is_dir() else []


def _run_demo(args) -> None:
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        return _run_demo_synthetic(out)
    import importlib.resources

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    from . import figures
    from .fit import fit
    from .grid import validate, write_grid
    from .imp import run_grid
    from .spec import load_spec
    from .store import Store

    spec_path = importlib.resources.files("bayes_prune") / "data" / "demo.toml"
    spec = load_spec(str(spec_path))
    store = out / "demo.sqlite"
    print(f"1/4 training {len(spec.runs())} IMP runs of {spec.arch}/{spec.task} into {store}")
    failures = run_grid(spec.runs(), str(store), args.device)
    if failures:
        raise UserError(f"{len(failures)} demo run(s) failed: {failures[0][1]}")
    grid = Store(str(store), create=False).export()
    write_grid(grid, out / "demo.csv")
    refs = _reference_grids(args.reference)
    parts = [pd.read_csv(p) for p in refs]
    if not args.all_groups:  # the demo's own group: a fit of ~1 minute instead of ~8
        parts = [t[(t["arch"] == spec.arch) & (t["task"] == spec.task)] for t in parts]
    refs = [p for p, t in zip(refs, parts, strict=True) if len(t)]
    both = validate(pd.concat([grid] + [t for t in parts if len(t)], ignore_index=True),
                    source=" + ".join([str(out / "demo.csv")] + [str(p) for p in refs]))
    write_grid(both, out / "fitted.csv")
    print(f"2/4 fitting {len(both)} points ({len(grid)} from the demo runs, the rest from "
          f"{len(refs)} reference grid(s): {', '.join(p.name for p in refs) or 'none found'}"
          f"{'' if args.all_groups else f'; rows of {spec.arch}/{spec.task} only'})")
    post = fit(both, draws=args.draws, tune=args.tune, source=str(out / "fitted.csv"))
    from .workers import sweep

    sweep(out / "posterior.nc")
    post.save(out / "posterior.nc")
    d = post.diagnostics
    print(f"   {post.meta['settings']['seconds']:.0f} s; max R-hat {d['max_rhat']:.3f}, min ESS "
          f"{d['min_ess_bulk']:.0f}, divergences {d['divergences']} -> {out / 'posterior.nc'}")
    print(post.coefficient_table().query("coef in ['gamma', 'p_prime', 'phi', 'psi', "
                                         "'eps_up']").to_string(
        index=False, float_format=lambda x: f"{x:.3g}"))
    rows = pd.DataFrame({"arch": "mlp", "task": "mnist1d", "depth": 4, "width": 256,
                         "n_train": 8000, "density": [1.0, 0.3, 0.1, 0.03, 0.01]})
    print("3/4 a configuration nobody trained: mlp/mnist1d depth 4, width 256, n_train 8000")
    beyond = post.beyond_grid(rows)[0]
    if beyond:
        print(f"   beyond the grid in {beyond}: an extrapolation, banded with the discrepancy "
              f"the fit measured; {_EXTRAPOLATION_CAVEAT}")
    for band in ("expected", "prediction"):
        t = post.summary(rows, level=0.9, band=band)
        print(f"   {band} error, 90 % HDI:")
        print(t[["density", "median", "lower", "upper"]].to_string(
            index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"4/4 plots -> {out}/")
    figs = {"coefficients.png": figures.coefficients(post),
            "curves_mlp_mnist1d.png": figures.curves(post, both, "mlp", "mnist1d"),
            "collapse_mlp_mnist1d.png": figures.collapse(post, both, "mlp", "mnist1d")}
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=120)
        print(f"   {out / name}")
    print(f"next: bayes-prune query {out / 'posterior.nc'} --arch mlp --task mnist1d --depth 3 "
          "--width 64 --n-train 4000 --density 0.05")
    print("      bayes-prune compare --coef gamma --a mlp/mnist1d --b cnn/mnist1d  (every "
          "reference group, from the shipped reference posterior)")


def _run_demo_synthetic(out) -> None:
    from . import lsq
    from .grid import write_grid
    from .synthetic import default_truths, simulate_grid

    grid = simulate_grid()
    write_grid(grid, out / "grid.csv")
    print(f"SYNTHETIC grid: {len(grid)} points, 4 (arch, task) groups -> {out / 'grid.csv'}")
    truths = default_truths()
    for f in lsq.fit(grid, form="joint"):
        truth = truths[(f.key["arch"], f.key["task"])].law.as_dict()
        coefs = "  ".join(f"{k}={v:.3g} (true {truth[k]:.3g})" for k, v in f.law.as_dict().items())
        print(f"{f.key['arch']}/{f.key['task']}: {coefs}; delta mean={f.delta_mean:+.2%} "
              f"std={f.delta_std:.2%}")


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
    p.add_argument("--draws", type=int, default=1000,
                   help="most draws per chain; the chains stop sooner once --ess-target is "
                        "met (default: 1000)")
    p.add_argument("--tune", type=int, default=TUNE,
                   help=f"tuning steps per chain (default: {TUNE})")
    p.add_argument("--ess-target", type=float, default=400.0, metavar="ESS",
                   help="stop drawing once every variable's bulk and tail ESS reach ESS and "
                        "R-hat is <= 1.01, checked every 50 draws (nutpie; 0: exactly --draws; "
                        "default: 400)")
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
                   help="observation model on log error (default: normal)")
    _add_variants(p)
    p.add_argument("--loo", action="store_true",
                   help="store the pointwise log likelihood and print PSIS-LOO")
    p.add_argument("--priors", metavar="JSON", default=None,
                   help="JSON file overriding priors, e.g. "
                        "{\"mu\": {\"mean\": {\"log_gamma\": 0.5}}, \"sigma\": 0.03}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit)


def _read_grids(paths) -> pd.DataFrame:  # noqa: F821
    import pandas as pd

    from .grid import read_grid, validate

    grids = [read_grid(g) for g in paths]
    if len(grids) == 1:
        return grids[0]
    return validate(pd.concat(grids, ignore_index=True), source=" + ".join(paths))


def _run_fit(args) -> None:
    import json as _json
    from pathlib import Path

    for name in ("draws", "tune", "chains"):
        if getattr(args, name) < 1:
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
    grid = _read_grids(args.grid)
    from .fit import fit

    post = fit(grid, sampler=args.sampler, draws=args.draws, tune=args.tune,
               chains=args.chains, seed=args.seed, cores=args.cores,
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
    for group, k in (post.meta.get("discrepancy") or {}).items():
        rates = ", ".join(f"{a} {k['sd_dense'][a]:.3g}/{k['sd_invariant'][a]:.3g}"
                          for a in k["sd_dense"])
        print(f"extrapolation discrepancy {group} (sd of log dense error / log m* per unit of "
              f"log excess over depth {k['max_depth']:g}, width {k['max_width']:g}, n_train "
              f"{k['max_n_train']:g}): {rates}")
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


# what the reference extrapolation sets showed of such bands (experiments/README.md)
_EXTRAPOLATION_CAVEAT = ("on the reference extrapolation sets such 90 % bands covered fewer "
                         "held-out points than nominal (experiments/README.md)")


def _run_query(args) -> None:
    from .inputs import check_query_rows
    from .posterior import NEVER_FITTED

    rows = check_query_rows(_query_rows(args), args.from_csv)
    post = _load_posterior(args.posterior)
    table = post.summary(rows, level=args.level, band=args.band, below=args.below)
    out = ~table["beyond"].isin(("", NEVER_FITTED))
    if out.any():
        disc = "with" if post.meta.get("discrepancy") else "WITHOUT (fit --no-discrepancy)"
        print(f"note: {int(out.sum())} of {len(table)} row(s) lie beyond their group's grid "
              f"(column 'beyond'): extrapolations, banded {disc} the extrapolation discrepancy "
              f"measured inside the grid; {_EXTRAPOLATION_CAVEAT}", file=sys.stderr)
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
    if not sep or not arch or not task:
        raise UserError(f"{text!r} is not of the form ARCH/TASK (e.g. mlp/mnist1d)")
    return arch, task


def _add_plot(sub) -> None:
    p = sub.add_parser(
        "plot", help="posterior plots: curves, collapse, coefficients, calibration",
        description="Draw a fitted posterior: 'curves' (error vs density per configuration, "
                    "points per seed, posterior median and 50 %/90 % bands), 'collapse' "
                    "(error vs m* = depth^phi width^psi density), 'coefficients' (forest plots "
                    "of gamma, p_prime, phi, psi, eps_up across groups), 'calibration' "
                    "(nominal vs empirical coverage of held-out points).")
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
    post = _load_posterior(args.posterior)
    arch, task = args.group or (post.groups["arch"][0], post.groups["task"][0])
    if args.kind == "coefficients":
        fig = figures.coefficients(post)
    elif args.kind == "calibration":
        if not args.holdout:
            raise UserError("--kind calibration needs --holdout GRID (points the fit never saw)")
        fig, cover = figures.calibration(post, _read_grids(args.holdout))
        print("coverage: " + ", ".join(f"{k:.0%} -> {v:.0%}" for k, v in cover.items()))
    else:
        paths = args.grid or post.meta["provenance"]["source"].split(" + ")
        if not all(Path(g).is_file() for g in paths):
            raise UserError(f"--kind {args.kind} draws the grid's points: give --grid GRID "
                            f"(the fitted grid {' + '.join(paths)} is not there)")
        grid = _read_grids(paths)
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


def _add_variants(p) -> None:
    """The law's variants, for `fit` and `evaluate` (each off: the paper's law), and the
    extrapolation discrepancy (on)."""
    p.add_argument("--p-depends-on-n", action="store_true",
                   help="variant: log p' gets a slope in log n_train (compare by LOO)")
    p.add_argument("--gamma-depends-on-n", action="store_true",
                   help="variant: log gamma gets a slope in log n_train")
    p.add_argument("--curved", action="store_true",
                   help="variant: the invariant log m* gets curvature terms in log depth and "
                        "log width (phi2, psi2; prior centred at 0): bands that widen with "
                        "the distance of an extrapolation")
    p.add_argument("--no-discrepancy", action="store_true",
                   help="do not widen the bands of configurations outside the grid (deeper, "
                        "wider, more data) by the law's extrapolation miss, as measured by "
                        "nested splits of the grid (fit up to a depth, width or n_train, predict "
                        "beyond it); on by default")
    p.add_argument("--ar1", action="store_true",
                   help="correlate the residuals of a run's successive rounds (AR(1) per "
                        "group): a trajectory then counts for fewer independent points, and "
                        "the coefficients' bands widen accordingly")


def _variants(args) -> dict:
    return {**{k: getattr(args, k) for k in ("p_depends_on_n", "gamma_depends_on_n", "curved")},
            "discrepancy": not args.no_discrepancy, "ar1": args.ar1}


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="extrapolation: fit on some configurations, score the others",
        description="Fit on the fitting set and predict the held-out set with the Bayesian "
                    "model and two baselines (the paper's least squares; least squares with "
                    "bootstrap intervals over configurations); score median |delta|, mean and "
                    "std of delta, coverage of the 50 % and 90 % bands and the log predictive "
                    "density per (arch, task) group. Also prints the paper's fit-quality table.")
    p.add_argument("grid", metavar="GRID", nargs="+", help="error grid(s) to fit on")
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
    p.add_argument("--methods", nargs="+", choices=("bayes", "lsq", "bootstrap"),
                   default=["bayes", "lsq", "bootstrap"], help="methods (default: all three)")
    p.add_argument("--draws", type=int, default=1000,
                   help="Bayesian draws per chain (default: 1000, as `fit`; at 500 a fit of "
                        "the three shipped grids did not converge: R-hat 1.04)")
    p.add_argument("--tune", type=int, default=1000, help="Bayesian tuning steps (1000)")
    p.add_argument("--chains", type=int, default=4, help="Bayesian chains (4)")
    _add_variants(p)
    p.add_argument("--n-boot", type=int, default=40, help="bootstrap refits (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, an object per group and method with keys arch, "
                        "task, method, n_holdout, median_abs_delta, delta_mean, delta_std, "
                        "coverage_50, coverage_90 (null for lsq), lpd, seconds")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> None:
    from . import evaluate
    from .inputs import check_least_squares, least_squares_groups

    if args.leave_group_out and not args.holdout:
        raise UserError("--leave-group-out needs --holdout (the groups' held-out sets)")
    grid = _read_grids(args.grid)
    if args.split:
        fit_grid, held = evaluate.split_grid(grid, evaluate.parse_split(args.split))
        fit_source = f"{' + '.join(args.grid)} (--split {args.split})"
    elif args.leave_configs_out is not None:
        fit_grid, held = evaluate.interior_configs(grid, args.leave_configs_out, args.seed)
        fit_source = f"{' + '.join(args.grid)} (--leave-configs-out)"
        from .grid import CONFIG_KEY

        out = held[CONFIG_KEY].drop_duplicates()
        print(f"held out ({len(out)} interior configuration(s), --seed {args.seed}): "
              + "; ".join(f"{r.arch}/{r.task} depth {r.depth} width {r.width} n_train "
                          f"{r.n_train}" for r in out.itertuples(index=False)), file=sys.stderr)
    else:
        fit_grid, held = grid, _read_grids(args.holdout)
        fit_source = " + ".join(args.grid)
    if {"lsq", "bootstrap"} & set(args.methods):
        check_least_squares(fit_grid, fit_source)
    run = evaluate.leave_group_out if args.leave_group_out else evaluate.evaluate
    rows = run(fit_grid, held, methods=args.methods, n_boot=args.n_boot, seed=args.seed,
               draws=args.draws, tune=args.tune, chains=args.chains, progress=False,
               **_variants(args))
    if args.json:
        print(json.dumps(rows, indent=1, default=_plain))
        return
    import pandas as pd

    print(f"fitted {len(fit_grid)} points, held out {len(held)}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
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


DEFAULT_STORE = "runs/bayes_prune.sqlite"


def _add_grid(sub) -> None:
    p = sub.add_parser(
        "grid", help="train an IMP grid into the store; its status; export it",
        description="Iterative magnitude pruning with weight rewinding over a grid spec "
                    "(TOML: task, arch, depths, widths, n_trains, seeds, rounds, [recipe]). "
                    "Every round is committed to an SQLite store as it finishes; re-running a "
                    "spec skips finished runs and resumes interrupted ones.")
    gsub = p.add_subparsers(title="grid commands", metavar="ACTION", required=True)
    run = gsub.add_parser("run", help="run every run of SPEC that is not done yet",
                          description="Run (or resume) every IMP run of SPEC; safe to kill "
                                      "and re-run at any time. Several `grid run` may share one "
                                      "store (on one machine, or on several sharing the file "
                                      "system): each run is claimed by one process; runs that "
                                      "another live process holds are waited for, and taken "
                                      "over when it dies. Small nets train on one thread.")
    run.add_argument("spec", metavar="SPEC", help="grid spec, a TOML file (see experiments/)")
    run.add_argument("--store", default=DEFAULT_STORE,
                     help=f"SQLite results store (default: {DEFAULT_STORE})")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="'auto' uses CUDA when a GPU is visible, else the CPU (default: auto)")
    run.add_argument("--workers", type=int, default=1,
                     help="jobs trained at once, one process each (default: 1; local "
                          "executor only)")
    run.add_argument("--no-batch", action="store_true",
                     help="train every run on its own; by default fresh MLP runs (on CUDA "
                          "also CNN and ResNet runs) of one shape and recipe train together "
                          "as one batched model (the same per-run results up to float "
                          "rounding, several times faster for small widths)")
    run.add_argument("--data-dir", default=None,
                     help="directory holding the data files (Fashion-MNIST IDX, CIFAR-10 "
                          "batches); default: the system location, else download")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="'local': processes on this machine; 'ray': one Ray task per run on "
                          "a Ray cluster, the store written by this process only "
                          "(needs `pip install bayes-prune[ray]`) (default: local)")
    run.add_argument("--address", default="auto",
                     help="Ray only: 'auto' joins the running cluster, 'local' starts a Ray "
                          "instance here, HOST:PORT joins that cluster (default: auto)")
    run.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                     help="Ray only: GPUs each run asks for; 1 is typical on a GPU cluster "
                          "(default: 0)")
    run.add_argument("--max-retries", type=int, default=3, metavar="N",
                     help="Ray only: times a run is retried after its worker dies or a "
                          "transient I/O error, resuming from its last stored round; then it "
                          "is marked failed (default: 3)")
    run.set_defaults(func=_run_grid_run)
    status = gsub.add_parser("status", help="done / running / left per group, and which "
                                             "process (pid, host, start) runs what",
                             description="Count the runs of SPEC that are done, running or "
                                         "interrupted, failed and left, and show which process "
                                         "(pid, host, start time, last heartbeat) runs what; "
                                         "without SPEC, every run in the store per (arch, task) "
                                         "group, whatever wrote it (grid run, import, "
                                         "bayes_prune.Recorder).")
    status.add_argument("spec", metavar="SPEC", nargs="?", default=None,
                        help="grid spec, a TOML file (optional)")
    status.add_argument("--store", default=DEFAULT_STORE,
                        help=f"SQLite results store (default: {DEFAULT_STORE})")
    status.set_defaults(func=_run_grid_status)
    export = gsub.add_parser("export", help="write the store as an error grid (CSV/Parquet)")
    export.add_argument("--store", required=True, help="SQLite results store to read")
    export.add_argument("-o", "--output", required=True, metavar="GRID",
                        help="error grid to write, .csv or .parquet")
    export.set_defaults(func=_run_grid_export)


def _run_grid_run(args) -> None:
    from .imp import run_grid
    from .spec import load_spec

    spec = load_spec(args.spec)  # every check before the store is touched
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.executor == "ray":
        from .ray_exec import run_grid_ray

        if args.workers != 1:
            raise UserError("--workers is for --executor local; on Ray, as many runs train at "
                            "once as the cluster has CPUs (and --gpus-per-run GPUs) for")
        failures = run_grid_ray(spec.runs(), args.store, args.device, address=args.address,
                                gpus_per_run=args.gpus_per_run, max_retries=args.max_retries,
                                data_dir=args.data_dir)
    else:
        failures = run_grid(spec.runs(), args.store, args.device, args.workers, args.data_dir,
                            batch=not args.no_batch)
    for cfg, err in failures:
        print(f"run {cfg.run_id} (depth={cfg.depth} width={cfg.width} n_train={cfg.n_train} "
              f"seed={cfg.seed}) failed: {err}", file=sys.stderr)
    if failures:
        raise UserError(f"{len(failures)} run(s) failed; `bayes-prune grid status` lists them, "
                        "re-running retries them")


def _run_grid_status(args) -> None:
    import time
    from pathlib import Path

    from .spec import load_spec
    from .store import Store

    if args.spec is None:
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for arch, task, state, n in Store(args.store, create=False).status_counts():
            counts.setdefault((arch, task), {})[state] = n
        if not counts:
            raise UserError(f"{args.store}: the store holds no runs yet")
        for (arch, task), c in counts.items():
            print(f"{arch}/{task}: {c.get('done', 0)} done, {c.get('running', 0)} running or "
                  f"interrupted, {c.get('failed', 0)} failed")
        return
    spec = load_spec(args.spec)
    runs = spec.runs()
    status, holders = {}, {}
    if Path(args.store).exists():
        store = Store(args.store, create=False)
        status, holders = store.statuses(), store.holders()
        store.close()
    counts = {s: sum(status.get(c.run_id) == s for c in runs) for s in ("done", "running",
                                                                        "failed")}
    left = len(runs) - sum(counts.values())
    print(f"{spec.arch}/{spec.task} ({spec.name}): {counts['done']} done, {counts['running']} "
          f"running or interrupted, {counts['failed']} failed, {left} left of {len(runs)}")
    for cfg in runs:
        what = f"{cfg.run_id} depth={cfg.depth} width={cfg.width} n_train={cfg.n_train} " \
               f"seed={cfg.seed}"
        if status.get(cfg.run_id) == "failed":
            print(f"  failed: {what}")
        elif cfg.run_id in holders:
            writer, beat, live = holders[cfg.run_id]
            age = f", last heartbeat {time.time() - beat:.0f} s ago" if beat else ""
            print(f"  {'running' if live else 'interrupted'}: {what} by {writer.describe()}{age}"
                  + ("" if live else " (that writer is gone: the next `grid run` resumes it)"))


def _run_grid_export(args) -> None:
    from .grid import write_grid
    from .store import Store

    grid = Store(args.store, create=False).export()
    write_grid(grid, args.output)
    print(f"wrote {len(grid)} rows ({grid['run_id'].nunique()} runs) to {args.output}")


def _add_import(sub) -> None:
    p = sub.add_parser(
        "import", help="import results made elsewhere (open_lth trees, results tables)",
        description="Turn IMP results made with other code into an error grid that `fit`, "
                    "`lsq` and `evaluate` read.")
    isub = p.add_subparsers(title="import commands", metavar="SOURCE", required=True)
    olth = isub.add_parser(
        "open-lth", help="facebookresearch/open_lth's lottery_<hash>/ output tree",
        description="Read open_lth's lottery tree as it lies on disk "
                    "(lottery_<hash>/replicate_<R>/level_<L>/main/ with hparams.log, logger, "
                    "sparsity_report.json): one row per finished level, seed = replicate, "
                    "round = level, density = unpruned/total of the sparsity report (total "
                    "counts every masked weight, the never-pruned output layer included), "
                    "test error = 1 - test_accuracy at the logger's last iteration, n_train = "
                    "ceil(subsample_fraction x the data set). mnist_lenet_N_..._N -> mlp "
                    "(depth = hidden layers, width = N), cifar_resnet_D[_W] -> resnet; other "
                    "models keep their name as arch. Unfinished levels and other branches are "
                    "skipped with one line each on stderr.")
    olth.add_argument("root", metavar="ROOT",
                      help="open_lth's output directory holding lottery_<hash>/ (or one "
                           "lottery_<hash>/ directory)")
    olth.add_argument("-o", "--output", required=True, metavar="GRID",
                      help="error grid to write, .csv or .parquet")
    olth.add_argument("--task", action="append", default=[], metavar="OLD=NEW",
                      help="rename open_lth's data set OLD to task NEW, e.g. "
                           "mnist=fashion-mnist (repeatable)")
    olth.add_argument("--nonuniform", choices=("skip", "first", "max"), default="skip",
                      help="an mnist_lenet whose hidden layers differ in width (300_100): "
                           "skip it, or map it to mlp with the first or the largest width as "
                           "width (params_total stays the real count) (default: skip)")
    olth.set_defaults(func=_run_import_open_lth)
    table = isub.add_parser(
        "table", help="a results table (CSV, TSV, Parquet, a Markdown pipe table)",
        description="Map a results table exported from W&B, MLflow or a spreadsheet to an error "
                    "grid. Accuracy becomes error, sparsity (or % pruned) density, percentages "
                    "fractions; round comes from density when missing (0.8^round for "
                    "--prune-fraction 0.2); params_nonzero from params_total, params_prunable "
                    "and density. Tasks bayes_prune does not know need random_error or "
                    "n_classes. Every cell that cannot be mapped is refused with its row and "
                    "column; nothing is written then. Details: python -c 'import "
                    "bayes_prune.tables as t; help(t)'.")
    table.add_argument("table", metavar="TABLE",
                       help="the table: .csv, .csv.gz, .tsv, .parquet, or .md (its first pipe "
                            "table); rows are counted as lines of the file, the header is row 1")
    table.add_argument("-o", "--output", required=True, metavar="GRID",
                       help="error grid to write, .csv or .parquet")
    table.add_argument("--map", action="append", default=[], metavar="COLUMN=SOURCE",
                       help="grid COLUMN from the table's column SOURCE (repeatable). COLUMN is "
                            "a grid column (task, arch, depth, width, n_train, seed, round, "
                            "density, test_error, n_test, params_total, params_nonzero, run_id, "
                            "params_prunable, random_error, ...) or accuracy, sparsity, "
                            "prunable_kept (density = prunable_kept / params_prunable), "
                            "n_classes. SOURCE1,SOURCE2,... stacks the table once per source "
                            "column (one accuracy column per test set)")
    table.add_argument("--set", action="append", default=[], metavar="COLUMN=VALUE",
                       help="grid COLUMN is VALUE in every row, e.g. --set n_test=10000; "
                            "V1,V2,... gives each stacked copy its own (repeatable)")
    table.add_argument("--where", action="append", default=[], metavar="SOURCE=V1[,V2...]",
                       help="keep only the rows whose column SOURCE holds one of the values "
                            "(repeatable; all must hold)")
    table.add_argument("--join", action="append", default=[], metavar="FILE.csv",
                       help="a table of grid columns per value of a key column of TABLE "
                            "(named as in TABLE), e.g. network,depth,width,params_total; "
                            "rows whose key it lacks are refused (repeatable)")
    table.add_argument("--dense", metavar="TABLE2",
                       help="a table of dense networks: every run without round 0 gets one, "
                            "the median error of TABLE2's rows of its configuration (same "
                            "--map/--set/--join/--where where its columns allow)")
    table.add_argument("--units", choices=("auto", "fraction", "percent"), default="auto",
                       help="accuracy, error, sparsity and density columns: 'auto' reads a "
                            "column as per cent when its header or a cell says %% or its "
                            "largest value exceeds 1 (default: auto)")
    table.add_argument("--prune-fraction", type=float, default=0.2, metavar="F",
                       help="fraction pruned a round, to derive round from density "
                            "(default: 0.2)")
    table.set_defaults(func=_run_import_table)


def _pairs(values, option: str) -> dict[str, str]:
    out = {}
    for v in values:
        old, sep, new = v.partition("=")
        if not sep or not old or not new:
            raise UserError(f"{option} {v!r}: expected OLD=NEW")
        out[old] = new
    return out


def _run_import_open_lth(args) -> None:
    from .grid import write_grid
    from .open_lth import import_tree

    grid = import_tree(args.root, _pairs(args.task, "--task"), args.nonuniform,
                       say=lambda line: print(line, file=sys.stderr))
    write_grid(grid, args.output)
    runs = grid.groupby("run_id")
    print(f"wrote {len(grid)} rows ({runs.ngroups} runs, "
          f"{grid.groupby(['task', 'arch', 'depth', 'width', 'n_train']).ngroups} "
          f"configurations; density {grid['density'].min():.4g}-{grid['density'].max():.4g}) "
          f"to {args.output}")



def _run_import_table(args) -> None:
    from .grid import write_grid
    from .tables import TableMap, import_table

    mapping = TableMap.from_options(args.map, args.set, args.where, args.join, args.units,
                                    args.prune_fraction)
    grid = import_table(args.table, mapping, dense=args.dense)
    write_grid(grid, args.output)
    key = [c for c in ("task", "arch", "depth", "width", "n_train", "seed", "run_id")
           if c in grid]
    print(f"wrote {len(grid)} rows ({grid.groupby(key).ngroups} runs, "
          f"{grid.groupby(['task', 'arch', 'depth', 'width', 'n_train']).ngroups} "
          f"configurations; density {grid['density'].min():.4g}-{grid['density'].max():.4g}) "
          f"to {args.output}")


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


COMMANDS = (_add_lsq, _add_synth, _add_demo, _add_grid, _add_fit, _add_query, _add_design,
            _add_plot, _add_compare, _add_evaluate, _add_import, _add_reference)


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
