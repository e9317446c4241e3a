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

    fits = lsq.fit(read_grid(args.grid), form=args.form)
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
        description="Write a SYNTHETIC error grid (known coefficients, seed and test-set noise) "
                    "to OUT/grid.csv and fit it with the paper's least squares, printing the "
                    "recovered coefficients next to the true ones.")
    p.add_argument("--out", default="out", metavar="DIR",
                   help="directory for the demo's files (default: ./out)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> None:
    from pathlib import Path

    from . import lsq
    from .grid import write_grid
    from .synthetic import default_truths, simulate_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = simulate_grid()
    write_grid(grid, out / "grid.csv")
    print(f"SYNTHETIC grid: {len(grid)} points, 4 (arch, task) groups -> {out / 'grid.csv'}")
    truths = default_truths()
    for f in lsq.fit(grid, form="joint"):
        truth = truths[(f.key["arch"], f.key["task"])].law.as_dict()
        coefs = "  ".join(f"{k}={v:.3g} (true {truth[k]:.3g})" for k, v in f.law.as_dict().items())
        print(f"{f.key['arch']}/{f.key['task']}: {coefs}; delta mean={f.delta_mean:+.2%} "
              f"std={f.delta_std:.2%}")


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
                                      "and re-run at any time.")
    run.add_argument("spec", metavar="SPEC", help="grid spec, a TOML file (see experiments/)")
    run.add_argument("--store", default=DEFAULT_STORE,
                     help=f"SQLite results store (default: {DEFAULT_STORE})")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="'auto' uses CUDA when a GPU is visible, else the CPU (default: auto)")
    run.add_argument("--workers", type=int, default=1,
                     help="runs trained at once, one process each (default: 1)")
    run.add_argument("--data-dir", default=None,
                     help="directory holding the data files (Fashion-MNIST IDX, CIFAR-10 "
                          "batches); default: the system location, else download")
    run.set_defaults(func=_run_grid_run)
    status = gsub.add_parser("status", help="done / running / left per group of SPEC")
    status.add_argument("spec", metavar="SPEC", help="grid spec, a TOML file")
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
    failures = run_grid(spec.runs(), args.store, args.device, args.workers, args.data_dir)
    for cfg, err in failures:
        print(f"run {cfg.run_id} (depth={cfg.depth} width={cfg.width} n_train={cfg.n_train} "
              f"seed={cfg.seed}) failed: {err}", file=sys.stderr)
    if failures:
        raise UserError(f"{len(failures)} run(s) failed; `bayes-prune grid status` lists them, "
                        "re-running retries them")


def _run_grid_status(args) -> None:
    from pathlib import Path

    from .spec import load_spec
    from .store import Store

    spec = load_spec(args.spec)
    runs = spec.runs()
    status = Store(args.store).statuses() if Path(args.store).is_file() else {}
    counts = {s: sum(status.get(c.run_id) == s for c in runs) for s in ("done", "running",
                                                                        "failed")}
    left = len(runs) - sum(counts.values())
    print(f"{spec.arch}/{spec.task} ({spec.name}): {counts['done']} done, {counts['running']} "
          f"running or interrupted, {counts['failed']} failed, {left} left of {len(runs)}")
    for cfg in runs:
        if status.get(cfg.run_id) == "failed":
            print(f"  failed: {cfg.run_id} depth={cfg.depth} width={cfg.width} "
                  f"n_train={cfg.n_train} seed={cfg.seed}")


def _run_grid_export(args) -> None:
    from .grid import write_grid
    from .store import Store

    grid = Store(args.store, create=False).export()
    write_grid(grid, args.output)
    print(f"wrote {len(grid)} rows ({grid['run_id'].nunique()} runs) to {args.output}")


COMMANDS = (_add_lsq, _add_synth, _add_demo, _add_grid)


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
