"""The ``bayes-prune`` commands that make and bring error grids: ``grid run|status|export``
(IMP over a grid spec into an SQLite store) and ``import open-lth|table`` (results made
elsewhere). Registered by :mod:`bayes_prune.cli`."""

from __future__ import annotations

import sys

from .errors import UserError

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
    from .spec import load_spec

    spec = load_spec(args.spec)  # every check before the store is touched, and before torch
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
        from .imp import run_grid

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
