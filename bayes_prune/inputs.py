"""Checks of user input that sit between a valid file and a command that can use it.

:func:`bayes_prune.grid.validate` and :func:`bayes_prune.spec.load_spec` check a file against
its schema; :mod:`bayes_prune.posterior_file` checks a posterior. What is checked here depends
on the command: whether the paper's least squares can determine the joint law for each group of
a grid, whether a query's rows are values the law is defined for, whether an (arch, task) pair
can be answered by a posterior. Every message names the source, the row or key, the bad value
and what is allowed, and is raised before anything is written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import UserError
from .grid import CONFIG_KEY, GROUP_KEY, other_separator, run_key

__all__ = ["least_squares_groups", "check_least_squares", "check_query_rows", "check_pair"]


def _shapes_span(g: pd.DataFrame) -> bool:
    """Whether the joint least squares can fit the group: at least two configurations, and
    where depth and width both vary, three or more (depth, width) shapes not on one line in
    (log depth, log width), or phi and psi trade off. An axis with one value leaves its
    exponent without effect on the group's predictions (it is absorbed by p')."""
    if len(g[CONFIG_KEY].drop_duplicates()) < 2:
        return False
    shapes = np.log(g[["depth", "width"]].drop_duplicates().to_numpy(float))
    if min(len(np.unique(shapes[:, 0])), len(np.unique(shapes[:, 1]))) == 1:
        return True
    design = np.column_stack([np.ones(len(shapes)), shapes])
    return len(shapes) >= 3 and np.linalg.matrix_rank(design) == 3


def least_squares_groups(grid: pd.DataFrame) -> tuple[list[tuple], list[str]]:
    """``(fittable, refused)``: the (arch, task) groups whose shapes let the joint least
    squares determine phi and psi, and a description of each other group."""
    ok, refused = [], []
    for key, g in grid.groupby(GROUP_KEY, sort=True):
        if _shapes_span(g):
            ok.append(key)
            continue
        configs = g[CONFIG_KEY].drop_duplicates()
        shapes = g[["depth", "width"]].drop_duplicates()
        listed = ", ".join(f"({d}, {w})" for d, w in shapes.itertuples(index=False))
        refused.append(f"group {key[0]}/{key[1]} has {len(configs)} configuration(s) of "
                       f"{len(shapes)} (depth, width) shape(s) [{listed}]")
    return ok, refused


def check_least_squares(grid: pd.DataFrame, source: str, form: str = "joint") -> None:
    """Refuse a grid the paper's least squares cannot fit: for the joint form, a group of one
    configuration, or one whose depths and widths both vary on a line (phi and psi then trade
    off); for either form, a run without its dense point (round 0)."""
    if form == "joint":
        _, refused = least_squares_groups(grid)
        if refused:
            raise UserError(
                f"{source}: {refused[0]}; the joint least-squares fit of the law's 5 "
                "coefficients needs two configurations or more, and where depth and width "
                "both vary, 3 shapes not on one line in (log depth, log width), or phi and "
                "psi are not determined. `bayes-prune fit` supports such a "
                "group (its priors carry what the grid cannot tell); `lsq --form single` fits "
                "each network alone")
    keys = run_key(grid)
    has_dense = grid.groupby(keys, sort=False)["round"].transform("min") == 0
    if not has_dense.all():
        i = int(np.argmax(~has_dense.to_numpy()))
        run = ", ".join(f"{k}={grid[k].iloc[i]}" for k in keys)
        raise UserError(f"{source}: the run ({run}) has no dense point (round 0); least squares "
                        "conditions every run on its own dense error. `bayes-prune fit` "
                        "supports runs without one")


def _where(source: str | None, row: int, column: str) -> str:
    """A table's row and column (as in the file: the header is line 1), or, for ``source``
    None, the command-line option."""
    return f"{source}: row {row + 2}, column '{column}'" if source \
        else f"--{column.replace('_', '-')}"


def read_table(path, option: str, required) -> pd.DataFrame:
    """The CSV at ``path`` (given with ``option``), checked to have the ``required`` columns
    and then by :func:`check_query_rows`; every problem a one-line :class:`UserError`."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{option} {path}: {exc}") from None
    _comma_separated(table, f"{option} {path}")
    missing = [c for c in required if c not in table]
    if missing:
        raise UserError(f"{option} {path}: missing column(s) {', '.join(missing)} (needs "
                        f"{', '.join(required)})")
    return check_query_rows(table, str(path))


def _comma_separated(table: pd.DataFrame, source: str) -> None:
    """Refuse a table that pandas read as one column because another separator was used."""
    sep = other_separator(table.columns, ("depth", "width", "n_train"))
    if sep:
        raise UserError(f"{source}: its columns are separated by {sep!r}; a CSV here is "
                        "separated by commas")


def check_query_rows(rows: pd.DataFrame, source: str | None) -> pd.DataFrame:
    """The configurations of a query (from the table ``source``, or from options for None),
    checked: each numeric
    value a finite number, ``density`` in (0, 1], ``depth``, ``width``, ``n_train`` positive
    integers, ``params_total`` and friends positive when given. Returns them with those
    columns numeric."""
    if source:
        _comma_separated(rows, source)
    out = rows.reset_index(drop=True).copy()
    rules = (("depth", True, "a positive integer"), ("width", True, "a positive integer"),
             ("n_train", True, "a positive integer"), ("density", False, "a density in (0, 1]"),
             ("params_total", False, "a positive number"),
             ("params_prunable", False, "a positive number"),
             ("n_test", True, "a positive integer"))
    for col, integer, allowed in rules:
        if col not in out.columns:
            continue
        raw = out[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        bad = ~np.isfinite(num) | (num <= 0)
        if col == "density":
            bad |= num > 1
        if integer:
            bad |= np.isfinite(num) & (num != np.round(num))
        if bad.any():
            i = int(np.argmax(bad))
            value = raw.iloc[i]
            value = value.item() if hasattr(value, "item") else value
            raise UserError(f"{_where(source, i, col)}: {value!r} is not {allowed}")
        out[col] = num.astype(np.int64) if integer else num
    return out


def check_pair(pair: tuple[str, str], archs, tasks, option: str) -> None:
    """Refuse an (arch, task) ``pair`` a posterior fitted on ``archs`` x ``tasks`` cannot
    answer: its arch and its task must each have been fitted."""
    arch, task = pair
    if arch not in archs or task not in tasks:
        raise UserError(f"{option} {arch}/{task}: the posterior was fitted on archs "
                        f"{', '.join(archs)} and tasks {', '.join(tasks)}; a pair is answered "
                        "only when its arch and its task were both fitted")
