"""``bayes-prune suggest``: which runs to train next for a question (:mod:`bayes_prune.suggest`).
Registered by :mod:`bayes_prune.cli`."""

from __future__ import annotations

import json
import sys

from .cli_answer import _add_posterior_arg, _group_arg, _load_posterior, _plain
from .errors import UserError

_QUERY_KEYS = ("arch", "task", "depth", "width", "n_train", "density")


def _add_suggest(sub) -> None:
    p = sub.add_parser(
        "suggest", help="which runs to train next to answer a question best per second",
        description="Rank candidate IMP runs (configurations with seeds, not yet trained) by "
                    "how much each would narrow the posterior's answer to a goal, per second "
                    "of training, and pick a batch greedily (each pick conditioned on the "
                    "ones before it, so that near-copies are not picked twice). A run's "
                    "value is simulated from the posterior draws (its trajectory and its "
                    "noise) with a linear-Gaussian approximation over the draws; its cost "
                    "from the seconds per round measured in the stores (--store), scaled by "
                    "weights x steps x batch x trainings. The loop: suggest -> grid run -> fit "
                    "-> suggest. Exactly one goal: --goal-query, --goal-design, --goal-compare "
                    "or --goal-region.")
    _add_posterior_arg(p)
    p.add_argument("--candidates", required=True, metavar="SPEC.toml|TABLE.csv",
                   help="the runs to choose from: a grid spec (its runs, with its recipe) or "
                        "a CSV with columns arch, task, depth, width, n_train, seed (optional: "
                        "rounds, params_total, params_prunable, any recipe field, and cost to "
                        "give each run's cost yourself)")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--goal-query", nargs="+", metavar="KEY=VALUE",
                      help="the expected error of configurations: "
                           "arch=A task=T depth=D width=W n_train=N density=X, each with "
                           "comma-separated values for several (their cross product)")
    goal.add_argument("--goal-design", action="store_true",
                      help="the fewest non-zero weights reaching --target-error with "
                           "probability --prob, over the fitted and candidate configurations "
                           "of --arch/--task (default: the candidates' groups)")
    goal.add_argument("--goal-compare", action="store_true",
                      help="whether --coef of group --a exceeds that of --b")
    goal.add_argument("--goal-region", metavar="TABLE.csv",
                      help="the expected error at every row of a CSV (arch, task, depth, "
                           "width, n_train, density)")
    p.add_argument("--target-error", type=float, metavar="E", help="--goal-design's error")
    p.add_argument("--prob", type=float, default=0.9, metavar="Q",
                   help="--goal-design's probability (default: 0.9)")
    p.add_argument("--arch", help="--goal-design: restrict to this architecture")
    p.add_argument("--task", help="--goal-design: restrict to this task")
    p.add_argument("--coef", help="--goal-compare: a coefficient, e.g. gamma or phi")
    p.add_argument("--a", type=_group_arg, metavar="ARCH/TASK", help="--goal-compare: group A")
    p.add_argument("--b", type=_group_arg, metavar="ARCH/TASK", help="--goal-compare: group B")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="most training seconds for the batch (in weight-steps when no store "
                        "gives the cost model); with a budget the batch is also planned by "
                        "the largest reduction that fits, and the plan that narrows the goal "
                        "more is kept")
    p.add_argument("--n", type=int, default=10, help="most runs to pick (default: 10)")
    p.add_argument("--store", action="append", metavar="STORE.sqlite", default=None,
                   help="a store (`grid run --store`) whose measured seconds per round fit "
                        "the cost model and whose finished runs are not suggested again; "
                        "repeatable (default with the reference posterior: the reference "
                        "grids' stores, when this is a source checkout)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    p.add_argument("-o", "--out", metavar="NEXT.toml",
                   help="write the picked runs as a grid spec for `bayes-prune grid run` (one "
                        "file per group and recipe if they differ: NEXT_<arch>_<task>.toml)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON object with keys goal (label, kind, goal_sd_before, "
                        "goal_sd_after, ...), cost_model and runs (a list of objects with "
                        "keys pick, arch, task, depth, width, n_train, seed, params_total, "
                        "trainings, cost, cumulative_cost, variance_reduction, goal_sd_after, "
                        "trained_config)")
    p.set_defaults(func=_run_suggest)


def _goal(args, post):
    import itertools

    import pandas as pd

    from . import suggest as s
    from .inputs import check_query_rows, read_table

    if args.goal_design:
        if args.target_error is None:
            raise UserError("--goal-design needs --target-error E")
        if not 0 < args.prob < 1:
            raise UserError(f"--prob must be in (0, 1), got {args.prob}")
        return s.goal_design(args.target_error, args.arch, args.task)
    if args.goal_compare:
        missing = [o for o in ("coef", "a", "b") if getattr(args, o) is None]
        if missing:
            raise UserError(f"--goal-compare needs {', '.join('--' + m for m in missing)}")
        return s.goal_compare(args.coef, args.a, args.b)
    if args.goal_region:
        rows = read_table(args.goal_region, "--goal-region", _QUERY_KEYS)
        _check_groups(post, rows, "--goal-region")
        return s.goal_query(rows, kind="region")
    values = {}
    for item in args.goal_query:
        key, sep, value = item.partition("=")
        if not sep or key not in _QUERY_KEYS or not value:
            raise UserError(f"--goal-query: {item!r} is not KEY=VALUE with KEY one of "
                            f"{', '.join(_QUERY_KEYS)}")
        values[key] = value.split(",")
    missing = [k for k in _QUERY_KEYS if k not in values]
    if missing:
        raise UserError(f"--goal-query needs {', '.join(k + '=...' for k in missing)}")
    rows = pd.DataFrame(list(itertools.product(*(values[k] for k in _QUERY_KEYS))),
                        columns=list(_QUERY_KEYS))
    rows = check_query_rows(rows, None)
    _check_groups(post, rows, "--goal-query")
    return s.goal_query(rows)


