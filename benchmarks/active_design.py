"""Which runs to train next, scored in hindsight on the reference grids: ``suggest`` against
random, cheapest-first and largest-first choice at equal compute.

Per group (``mnist1d_mlp``, ``fashion_mlp``, ``mnist1d_cnn``, ``fashion_cnn``):

- **pool**: every run (configuration x seed) of the group's fitting grid, each costing the
  seconds its rounds took (the store beside the CSV);
- **goal**: the group's extrapolation set, its larger configurations, which no pool run is;
  suggest's goal is ``region``: the log expected error at the set's (configuration, round)
  points;
- **start**: the cheapest runs, up to 10 % of the pool's compute;
- **choice**: at each budget (10, 20, 30, 50, 100 % of the pool's compute) runs are added up to
  it by ``suggest`` (``Posterior.suggest`` from the fit at the previous budget, with each run's
  measured seconds as its cost), by random choice (five seeds), cheapest-first and
  largest-first (most weights first);
- **score**: the fit on the chosen runs predicts the extrapolation set (prediction band):
  median |delta| and 90 % coverage, as ``bayes-prune evaluate`` scores.

Fits are of one group alone with ``--draws``/``--tune``/``--chains`` (default 500/500/2, no
ESS target: scores, not a shipped posterior), the group's drift pooled with the other three
reference groups' as ``fit`` does by default (``--no-borrow-drift``: its own alone). Results
go to ``--out`` (JSON lines, one per fit) as they come: a killed run resumes where it
stopped. A figure of median |delta| and coverage against budget is written to ``--figure``.

``--split top`` is the settling split: the goal is the fitting grid's configurations at its
largest depth or width, which leave the pool; choices are settled there and reported on the
extrapolation sets. ``--only-suggest`` skips the baselines (a fifth of the fits).

Last line: ``budget30_ratio=<per group: suggest's median |delta| at 30 % / the full pool's>
beats_random=<per group: fraction of budgets below 100 % where suggest's median |delta| is
below random's mean> coverage30=<per group: suggest's 90 % coverage at 30 %>
rank30=<its rank among what a band calibrated for the extrapolation set would cover of it,
evaluate's coverage_90_rank: near 0 too narrow, near 1 too wide>``, groups in the order above.

Usage: python benchmarks/active_design.py [--groups G ...] [--out FILE] [--figure PNG]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_prune.evaluate import as_scored, score
from bayes_prune.fit import fit
from bayes_prune.grid import read_grid
from bayes_prune.store import read_only
from bayes_prune.suggest import Goal

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
GROUPS = ("mnist1d_mlp", "fashion_mlp", "mnist1d_cnn", "fashion_cnn")
BUDGETS = (0.1, 0.2, 0.3, 0.5, 1.0)
RUN = ["depth", "width", "n_train", "seed"]
RANDOM_SEEDS = 5


def pool_of(group: str, split: str = "ext") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The pool (the group's fitting grid), its runs (with ``compute``: measured seconds) and
    the goal: the extrapolation set (``split="ext"``) or, on the settling split ``"top"``, the
    fitting grid's configurations at its largest depth or width, which then leave the pool."""
    grid = read_grid(RESULTS / f"{group}.csv")
    target = read_grid(RESULTS / f"{group}_extrapolation.csv")
    if split == "top":
        top = (grid["depth"] == grid["depth"].max()) | (grid["width"] == grid["width"].max())
        grid, target = grid[~top].reset_index(drop=True), grid[top].reset_index(drop=True)
    secs = read_only(RESULTS / f"{group}.sqlite",
                     "SELECT run_id, SUM(seconds) AS compute FROM rounds GROUP BY run_id")
    runs = grid.groupby(RUN + ["run_id"], as_index=False).agg(
        params_total=("params_total", "first"), arch=("arch", "first"),
        task=("task", "first"), rounds=("round", "max"))
    runs = runs.merge(secs, on="run_id", how="left")
    if runs["compute"].isna().any():
        raise SystemExit(f"{group}: runs without measured seconds in its store")
    return grid, runs.reset_index(drop=True), target


def start_runs(runs: pd.DataFrame, total: float) -> list[int]:
    order = runs.sort_values(["compute", "params_total"]).index
    cum = runs.loc[order, "compute"].cumsum()
    return list(order[cum <= BUDGETS[0] * total])


def fill(order, runs: pd.DataFrame, chosen: list[int], budget: float) -> list[int]:
    """``chosen`` plus runs in ``order`` that still fit under ``budget`` (seconds)."""
    out, spent = list(chosen), float(runs.loc[chosen, "compute"].sum())
    for i in order:
        if i in out:
            continue
        c = float(runs.loc[i, "compute"])
        if spent + c <= budget:
            out.append(i)
            spent += c
    return out


