"""A grid's runs as the model sees them (:mod:`bayes_prune.model`): each run's measured dense
point (round 0) and whether the model conditions its dense error on it, the start values of
the runs' latent dense errors, the order of a trajectory's points and their AR(1) likelihood
in the round (the residuals of a run's successive rounds share their miss: experiments/README,
"A trajectory is not 30 independent facts"). Numpy and pytensor; below ``model``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor.tensor as pt

from .coords import Layout
from .errors import UserError
from .grid import CONFIG_KEY
from .law import binomial_log_var
from .lsq import observed_errors

__all__ = ["RUNS_MODES", "ar1_loglik", "dense_point_var", "measured_runs", "previous_point",
           "run_dense_points", "run_start"]

RUNS_MODES = ("auto", "latent", "measured")


def measured_runs(lay: Layout, runs_mode: str = "latent") -> np.ndarray:
    """Per run (``lay.runs`` order): whether the model conditions its dense error on its
    measured dense point (``True``) or samples it as a latent (``False``). ``auto``: every
    run that has a dense point is conditioned on it (on the reference grids 68 sampled
    dimensions instead of 536, a 2-3x faster fit, but worse bands for held-out Fashion-MNIST
    configurations: README, "Fit speed"); ``latent`` (``fit``'s default): none; ``measured``:
    all, refusing a run without a dense point."""
    if runs_mode not in RUNS_MODES:
        raise UserError(f"unknown runs mode {runs_mode!r}; choose {', '.join(RUNS_MODES)}")
    y, _ = run_dense_points(lay, require=runs_mode == "measured")
    return np.isfinite(y) if runs_mode != "latent" else np.zeros(len(y), dtype=bool)


def dense_point_var(y: np.ndarray, n_dense: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Per run: the binomial variance of its measured log dense error ``y`` (test set of
    ``n_dense``) where ``measured``, else 0 (a run whose dense error is a latent)."""
    return np.where(measured, binomial_log_var(np.exp(np.where(measured, y, 0.0)),
                                               np.where(measured, n_dense, 1.0)), 0.0)


def run_dense_points(lay: Layout, require: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per run (``lay.runs`` order): the log of its measured dense error (round 0, floored at
    half a mistake) and its test-set size; NaN for a run without a dense point (its dense
    error is then a latent that its configuration's dense law and its pruned points inform),
    which ``require`` refuses."""
    dense = lay.points[lay.points["round"] == 0]
    y = np.full(len(lay.runs), np.nan)
    n = np.full(len(lay.runs), np.nan)
    idx = dense["run_idx"].to_numpy()
    y[idx], n[idx] = np.log(observed_errors(dense)), dense["n_test"].to_numpy(float)
    if require and np.isnan(y).any():
        first = lay.runs.iloc[int(np.flatnonzero(np.isnan(y))[0])]
        cfg = lay.configs.iloc[int(first["config_idx"])]
        raise UserError(
            f"{int(np.isnan(y).sum())} run(s) have no dense point (round 0), e.g. "
            + ", ".join(f"{k}={cfg[k]}" for k in CONFIG_KEY) + f", seed={first['seed']}"
            + ": runs_mode 'measured' conditions every run on its measured dense error; "
              "use runs_mode 'latent' (the default)")
    return y, n


def previous_point(points: pd.DataFrame) -> np.ndarray:
    """Per row of ``points``: the position of the same run's point of the round before
    (the latest earlier round present), or -1 for a run's first point."""
    order = np.lexsort((points["round"].to_numpy(), points["run_idx"].to_numpy()))
    run = points["run_idx"].to_numpy()[order]
    prev = np.full(len(points), -1)
    same = np.r_[False, run[1:] == run[:-1]]
    prev[order[same]] = order[np.flatnonzero(same) - 1]
    return prev


def ar1_loglik(obs, mean, sd, rho, prev, xp=pt):
    """Log likelihood of the observed log errors when each run's standardized residuals
    ``e = (obs - mean) / sd`` follow a stationary AR(1) in the round with coefficient ``rho``
    (per point, its group's): ``e_1 ~ N(0, 1)``, ``e_k | e_(k-1) ~ N(rho e_(k-1), 1 - rho^2)``.
    Each point keeps its marginal ``N(mean, sd)``; successive rounds of a run share their
    miss, so a trajectory of 30 points counts for fewer than 30 independent ones. ``prev``
    is :func:`previous_point`."""
    e = (obs - mean) / sd
    has = prev >= 0
    r = rho * has
    cond_mean = r * e[np.where(has, prev, 0)]
    cond_var = 1.0 - r ** 2
    return xp.sum(-0.5 * (e - cond_mean) ** 2 / cond_var - 0.5 * xp.log(cond_var)
                  - xp.log(sd)) - 0.5 * len(obs) * np.log(2 * np.pi)


def run_start(lay: Layout, y: np.ndarray) -> np.ndarray:
    """Start values of the runs' latent log dense errors: the measured dense point, else the
    run's lowest log error."""
    low = np.log(observed_errors(lay.points))
    lowest = pd.Series(low).groupby(lay.points["run_idx"].to_numpy()).min()
    return np.where(np.isnan(y), lowest.reindex(range(len(y))).to_numpy(), y)
