"""The hierarchical model on real grids this toolkit did not make (``../shared/external``).

Each grid is fitted alone, with the fit's default settings unless flags say otherwise; per grid
the table gives its shape (groups, configurations, runs, points, values per axis), the sampler's
diagnostics, the wall time (compilation included), whether every prediction at the grid's own
points is finite, and the in-sample median |delta| of the posterior median, and it lists which
coefficients the data identify and which rest on their prior (``Posterior.identified``).

Last line, for scripts: ``grids=<n> ok=<n> max_rhat=<x> min_ess_bulk=<x> divergences=<n>
all_finite=<bool>``.

Usage: python benchmarks/external_grids.py [--shared DIR] [--only NAME ...] [--draws N]
[--tune N] [--chains N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_prune.fit import fit
from bayes_prune.grid import read_grid

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "external"
# name -> (file under SHARED, row filter as a pandas query or None)
GRIDS = {
    "renda2020-cifar10": ("rewinding-renda2020/renda2020.grid.csv", "task == 'cifar10'"),
    "renda2020-imagenet": ("rewinding-renda2020/renda2020.grid.csv", "task == 'imagenet'"),
    "csgiung-imagenet": ("lth-imagenet-csgiung/csgiung_imagenet_imp.grid.csv", None),
    "gale2019-lottery": ("state-of-sparsity-gale2019/gale2019_lottery.grid.csv", None),
    "gale2019-gmp-best": ("state-of-sparsity-gale2019/gale2019_gmp_best.grid.csv", None),
    "gale2019-gmp-sweep": ("state-of-sparsity-gale2019/gale2019_gmp_sweep.grid.csv", None),
    "frantar2023-vit": ("bigsparse-frantar2023/vit.grid.csv", None),
    "frantar2023-t5": ("bigsparse-frantar2023/t5.grid.csv", None),
}


def load(name: str, shared: Path = SHARED) -> pd.DataFrame:
    """The named external grid (validated), filtered as :data:`GRIDS` says."""
    path, query = GRIDS[name]
    grid = read_grid(shared / path)
    return (grid.query(query) if query else grid).reset_index(drop=True)


def shape(grid: pd.DataFrame) -> dict:
    runs = grid.groupby(["task", "arch", "depth", "width", "n_train", "seed"]).ngroups
    return {"groups": grid.groupby(["arch", "task"]).ngroups,
            "configs": grid.groupby(["task", "arch", "depth", "width", "n_train"]).ngroups,
            "runs": runs, "points": len(grid),
            "dense_runs": int((grid["round"] == 0).sum()),
            **{f"n_{a}": int(grid[a].nunique()) for a in ("depth", "width", "n_train")}}


def one(name: str, grid: pd.DataFrame, **kw) -> dict:
    start = time.perf_counter()
    post = fit(grid, progress=False, source=name, **kw)
    seconds = time.perf_counter() - start
    draws = post.predict_draws(grid, band="expected")
    med = np.median(draws, axis=1)
    obs = grid["test_error"].to_numpy(float)
    ident = post.identification()
    return {"grid": name, **shape(grid), **post.diagnostics, "seconds": round(seconds, 1),
            "all_finite": bool(np.isfinite(draws).all()),
            "median_abs_delta": float(np.median(np.abs(med - obs) / obs)),
            "prior_only": {f"{a}/{t}": list(d.loc[d["identified"] == "prior", "coef"])
                           for (a, t), d in ident.groupby(["arch", "task"])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the external data folder")
    ap.add_argument("--only", nargs="+", choices=list(GRIDS), help="fit only these grids")
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument("--tune", type=int, default=None)
    ap.add_argument("--chains", type=int, default=None)
    ap.add_argument("--low-rank", action="store_true", help="nutpie's low-rank mass matrix")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    kw = {k: getattr(args, k) for k in ("draws", "tune", "chains", "low_rank")
          if getattr(args, k)}
    rows = []
    for name in args.only or GRIDS:
        rows.append(one(name, load(name, args.shared), **kw))
        r = rows[-1]
        print(f"{name}: {r['points']} points, {r['configs']} configs, {r['runs']} runs "
              f"({r['dense_runs']} with a dense point); R-hat {r['max_rhat']:.3f}, ESS bulk "
              f"{r['min_ess_bulk']:.0f} tail {r['min_ess_tail']:.0f}, {r['divergences']} "
              f"divergences, {r['seconds']} s; finite {r['all_finite']}; in-sample median "
              f"|delta| {100 * r['median_abs_delta']:.1f} %", flush=True)
        for g, names in r["prior_only"].items():
            print(f"    {g}: resting on the prior: {', '.join(names) or '-'}")
    cols = ["grid", "groups", "configs", "runs", "points", "n_depth", "n_width", "n_n_train",
            "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "seconds",
            "all_finite", "median_abs_delta"]
    print(pd.DataFrame(rows)[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"grids={len(rows)} ok={sum(r['ok'] for r in rows)} "
          f"max_rhat={max(r['max_rhat'] for r in rows):.4f} "
          f"min_ess_bulk={min(r['min_ess_bulk'] for r in rows):.0f} "
          f"divergences={sum(r['divergences'] for r in rows)} "
          f"all_finite={all(r['all_finite'] for r in rows)}")


if __name__ == "__main__":
    main()