def goal_rows(target: pd.DataFrame) -> pd.DataFrame:
    rows = target.groupby(["arch", "task", "depth", "width", "n_train", "round"],
                          as_index=False)["density"].mean()
    return rows.drop(columns="round")


def candidates(runs: pd.DataFrame, free: list[int]) -> pd.DataFrame:
    c = runs.loc[free, ["arch", "task"] + RUN + ["params_total", "compute"]].rename(
        columns={"compute": "cost"})
    c["rounds"], c["prune_fraction"], c["stop_within"] = 40, 0.2, 0.1
    c["steps"], c["batch_size"] = 1, 1  # unused: the measured cost is given
    return c


class Bench:
    def __init__(self, args):
        self.args, self.out = args, args.out
        self.done = {}
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                r = json.loads(line)
                self.done[(r["group"], r["method"], r["budget"], r["seed"])] = r

    def fit(self, grid, runs, chosen, target, seed=0, source="<grid>"):
        """The benchmark's fit of the runs ``chosen`` (positions in ``runs``), without any
        borrowed drift whose measurement saw the ``target`` rows (``evaluate.as_scored``)."""
        sub = grid[grid["run_id"].isin(set(runs.loc[chosen, "run_id"]))].reset_index(drop=True)
        post = fit(sub, draws=self.args.draws, tune=self.args.tune, chains=self.args.chains,
                   progress=False, ess_target=None, seed=seed, source=source,
                   borrow_drift=self.args.borrow_drift)
        return as_scored(post, target), len(sub)

    def fit_score(self, group, method, budget, seed, grid, runs, chosen, target):
        key = (group, method, budget, seed)
        if key in self.done:
            return self.done[key], None
        start = time.perf_counter()
        post, points = self.fit(grid, runs, chosen, target, seed, f"{group}:{method}")
        fit_s = time.perf_counter() - start
        s = score(target, np.log(post.predict_draws(target, band="prediction")))
        r = {"group": group, "method": method, "budget": budget, "seed": seed,
             "runs": len(chosen), "points": points,
             "compute": float(runs.loc[chosen, "compute"].sum()),
             "median_abs_delta": s["median_abs_delta"], "coverage_90": s["coverage_90"],
             "coverage_50": s["coverage_50"], "coverage_90_rank": s["coverage_90_rank"],
             "lpd": s["lpd"], "fit_seconds": round(fit_s, 1),
             "max_rhat": post.diagnostics["max_rhat"],
             "chosen": [int(i) for i in chosen]}
        with self.out.open("a") as f:
            f.write(json.dumps(r) + "\n")
        self.done[key] = r
        print(f"{group} {method:9s} budget {budget:.0%} seed {seed}: {len(chosen)} runs, "
              f"median |delta| {100 * r['median_abs_delta']:.1f} %, cov90 "
              f"{r['coverage_90']:.2f} (rank {r['coverage_90_rank']:.2f}; fit {fit_s:.0f} s, "
              f"R-hat {r['max_rhat']:.3f})",
              flush=True)
        return r, post

    def group(self, group: str) -> None:
        grid, runs, target = pool_of(group, self.args.split)
        total = float(runs["compute"].sum())
        start = start_runs(runs, total)
        levels = [b * total for b in BUDGETS]
        goal = Goal("region", f"{group} extrapolation set", rows=goal_rows(target))
        r0, post = self.fit_score(group, "start", BUDGETS[0], 0, grid, runs, start, target)
        self.fit_score(group, "full", 1.0, 0, grid, runs, list(runs.index), target)
        # suggest: from the fit at each budget, the runs that fill the next one
        chosen = start
        for k, b in enumerate(BUDGETS[1:-1], 1):
            key = (group, "suggest", b, 0)
            if key in self.done:
                chosen = self.done[key]["chosen"]
                post = None
                continue
            if post is None:  # resumed: refit the previous level to suggest from it
                prev = self.done.get((group, "suggest", BUDGETS[k - 1], 0)) or r0
                post, _ = self.fit(grid, runs, prev["chosen"], target)
            free = [i for i in runs.index if i not in chosen]
            spent = float(runs.loc[chosen, "compute"].sum())
            picks, _ = post.suggest(candidates(runs, free), goal, n=len(free),
                                    budget=levels[k] - spent)
            idx = runs.reset_index().merge(picks[RUN], on=RUN)["index"].tolist()
            chosen = fill([], runs, chosen + idx, levels[k])  # (within budget by construction)
            _, post = self.fit_score(group, "suggest", b, 0, grid, runs, chosen, target)
        if self.args.only_suggest:
            return
        orders = {"cheapest": list(runs.sort_values(["compute", "params_total"]).index),
                  "largest": list(runs.sort_values(["params_total", "n_train", "compute"],
                                                   ascending=False).index)}
        for s in range(RANDOM_SEEDS):
            orders[f"random{s}"] = list(np.random.default_rng(s).permutation(runs.index))
        for name, order in orders.items():
            chosen = start
            method, seed = ("random", int(name[6:])) if name.startswith("random") else (name, 0)
            for k, b in enumerate(BUDGETS[1:-1], 1):
                chosen = fill(order, runs, chosen, levels[k])
                self.fit_score(group, method, b, seed, grid, runs, chosen, target)


