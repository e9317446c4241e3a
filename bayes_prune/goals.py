"""The questions ``suggest`` narrows (:class:`Goal`): the log expected error of some
configurations (``query``, ``region``), the log of the fewest non-zero weights that reach an
error (``design``), or the difference of a coefficient between two groups (``compare``).
:mod:`bayes_prune.suggest` makes each goal's draws and ranks runs by how much they narrow it.
Numpy and pandas only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import UserError
from .grid import CONFIG_KEY

__all__ = ["Goal", "goal_query", "goal_design", "goal_compare", "design_rows"]

_DESIGN_DENSITIES = 0.8 ** np.arange(41)


@dataclass
class Goal:
    """One goal, of ``kind`` query, region, design or compare, with a ``label`` for people and
    what the kind needs: ``rows`` (query, region: the configurations), ``target_error`` and
    ``a`` = (arch, task) or Nones (design), ``coef``, ``a`` and ``b`` (compare). Its draws,
    aligned with the posterior's, are made by :func:`bayes_prune.suggest.simulate`."""

    kind: str
    label: str
    rows: pd.DataFrame | None = None
    target_error: float | None = None
    coef: str | None = None
    a: tuple[str, str] | None = None
    b: tuple[str, str] | None = None


def goal_query(rows: pd.DataFrame, kind: str = "query") -> Goal:
    """The log expected error at ``rows`` (arch, task, depth, width, n_train, density)."""
    label = ("error at " + "; ".join(
        f"{r.arch}/{r.task} d{r.depth} w{r.width} n{r.n_train} density {r.density:g}"
        for r in rows.head(3).itertuples()) + (f" and {len(rows) - 3} more"
                                                if len(rows) > 3 else ""))
    return Goal(kind, label, rows=rows.reset_index(drop=True))


def goal_design(target_error: float, arch: str | None = None, task: str | None = None) -> Goal:
    """The log of the fewest non-zero weights whose expected error is at most
    ``target_error``, over the fitted and the candidate configurations of the candidates'
    groups (or of ``arch``/``task``) at densities 0.8^r."""
    if not 0 < target_error < 1:
        raise UserError(f"--target-error must be in (0, 1), got {target_error}")
    where = "/".join(x for x in (arch, task) if x) or "the candidates' groups"
    return Goal("design", f"fewest non-zero weights reaching error {target_error:g} "
                          f"({where})", target_error=target_error, a=(arch, task))


def goal_compare(coef: str, a: tuple[str, str], b: tuple[str, str]) -> Goal:
    """The difference ``coef`` of group ``a`` minus that of ``b`` (natural scale)."""
    return Goal("compare", f"{coef} of {'/'.join(a)} minus {coef} of {'/'.join(b)}",
                coef=coef, a=a, b=b)


def design_rows(post, cands: pd.DataFrame, goal: Goal) -> pd.DataFrame:
    """The rows a design goal searches: the fitted and the candidate configurations of its
    groups (``goal.a``, or the candidates' groups), each at densities 0.8^r."""
    arch, task = goal.a
    configs = pd.concat([post.configs[CONFIG_KEY + ["params_total", "params_prunable"]],
                         cands[CONFIG_KEY + [c for c in ("params_total", "params_prunable")
                                             if c in cands]]], ignore_index=True)
    groups = cands[["arch", "task"]].drop_duplicates()
    keep = configs.merge(groups, on=["arch", "task"]) if arch is None and task is None else \
        configs[((configs["arch"] == arch) if arch else True)
                & ((configs["task"] == task) if task else True)]
    keep = keep.drop_duplicates(subset=CONFIG_KEY).reset_index(drop=True)
    if keep.empty:
        raise UserError(f"--goal-design: no configuration of {goal.label.split('(')[-1][:-1]} "
                        "is fitted or a candidate")
    keep["params_total"] = post._params(keep)
    if keep["params_prunable"].isna().any():
        keep["params_prunable"] = keep["params_prunable"].fillna(keep["params_total"])
    return keep.merge(pd.DataFrame({"density": _DESIGN_DENSITIES}), how="cross")
