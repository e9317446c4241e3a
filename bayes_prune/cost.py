"""What a training run costs: seconds per round fitted on the rounds a store measured
(``bayes-prune suggest``'s cost model, :mod:`bayes_prune.suggest`). Numpy, pandas and sqlite3
only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .spec import Recipe
from .store import read_only

__all__ = ["CostModel"]

@dataclass
class CostModel:
    """``seconds per round = c0 + c1 x params_total x steps x batch_size``, fitted by relative
    least squares on a store's rounds, per (arch, task) group where the store has one (a
    convolution costs more per weight than a dense layer) and over all of them for the rest
    (``unit`` ``"s"``); without a store, weight-steps (``unit`` ``"work"``, ``c0 = 0``,
    ``c1 = 1``)."""

    coefs: dict = None  # (arch, task) or None (all groups) -> (c0, c1, rounds, median rel. error)
    unit: str = "work"
    source: str = "no store: cost in weights x steps x batch x trainings"

    @classmethod
    def from_stores(cls, paths) -> CostModel:
        frames = [read_only(p, "SELECT r.seconds, r.params_total, u.arch, u.task, u.config "
                               "FROM rounds r JOIN runs u USING (run_id) WHERE r.seconds > 0")
                  for p in paths]
        if not frames or not sum(len(f) for f in frames):
            return cls()
        df = pd.concat(frames, ignore_index=True)
        recipe = [json.loads(c).get("recipe", {}) for c in df["config"]]
        df["work"] = df["params_total"].to_numpy(float) * np.array(
            [r.get("steps", Recipe.steps) * r.get("batch_size", Recipe.batch_size)
             for r in recipe], float)
        coefs = {None: _fit_cost(df)}
        for key, part in df.groupby(["arch", "task"]):
            if len(part) >= 20:
                coefs[key] = _fit_cost(part)
        names = ", ".join(Path(p).name for p in paths)
        return cls(coefs, "s", f"{len(df)} measured rounds of {names}")

    def _coef(self, arch: str, task: str) -> tuple[float, float]:
        if not self.coefs:
            return 0.0, 1.0
        return self.coefs.get((arch, task), self.coefs[None])[:2]

    def seconds(self, runs: pd.DataFrame, params, trainings) -> np.ndarray:
        """The cost of each run of ``runs`` (columns arch, task, steps, batch_size) with
        ``params`` weights and ``trainings`` trainings."""
        c = np.array([self._coef(a, t) for a, t in zip(runs["arch"], runs["task"],
                                                       strict=True)], float).reshape(-1, 2)
        work = np.asarray(params, float) * runs["steps"].to_numpy(float) \
            * runs["batch_size"].to_numpy(float)
        return (c[:, 0] + c[:, 1] * work) * np.asarray(trainings, float)

    def to_dict(self) -> dict:
        return {"unit": self.unit, "source": self.source,
                "groups": {"all" if k is None else "/".join(k):
                           {"c0": v[0], "c1": v[1], "rounds": v[2], "median_rel_error": v[3]}
                           for k, v in (self.coefs or {}).items()}}

    def describe(self) -> str:
        if self.unit == "work":
            return f"cost model: {self.source}"
        lines = [f"cost model: seconds per round = c0 + c1 x weights x steps x batch, fitted "
                 f"on {self.source}:"]
        for k, (c0, c1, n, rel) in self.coefs.items():
            lines.append(f"  {'all groups' if k is None else '/'.join(k)}: c0 {c0:.3g} s, "
                         f"c1 {c1:.3g} s, {n} rounds, median relative error {100 * rel:.0f} %")
        return "\n".join(lines)


def _fit_cost(df: pd.DataFrame) -> tuple[float, float, int, float]:
    """``(c0, c1, rounds, median relative error)`` of ``seconds = c0 + c1 x work``, by least
    squares on relative errors (a 0.1 s round weighs as much as a 100 s one), ``c0, c1 >= 0``."""
    work, secs = df["work"].to_numpy(float), df["seconds"].to_numpy(float)
    A = np.stack([np.ones_like(work), work], axis=1) / secs[:, None]
    (c0, c1), *_ = np.linalg.lstsq(A, np.ones_like(secs), rcond=None)
    if c1 <= 0:  # no size effect visible: a constant cost per round
        c0, c1 = float(np.median(secs)), 0.0
    elif c0 < 0:
        c0, c1 = 0.0, float(np.median(secs / work))
    rel = float(np.median(np.abs((c0 + c1 * work) / secs - 1)))
    return float(c0), float(c1), int(len(df)), rel