def report(rows: list[dict], groups, figure: Path | None) -> None:
    df = pd.DataFrame(rows)
    full = df[df["method"] == "full"].set_index("group")
    start = df[df["method"] == "start"].set_index("group")
    table = []
    for g in groups:
        for m in ("suggest", "random", "cheapest", "largest"):
            for b in BUDGETS:
                if b == BUDGETS[0] or b == 1.0:
                    src = (start if b == BUDGETS[0] else full)
                    if g not in src.index:
                        continue
                    part = src.loc[[g]]
                else:
                    part = df[(df["group"] == g) & (df["method"] == m) & (df["budget"] == b)]
                if part.empty:
                    continue
                table.append({"group": g, "method": m, "budget": b,
                              "median_abs_delta": part["median_abs_delta"].mean(),
                              "coverage_90": part["coverage_90"].mean(),
                              # (lines written before the rank was recorded have none)
                              "coverage_90_rank": part.get("coverage_90_rank",
                                                           pd.Series(np.nan)).mean(),
                              "n": len(part)})
    t = pd.DataFrame(table)
    if t.empty:
        return
    print(t.pivot_table(index=["group", "method"], columns="budget",
                        values="median_abs_delta").map(lambda x: f"{100 * x:.1f} %")
          .to_string())
    print(t.pivot_table(index=["group", "method"], columns="budget",
                        values="coverage_90").round(2).to_string())
    ratios, beats, cov30, rank30 = [], [], [], []
    for g in groups:
        s = t[(t["group"] == g) & (t["method"] == "suggest")].set_index("budget")
        r = t[(t["group"] == g) & (t["method"] == "random")].set_index("budget")
        mid = [b for b in BUDGETS[1:-1] if b in s.index and b in r.index]
        d_s, d_r = s["median_abs_delta"], r["median_abs_delta"]
        if 0.3 in s.index and g in full.index:
            ratios.append(f"{d_s[0.3] / full.loc[g, 'median_abs_delta']:.2f}")
            cov30.append(f"{s.loc[0.3, 'coverage_90']:.2f}")
            rank30.append(f"{s.loc[0.3, 'coverage_90_rank']:.2f}")
        beats.append(f"{np.mean([d_s[b] < d_r[b] for b in mid]):.2f}" if mid else "nan")
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, len(groups), figsize=(3.2 * len(groups), 5.6), sharex=True,
                                 squeeze=False)
        for j, g in enumerate(groups):
            for m, style in (("suggest", "o-"), ("random", "s--"), ("cheapest", "^:"),
                             ("largest", "v:")):
                p = t[(t["group"] == g) & (t["method"] == m)].sort_values("budget")
                axes[0, j].plot(100 * p["budget"], 100 * p["median_abs_delta"], style, label=m)
                axes[1, j].plot(100 * p["budget"], p["coverage_90"], style, label=m)
            axes[0, j].set_title(g)
            axes[1, j].axhspan(0.85, 0.95, color="0.9")
            axes[1, j].set_xlabel("budget, % of the pool's compute")
        axes[0, 0].set_ylabel("median |delta| on the extrapolation set, %")
        axes[1, 0].set_ylabel("90 % band coverage")
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        print(f"figure: {figure}")
    print(f"budget30_ratio={','.join(ratios)} beats_random={','.join(beats)} "
          f"coverage30={','.join(cov30)} rank30={','.join(rank30)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    ap.add_argument("--out", type=Path, default=Path("active_design.jsonl"),
                    help="results, one JSON line per fit; an existing file is resumed")
    ap.add_argument("--figure", type=Path, default=Path("active_design.png"))
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--borrow-drift", action=argparse.BooleanOptionalAction, default=True,
                    help="each group's drift pooled with the other reference groups', as `fit` "
                         "does by default (--no-borrow-drift: its own alone; use another --out)")
    ap.add_argument("--split", choices=("ext", "top"), default="ext",
                    help="the goal: the extrapolation set (ext, reported), or the fitting "
                         "grid's largest depth and width, out of the pool (top, for settling "
                         "choices)")
    ap.add_argument("--only-suggest", action="store_true",
                    help="fit the start, the whole pool and suggest's choices only")
    ap.add_argument("--report-only", action="store_true", help="only print what --out holds")
    args = ap.parse_args()
    bench = Bench(args)
    if not args.report_only:
        for g in args.groups:
            bench.group(g)
    report(list(bench.done.values()), args.groups, args.figure)


if __name__ == "__main__":
    main()
