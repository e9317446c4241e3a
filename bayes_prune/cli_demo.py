"""``bayes-prune demo``: the main job on the embedded default, end to end.

Trains the embedded MNIST-1D MLP spec into an SQLite store, fits the hierarchical model to it
together with the shipped reference runs of its group, answers a query for a configuration
nobody trained, and writes the plots; ``--synthetic`` fits a SYNTHETIC grid by least squares
instead. A part of :mod:`bayes_prune.cli`.
"""

from __future__ import annotations

from .cli_answer import _EXTRAPOLATION_CAVEAT
from .errors import UserError
from .sampler import MAX_DRAWS, TUNE


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
                        "crossed pooling at work; that fit of 12,687 points takes 1-2 "
                        "minutes on 2 cores)")
    p.add_argument("--draws", type=int, default=MAX_DRAWS,
                   help=f"most draws per chain, as `fit` (default: {MAX_DRAWS}; the chains stop "
                        "sooner at fit's ESS target)")
    p.add_argument("--tune", type=int, default=TUNE, help=f"tuning steps (default: {TUNE})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="training device (default: auto)")
    p.add_argument("--synthetic", action="store_true",
                   help="skip training and the Bayesian fit: least squares on a SYNTHETIC grid")
    p.set_defaults(func=_run_demo)


def _reference_grids(directory) -> list:
    from pathlib import Path

    from .reference import RESULTS

    d = Path(directory) if directory else RESULTS
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
