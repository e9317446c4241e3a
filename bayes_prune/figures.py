"""Figures from a posterior and its grid: the queries of :mod:`bayes_prune.posterior` drawn with
the plots of :mod:`bayes_prune.plots`. Each function returns a matplotlib ``Figure``; the CLI
(``bayes-prune plot``) and the notebooks save or show it. numpy and matplotlib only.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import plots
from .coords import curvature
from .errors import UserError
from .grid import CONFIG_KEY, random_errors
from .law import PruneLaw, error
from .posterior import Posterior

__all__ = ["KINDS", "curves", "collapse", "coefficients", "calibration", "band_table"]

KINDS = ("curves", "collapse", "coefficients", "calibration")
LAW_COEFS = ("gamma", "p_prime", "phi", "psi", "eps_up")


def _group(grid: pd.DataFrame, arch: str, task: str) -> pd.DataFrame:
    rows = grid[(grid["arch"] == arch) & (grid["task"] == task)]
    if rows.empty:
        have = ", ".join(sorted({f"{a}/{t}" for a, t in zip(grid["arch"], grid["task"],
                                                             strict=True)}))
        raise UserError(f"the grid has no rows of {arch}/{task}; it has {have}")
    return rows


def band_table(post: Posterior, config: dict, densities: np.ndarray,
               band: str = "prediction") -> pd.DataFrame:
    """Median and central 50 % / 90 % quantiles of the error at ``densities`` for one
    configuration (a dict with arch, task, depth, width, n_train, optional params_total)."""
    rows = pd.DataFrame({**config, "density": densities})
    draws = post.predict_draws(rows, band=band)
    q = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
    return pd.DataFrame({"density": densities, "lower_90": q[0], "lower_50": q[1],
                         "median": q[2], "upper_50": q[3], "upper_90": q[4]})


def curves(post: Posterior, grid: pd.DataFrame, arch: str, task: str, max_panels: int = 6,
           band: str = "prediction") -> plt.Figure:
    """Error vs density, one panel per configuration (at most ``max_panels``, spread over the
    group's sizes): measured points per seed, the posterior median and 50 % / 90 % bands."""
    rows = _group(grid, arch, task)
    configs = rows[CONFIG_KEY].drop_duplicates().sort_values(["depth", "width", "n_train"])
    if len(configs) > max_panels:
        configs = configs.iloc[np.linspace(0, len(configs) - 1, max_panels).round().astype(int)]
    n = len(configs)
    cols = min(n, 3)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols,
                             3.4 * ((n + cols - 1) // cols)), layout="constrained",
                             squeeze=False)
    dens = np.geomspace(rows["density"].min(), 1.0, 60)
    eps0 = float(random_errors(rows).iloc[0])
    for ax, (_, cfg) in zip(axes.flat, configs.iterrows(), strict=False):
        key = cfg.to_dict()
        pts = rows.merge(cfg.to_frame().T.astype(rows[CONFIG_KEY].dtypes), on=CONFIG_KEY)
        plots.curves(pts, band_table(post, key, dens, band), ax=ax, random_error=eps0)
        ax.set_title(f"depth {key['depth']}, width {key['width']}, n {key['n_train']}",
                     fontsize="medium")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{arch}/{task}: measured error and the posterior {band} band")
    return fig


def collapse(post: Posterior, grid: pd.DataFrame, arch: str, task: str) -> plt.Figure:
    """Every point of a group against m* = depth^phi width^psi density (posterior medians of
    phi, psi), with the law's median curve at the group's median dense error."""
    rows = _group(grid, arch, task)
    nat = {k: float(np.median(v)) for k, v in post.natural(arch, task).items()}
    log_m = (np.log(rows["density"].to_numpy(float)) + nat["phi"] * np.log(rows["depth"])
             + nat["psi"] * np.log(rows["width"])).to_numpy()
    if "phi2" in nat:  # the curved variant's invariant
        log_m = log_m + curvature(nat, post.centres, rows["depth"].to_numpy(float),
                                  rows["width"].to_numpy(float))
    m = np.geomspace(np.exp(log_m.min()), np.exp(log_m.max()), 200)
    eps_np = float(rows.loc[rows["round"] == 0, "test_error"].median())
    law = PruneLaw(**{k: nat[k] for k in LAW_COEFS})
    curve = (m, error(m, 1.0, 1.0, eps_np, law))
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    plots.collapse(log_m, rows["test_error"].to_numpy(float), rows["width"].to_numpy(),
                   curve=curve, ax=ax)
    ax.set_title(f"{arch}/{task}: phi={nat['phi']:.2f}, psi={nat['psi']:.2f}")
    return fig


LOG_COEFS = ("p_prime", "a", "b", "c_inf")


def coefficients(post: Posterior, coefs: Sequence[str] = LAW_COEFS,
                 level: float = 0.94) -> plt.Figure:
    """Forest plots of the law's coefficients across the fitted (arch, task) groups."""
    table = post.coefficient_table(level)
    unknown = sorted(set(coefs) - set(table["coef"]))
    if unknown:
        raise UserError(f"unknown coefficient(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(dict.fromkeys(table['coef']))}")
    fig, axes = plt.subplots(1, len(coefs), figsize=(3.4 * len(coefs), 0.5 * len(
        post.groups) + 2.2), layout="constrained", squeeze=False)
    for ax, coef in zip(axes[0], coefs, strict=True):
        t = table[table["coef"] == coef]
        plots.forest({f"{a}/{k}": (lo, med, hi) for a, k, lo, med, hi in
                      zip(t["arch"], t["task"], t["lower"], t["median"], t["upper"],
                          strict=True)}, coef, level=level, ax=ax)
        ax.set_title(coef)
        # scale coefficients (p_prime, the dense law's a, b, c_inf) span orders of magnitude
        # across groups: a log axis when every interval is positive and they span > 10x
        if coef in LOG_COEFS and (t["lower"] > 0).all() and \
                t["upper"].max() > 10 * t["lower"].min():
            ax.set_xscale("log")
    return fig


def calibration(post: Posterior, holdout: pd.DataFrame,
                levels: Sequence[float] = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2))
                ) -> tuple[plt.Figure, dict]:
    """Nominal vs empirical coverage of the central prediction band on held-out points, shaded
    where a band calibrated for these very rows would lie (5-95 % of its own draws, each taken
    as the truth: :func:`bayes_prune.evaluate.replica_coverages`), and beside it where along
    the curve they miss (:func:`bayes_prune.plots.by_density`); returns the figure and
    ``{level: coverage}``."""
    from .evaluate import by_density, replica_coverages

    draws = post.predict_draws(holdout, band="prediction")
    obs = holdout["test_error"].to_numpy(float)
    cover, envelope = {}, []
    for lv in levels:
        lo, hi = np.quantile(draws, [(1 - lv) / 2, (1 + lv) / 2], axis=1)
        cover[float(lv)] = float(np.mean((obs >= lo) & (obs <= hi)))
        envelope.append(np.percentile(replica_coverages(draws, lo, hi), [5, 95]))
    fig, (ax, where) = plt.subplots(1, 2, figsize=(9.5, 4.5), layout="constrained")
    plots.calibration(np.array(list(cover)), {"bayes (prediction band)":
                                              np.array(list(cover.values()))}, ax=ax,
                      envelope=np.array(envelope).T)
    ax.set_title(f"{len(holdout)} held-out points")
    plots.by_density(by_density(holdout.reset_index(drop=True), np.log(draws)), ax=where)
    return fig, cover