def _check_groups(post, rows, option: str) -> None:
    for arch, task in rows[["arch", "task"]].drop_duplicates().itertuples(index=False):
        try:
            post._check_group(arch, task)
        except UserError as exc:
            raise UserError(f"{option}: {exc}") from None


def _stores(args):
    from pathlib import Path

    if args.store:
        return [Path(p) for p in args.store]
    if args.posterior == "reference":
        from .reference import RESULTS

        return sorted(RESULTS.glob("*.sqlite")) if RESULTS.is_dir() else []
    return []


def _run_suggest(args) -> None:
    from . import suggest as s

    s.check_request(args.n, args.budget)  # before anything is loaded
    post = _load_posterior(args.posterior)
    goal = _goal(args, post)
    cands = s.candidate_runs(args.candidates)
    stores = _stores(args)
    cost_model = s.CostModel.from_stores(stores) if stores else s.CostModel()
    before = len(cands)
    cands = s.drop_finished(cands, stores)
    if cands.empty:
        raise UserError(f"--candidates {args.candidates}: all {before} runs are finished in "
                        "the store(s); give other candidates")
    print(cost_model.describe() if "cost" not in cands else
          "cost: the candidates' own 'cost' column", file=sys.stderr)
    if before > len(cands):
        print(f"{before - len(cands)} candidate run(s) already finished in the store(s): "
              "left out", file=sys.stderr)
    if args.budget is not None and cost_model.unit == "work" and "cost" not in cands:
        print("note: without a store, --budget counts weight-steps, not seconds",
              file=sys.stderr)
    picks, summary = s.suggest(post, cands, goal, n=args.n, budget=args.budget,
                               cost_model=cost_model, seed=args.seed)
    if args.goal_design:
        summary["design_now"] = _design_now(post, args, cands, goal)
    written = []
    if args.out and not picks.empty:
        written = s.write_specs(picks, cands, args.out, comment=(
            f"suggested by bayes-prune suggest for: {goal.label}\n"
            f"goal sd {summary['goal_sd_before']:.4g} -> {summary['goal_sd_after']:.4g} "
            f"(expected), cost {summary['cost_total']:.4g} {summary['cost_unit']}"))
    if args.json:
        print(json.dumps({"goal": summary, "cost_model": summary.pop("cost_model"),
                          "runs": picks.to_dict(orient="records"),
                          "written": [str(w) for w in written]}, indent=1, default=_plain))
        return
    unit = "s" if summary["cost_unit"] == "s" else summary["cost_unit"]
    print(f"goal: {goal.label}")
    if "design_now" in summary:
        print(f"  today: {summary['design_now']}")
    scale = "the coefficient's scale" if goal.kind == "compare" else "log scale"
    print(f"  posterior sd of the goal ({scale}): {summary['goal_sd_before']:.4g} now, "
          f"{summary['goal_sd_after']:.4g} expected after these {len(picks)} run(s) "
          f"({summary['cost_total']:.4g} {unit})"
          + (", picked by the largest reduction that fits the budget: it narrows the goal more "
             "than picking by reduction per second" if summary["rule"] == "largest reduction"
             else ""))
    reach = summary.get("design_reach")
    if reach is not None and reach["reached"] == 0:
        print(f"  in no posterior draw does a configuration searched (the fitted and candidate "
              f"ones of the goal's groups) reach error {args.target_error:g}; the lowest "
              f"expected error among them is {reach['lowest_error']:.3g} ({reach['arch']}/"
              f"{reach['task']} depth {reach['depth']} width {reach['width']} n_train "
              f"{reach['n_train']} at density {reach['density']:.3g}): give larger candidates "
              "or a higher --target-error")
    elif reach is not None and reach["reached"] < 1:
        print(f"  a configuration searched reaches error {args.target_error:g} in "
              f"{100 * reach['reached']:.0f} % of the posterior draws")
    if picks.empty:
        print("no candidate run fits the budget or would narrow the goal"
              + (f" (the cheapest costs {summary['cheapest']:.4g} {unit})"
                 if args.budget is not None else ""))
    else:
        print(picks.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for w in written:
        print(f"wrote {w}: train them with `bayes-prune grid run {w} --store STORE.sqlite`, "
              "then fit and suggest again")


def _design_now(post, args, cands, goal) -> str:
    """Today's answer to the design goal, for the printout."""
    from .goals import design_rows

    best = post.design(args.target_error, args.prob, design_rows(post, cands, goal))
    if best.empty:
        return (f"no configuration reaches error <= {args.target_error:g} with probability "
                f">= {args.prob:g}")
    b = best.iloc[0]
    return (f"{b['arch']}/{b['task']} depth {b['depth']} width {b['width']} n_train "
            f"{b['n_train']} at density {b['density']:.3g}: {b['params_nonzero']:.4g} non-zero "
            f"weights, P(error <= {args.target_error:g}) = {b['p_meets']:.2f}")
