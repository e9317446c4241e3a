"""Candidate runs for ``bayes-prune suggest``: read from a grid spec or a table, those
already finished in a store left out, and the chosen ones written back as specs that
``bayes-prune grid run`` accepts."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pandas as pd

from .errors import UserError

__all__ = ["RUN_COLUMNS", "candidate_runs", "drop_finished", "write_specs"]

RUN_COLUMNS = ["arch", "task", "depth", "width", "n_train", "seed"]


def candidate_runs(path: str | Path) -> pd.DataFrame:
    """Candidate runs from a grid spec (TOML: its runs) or a table (CSV with columns
    ``arch, task, depth, width, n_train, seed`` and, optionally, ``rounds``,
    ``params_total``, ``params_prunable`` and any recipe field). One row per run, with the
    recipe's fields as columns and ``recipe`` (a JSON object of the fields that differ from
    the default recipe)."""
    from .spec import Recipe, RunConfig, load_spec

    path = Path(path)
    if path.suffix == ".toml":
        spec = load_spec(path)
        runs = spec.runs()
        rec = {f.name: getattr(spec.recipe, f.name) for f in fields(Recipe)}
        table = pd.DataFrame([{"arch": r.arch, "task": r.task, "depth": r.depth,
                               "width": r.width, "n_train": r.n_train, "seed": r.seed,
                               "rounds": r.rounds, **rec} for r in runs])
    else:
        from .inputs import read_table

        table = read_table(path, "--candidates", RUN_COLUMNS)
        seeds = pd.to_numeric(table["seed"], errors="coerce")
        if seeds.isna().any() or (seeds < 0).any() or (seeds != seeds.round()).any():
            raise UserError(f"--candidates {path}: seed must be an integer >= 0")
        table["seed"] = seeds.astype(int)
        defaults = {f.name: getattr(Recipe(), f.name) for f in fields(Recipe)}
        for name, value in {"rounds": 40, **defaults}.items():
            if name not in table:
                table[name] = value
        try:  # every row's recipe checked as a spec's would be
            for rec in table[list(defaults)].drop_duplicates().to_dict(orient="records"):
                Recipe(**{k: _py(v) for k, v in rec.items()})
        except (UserError, TypeError) as exc:
            raise UserError(f"--candidates {path}: {exc}") from None
    if table.empty:
        raise UserError(f"--candidates {path}: no candidate runs")
    table = table.drop_duplicates(subset=RUN_COLUMNS).reset_index(drop=True)
    names = [f.name for f in fields(Recipe)]
    table["run_id"] = [RunConfig(r["task"], r["arch"], int(r["depth"]), int(r["width"]),
                                 int(r["n_train"]), int(r["seed"]), int(r["rounds"]),
                                 Recipe(**{n: _py(r[n]) for n in names})).run_id
                       for r in table.to_dict(orient="records")]
    return table


def _py(v):
    return v.item() if hasattr(v, "item") else v


def drop_finished(cands: pd.DataFrame, stores) -> pd.DataFrame:
    """``cands`` without the runs that are finished (status ``done``) in any of ``stores``
    (the same run id: the same configuration, seed and recipe)."""
    from .store import read_only

    done = {r for p in stores
            for r in read_only(p, "SELECT run_id FROM runs WHERE status = 'done'")["run_id"]}
    if "run_id" not in cands or not done:
        return cands
    return cands[~cands["run_id"].isin(done)].reset_index(drop=True)


def write_specs(picks: pd.DataFrame, cands: pd.DataFrame, path: str | Path,
                comment: str = "") -> list[Path]:
    """The picked runs as grid specs that ``bayes-prune grid run`` accepts: one file (``path``)
    if they share a group and a recipe, else one per group and recipe (``path``'s stem with
    ``_<arch>_<task>[_<k>]``)."""
    from .spec import Recipe, spec_text

    path = Path(path)
    names = [f.name for f in fields(Recipe)]
    chosen = picks[RUN_COLUMNS].merge(cands, on=RUN_COLUMNS, how="left")
    keys = ["arch", "task", "rounds"] + names
    groups = list(chosen.groupby(keys, sort=False, dropna=False))
    written = []
    for k, (key, part) in enumerate(groups):
        values = dict(zip(keys, key, strict=True))
        recipe = Recipe(**{n: _py(values[n]) for n in names})
        target = path if len(groups) == 1 else path.with_name(
            f"{path.stem}_{values['arch']}_{values['task']}"
            + (f"_{k}" if sum(1 for g in groups if g[0][:2] == key[:2]) > 1 else "")
            + path.suffix)
        runs = part[["depth", "width", "n_train", "seed"]].astype(int).itertuples(index=False)
        target.write_text(spec_text(values["task"], values["arch"], [tuple(r) for r in runs],
                                    int(values["rounds"]), recipe, comment))
        written.append(target)
    return written
